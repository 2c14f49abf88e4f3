package diloco

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/compress"
)

// TestFloodOfFreshIdentities: thousands of identities that poll with the
// public weights hash and never contribute neither hold rounds open nor
// grow the aggregator's memory past its limits. Once a worker has
// contributed, rounds wait only for it; newcomers are told they are not
// waited for; identities beyond Limits.MaxPeers are refused with the
// reason, and those not heard from are forgotten.
func TestFloodOfFreshIdentities(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	cfg.Rounds = 100
	n := cfg.Model.NumParams()
	a, _ := NewAggregator(cfg)
	a.Grace = 0
	a.Limits = Limits{MaxPeers: 1000, MaxNewcomers: 4}
	// An honest contribution of round r (a new payload every round: a
	// repeated one is excluded as a copy).
	good := func(r int) []byte { return encode(t, cfg.Codec, constDelta(n, 0.01*float32(1+r))) }
	tps := cfg.TokensPerStep()

	// Round 0: the honest worker alone, proving itself.
	a.Poll("honest", 0, a.Hash(), at(0))
	mustTick(t, a, at(0))
	if err := a.Submit("honest", 0, a.Hash(), tps, good(0), at(1)); err != nil {
		t.Fatal(err)
	}
	if ev := mustTick(t, a, at(1)); ev.Closed == nil || !ev.Opened {
		t.Fatalf("round 0: %+v", ev)
	}
	// A flood of 5000 identities polls during round 1.
	refused := 0
	for i := 0; i < 5000; i++ {
		r := a.Poll(fmt.Sprint("sybil", i), 1, a.Hash(), at(1.5))
		switch r.Action {
		case Wait:
		case Refused:
			refused++
			if !strings.Contains(r.Reason, "maximum of 1000 workers") {
				t.Fatalf("refusal without its reason: %q", r.Reason)
			}
		default:
			t.Fatalf("a fresh identity was told %v", r.Action)
		}
		if a.Tracked() > 1000 {
			t.Fatalf("tracking %d identities, limit 1000", a.Tracked())
		}
	}
	if refused != 5000-999 {
		t.Fatalf("%d identities refused, want %d", refused, 5000-999)
	}
	// They poll after round 1 opened: they cannot contribute to it.
	if err := a.Submit("sybil0", 1, a.Hash(), tps, good(1), at(1.6)); err == nil || !strings.Contains(err.Error(), "not a participant") {
		t.Fatalf("a non-participant's contribution: %v", err)
	}
	if r := a.Poll("honest", 1, a.Hash(), at(1.6)); r.Action != Train || !r.Waited {
		t.Fatalf("the proven worker was told %v (waited %v)", r.Action, r.Waited)
	}
	if err := a.Submit("honest", 1, a.Hash(), tps, good(1), at(2)); err != nil {
		t.Fatal(err)
	}
	ev := mustTick(t, a, at(2))
	if ev.Closed == nil || !ev.Opened {
		t.Fatalf("round 1 waited for identities that were not participants: %+v", ev)
	}
	// Round 2 has the 999 sybils as participants, but waits only for the
	// worker that has contributed before; the sybils are told so.
	if r := a.Poll("sybil1", 2, a.Hash(), at(2.1)); r.Action != Train || r.Waited {
		t.Fatalf("a newcomer in a round with proven workers was told %v (waited %v)", r.Action, r.Waited)
	}
	if err := a.Submit("honest", 2, a.Hash(), tps, good(2), at(2.5)); err != nil {
		t.Fatal(err)
	}
	ev = mustTick(t, a, at(2.5))
	if ev.Closed == nil || len(ev.Closed.Missing) != 0 {
		t.Fatalf("round 2 with 999 silent newcomers did not close on the proven worker's contribution: %+v", ev.Closed)
	}
	if a.NumActive() != 1 {
		t.Fatalf("%d workers count as present after a round the sybils sent nothing to", a.NumActive())
	}
	// Identities not heard from are forgotten; the honest one keeps polling.
	l := a.limits()
	for s := 3.0; s < l.Forget.Seconds()+60; s += 30 {
		a.Poll("honest", a.Round(), a.Hash(), at(s))
		mustTick(t, a, at(s))
	}
	if a.Tracked() != 1 {
		t.Fatalf("%d identities still tracked after %v of silence", a.Tracked(), l.Forget)
	}
	if r := a.Poll("sybil4999", a.Round(), a.Hash(), at(l.Forget.Seconds()+61)); r.Action == Refused {
		t.Fatalf("a new identity is still refused once the flood is forgotten: %q", r.Reason)
	}
}

