package diloco

import (
	"context"
	"fmt"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/train"
)

// Worker runs the inner optimisation of DiLoCo rounds for one node. Its
// AdamW state stays local across rounds; only pseudo-gradients leave it.
type Worker struct {
	ID  string
	Cfg RunConfig
	// KeepTraining, when set, is asked before each inner step after the
	// first (done steps taken); false ends the round's training there, as
	// though Train had been asked for done steps. A worker short of time
	// uses it to fit its steps to the round's deadline.
	KeepTraining func(done int) bool

	inner *train.Trainer
	enc   *compress.Encoder
	theta []float32 // the global weights of round
	round int
	hash  Hash
	delta []float32 // Train's pseudo-gradient
	upd   []float32 // ApplyUpdate's decoded change
	// With overlap: the global weights of round-1 (prev, prevHash),
	// kept by ApplyUpdate for a contribution to round that starts from
	// them; prevRound is -1 when they are not held.
	prev      []float32
	prevRound int
	prevHash  Hash
	// With overlap, part of the local state: the decoded payload of the
	// worker's last contribution and its round (see LocalState.Ahead);
	// and the stand-in weights a round starts from.
	ahead      []float32
	aheadRound int
	from       []float32

	backup LocalState // the optimiser state at the start of Train
}

// NewWorker prepares a worker with identity id for the run cfg, training on
// train (the first 90% of the run's text).
func NewWorker(id string, cfg RunConfig, trainData []byte, pool *kernels.Pool) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	inner, err := train.NewTokens(cfg.InnerOptions(), cfg.Encode(trainData), nil, pool)
	if err != nil {
		return nil, err
	}
	inner.Stream = Stream(id)
	n := len(inner.Model.Params)
	enc := compress.NewEncoder(cfg.Codec, n)
	if cfg.FeedbackDecay != 0 {
		if err := enc.SetBeta(float32(cfg.FeedbackDecay)); err != nil {
			return nil, err
		}
	}
	w := &Worker{ID: id, Cfg: cfg, inner: inner, enc: enc,
		theta: make([]float32, n), round: -1, delta: make([]float32, n), upd: make([]float32, n), prevRound: -1, aheadRound: -1}
	if cfg.Overlapped() {
		w.prev, w.ahead, w.from = make([]float32, n), make([]float32, n), make([]float32, n)
	}
	return w, nil
}

// InitialWeights returns θ0 of a run: the model initialised from the run
// seed. Every node computes it alike, so nobody downloads round 0.
func InitialWeights(cfg RunConfig) []float32 {
	p := make([]float32, cfg.Model.NumParams())
	gpt.InitParams(cfg.Model, p, cfg.Seed)
	return p
}

// SetWeights makes theta the worker's global weights for round, and checks
// them against want. On a mismatch the worker keeps its previous state.
func (w *Worker) SetWeights(round int, theta []float32, want Hash) error {
	if len(theta) != len(w.theta) {
		return fmt.Errorf("weights have %d values, the model %d", len(theta), len(w.theta))
	}
	if h := HashWeights(round, theta); h != want {
		return fmt.Errorf("weights of round %d hash to %s, want %s", round, h, want)
	}
	copy(w.theta, theta)
	w.round, w.hash = round, want
	w.prevRound = -1
	return nil
}

// Previous returns the global weights of the round before the worker's
// current one and their hash, if it holds them (with overlap ApplyUpdate
// keeps them). The slice is the worker's own: the next update changes it.
func (w *Worker) Previous() ([]float32, Hash, bool) {
	if w.prevRound < 0 || w.prevRound != w.round-1 {
		return nil, Hash{}, false
	}
	return w.prev, w.prevHash, true
}

// Eager says whether the worker's contribution to round starts from a
// stand-in (the weights of round-1 less its own contribution to round-1,
// see RunConfig.OverlapSteps) rather than from the round's weights.
func (w *Worker) Eager(round int) bool {
	return w.Cfg.Overlapped() && round > 0 && w.aheadRound == round-1
}

// Round is the round of the worker's global weights (-1 before any).
func (w *Worker) Round() int { return w.round }

// Hash identifies the worker's global weights.
func (w *Worker) Hash() Hash { return w.hash }

