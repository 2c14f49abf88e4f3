package diloco

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/verify"
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
	// Done: the run's last round has closed and been published.
	Done
	// Unpublished: a round has closed, and the aggregator holds the next
	// round's state, but nobody learns of it (polls wait, contributions
	// are refused, the round does not open) until the caller has made the
	// state durable (Snapshot) and calls Publish. The caller persists
	// before it sends.
	Unpublished
)

func (p Phase) String() string {
	return [...]string{"waiting", "open", "done", "unpublished"}[p]
}

// Aggregator is the DiLoCo outer loop as a state machine. Its inputs are
// Join, Poll, Submit, SetHeldOut, Leave, Tick and Publish, with the
// current time where it matters; it never reads a clock or touches a
// network or disk. A round that closes stays Unpublished until the caller
// has persisted Snapshot and calls Publish. It is not safe for concurrent
// use: the caller serialises calls.
type Aggregator struct {
	Cfg RunConfig
	// NoiseSeed keys the noise of a run with differential privacy
	// (Cfg.DP): the noise of round r is drawn from it and r. It must be
	// secret and fresh (the caller's randomness: the state machine has
	// none of its own); zero is refused when a DP round closes.
	NoiseSeed [32]byte
	// Grace is how long the aggregator waits, once it has a quorum, for
	// more workers before it opens a round that nobody is training yet.
	Grace time.Duration
	// StartWith, when above the quorum, is how many workers must be
	// present before the run's first round opens (a run that should
	// begin with all its workers, so that one slow to start does not
	// chase rounds that close without it); from StartBy on (zero: never)
	// the quorum alone suffices again. Later rounds are not held.
	StartWith int
	StartBy   time.Time
	// Limits bound what identities can cost; zero fields take the
	// defaults of DefaultLimits.
	Limits Limits
	// Admit, when set, decides whether an identity may take part in the
	// run (holds a stake, say); it is asked on every Poll and Submit, and
	// its error is the refusal's reason. Nil admits everyone.
	Admit func(id string) error
	// HeldOutWait is how long a round that could close waits for the
	// held-out losses (SetHeldOut) of its contributions that have none
	// yet; after it, the round closes with what was measured (an
	// unmeasured contribution is screened without a loss score). Zero,
	// the default, never waits: for a caller that does not measure.
	HeldOutWait time.Duration
	// CohortWait is how long past its deadline a round waits for a
	// secure-aggregation cohort (Expect) still unmasking its sum; then
	// the cohort is dropped and the round closes without it.
	CohortWait time.Duration

	round      int
	theta      []float32
	maxDelta   float32 // the largest |Δ_i| a contribution to the round may hold
	momentum   []float32
	hash, prev Hash
	lastUpdate []byte // the change from round-1 to round
	down       *compress.Encoder

	phase     Phase
	openAt    time.Time // when a waiting round opens (after the grace period)
	openedAt  time.Time // when the current round last opened
	deadline  time.Time
	peers     map[string]*peer // every identity tracked, at most Limits.MaxPeers
	nextSweep time.Time
	// participants may contribute to the current round: they were present
	// when it opened (at any opening since the last close).
	participants map[string]bool
	// waiting holds the participants the current opening waits for.
	waiting map[string]bool
	subs    map[string]submission
	// refused are the participants whose contribution Submit refused for
	// its payload: they have answered the round (a node that records
	// commits on a ledger cannot take a second one for the round), so the
	// round neither waits for them nor tells them to train it again.
	refused map[string]bool
	// cohorts are the round's secure-aggregation cohorts by name (see
	// Expect); covered maps each member to its cohort; excused are
	// members of a cohort that failed, which go on without probation.
	cohorts map[string]*cohort
	covered map[string]string
	excused map[string]bool
	// readyAt is when the open round could first have closed but for
	// missing held-out losses (zero: not yet).
	readyAt time.Time
	// seen are the payload digests of the last PayloadHistory closed
	// rounds, in round order; robust combines a round's contributions.
	seen   []SeenPayload
	robust *verify.Aggregator

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
	digest verify.Digest // of the payload
	// members, for a cohort's sum (SubmitCohort), are its contributors,
	// parts the number of inputs the sum holds.
	members []string
	parts   int
	// The held-out loss: lossSet once SetHeldOut was called, measured
	// when it gave a usable loss.
	lossSet, measured bool
	before, after     float64
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
	robust, err := verify.NewAggregator(cfg.AggregateOptions())
	if err != nil {
		panic(err) // cfg.Validate checked the options
	}
	return &Aggregator{Cfg: cfg, Grace: time.Second, momentum: make([]float32, n),
		down: compress.NewEncoder(cfg.UpdateCodec(), n), peers: map[string]*peer{},
		participants: map[string]bool{}, waiting: map[string]bool{}, subs: map[string]submission{}, refused: map[string]bool{},
		cohorts: map[string]*cohort{}, covered: map[string]string{}, excused: map[string]bool{},
		sum: make([]float32, n), scratch: make([]float32, n), nextMomentum: make([]float32, n), robust: robust}
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
	// Seen are the payload digests of the last PayloadHistory closed
	// rounds' contributions, in round order, so that a copy of one is
	// still recognised after a restart (a snapshot without them restores
	// with no memory of earlier payloads).
	Seen []SeenPayload
}