// TestNewcomersWaitedForAtMostOnce: at the start of a run (nobody has
// contributed yet) a round waits for at most Limits.MaxNewcomers
// newcomers, the earliest first; those that send nothing go on probation
// and are not waited for again, so a flood costs at most one round's
// deadline. A newcomer past the cap is told it is not waited for, and its
// short contribution still counts.
func TestNewcomersWaitedForAtMostOnce(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	n := cfg.Model.NumParams()
	a, _ := NewAggregator(cfg)
	a.Grace = 0
	a.Limits = Limits{MaxNewcomers: 3}
	// An honest contribution of round r (a new payload every round: a
	// repeated one is excluded as a copy).
	good := func(r int) []byte { return encode(t, cfg.Codec, constDelta(n, 0.01*float32(1+r))) }
	tps := cfg.TokensPerStep()
	for i := 0; i < 100; i++ {
		a.Poll(fmt.Sprint("sybil", i), 0, a.Hash(), at(float64(i)/1000))
	}
	a.Poll("honest", 0, a.Hash(), at(0.1))
	mustTick(t, a, at(0.1))
	if len(a.waiting) != 3 || !a.waiting["sybil0"] || !a.waiting["sybil2"] {
		t.Fatalf("round 0 waits for %v, want the 3 earliest newcomers", a.waiting)
	}
	if r := a.Poll("honest", 0, a.Hash(), at(0.2)); r.Action != Train || r.Waited {
		t.Fatalf("newcomer past the cap told %v (waited %v)", r.Action, r.Waited)
	}
	if err := a.Submit("honest", 0, a.Hash(), tps, good(0), at(0.5)); err != nil {
		t.Fatal(err)
	}
	if ev := mustTick(t, a, at(0.5)); ev.Closed != nil {
		t.Fatal("closed while the newcomers it waits for may still contribute")
	}
	ev := mustTick(t, a, at(10.1)) // the deadline
	if ev.Closed == nil || len(ev.Closed.Missing) != 3 || len(ev.Closed.Contributors) != 1 {
		t.Fatalf("round 0 at its deadline: %+v", ev.Closed)
	}
	// Round 1: everyone polls again; it waits only for the proven worker.
	for i := 0; i < 100; i++ {
		a.Poll(fmt.Sprint("sybil", i), 1, a.Hash(), at(10.2))
	}
	mustTick(t, a, at(10.2))
	if r := a.Poll("sybil0", 1, a.Hash(), at(10.3)); r.Action != Wait {
		t.Fatalf("a sybil that polled after round 1 opened was told %v", r.Action)
	}
	if err := a.Submit("honest", 1, a.Hash(), tps, good(1), at(10.5)); err != nil {
		t.Fatal(err)
	}
	if ev := mustTick(t, a, at(10.5)); ev.Closed == nil {
		t.Fatal("round 1 waited for newcomers although a proven worker takes part")
	}
	// Round 2 has the sybils as participants (they polled during round
	// 1); the three on probation and the rest are not waited for.
	if len(a.waiting) != 1 || !a.waiting["honest"] {
		t.Fatalf("round 2 waits for %d workers, want only the proven one", len(a.waiting))
	}
}

// TestAdmission: a caller-supplied admission check (a stake, later)
// refuses identities with its reason on Poll and Submit, and they cost
// the aggregator nothing.
func TestAdmission(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	n := cfg.Model.NumParams()
	a, _ := NewAggregator(cfg)
	a.Grace = 0
	staked := map[string]bool{"alice": true}
	a.Admit = func(id string) error {
		if !staked[id] {
			return errors.New("no stake")
		}
		return nil
	}
	a.Poll("alice", 0, a.Hash(), at(0))
	a.Poll("mallory", 0, a.Hash(), at(0))
	mustTick(t, a, at(0))
	if r := a.Poll("mallory", 0, a.Hash(), at(0.1)); r.Action != Refused || !strings.Contains(r.Reason, "no stake") {
		t.Fatalf("unadmitted identity told %v %q", r.Action, r.Reason)
	}
	if a.Tracked() != 1 || a.NumActive() != 1 {
		t.Fatalf("an unadmitted identity is tracked: %d tracked, %d present", a.Tracked(), a.NumActive())
	}
	good := encode(t, cfg.Codec, constDelta(n, 0.01))
	if err := a.Submit("mallory", 0, a.Hash(), cfg.TokensPerStep(), good, at(0.5)); err == nil || !strings.Contains(err.Error(), "no stake") {
		t.Fatalf("unadmitted contribution: %v", err)
	}
	// Admission withdrawn mid-round: the contribution is refused.
	delete(staked, "alice")
	if err := a.Submit("alice", 0, a.Hash(), cfg.TokensPerStep(), good, at(0.5)); err == nil || !strings.Contains(err.Error(), "not admitted") {
		t.Fatalf("contribution after the stake was withdrawn: %v", err)
	}
}