// Weights are the worker's global weights (shared; do not modify).
func (w *Worker) Weights() []float32 { return w.theta }

// Train runs the first steps of the worker's round's H inner steps (a
// worker too slow to train all H before the round's deadline trains
// fewer, and claims fewer tokens) from its global weights and returns the
// compressed pseudo-gradient θr − θlocal and the number of tokens trained
// on. steps outside [1, H] is an error. step, when not nil, is called after
// each inner step with its loss. It stops early, with ctx's error, when ctx
// is done. A step whose loss is not finite (the round's weights are
// poisoned, say) is an error. The worker's local state (see State) only
// changes by a finished round: on any error it is left as it was before
// the call, so the worker can train the next round's weights.
func (w *Worker) Train(ctx context.Context, steps int, step func(i int, loss float32)) (payload []byte, tokens int, err error) {
	if w.round < 0 {
		return nil, 0, fmt.Errorf("worker has no global weights yet")
	}
	var prev []float32
	if p, _, ok := w.Previous(); ok {
		prev = p
	}
	theta := w.theta
	return w.TrainAhead(ctx, w.round, prev, func(context.Context) ([]float32, error) { return theta, nil }, steps, step)
}

// TrainAhead is Train for the contribution to round when the round's
// weights may not be known yet: prev are the weights of round-1 (only
// read, and only needed when the contribution starts from a stand-in, see
// Eager), and await returns the round's weights θr, blocking until they
// are known; it is called once, before the first inner step or, for an
// eager start, before step min(OverlapSteps, steps). Neither slice may
// change during the call. TrainAhead touches neither the worker's global
// weights nor its round, so one goroutine may train a round ahead with it
// while another applies the published updates (ApplyUpdate, SetWeights);
// nothing else may use the worker meanwhile. The errors are Train's, an
// eager start without prev, await's error, and weights that do not fit
// the model.
func (w *Worker) TrainAhead(ctx context.Context, round int, prev []float32, await func(context.Context) ([]float32, error), steps int, step func(i int, loss float32)) (payload []byte, tokens int, err error) {
	if steps < 1 || steps > w.Cfg.InnerSteps {
		return nil, 0, fmt.Errorf("a round trains 1 to %d inner steps, not %d", w.Cfg.InnerSteps, steps)
	}
	n := len(w.delta)
	eager := w.Eager(round)
	if eager && len(prev) != n {
		return nil, 0, fmt.Errorf("round %d starts from the weights of round %d, which this worker does not hold", round, round-1)
	}
	t := w.inner
	// Keep the optimiser state to roll back to; the encoder leaves its
	// residual unchanged on error by itself.
	w.backup.copyFrom(LocalState{M: t.Opt.M, V: t.Opt.V, Step: t.Opt.Step, Ahead: w.ahead, AheadRound: w.aheadRound})
	defer func() {
		if err != nil {
			copy(t.Opt.M, w.backup.M)
			copy(t.Opt.V, w.backup.V)
			t.Opt.Step = w.backup.Step
			copy(w.ahead, w.backup.Ahead)
			w.aheadRound = w.backup.AheadRound
		}
	}()
	var theta []float32
	// arrive gets θr; for an eager start it moves the weights trained so
	// far by θr less the stand-in they started from.
	arrive := func() error {
		th, err := await(ctx)
		if err != nil {
			return err
		}
		if len(th) != n {
			return fmt.Errorf("weights have %d values, the model %d", len(th), n)
		}
		theta = th
		if eager {
			for i, p := range t.Model.Params {
				t.Model.Params[i] = p + (th[i] - w.from[i])
			}
		}
		return nil
	}
	if eager {
		// The worker's own last contribution stands in for the
		// aggregate of round-1 it has not received yet.
		for i, v := range prev {
			w.from[i] = v - w.ahead[i]
		}
		copy(t.Model.Params, w.from)
	} else {
		if err := arrive(); err != nil {
			return nil, 0, err
		}
		copy(t.Model.Params, theta)
	}
	for i := 0; i < steps; i++ {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		if i > 0 && w.KeepTraining != nil && !w.KeepTraining(i) {
			steps = i
			break
		}
		if eager && theta == nil && i == w.Cfg.OverlapSteps {
			if err := arrive(); err != nil {
				return nil, 0, err
			}
		}
		t.Step = w.Cfg.GlobalStep(round, i)
		r, err := t.TrainStep()
		if err != nil {
			return nil, 0, fmt.Errorf("round %d: %v", round, err)
		}
		if step != nil {
			step(i, r.Loss)
		}
	}
	if theta == nil { // an eager start of no more than OverlapSteps steps
		if err := arrive(); err != nil {
			return nil, 0, err
		}
	}
	for i, v := range theta {
		w.delta[i] = v - t.Model.Params[i]
	}
	w.enc.SetMaskSeed(w.Cfg.MaskSeed(round))
	payload, err = w.enc.Encode(w.delta)
	if err != nil {
		return nil, 0, err
	}
	if w.Cfg.Overlapped() {
		if err := compress.Decode(payload, w.ahead); err != nil {
			return nil, 0, err
		}
		w.aheadRound = round
	}
	return payload, steps * w.Cfg.TokensPerStep(), nil
}