// Snapshot returns the durable state. The slices are the aggregator's own:
// persist them before the next call.
func (a *Aggregator) Snapshot() Snapshot {
	return Snapshot{Cfg: a.Cfg, Round: a.round, Theta: a.theta, Momentum: a.momentum,
		Residual: a.down.Residual(), LastUpdate: a.lastUpdate, PrevHash: a.prev, Seen: a.seen}
}

// Restore resumes a run from a snapshot. The round restarts from Waiting;
// contributions in flight when the snapshot was taken are lost unless
// their workers submit them again.
func Restore(s Snapshot) (*Aggregator, error) {
	if err := s.Cfg.Validate(); err != nil {
		return nil, err
	}
	n := s.Cfg.Model.NumParams()
	if len(s.Theta) != n || len(s.Momentum) != n || (hasResidual(s.Cfg.UpdateCodec()) && len(s.Residual) != n) {
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
	seen, err := checkSeen(s.Seen, s.Round)
	if err != nil {
		return nil, err
	}
	a := newAggregator(s.Cfg)
	a.seen = seen
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
	ids := a.present()
	slices.Sort(ids)
	return ids
}

// NumActive counts the workers the aggregator counts as present.
func (a *Aggregator) NumActive() int { return a.numPresent() }

// Tracked counts the identities the aggregator remembers (present, on
// probation or having contributed); at most Limits.MaxPeers.
func (a *Aggregator) Tracked() int { return len(a.peers) }

// Submitted is the number of contributions held for the current round.
func (a *Aggregator) Submitted() int { return len(a.subs) }

// Join answers a worker with the current round and its weights' hash; the
// worker gets those weights and then polls. While a round is Unpublished
// the caller should hold joiners until Publish: the weights it would hand
// out are not yet durable. Only a worker that polls with
// the current weights, or contributes, counts as present.
func (a *Aggregator) Join(id string, now time.Time) (round int, hash Hash) {
	return a.round, a.hash
}

// Leave notes that a worker disconnected: it no longer counts as present
// and the round no longer waits for it. Its contribution, if it sent one,
// still counts, and it may still send one if it comes back in time.
func (a *Aggregator) Leave(id string) {
	if p := a.peers[id]; p != nil {
		p.present = false
	}
	delete(a.waiting, id)
}

// ErrPayload marks a contribution Submit refused for its payload (it does
// not decode, does not fit the model, or moves weights further than the
// run allows) after everything else about it passed. The round no longer
// waits for its worker.
var ErrPayload = errors.New("contribution refused for its payload")

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
	// Refused: the aggregator will not count this identity (it is not
	// admitted, or the aggregator has no room for more); Reply.Reason
	// says why.
	Refused
)

