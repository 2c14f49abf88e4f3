package diloco

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/verify"
)

// cohort is a secure-aggregation cohort of the open round.
type cohort struct {
	members []string
	done    bool // its sum was submitted
}

// Expect registers a secure-aggregation cohort of the open round: the
// participants members (sorted, distinct, at least 2) contribute together,
// their sum to come by SubmitCohort under the name name, or never
// (Excuse). From now on they cannot submit on their own, and the round
// does not close while the cohort is pending, until CohortWait past its
// deadline; then the cohort is dropped as if excused. It refuses, in one
// line, a round that is not open, a name already in use or that is a
// worker's, and members that are not participants, have contributed, were
// refused or are in another cohort.
func (a *Aggregator) Expect(name string, members []string, now time.Time) error {
	if a.phase != Open {
		return fmt.Errorf("a cohort for round %d, which is %v", a.round, a.phase)
	}
	if name == "" || a.cohorts[name] != nil || a.peers[name] != nil || a.participants[name] {
		return fmt.Errorf("cohort name %q is empty or in use", name)
	}
	if len(members) < 2 || !slices.IsSorted(members) || len(slices.Compact(slices.Clone(members))) != len(members) {
		return errors.New("a cohort's members must be at least 2, sorted and distinct")
	}
	for _, m := range members {
		_, sent := a.subs[m]
		_, in := a.covered[m]
		if !a.participants[m] || sent || a.refused[m] || in {
			return fmt.Errorf("%s cannot join a cohort of round %d: not a participant, or it has contributed, was refused or is in a cohort", m, a.round)
		}
	}
	a.cohorts[name] = &cohort{members: slices.Clone(members)}
	for _, m := range members {
		a.covered[m] = name
	}
	return nil
}

// SubmitCohort takes cohort name's contribution to round (trained from the
// weights with hash): payload, the mean of parts of its members' Δ (the
// aggregator learns only their sum) encoded by compress.FP32, claiming
// tokens for all of them. In a run with differential privacy each member
// clipped its own Δ to DP.Clip, and the sum counts as parts contributions
// (clipped to parts·DP.Clip as a whole, should a member not have). It counts as one
// contribution, screened and aggregated as a worker's (held-out loss by
// SetHeldOut under the cohort's name); when the run's Private rule is set,
// a measured held-out loss worse than its tolerance excludes it. It refuses
// a cohort that is not pending, another round or weights, tokens beyond
// the members' rounds, a payload that is not FP32 of the model's size or
// holds a value no honest worker sends.
func (a *Aggregator) SubmitCohort(name string, round int, hash Hash, parts, tokens int, payload []byte) error {
	c := a.cohorts[name]
	switch {
	case c == nil || c.done:
		return fmt.Errorf("no pending cohort %q", name)
	case parts < 1 || parts > len(c.members):
		return fmt.Errorf("cohort %q sums %d inputs; it has %d members", name, parts, len(c.members))
	case a.phase != Open && a.phase != Waiting:
		return fmt.Errorf("cohort %q's sum for round %d, which is %v", name, round, a.phase)
	case round != a.round || hash != a.hash:
		return fmt.Errorf("cohort %q's sum is for round %d with weights %s, the round is %d with %s", name, round, hash, a.round, a.hash)
	case tokens < 1 || tokens > parts*a.Cfg.TokensPerRound():
		return fmt.Errorf("cohort %q claims %d tokens; its %d inputs train at most %d", name, tokens, parts, parts*a.Cfg.TokensPerRound())
	}
	codec, n, err := compress.DecodedSize(payload)
	if err != nil {
		return fmt.Errorf("cohort %q's mean: %v", name, err)
	}
	if codec != compress.FP32 || n != len(a.theta) {
		return fmt.Errorf("cohort %q's mean is %s of %d values, want fp32 of %d", name, codec, n, len(a.theta))
	}
	delta := make([]float32, n)
	if err := compress.Decode(payload, delta); err != nil {
		return fmt.Errorf("cohort %q's mean: %v", name, err)
	}
	if i, ok := within(delta, a.maxDelta); !ok {
		return fmt.Errorf("cohort %q's mean moves weight %d by %g, past the run's bound %g", name, i, delta[i], a.maxDelta)
	}
	c.done = true
	a.subs[name] = submission{delta: delta, tokens: tokens, digest: verify.PayloadDigest(payload), members: c.members, parts: parts}
	for _, m := range c.members { // they contributed in time: proven, as a worker whose payload take took
		if p := a.peers[m]; p != nil {
			p.present, p.proven, p.probation = true, true, false
		}
	}
	return nil
}

// Excuse drops pending cohort name: its members go on without it, the
// round no longer waits for them, and they are not put on probation (a
// cohort fails when too many of its members drop out, which the others
// cannot help). Unknown or finished cohorts are ignored.
func (a *Aggregator) Excuse(name string) {
	c := a.cohorts[name]
	if c == nil || c.done {
		return
	}
	delete(a.cohorts, name)
	for _, m := range c.members {
		delete(a.covered, m)
		a.refused[m], a.excused[m] = true, true
		delete(a.waiting, m)
	}
}

// SitOut excuses participant id from the open round as Excuse does a
// cohort's members: a private worker of a run with secure aggregation
// whose round has no cohort to join. Others are ignored.
func (a *Aggregator) SitOut(id string) {
	if _, sent := a.subs[id]; !a.participants[id] || sent {
		return
	}
	if _, in := a.covered[id]; in {
		return
	}
	a.refused[id], a.excused[id] = true, true
	delete(a.waiting, id)
}

// cohortDone reports whether id is a member of a cohort whose sum is in.
func (a *Aggregator) cohortDone(id string) bool {
	name, ok := a.covered[id]
	return ok && a.cohorts[name].done
}

// cohortPending reports whether the open round waits for a cohort at now:
// until CohortWait past the deadline; then it excuses the pending ones.
func (a *Aggregator) cohortPending(now time.Time) bool {
	pending := false
	for name, c := range a.cohorts {
		if c.done {
			continue
		}
		if now.Before(a.deadline.Add(a.CohortWait)) {
			pending = true
			continue
		}
		a.Excuse(name)
	}
	return pending
}

// clearCohorts forgets the round's cohorts.
func (a *Aggregator) clearCohorts() {
	clear(a.cohorts)
	clear(a.covered)
	clear(a.excused)
}