// State returns a copy of the worker's local state: what, besides the
// global weights, its next contribution depends on.
func (w *Worker) State() LocalState {
	var s LocalState
	w.StateTo(&s)
	return s
}

// StateTo copies the worker's local state into dst, reusing dst's buffers
// when they are large enough (so a node that keeps the start state of
// every round for a later reveal does not allocate each round).
func (w *Worker) StateTo(dst *LocalState) {
	dst.copyFrom(w.localState())
}

// localState is the worker's local state, sharing its buffers.
func (w *Worker) localState() LocalState {
	o := w.inner.Opt
	return LocalState{M: o.M, V: o.V, Step: o.Step, Residual: w.enc.Residual(), Ahead: w.ahead, AheadRound: w.aheadRound}
}

// StateHash is the hash of the worker's local state (LocalState.Hash),
// computed without copying it: the value a worker commits to before and
// after each round's training.
func (w *Worker) StateHash() Hash {
	return w.localState().Hash()
}

// SetState replaces the worker's local state by a copy of s: to resume a
// worker from a saved state, to roll it back to the start of a round whose
// contribution was not accepted, or to recompute someone else's round. It
// refuses, leaving the state unchanged, a state that does not fit the run
// or that no honest worker can hold (see LocalState.Check).
func (w *Worker) SetState(s LocalState) error {
	if err := s.Check(w.Cfg); err != nil {
		return err
	}
	o := w.inner.Opt
	copy(o.M, s.M)
	copy(o.V, s.V)
	o.Step = s.Step
	copy(w.enc.Residual(), s.Residual)
	copy(w.ahead, s.Ahead)
	w.aheadRound = s.AheadRound
	return nil
}

// ApplyUpdate moves the worker from round r to r+1 by subtracting the
// published change, and checks the result against want. On a mismatch
// (the worker missed an update, or the payload is corrupt) it returns an
// error and the caller must fetch the weights afresh.
func (w *Worker) ApplyUpdate(payload []byte, want Hash) error {
	if w.round < 0 {
		return fmt.Errorf("worker has no global weights to update")
	}
	if w.Cfg.Overlapped() {
		// An eager contribution to the next round starts from these.
		copy(w.prev, w.theta)
		w.prevRound, w.prevHash = w.round, w.hash
	}
	if err := applyUpdate(w.theta, w.upd, payload); err != nil {
		w.prevRound = -1
		return err
	}
	w.round++
	if h := HashWeights(w.round, w.theta); h != want {
		w.round, w.prevRound = -1, -1 // the weights are no longer any round's
		return fmt.Errorf("weights after the update of round %d hash to %s, want %s", w.round, h, want)
	}
	w.hash = want
	return nil
}

// applyUpdate does theta -= decode(payload), decoding into scratch
// (len(theta)). Plain float32 subtraction of the decoded values, which
// every platform rounds alike, keeps all nodes bitwise in step.
func applyUpdate(theta, scratch []float32, payload []byte) error {
	if err := compress.Decode(payload, scratch); err != nil {
		return err
	}
	for i, u := range scratch {
		theta[i] -= u
	}
	return nil
}
