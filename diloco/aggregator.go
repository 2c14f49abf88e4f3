package diloco

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/vecmath"
)

// Phase is where the aggregator is in its current round.
type Phase int

const (
	// Waiting: θ of the round is ready, but the round has not started
	// (too few workers, or the grace period for late arrivals runs).
	Waiting Phase = iota
	// Open: participants are training; contributions are accepted until
	// the deadline.
	Open
	// Done: the run's last round has closed.
	Done
)

func (p Phase) String() string {
	return [...]string{"waiting", "open", "done"}[p]
}

// Aggregator is the DiLoCo outer loop as a state machine. Its inputs are
// Join, Poll, Submit, Leave and Tick, each with the current time; it never
// reads a clock or touches a network or disk. It is not safe for concurrent
// use: the caller serialises calls.
type Aggregator struct {
	Cfg RunConfig
	// Grace is how long the aggregator waits, once it has a quorum, for
	// more workers before it opens a round that nobody is training yet.
	Grace time.Duration

	round      int
	theta      []float32
	maxDelta   float32 // the largest |Δ_i| a contribution to the round may hold
	momentum   []float32
	hash, prev Hash
	lastUpdate []byte // the change from round-1 to round
	down       *compress.Encoder

	phase        Phase
	openAt       time.Time
	deadline     time.Time
	active       map[string]time.Time
	participants map[string]bool
	subs         map[string]submission
	// probation holds workers that missed a deadline: they may still
	// train and contribute, but rounds do not wait for them until they
	// have contributed in time again.
	probation map[string]bool

	// Scratch of close, so that a round closes all or nothing: the sum of
	// the contributions (then the outer step), the decoded update, the new
	// momentum and a copy of the update encoder's residual.
	sum, scratch, nextMomentum, residual []float32
	free                                 [][]float32 // decoded-contribution buffers to reuse
}

// submission is a contribution, decoded when it arrives so that closing
// the round only has to add (the aggregator holds one n-float buffer per
// contribution of the round in progress).
type submission struct {
	delta  []float32
	tokens int
}

// NewAggregator starts a run at round 0 with weights initialised from the
// run seed.
func NewAggregator(cfg RunConfig) (*Aggregator, error) {
	return NewAggregatorFrom(cfg, nil)
}

// NewAggregatorFrom starts a run at round 0 from the weights theta (a
// pretrained model, say; nil means the run seed's initialisation). Workers
// that cannot compute θ0 themselves fetch it and check its hash.
func NewAggregatorFrom(cfg RunConfig, theta []float32) (*Aggregator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if theta == nil {
		theta = InitialWeights(cfg)
	}
	if n := cfg.Model.NumParams(); len(theta) != n {
		return nil, fmt.Errorf("initial weights have %d values, the model %d", len(theta), n)
	}
	if i, ok := allFinite(theta); !ok {
		return nil, fmt.Errorf("initial weight %d is %v", i, theta[i])
	}
	a := newAggregator(cfg)
	a.theta = append([]float32(nil), theta...)
	a.hash = HashWeights(0, a.theta)
	a.maxDelta = a.Cfg.MaxDelta(absMax(a.theta))
	return a, nil
}

func newAggregator(cfg RunConfig) *Aggregator {
	n := cfg.Model.NumParams()
	return &Aggregator{Cfg: cfg, Grace: time.Second, momentum: make([]float32, n),
		down: compress.NewEncoder(cfg.Codec, n), active: map[string]time.Time{},
		participants: map[string]bool{}, subs: map[string]submission{}, probation: map[string]bool{},
		sum: make([]float32, n), scratch: make([]float32, n), nextMomentum: make([]float32, n)}
}

// Snapshot is the aggregator's durable state: enough to resume the run
// after a crash, losing at most the round in progress.
type Snapshot struct {
	Cfg        RunConfig
	Round      int
	Theta      []float32
	Momentum   []float32
	Residual   []float32 // error feedback of the published updates
	LastUpdate []byte    // the change that made Theta from the previous round's
	PrevHash   Hash
}