// TestContributionsFromUnwaitedCapped: workers a round does not wait for
// cannot make it hold more than Limits.MaxContributions decoded buffers;
// the workers it waits for always have room.
func TestContributionsFromUnwaitedCapped(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	n := cfg.Model.NumParams()
	a, _ := NewAggregator(cfg)
	a.Grace = 0
	a.Limits = Limits{MaxContributions: 5}
	// An honest contribution of round r (a new payload every round: a
	// repeated one is excluded as a copy).
	good := func(r int) []byte { return encode(t, cfg.Codec, constDelta(n, 0.01*float32(1+r))) }
	tps := cfg.TokensPerStep()
	a.Poll("honest", 0, a.Hash(), at(0))
	mustTick(t, a, at(0))
	a.Submit("honest", 0, a.Hash(), tps, good(0), at(0.5))
	mustTick(t, a, at(0.5))
	a.Poll("honest", 1, a.Hash(), at(0.6))
	// honest is a participant of round 1 (it contributed, so it was
	// present when round 1 opened); make 20 more participants by reopening.
	for i := 0; i < 20; i++ {
		a.Poll(fmt.Sprint("s", i), 1, a.Hash(), at(0.6))
	}
	a.open(at(0.7))
	taken := 0
	for i := 0; i < 20; i++ {
		if err := a.Submit(fmt.Sprint("s", i), 1, a.Hash(), tps, good(2+i), at(1)); err == nil {
			taken++
		} else if !strings.Contains(err.Error(), "maximum of 5") {
			t.Fatal(err)
		}
	}
	if taken != 4 {
		t.Fatalf("%d contributions from unwaited workers taken, want 4 (one slot kept for the waited worker)", taken)
	}
	if err := a.Submit("honest", 1, a.Hash(), tps, good(1), at(1)); err != nil {
		t.Fatalf("the waited worker had no room: %v", err)
	}
}

// TestExpelledParticipantNotWaitedFor: a participant whose admission is
// withdrawn mid-round (its stake slashed) is not waited for once it polls:
// the round closes with the others' contributions instead of at its
// deadline.
func TestExpelledParticipantNotWaitedFor(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	n := cfg.Model.NumParams()
	a, _ := NewAggregator(cfg)
	a.Grace = 0
	staked := map[string]bool{"alice": true, "mallory": true}
	a.Admit = func(id string) error {
		if !staked[id] {
			return errors.New("stake slashed")
		}
		return nil
	}
	a.Poll("alice", 0, a.Hash(), at(0))
	a.Poll("mallory", 0, a.Hash(), at(0))
	mustTick(t, a, at(0))
	if err := a.Submit("alice", 0, a.Hash(), cfg.TokensPerStep(), encode(t, cfg.Codec, constDelta(n, 0.01)), at(1)); err != nil {
		t.Fatal(err)
	}
	if ev := mustTick(t, a, at(1)); ev.Closed != nil {
		t.Fatal("the round closed while waiting for mallory")
	}
	delete(staked, "mallory")
	if r := a.Poll("mallory", 0, a.Hash(), at(2)); r.Action != Refused {
		t.Fatalf("mallory told %v", r.Action)
	}
	ev := mustTick(t, a, at(2))
	if ev.Closed == nil || len(ev.Closed.Contributors) != 1 {
		t.Fatalf("the round did not close without the expelled participant: %+v", ev)
	}
	if a.NumActive() != 1 {
		t.Fatalf("%d present after the expulsion", a.NumActive())
	}
}