func (x Action) String() string {
	return [...]string{"wait", "train", "update", "resync", "finished", "refused"}[x]
}

// Reply answers a Poll.
type Reply struct {
	Action   Action
	Round    int
	Hash     Hash
	Update   []byte        // for Update: the change to subtract
	Deadline time.Duration // for Train: time left in the round
	// Waited, for Train: the round waits for this worker's contribution
	// until its deadline. Otherwise (a newcomer while others have proven
	// themselves, or a worker on probation) the round may close as soon
	// as the workers it waits for have contributed: a short contribution
	// (a step or a few) is what proves the worker.
	Waited bool
	Reason string // for Refused
	// Admission, for Refused: the admission check refused the identity
	// (rather than the aggregator having no room for it).
	Admission bool
}

// Poll tells worker id, which holds the weights of round with hash, what
// to do now. A worker that holds the current weights is counted present
// and takes part in the next round that opens. An identity that the
// admission check refuses, or that the aggregator has no room to track
// (Limits.MaxPeers), is answered Refused with the reason; one refused
// admission is no longer present, nor waited for (see expel).
func (a *Aggregator) Poll(id string, round int, hash Hash, now time.Time) Reply {
	if err := a.admit(id); err != nil {
		a.expel(id)
		return Reply{Action: Refused, Round: a.round, Hash: a.hash, Reason: err.Error(), Admission: true}
	}
	switch {
	case a.phase == Unpublished:
		// Nothing is told about the closed round until it is durable.
		return Reply{Action: Wait, Round: a.round - 1, Hash: a.prev}
	case round == a.round && hash == a.hash:
		if a.phase == Done {
			return Reply{Action: Finished, Round: a.round, Hash: a.hash}
		}
		p, err := a.track(id, now)
		if err != nil {
			return Reply{Action: Refused, Round: a.round, Hash: a.hash, Reason: err.Error()}
		}
		p.present = true
		if _, sent := a.subs[id]; a.phase == Open && a.participants[id] && !sent && !a.refused[id] && !a.cohortDone(id) {
			return Reply{Action: Train, Round: a.round, Hash: a.hash, Deadline: a.deadline.Sub(now), Waited: a.waiting[id]}
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
// from identities that are not admitted or were not participants of the
// round, late ones, duplicates, impossible token counts, malformed
// payloads and payloads holding a value no honest worker sends: not
// finite, or larger in magnitude than the run's bound (RunConfig.MaxDelta).
// A contribution it takes is screened when the round closes (see Tick),
// with its held-out loss if the caller supplies it (SetHeldOut). A
// payload refused for what it holds (malformed, or a value no honest
// worker sends) is the worker's answer to the round: the round no longer
// waits for it, refuses anything else it sends, polls tell it to wait for
// the next round, and when the round closes it is reported missing and
// goes on probation (as one that sent nothing in time does).
func (a *Aggregator) Submit(id string, round int, hash Hash, tokens int, payload []byte, now time.Time) error {
	if err := a.CanSubmit(id, round, hash, tokens, now); err != nil {
		return err
	}
	if err := a.take(id, tokens, payload, now); err != nil {
		// A refusal for the payload: the worker had its turn, so the
		// round stops waiting for it.
		a.refused[id] = true
		delete(a.waiting, id)
		return fmt.Errorf("%w: %v", ErrPayload, err)
	}
	return nil
}

// take decodes and checks a contribution's payload and keeps it.
func (a *Aggregator) take(id string, tokens int, payload []byte, now time.Time) error {
	codec, n, err := compress.DecodedSize(payload)
	if err != nil {
		return err
	}
	if codec != a.Cfg.Codec || n != len(a.theta) {
		return fmt.Errorf("it is %s of %d values, the run wants %s of %d", codec, n, a.Cfg.Codec, len(a.theta))
	}
	if codec.Masked() {
		seed, err := compress.MaskSeed(payload)
		if err != nil {
			return err
		}
		if want := a.Cfg.MaskSeed(a.round); seed != want {
			return fmt.Errorf("its mask seed is %#x, round %d's is %#x", seed, a.round, want)
		}
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
		return fmt.Errorf("it moves weight %d by %g; %d inner steps of this run move a weight by less than %g",
			i, delta[i], a.Cfg.InnerSteps, a.maxDelta)
	}
	a.subs[id] = submission{delta: delta, tokens: tokens, digest: verify.PayloadDigest(payload)}
	p := a.peers[id]
	if p == nil { // a participant is tracked; this is only defensive
		p = &peer{first: now}
		a.peers[id] = p
	}
	p.seen, p.present, p.proven, p.probation = now, true, true, false
	return nil
}

// CanSubmit is Submit's check of everything but the payload: the run,
// round and weights, admission, participation, duplicates, the deadline,
// the token count and room for the contribution. A transport calls it on a
// contribution's header, before it reads the payload (whose size is then
// bounded by compress.MaxEncodedSize of the run's codec); Submit checks
// again. It changes nothing.
func (a *Aggregator) CanSubmit(id string, round int, hash Hash, tokens int, now time.Time) error {
	switch {
	case a.phase == Done:
		return fmt.Errorf("the run is finished")
	case a.phase == Unpublished:
		return fmt.Errorf("round %d has closed", a.round-1)
	case round != a.round:
		return fmt.Errorf("contribution for round %d, but the round is %d", round, a.round)
	case hash != a.hash:
		return fmt.Errorf("contribution trained from weights %s, not the round's %s", hash, a.hash)
	}
	if err := a.admit(id); err != nil {
		return err
	}
	if !a.participants[id] {
		return fmt.Errorf("not a participant of round %d: only workers present when a round opens contribute to it; poll and take part in the next", round)
	}
	if c, ok := a.covered[id]; ok {
		return fmt.Errorf("this identity contributes to round %d through its secure-aggregation cohort %s", round, c)
	}
	if _, dup := a.subs[id]; dup {
		return fmt.Errorf("this identity already contributed to round %d (if this node did not, another node runs with its identity: give each node its own data directory)", round)
	}
	if a.refused[id] {
		return fmt.Errorf("this identity's contribution to round %d was refused; it takes part again in the next round", round)
	}
	switch {
	case a.phase == Open && !now.Before(a.deadline):
		return fmt.Errorf("contribution for round %d arrived after its deadline", round)
	case tokens < 1 || tokens > a.Cfg.TokensPerRound() || tokens%a.Cfg.TokensPerStep() != 0:
		return fmt.Errorf("contribution claims %d tokens; a round trains 1 to %d inner steps of %d tokens each",
			tokens, a.Cfg.InnerSteps, a.Cfg.TokensPerStep())
	}
	if !a.waiting[id] {
		waited, _ := a.pending()
		if max := a.limits().MaxContributions; len(a.subs)+waited >= max {
			return fmt.Errorf("round %d holds its maximum of %d contributions from workers it does not wait for", round, max)
		}
	}
	return nil
}

// Event is what a Tick did.
type Event struct {
	Opened   bool         // a round opened
	Reopened bool         // a round went back to waiting for too few contributions
	Closed   *RoundResult // a round closed and the weights moved on
	// Abandoned: the round's contributions could not be aggregated (every
	// one was excluded by screening, their aggregate or the outer step is
	// not finite, or the update does not encode); they were dropped,
	// nothing else changed, and the round waits for workers again. Tick's
	// error says why.
	Abandoned bool
}

// RoundResult describes a closed round.
type RoundResult struct {
	Round        int           // the round that closed
	Contributors []string      // every contribution the round took, accepted or excluded, sorted
	Missing      []string      // participants the round waited for that sent nothing in time (now on probation)
	Tokens       int           // claimed by all of Contributors
	UpdateBytes  int           // size of the published change
	Took         time.Duration // from the round's (last) opening to its close
	Hash         Hash
	// Accepted are the contributions aggregated into the new weights, in
	// worker-id order; Excluded those left out for a certain finding of
	// screening, with the reason (not an error of the round).
	Accepted []Contribution
	Excluded []Exclusion
	// Screening is every contribution's screening (verify.Screen: norm
	// ratio, similarity, held-out gain, score and flags), in the order
	// of Contributors: the input of verify.Sample, which draws the
	// contributions to recompute. Excluded contributions are screened
	// with the rest (the medians are over all of them).
	Screening []verify.Screening
	// Clip is the robust aggregation over Accepted (in their order): each
	// one's norm and the factor it was scaled by, the median norm, the
	// clipping bound and the values trimmed at each end of a coordinate.
	Clip verify.AggregateStats
	// Epsilon is the privacy the run has spent once this round is
	// published, at Cfg.DP.Delta (0 without DP).
	Epsilon float64
}

// Tick advances the state machine to time now: it opens a round that has
// enough workers, and closes one when every participant it waits for has
// contributed (and it has a quorum) or at its deadline, once the held-out
// losses of its contributions are in or HeldOutWait has passed. A closed
// round is Unpublished until Publish. Call Tick after every input and
// periodically.
//
// Closing screens every contribution (verify.Screen, in worker-id order,
// against the payloads of the last PayloadHistory rounds, with the
// held-out losses given), leaves out those with a certain finding
// (Exclusion), combines the rest robustly (verify.Aggregator: each clipped
// to the run's ClipMultiple of the median norm, then a coordinate-wise
// trimmed mean weighted by tokens) and takes the outer Nesterov step. The
// new weights depend only on the set of contributions and the held-out
// losses given, bit for bit, whatever their order of arrival; the losses
// matter only where one after applying a contribution is not finite.
func (a *Aggregator) Tick(now time.Time) (Event, error) {
	if !now.Before(a.nextSweep) {
		a.sweep(now)
	}
	switch a.phase {
	case Waiting:
		if a.numPresent() < a.needToOpen(now) {
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
		waited, optional := a.pending()
		if !now.Before(a.deadline) {
			waited, optional = 0, 0
		}
		if waited > 0 || (len(a.subs) < a.Cfg.Quorum && optional > 0) || a.cohortPending(now) {
			return Event{}, nil
		}
		if len(a.subs) < a.Cfg.Quorum {
			// Nobody else is coming in time: wait for more workers.
			a.phase, a.openAt, a.readyAt = Waiting, time.Time{}, time.Time{}
			a.dropMissing()
			clear(a.waiting)
			return Event{Reopened: true}, nil
		}
		if a.awaitingLoss(now) {
			return Event{}, nil
		}
		res, err := a.close()
		if res != nil {
			res.Took = now.Sub(a.openedAt)
		}
		if err != nil {
			k := len(a.subs)
			a.abandon()
			return Event{Abandoned: true}, fmt.Errorf("round %d abandoned, its %d contributions dropped: %v", a.round, k, err)
		}
		return Event{Closed: res}, nil
	}
	return Event{}, nil
}

// needToOpen is how many present workers a round needs to open at now:
// the quorum, or StartWith for the first round until StartBy.
func (a *Aggregator) needToOpen(now time.Time) int {
	if a.round == 0 && a.StartWith > a.Cfg.Quorum && (a.StartBy.IsZero() || now.Before(a.StartBy)) {
		return a.StartWith
	}
	return a.Cfg.Quorum
}

// Publish makes the round that closed last known: polls get its update,
// and the next round opens at once if enough workers are present (or the
// run is Done). Call it once Snapshot's state is durable; at any other
// time it does nothing.
func (a *Aggregator) Publish(now time.Time) Event {
	if a.phase != Unpublished {
		return Event{}
	}
	if a.round == a.Cfg.Rounds {
		a.phase = Done
		return Event{}
	}
	a.phase, a.openAt = Waiting, time.Time{}
	if a.numPresent() >= a.Cfg.Quorum {
		a.open(now) // the workers that just contributed are polling for it
		return Event{Opened: true}
	}
	return Event{}
}
