package diloco

import (
	"fmt"

	"github.com/cairnlabs/cairn/compress"
	"slices"
	"strings"
	"time"
)

// Replica is one node's copy of the aggregation of a run without an
// aggregator. Every node holds one and closes each round with the
// contributions the ledger agreed on; the aggregation is the Aggregator's
// own (the same checks on arrival, screening, robust combination, outer
// step and compressed update), a function of the set of contributions
// alone, so every honest replica reaches bitwise the same weights as the
// others, and as an aggregator would from the same contributions.
type Replica struct {
	a *Aggregator
}

// Submitted is a contribution as the ledger recorded it, with the payload
// fetched from the swarm.
type Submitted struct {
	Worker  string
	Tokens  int
	Payload []byte
}

// Refusal is a contribution refused on arrival (as Aggregator.Submit would
// refuse it): it is neither screened nor aggregated.
type Refusal struct {
	Worker string
	Reason string
}

// NewReplica starts a replica at round 0 from theta (nil: the run seed's
// initial weights). It fails on an invalid configuration or weights that
// do not fit the model.
func NewReplica(cfg RunConfig, theta []float32) (*Replica, error) {
	a, err := NewAggregatorFrom(cfg, theta)
	if err != nil {
		return nil, err
	}
	return &Replica{a: a}, nil
}

// RestoreReplica resumes a replica from a snapshot (another member's, for
// a node that joins a run late or fell behind). It fails as Restore does
// on a snapshot that does not fit its configuration.
func RestoreReplica(s Snapshot) (*Replica, error) {
	a, err := Restore(s)
	if err != nil {
		return nil, err
	}
	return &Replica{a: a}, nil
}

// Snapshot returns the replica's state: its weights, outer momentum,
// update residual and recent payload digests. The slices are the
// replica's own.
func (r *Replica) Snapshot() Snapshot { return r.a.Snapshot() }

// Round is the round the replica's weights start.
func (r *Replica) Round() int { return r.a.round }

// Hash is the hash of the replica's weights.
func (r *Replica) Hash() Hash { return r.a.hash }

// Weights are the replica's weights θ of Round; callers must not change
// them.
func (r *Replica) Weights() []float32 { return r.a.theta }

// LastUpdate is the compressed change from the previous round's weights
// to these (nil at round 0): what a worker that held the previous weights
// applies.
func (r *Replica) LastUpdate() []byte { return r.a.lastUpdate }

// Void closes round without aggregating anything, when Close found that
// it cannot be aggregated and the members agreed the round is void: the
// weights, outer momentum and update residual stay as they are, the run
// moves on to the next round (its weights hash to that round), and
// LastUpdate becomes an update of zeros (int8), so a worker that held this
// round's weights applies it like any other. It fails for another round
// than Round or a finished run.
func (r *Replica) Void(round int) error {
	a := r.a
	switch {
	case r.Done():
		return fmt.Errorf("the run finished at round %d", a.round)
	case round != a.round:
		return fmt.Errorf("voiding round %d, but the replica is at round %d", round, a.round)
	}
	payload, err := compress.NewEncoder(compress.Int8, len(a.theta)).Encode(make([]float32, len(a.theta)))
	if err != nil {
		return fmt.Errorf("encoding the void round's update: %v", err)
	}
	a.abandon()
	a.prev = a.hash
	a.round++
	a.hash = HashWeights(a.round, a.theta)
	a.lastUpdate = payload
	clear(a.peers)
	return nil
}

// Done reports whether the run's last round has closed.
func (r *Replica) Done() bool { return r.a.round >= r.a.Cfg.Rounds }

// Close aggregates round from cs, in any order. A contribution an
// aggregator would refuse on arrival (tokens that are no whole number of
// inner steps, a payload that does not decode to the run's codec and
// model, a value no honest worker sends) is refused with the reason; the
// rest are screened, combined and applied as Aggregator.Tick closes a
// round. It fails, leaving the replica as it was, for another round than
// Round, a worker named twice, a finished run, or a round that cannot be
// aggregated (every contribution refused or excluded, or a result that is
// not finite): replicas then agree that the round is void and the next
// attempt starts from the same weights.
func (r *Replica) Close(round int, cs []Submitted) (*RoundResult, []Refusal, error) {
	a := r.a
	switch {
	case r.Done():
		return nil, nil, fmt.Errorf("the run finished at round %d", a.round)
	case round != a.round:
		return nil, nil, fmt.Errorf("contributions for round %d, but the replica is at round %d", round, a.round)
	}
	cs = slices.Clone(cs)
	slices.SortFunc(cs, func(x, y Submitted) int { return strings.Compare(x.Worker, y.Worker) })
	for i := 1; i < len(cs); i++ {
		if cs[i].Worker == cs[i-1].Worker {
			return nil, nil, fmt.Errorf("worker %s contributes twice to round %d", cs[i].Worker, round)
		}
	}
	var refused []Refusal
	for _, c := range cs {
		if c.Tokens < 1 || c.Tokens > a.Cfg.TokensPerRound() || c.Tokens%a.Cfg.TokensPerStep() != 0 {
			refused = append(refused, Refusal{c.Worker, fmt.Sprintf("it claims %d tokens; a round trains 1 to %d inner steps of %d tokens each",
				c.Tokens, a.Cfg.InnerSteps, a.Cfg.TokensPerStep())})
			continue
		}
		if err := a.take(c.Worker, c.Tokens, c.Payload, time.Time{}); err != nil {
			refused = append(refused, Refusal{c.Worker, err.Error()})
		}
	}
	if len(a.subs) == 0 {
		return nil, refused, fmt.Errorf("round %d has no contribution to aggregate", round)
	}
	res, err := a.close()
	if err != nil {
		a.abandon()
		return nil, refused, fmt.Errorf("round %d is void: %v", round, err)
	}
	a.phase = Waiting
	clear(a.peers) // a replica tracks no presence
	return res, refused, nil
}