// Snapshot returns the durable state. The slices are the aggregator's own:
// persist them before the next call.
func (a *Aggregator) Snapshot() Snapshot {
	return Snapshot{Cfg: a.Cfg, Round: a.round, Theta: a.theta, Momentum: a.momentum,
		Residual: a.down.Residual(), LastUpdate: a.lastUpdate, PrevHash: a.prev}
}

// Restore resumes a run from a snapshot. The round restarts from Waiting;
// contributions in flight when the snapshot was taken are lost unless
// their workers submit them again.
func Restore(s Snapshot) (*Aggregator, error) {
	if err := s.Cfg.Validate(); err != nil {
		return nil, err
	}
	n := s.Cfg.Model.NumParams()
	if len(s.Theta) != n || len(s.Momentum) != n || (s.Cfg.Codec == compress.Int8 && len(s.Residual) != n) {
		return nil, fmt.Errorf("snapshot does not fit the model: %d weights, %d momenta, %d residuals for %d parameters",
			len(s.Theta), len(s.Momentum), len(s.Residual), n)
	}
	for _, v := range []struct {
		name string
		x    []float32
	}{{"weight", s.Theta}, {"momentum", s.Momentum}, {"residual", s.Residual}} {
		if i, ok := allFinite(v.x); !ok {
			return nil, fmt.Errorf("snapshot %s %d is %v", v.name, i, v.x[i])
		}
	}
	if s.Round < 0 || s.Round > s.Cfg.Rounds {
		return nil, fmt.Errorf("snapshot round %d outside the run's %d rounds", s.Round, s.Cfg.Rounds)
	}
	a := newAggregator(s.Cfg)
	a.round = s.Round
	a.theta = append([]float32(nil), s.Theta...)
	copy(a.momentum, s.Momentum)
	copy(a.down.Residual(), s.Residual)
	a.lastUpdate = append([]byte(nil), s.LastUpdate...)
	a.prev = s.PrevHash
	a.hash = HashWeights(a.round, a.theta)
	a.maxDelta = a.Cfg.MaxDelta(absMax(a.theta))
	if a.round == a.Cfg.Rounds {
		a.phase = Done
	}
	return a, nil
}

// Round is the current round: the one whose weights the aggregator holds.
func (a *Aggregator) Round() int { return a.round }

// Hash identifies the current weights.
func (a *Aggregator) Hash() Hash { return a.hash }

// Weights are the current global weights (shared; do not modify).
func (a *Aggregator) Weights() []float32 { return a.theta }

// Phase is the state of the current round.
func (a *Aggregator) Phase() Phase { return a.phase }

// Deadline is when the open round closes at the latest.
func (a *Aggregator) Deadline() time.Time { return a.deadline }

