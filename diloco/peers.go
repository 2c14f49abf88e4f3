package diloco

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Limits bound what identities can cost an aggregator. Identities are
// free to make (a key pair), so without limits a flood of fresh ones
// would grow its memory without end and hold every round open until its
// deadline. The zero value of a field takes its default from
// DefaultLimits.
type Limits struct {
	// MaxPeers bounds the identities tracked at once: present, on
	// probation, or remembered as having contributed. A new identity the
	// aggregator has no room for is refused (Poll answers Refused) until
	// others are forgotten. Default 4096.
	MaxPeers int
	// MaxNewcomers bounds the workers that have never contributed that a
	// round waits for. Only a round without any participant that has
	// contributed before waits for newcomers at all (the start of a run,
	// or after a restart); otherwise newcomers take part without being
	// waited for until they have contributed in time once. Default 16.
	MaxNewcomers int
	// MaxContributions bounds the contributions a round holds from
	// workers it does not wait for (each is a decoded buffer of the
	// model's size); the contributions of the workers it waits for are
	// always taken. Default: what fits in 1 GiB, at least 32 and at most
	// 1024.
	MaxContributions int
	// Forget is how long an identity not heard from is remembered.
	// Default: 3 round timeouts, at least 10 minutes.
	Forget time.Duration
}

// DefaultLimits are the limits of a run of config cfg.
func DefaultLimits(cfg RunConfig) Limits {
	perContribution := 4 * max(cfg.Model.NumParams(), 1)
	return Limits{
		MaxPeers:         4096,
		MaxNewcomers:     16,
		MaxContributions: min(1024, max(32, (1<<30)/perContribution)),
		Forget:           max(10*time.Minute, 3*time.Duration(cfg.RoundTimeout)),
	}
}

// limits are a's Limits with defaults filled in.
func (a *Aggregator) limits() Limits {
	l, d := a.Limits, DefaultLimits(a.Cfg)
	if l.MaxPeers <= 0 {
		l.MaxPeers = d.MaxPeers
	}
	if l.MaxNewcomers <= 0 {
		l.MaxNewcomers = d.MaxNewcomers
	}
	if l.MaxContributions <= 0 {
		l.MaxContributions = d.MaxContributions
	}
	if l.Forget <= 0 {
		l.Forget = d.Forget
	}
	return l
}

// peer is what the aggregator remembers of an identity.
type peer struct {
	first   time.Time // first heard from: newcomers are waited for in this order
	seen    time.Time // last heard from
	present bool      // polled with the current weights or contributed, and has not left or missed a round since
	proven  bool      // has contributed in time
	// probation: missed a deadline it was waited for. It may still train
	// and contribute, but rounds do not wait for it until it has
	// contributed in time again.
	probation bool
}

// admit asks the admission check, if any, about id.
func (a *Aggregator) admit(id string) error {
	if a.Admit == nil {
		return nil
	}
	if err := a.Admit(id); err != nil {
		return fmt.Errorf("identity not admitted to the run: %v", err)
	}
	return nil
}

// expel stops counting id, which the admission check now refuses (its
// stake was slashed, say), as present: the round in progress no longer
// waits for it, and later rounds do not count it among their
// participants.
func (a *Aggregator) expel(id string) {
	if p := a.peers[id]; p != nil {
		p.present = false
	}
	delete(a.waiting, id)
}

// track returns id's record, creating it if there is room, and marks it
// heard from at now.
func (a *Aggregator) track(id string, now time.Time) (*peer, error) {
	if p := a.peers[id]; p != nil {
		p.seen = now
		return p, nil
	}
	l := a.limits()
	if len(a.peers) >= l.MaxPeers {
		a.sweep(now)
		if len(a.peers) >= l.MaxPeers {
			return nil, fmt.Errorf("the aggregator is tracking its maximum of %d workers; try again later", l.MaxPeers)
		}
	}
	p := &peer{first: now, seen: now}
	a.peers[id] = p
	return p, nil
}

// sweep forgets identities not heard from for Limits.Forget, except the
// participants of the round in progress.
func (a *Aggregator) sweep(now time.Time) {
	forget := a.limits().Forget
	for id, p := range a.peers {
		if now.Sub(p.seen) > forget && !a.participants[id] {
			delete(a.peers, id)
		}
	}
	a.nextSweep = now.Add(forget / 4)
}

// present lists the identities that count as present, newcomers last in
// the order they were first heard from.
func (a *Aggregator) present() []string {
	var ids []string
	for id, p := range a.peers {
		if p.present {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(x, y string) int {
		px, py := a.peers[x], a.peers[y]
		if c := px.first.Compare(py.first); c != 0 {
			return c
		}
		return cmp.Compare(x, y)
	})
	return ids
}

// numPresent counts the identities that count as present.
func (a *Aggregator) numPresent() int {
	k := 0
	for _, p := range a.peers {
		if p.present {
			k++
		}
	}
	return k
}

// open starts the round at now with the workers present as participants,
// and chooses which of them it waits for: those that have contributed in
// time before and are not on probation; newcomers (at most
// Limits.MaxNewcomers, the earliest first) only when there are none of
// those; everyone when all are on probation.
func (a *Aggregator) open(now time.Time) {
	a.phase, a.openedAt, a.readyAt = Open, now, time.Time{}
	a.deadline = now.Add(time.Duration(a.Cfg.RoundTimeout))
	clear(a.waiting)
	ids := a.present()
	proven := false
	for _, id := range ids {
		if p := a.peers[id]; p.proven && !p.probation {
			proven = true
			break
		}
	}
	newcomers, maxNew := 0, a.limits().MaxNewcomers
	var unsent []string
	for _, id := range ids {
		a.participants[id] = true
		if _, sent := a.subs[id]; sent {
			continue
		}
		unsent = append(unsent, id)
		switch p := a.peers[id]; {
		case p.probation:
		case p.proven:
			a.waiting[id] = true
		case !proven && newcomers < maxNew:
			a.waiting[id] = true
			newcomers++
		}
	}
	if len(a.waiting) == 0 {
		for _, id := range unsent {
			a.waiting[id] = true
		}
	}
}

// dropMissing handles the participants that did not contribute: they
// crashed, are too slow, or never meant to. They no longer count as
// present (they take part again once they poll), and those the round
// waited for, and those whose payload it refused, go on probation. It
// returns the latter, sorted.
func (a *Aggregator) dropMissing() []string {
	var missing []string
	for id := range a.participants {
		if _, ok := a.subs[id]; ok || a.cohortDone(id) {
			continue
		}
		p := a.peers[id]
		if p == nil {
			continue
		}
		p.present = false
		if (a.waiting[id] || a.refused[id]) && !a.excused[id] {
			p.probation = true
			missing = append(missing, id)
		}
	}
	slices.Sort(missing)
	return missing
}

// pending counts the participants the round waits for that have not
// contributed, and the others that are still present and may.
func (a *Aggregator) pending() (waited, optional int) {
	for id := range a.participants {
		if _, ok := a.subs[id]; ok || a.refused[id] {
			continue
		}
		if _, ok := a.covered[id]; ok { // its cohort counts (cohortPending)
			continue
		}
		switch {
		case a.waiting[id]:
			waited++
		case a.peers[id] != nil && a.peers[id].present:
			optional++
		}
	}
	return waited, optional
}
