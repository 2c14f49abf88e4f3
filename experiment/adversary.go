package experiment

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/node"
	"github.com/cairnlabs/cairn/verify"
)

// Adversary kinds of the trust experiment, one per way a worker can cheat
// or attack a round (issue 7's targets).
const (
	Noise    = "noise"    // random Gaussian noise with the honest Δ's norm
	Scaled   = "x50"      // the honest Δ scaled by 50
	Zeros    = "zeros"    // a free-rider returning zeros
	Copier   = "copier"   // resubmits another worker's Δ of the previous round
	Lazy     = "lazy"     // trains H/5 steps and claims H
	Negated  = "negated"  // the negated honest Δ: honest norm, poisonous direction
	Overflow = "overflow" // int8 chunk scales at the decoder's maximum
)

// AdversaryKinds lists every kind, in the order the experiment reports them.
func AdversaryKinds() []string {
	return []string{Noise, Scaled, Zeros, Copier, Lazy, Negated, Overflow}
}

// Board lets the copier see another worker's contributions: in the
// experiment it records what one honest worker submits (a copier in a real
// run would need a leak or a colluder; the experiment grants it one).
type Board struct {
	mu   sync.Mutex
	subs map[int][]byte
}

// NewBoard returns an empty board.
func NewBoard() *Board { return &Board{subs: map[int][]byte{}} }

func (b *Board) put(round int, p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subs[round] = append([]byte(nil), p...)
	delete(b.subs, round-2)
}

func (b *Board) get(round int) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.subs[round]
}

// Recorder is an honest worker's behaviour that posts each of its
// contributions on a board.
type Recorder struct{ Board *Board }

// Steps trains honestly.
func (r Recorder) Steps(_, steps int) int { return steps }

// Forge submits the honest contribution unchanged and records it.
func (r Recorder) Forge(round int, honest []byte, tokens int) ([]byte, int) {
	r.Board.put(round, honest)
	return honest, tokens
}

// adversary is one cheating or attacking worker.
type adversary struct {
	kind  string
	cfg   diloco.RunConfig
	seed  uint64
	board *Board
	delta []float32
}

// NewAdversary returns the behaviour of an adversary of the given kind for
// run cfg; seed fixes its randomness, board (for the copier) is where it
// finds another worker's contributions.
func NewAdversary(kind string, cfg diloco.RunConfig, seed uint64, board *Board) (node.Behaviour, error) {
	switch kind {
	case Noise, Scaled, Zeros, Lazy, Negated, Overflow:
	case Copier:
		if board == nil {
			return nil, fmt.Errorf("a copier needs a board to copy from")
		}
	default:
		return nil, fmt.Errorf("unknown adversary %q (have %v)", kind, AdversaryKinds())
	}
	return &adversary{kind: kind, cfg: cfg, seed: seed, board: board, delta: make([]float32, cfg.Model.NumParams())}, nil
}

// Steps: the lazy worker trains a fifth of the round; the free-rider, the
// copier and the overflow attack one step (they need a state to commit
// to); the others all of it (noise takes the honest Δ's norm, the scaled
// and negated attacks start from the honest Δ).
func (a *adversary) Steps(_, steps int) int {
	switch a.kind {
	case Lazy:
		return max(1, steps/5)
	case Zeros, Copier, Overflow:
		return 1
	}
	return steps
}

// Forge builds the adversary's payload; each claims a whole round's tokens.
func (a *adversary) Forge(round int, honest []byte, tokens int) ([]byte, int) {
	full := a.cfg.TokensPerRound()
	switch a.kind {
	case Lazy:
		return honest, full
	case Copier:
		if p := a.board.get(round - 1); p != nil {
			return p, full
		}
		return honest, tokens // nothing to copy yet: the first round is honest
	}
	if err := compress.Decode(honest, a.delta); err != nil {
		return honest, tokens
	}
	switch a.kind {
	case Noise:
		rms := verify.Norm(a.delta) / math.Sqrt(float64(len(a.delta)))
		r := rand.New(rand.NewPCG(a.seed, uint64(round)))
		for i := range a.delta {
			a.delta[i] = float32(r.NormFloat64() * rms)
		}
	case Scaled:
		for i := range a.delta {
			a.delta[i] *= 50
		}
	case Zeros:
		clear(a.delta)
	case Negated:
		for i := range a.delta {
			a.delta[i] = -a.delta[i]
		}
	case Overflow:
		for i := range a.delta {
			a.delta[i] = float32(math.Copysign(math.MaxFloat32, float64(1-2*(i%2))))
		}
	}
	p, err := compress.NewEncoder(a.cfg.Codec, len(a.delta)).Encode(a.delta)
	if err != nil {
		return honest, tokens
	}
	return p, full
}