// Active lists the workers the aggregator counts as present, sorted.
func (a *Aggregator) Active() []string {
	ids := make([]string, 0, len(a.active))
	for id := range a.active {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Submitted is the number of contributions held for the current round.
func (a *Aggregator) Submitted() int { return len(a.subs) }

// Join answers a worker with the current round and its weights' hash; the
// worker gets those weights and then polls. Only a worker that polls with
// the current weights, or contributes, counts as present.
func (a *Aggregator) Join(id string, now time.Time) (round int, hash Hash) {
	return a.round, a.hash
}

// Leave forgets a worker that disconnected; a round no longer waits for it.
// Its contribution, if it sent one, still counts.
func (a *Aggregator) Leave(id string) {
	delete(a.active, id)
	delete(a.participants, id)
}

// Action tells a polling worker what to do.
type Action int

const (
	// Wait: nothing to do yet; poll again after the aggregator changes.
	Wait Action = iota
	// Train: the worker's round is open and it participates: train and
	// submit.
	Train
	// Update: apply Reply.Update to move to Reply.Round.
	Update
	// Resync: the worker's weights are too old or wrong: fetch the
	// current weights.
	Resync
	// Finished: the run is over and the worker holds the final weights.
	Finished
)

func (x Action) String() string {
	return [...]string{"wait", "train", "update", "resync", "finished"}[x]
}

// Reply answers a Poll.
type Reply struct {
	Action   Action
	Round    int
	Hash     Hash
	Update   []byte        // for Update: the change to subtract
	Deadline time.Duration // for Train: time left in the round
}

// Poll tells worker id, which holds the weights of round with hash, what
// to do now. A worker that holds the current weights is counted present
// and takes part in the next round that opens.
func (a *Aggregator) Poll(id string, round int, hash Hash, now time.Time) Reply {
	switch {
	case round == a.round && hash == a.hash:
		if a.phase == Done {
			return Reply{Action: Finished, Round: a.round, Hash: a.hash}
		}
		a.active[id] = now
		if a.phase == Waiting {
			a.participants[id] = true
		}
		if _, sent := a.subs[id]; a.phase == Open && a.participants[id] && !sent {
			return Reply{Action: Train, Round: a.round, Hash: a.hash, Deadline: a.deadline.Sub(now)}
		}
		return Reply{Action: Wait, Round: a.round, Hash: a.hash}
	case round == a.round-1 && hash == a.prev && a.lastUpdate != nil:
		return Reply{Action: Update, Round: a.round, Hash: a.hash, Update: a.lastUpdate}
	default:
		return Reply{Action: Resync, Round: a.round, Hash: a.hash}
	}
}

// Submit takes worker id's contribution for round (trained from the
// weights with hash): tokens trained on and the compressed pseudo-gradient.
// It refuses, in one line, contributions for another round or weights,
// late ones, duplicates, impossible token counts, malformed payloads and
// payloads holding a value no honest worker sends: not finite, or larger in
// magnitude than the run's bound (RunConfig.MaxDelta).
func (a *Aggregator) Submit(id string, round int, hash Hash, tokens int, payload []byte, now time.Time) error {
	switch {
	case a.phase == Done:
		return fmt.Errorf("the run is finished")
	case round != a.round:
		return fmt.Errorf("contribution for round %d, but the round is %d", round, a.round)
	case hash != a.hash:
		return fmt.Errorf("contribution trained from weights %s, not the round's %s", hash, a.hash)
	case a.phase == Open && !now.Before(a.deadline):
		return fmt.Errorf("contribution for round %d arrived after its deadline", round)
	case tokens < 1 || tokens > a.Cfg.TokensPerRound():
		return fmt.Errorf("contribution claims %d tokens; a round trains on %d", tokens, a.Cfg.TokensPerRound())
	}
	if _, dup := a.subs[id]; dup {
		return fmt.Errorf("worker already contributed to round %d", round)
	}
	codec, n, err := compress.DecodedSize(payload)
	if err != nil {
		return err
	}
	if codec != a.Cfg.Codec || n != len(a.theta) {
		return fmt.Errorf("contribution is %s of %d values, the run wants %s of %d", codec, n, a.Cfg.Codec, len(a.theta))
	}
	var delta []float32
	if k := len(a.free); k > 0 {
		delta, a.free = a.free[k-1], a.free[:k-1]
	} else {
		delta = make([]float32, len(a.theta))
	}
	if err := compress.Decode(payload, delta); err != nil {
		a.free = append(a.free, delta)
		return err
	}
	if i, ok := within(delta, a.maxDelta); !ok {
		a.free = append(a.free, delta)
		return fmt.Errorf("contribution moves weight %d by %g; %d inner steps of this run move a weight by less than %g",
			i, delta[i], a.Cfg.InnerSteps, a.maxDelta)
	}
	a.subs[id] = submission{delta: delta, tokens: tokens}
	a.active[id] = now
	delete(a.probation, id)
	return nil
}

// Event is what a Tick did.
type Event struct {
	Opened   bool         // a round opened
	Reopened bool         // a round went back to waiting for too few contributions
	Closed   *RoundResult // a round closed and the weights moved on
	// Abandoned: the round's contributions could not be aggregated (their
	// sum or the outer step is not finite, or the update does not encode);
	// they were dropped, nothing else changed, and the round waits for
	// workers again. Tick's error says why.
	Abandoned bool
}

// RoundResult describes a closed round.
type RoundResult struct {
	Round        int      // the round that closed
	Contributors []string // sorted
	Missing      []string // participants that sent nothing in time
	Tokens       int
	UpdateBytes  int // size of the published change
	Hash         Hash
}

// Tick advances the state machine to time now: it opens a round that has
// enough workers, and closes one whose participants have all contributed
// or whose deadline has passed. Call it after every input and
// periodically.
func (a *Aggregator) Tick(now time.Time) (Event, error) {
	switch a.phase {
	case Waiting:
		if len(a.active) < a.Cfg.Quorum {
			a.openAt = time.Time{}
			return Event{}, nil
		}
		if a.openAt.IsZero() {
			a.openAt = now.Add(a.Grace)
		}
		if now.Before(a.openAt) {
			return Event{}, nil
		}
		a.open(now)
		return Event{Opened: true}, nil
	case Open:
		pending := 0
		for id := range a.participants {
			if _, ok := a.subs[id]; !ok && !a.probation[id] {
				pending++
			}
		}
		late := !now.Before(a.deadline)
		if pending > 0 && !late {
			return Event{}, nil
		}
		if len(a.subs) < a.Cfg.Quorum {
			// Nobody else is coming in time: wait for more workers.
			a.phase, a.openAt = Waiting, time.Time{}
			a.dropMissing()
			clear(a.participants)
			return Event{Reopened: true}, nil
		}
		res, err := a.close()
		if err != nil {
			k := len(a.subs)
			a.abandon()
			return Event{Abandoned: true}, fmt.Errorf("round %d abandoned, its %d contributions dropped: %v", a.round, k, err)
		}
		if a.phase != Done {
			a.phase, a.openAt = Waiting, time.Time{}
			if len(a.active) >= a.Cfg.Quorum {
				a.open(now) // the workers that just contributed are polling for it
			}
		}
		return Event{Closed: res, Opened: a.phase == Open}, nil
	}
	return Event{}, nil
}

func (a *Aggregator) open(now time.Time) {
	a.phase = Open
	a.deadline = now.Add(time.Duration(a.Cfg.RoundTimeout))
	clear(a.participants)
	for id := range a.active {
		a.participants[id] = true
	}
}

// dropMissing forgets participants that did not contribute: they crashed,
// are too slow, or never meant to; the next round should not wait for
// them. They take part again once they poll, on probation until they
// contribute in time.
func (a *Aggregator) dropMissing() []string {
	var missing []string
	for id := range a.participants {
		if _, ok := a.subs[id]; !ok {
			missing = append(missing, id)
			delete(a.active, id)
			a.probation[id] = true
		}
	}
	slices.Sort(missing)
	return missing
}

// abandon drops the round's contributions (their buffers go back to the
// free list) and sends the round back to waiting for workers; the weights,
// momentum and residual are untouched.
func (a *Aggregator) abandon() {
	for id, s := range a.subs {
		a.free = append(a.free, s.delta)
		delete(a.subs, id)
	}
	clear(a.participants)
	a.phase, a.openAt = Waiting, time.Time{}
}

// close aggregates the round's contributions in sorted worker order (so the
// result depends only on the set of contributions), takes the outer
// Nesterov step and publishes the change. It is all or nothing: the new
// momentum, the update and the new weights are computed into scratch and
// checked to be finite before anything is committed, so on error the
// aggregator is exactly as before (the caller abandons the round).
func (a *Aggregator) close() (*RoundResult, error) {
	ids := make([]string, 0, len(a.subs))
	total := 0
	for id, s := range a.subs {
		ids = append(ids, id)
		total += s.tokens
	}
	slices.Sort(ids)
	clear(a.sum)
	for _, id := range ids {
		s := a.subs[id]
		vecmath.Axpy(float32(float64(s.tokens)/float64(total)), s.delta, a.sum)
	}
	if i, ok := within(a.sum, a.maxDelta); !ok {
		return nil, fmt.Errorf("the average contribution is not finite or absurd (value %d is %v, the bound %g)", i, a.sum[i], a.maxDelta)
	}
	// SGD with Nesterov momentum, as torch.optim.SGD(nesterov=True,
	// dampening=0): buf = μ·buf + Δ; step = Δ + μ·buf; θ −= lr·step. The
	// published change is lr·step, compressed with error feedback.
	mu, lr := float32(a.Cfg.Momentum), float32(a.Cfg.OuterLR)
	for i, d := range a.sum {
		b := mu*a.momentum[i] + d
		a.nextMomentum[i] = b
		a.sum[i] = lr * (d + mu*b)
	}
	if i, ok := allFinite(a.nextMomentum); !ok {
		return nil, fmt.Errorf("the outer momentum would not be finite (value %d is %v)", i, a.nextMomentum[i])
	}
	if i, ok := allFinite(a.sum); !ok {
		return nil, fmt.Errorf("the outer step is not finite (value %d is %v)", i, a.sum[i])
	}
	// Encode changes the residual on success: keep a copy to put back if
	// the update turns out not to apply.
	if r := a.down.Residual(); r != nil {
		a.residual = append(a.residual[:0], r...)
	}
	payload, err := a.down.Encode(a.sum)
	if err != nil {
		return nil, fmt.Errorf("encoding the update: %v", err)
	}
	if err := compress.Decode(payload, a.scratch); err != nil {
		copy(a.down.Residual(), a.residual)
		return nil, fmt.Errorf("decoding the update: %v", err)
	}
	for i, u := range a.scratch {
		if v := a.theta[i] - u; !finite(v) {
			copy(a.down.Residual(), a.residual)
			return nil, fmt.Errorf("the update makes weight %d %v", i, v)
		}
	}
	// Commit.
	for i, u := range a.scratch {
		a.theta[i] -= u
	}
	a.momentum, a.nextMomentum = a.nextMomentum, a.momentum
	for _, id := range ids {
		a.free = append(a.free, a.subs[id].delta)
	}
	res := &RoundResult{Round: a.round, Contributors: ids, Missing: a.dropMissing(), Tokens: total, UpdateBytes: len(payload)}
	a.prev = a.hash
	a.round++
	a.hash = HashWeights(a.round, a.theta)
	a.maxDelta = a.Cfg.MaxDelta(absMax(a.theta))
	a.lastUpdate = payload
	res.Hash = a.hash
	clear(a.subs)
	clear(a.participants)
	if a.round == a.Cfg.Rounds {
		a.phase = Done
	}
	return res, nil
}

// finite reports whether v is neither infinite nor NaN.
func finite(v float32) bool { return math.Float32bits(v)&0x7f800000 != 0x7f800000 }

// allFinite returns the index of the first value of v that is not finite.
func allFinite(v []float32) (int, bool) {
	for i, x := range v {
		if !finite(x) {
			return i, false
		}
	}
	return 0, true
}

// within returns the index of the first value of v that is not finite or
// exceeds bound in magnitude.
func within(v []float32, bound float32) (int, bool) {
	for i, x := range v {
		if !(x <= bound && x >= -bound) { // false for NaN
			return i, false
		}
	}
	return 0, true
}

// absMax is the largest magnitude in v (+Inf if v holds a NaN).
func absMax(v []float32) float32 {
	var m float32
	for _, x := range v {
		if x != x {
			return float32(math.Inf(1))
		}
		m = max(m, x, -x)
	}
	return m
}
