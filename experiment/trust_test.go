package experiment

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/node"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/libp2p/go-libp2p/core/crypto"
)

// summaryForm is the experiment's last line, as issue 7 writes it.
var summaryForm = regexp.MustCompile(`^caught \d+/\d+ within \d+ rounds; honest slashed \d+; loss gap [+-]\d+\.\d+ nats; emission conserved: (yes|no); verification overhead \d+\.\d+%$`)

// testID makes a peer ID and its ledger account.
func testID(t *testing.T) (string, ledger.PubKey) {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	lk, err := p2p.LedgerKey(key)
	if err != nil {
		t.Fatal(err)
	}
	k := ledger.KeyOf(lk)
	return p2p.PeerIDOf(k), k
}

// TestTrustReportArithmetic: the report reads the chain's rounds right:
// an adversary's first cheat is the first round it committed a forged
// contribution in, it is caught at its first failed verdict, its slashes
// and rewards add up, and what it was paid for later rounds is counted; a
// round whose rewards do not add up to the emission (or pay anything when
// every accepted contribution failed) is not conserved; an honest worker
// with a failed verdict counts as slashed, in both arms once; and the
// summary line has the form and figures.
func TestTrustReportArithmetic(t *testing.T) {
	hid, hk := testID(t)
	aid, ak := testID(t)
	const E = 1000
	commit := func(r uint64, k ledger.PubKey) ledger.CommitRecord { return ledger.CommitRecord{Round: r, Worker: k} }
	accepted := func(r uint64, ks ...ledger.PubKey) *ledger.RoundRecord {
		rec := &ledger.RoundRecord{Round: r}
		for _, k := range ks {
			rec.Accepted = append(rec.Accepted, ledger.Contribution{Worker: k})
		}
		return rec
	}
	v := func(r uint64, k ledger.PubKey, o ledger.Outcome, reward, slashed uint64) ledger.VerdictRecord {
		return ledger.VerdictRecord{Round: r, Worker: k, Outcome: o, Reward: reward, Slashed: slashed, Reason: map[bool]string{true: "payload"}[o == ledger.Failed]}
	}
	rounds := []ledger.RoundInfo{
		// Round 0: the adversary sends its honest contribution; both paid.
		{Round: 0, Status: "settled", Result: accepted(0, hk, ak), Commits: []ledger.CommitRecord{commit(0, hk), commit(0, ak)},
			Verdicts: []ledger.VerdictRecord{v(0, hk, ledger.Unchecked, 500, 0), v(0, ak, ledger.Unchecked, 500, 0)}},
		// Round 1: its first cheat, unchecked and paid.
		{Round: 1, Status: "settled", Result: accepted(1, hk, ak), Commits: []ledger.CommitRecord{commit(1, hk), commit(1, ak)},
			Verdicts: []ledger.VerdictRecord{v(1, hk, ledger.Unchecked, 400, 0), v(1, ak, ledger.Unchecked, 600, 0)}},
		// Round 2: caught; the honest worker gets it all.
		{Round: 2, Status: "settled", Result: accepted(2, hk, ak), Commits: []ledger.CommitRecord{commit(2, hk), commit(2, ak)},
			Verdicts: []ledger.VerdictRecord{v(2, hk, ledger.Passed, 1000, 0), v(2, ak, ledger.Failed, 0, 50)}},
		// Round 3: failed again, but paid 7 (what the report must show)
		// and the round pays 1007 in all: not conserved.
		{Round: 3, Status: "settled", Result: accepted(3, hk, ak), Commits: []ledger.CommitRecord{commit(3, hk), commit(3, ak)},
			Verdicts: []ledger.VerdictRecord{v(3, hk, ledger.Unchecked, 1000, 0), v(3, ak, ledger.Failed, 7, 25)}},
		// Round 4: only the adversary's contribution, failed: nothing
		// may be paid, and nothing is (conserved).
		{Round: 4, Status: "settled", Result: accepted(4, ak), Commits: []ledger.CommitRecord{commit(4, ak)},
			Verdicts: []ledger.VerdictRecord{v(4, ak, ledger.Failed, 0, 10)}},
	}
	ll := node.LocalLedger{EmissionPerRound: E, Rounds: rounds}
	ll.Totals.Minted = 500 + 500 + 400 + 600 + 1000 + 1007
	a := adversaryReport(Noise, aid, ll, map[int]bool{1: true, 2: true, 3: true, 4: true, 9: true})
	want := AdversaryReport{Kind: Noise, Worker: aid, Committed: 5, FirstCheat: 1, Caught: 2, Reason: "payload", Slashed: 85, Reward: 1107, PaidAfter: 7}
	if a != want {
		t.Fatalf("adversary report\n got %+v\nwant %+v", a, want)
	}
	if a.Delay() != 1 {
		t.Errorf("delay %d, want 1", a.Delay())
	}
	if b := adversaryReport(Zeros, hid, node.LocalLedger{Rounds: rounds[:2]}, nil); b.Caught != -1 || b.FirstCheat != -1 || b.Delay() != -1 || b.Reward != 900 {
		t.Errorf("a worker never caught and never cheating: %+v", b)
	}
	for i, want := range []bool{true, true, true, false, true} {
		if got := conserved(rounds[i], E); got != want {
			t.Errorf("round %d conserved %v, want %v", i, got, want)
		}
	}

	arm := &armRun{res: node.LocalResult{Rounds: 5, Compute: 10 * time.Second, Ledger: ll,
		Validator: node.ValidatorStats{Checked: 4, Failed: 3, Busy: 1500 * time.Millisecond, Screening: 500 * time.Millisecond}}, valLoss: 2.5, honest: []string{hid}, slept: 2 * time.Second,
		remote: []node.WorkerStats{{Compute: 2 * time.Second, Rounds: 3}}}
	r := arm.report(ArmAdversarial)
	if r.Settled != 5 || r.Conserved != 4 || r.EmissionConserved() || r.Paid != ll.Totals.Minted || len(r.HonestSlashed) != 0 {
		t.Errorf("arm report: %+v", r)
	}
	if r.Compute != 10*time.Second || math.Abs(r.Overhead()-20) > 1e-9 {
		t.Errorf("compute %v (want the workers' 10 s less 2 s slept plus the processes' 2 s), overhead %.3f%% (want 1.5 s recomputing and 0.5 s screening over it: 20%%)", r.Compute, r.Overhead())
	}
	// Without round 3 every round adds up; an honest worker failing in
	// round 2 is slashed.
	good := append(append([]ledger.RoundInfo(nil), rounds[:3]...), rounds[4])
	good[2].Verdicts = []ledger.VerdictRecord{v(2, hk, ledger.Failed, 0, 50), v(2, ak, ledger.Passed, 1000, 0)}
	okLedger := node.LocalLedger{EmissionPerRound: E, Rounds: good}
	okLedger.Totals.Minted = 3000
	hon := (&armRun{res: node.LocalResult{Rounds: 4, Compute: time.Second, Ledger: okLedger}, valLoss: 2.4, honest: []string{hid}}).report(ArmHonest)
	if !hon.EmissionConserved() || len(hon.HonestSlashed) != 1 || hon.HonestSlashed[0] != hid {
		t.Errorf("honest arm report: %+v", hon)
	}
	hon.Rounds = 5
	if hon.EmissionConserved() {
		t.Error("an arm with a round never settled conserves the emission")
	}
	hon.Rounds = 4
	hon.LedgerErr = errors.New("supply does not add up")
	if hon.EmissionConserved() {
		t.Error("an arm whose chain does not check out conserves the emission")
	}
	hon.LedgerErr = nil

	res := &AdversaryResult{Rounds: 5, HonestArm: hon, AdversarialArm: r,
		Adversaries: []AdversaryReport{a, {Kind: Zeros, FirstCheat: 0, Caught: 3}, {Kind: Copier, FirstCheat: 1, Caught: -1}}}
	if res.Caught() != 2 || res.Within() != 3 || res.HonestSlashed() != 1 || math.Abs(res.LossGap()-0.1) > 1e-9 {
		t.Errorf("caught %d within %d, honest slashed %d, gap %v", res.Caught(), res.Within(), res.HonestSlashed(), res.LossGap())
	}
	line := res.Summary()
	if line != "caught 2/3 within 3 rounds; honest slashed 1; loss gap +0.1000 nats; emission conserved: no; verification overhead 20.0%" || !summaryForm.MatchString(line) {
		t.Errorf("summary %q", line)
	}
	res.Adversaries = res.Adversaries[2:]
	if res.Within() != 5 || !strings.HasPrefix(res.Summary(), "caught 0/1 within 5 rounds;") {
		t.Errorf("nobody caught: %q", res.Summary())
	}
}

// TestAdversariesShortRun runs the experiment on a tiny model for a few
// rounds: every adversary takes part and cheats from the round its kind
// says (the copier from round 1), the honest workers are the same
// identities in both arms, the slowed worker runs at about a third of its
// peers' speed and still contributes, every round's rewards add up to the
// emission, and the report's figures are consistent with each other.
func TestAdversariesShortRun(t *testing.T) {
	cfg := diloco.DefaultConfig()
	cfg.Model = gpt.DefaultConfig(16, 1, 2, 16)
	cfg.Batch, cfg.InnerSteps, cfg.Rounds, cfg.Warmup = 2, 10, 3, 2
	cfg.RoundTimeout = diloco.Duration(30 * time.Second)
	text := corpus.TinyShakespeare()[:100000]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress []string
	res, err := Adversaries(ctx, AdversaryOptions{Config: cfg, Text: text, Honest: 2, Slow: true, Threads: 1, EvalBatches: 2, Log: testLog(),
		Progress: func(arm string, done, total int) {
			if done == total {
				progress = append(progress, arm)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(progress, ",") != "honest,adversarial" {
		t.Errorf("progress finished %v", progress)
	}
	if len(res.Adversaries) != len(AdversaryKinds()) || res.Rounds != 3 || res.P != 0.1 || !res.Validated {
		t.Fatalf("result %+v", res)
	}
	for _, a := range res.Adversaries {
		want := 0
		if a.Kind == Copier {
			want = 1
		}
		// Every one commits in every round until it is caught, but the
		// overflow attack, whose refused payload makes it sit out the
		// round after (it is not present when that round opens).
		if wantCommits := map[bool]int{true: cfg.Rounds - 1, false: cfg.Rounds}[a.Kind == Overflow]; a.Committed != wantCommits && a.Caught < 0 {
			t.Errorf("%s committed in %d rounds of %d without being caught", a.Kind, a.Committed, cfg.Rounds)
		}
		if a.FirstCheat != want {
			t.Errorf("%s first cheated in round %d, want %d", a.Kind, a.FirstCheat, want)
		}
		// Screening excludes the free-rider and the copier the round they
		// cheat, and the validator recomputes every excluded contribution.
		if (a.Kind == Zeros || a.Kind == Copier) && a.Caught != want {
			t.Errorf("%s caught at round %d, want %d (it was excluded)", a.Kind, a.Caught, want)
		}
		if a.Caught >= 0 && (a.Slashed == 0 || a.PaidAfter != 0 || a.Delay() < 0) {
			t.Errorf("%s caught: %+v", a.Kind, a)
		}
	}
	if !(res.AdversarialArm.Validator.Checked >= 2 && res.AdversarialArm.Validator.Failed >= 2 && res.AdversarialArm.Validator.Busy > 0) {
		t.Errorf("the validator: %+v", res.AdversarialArm.Validator)
	}
	for _, arm := range []ArmReport{res.HonestArm, res.AdversarialArm} {
		if arm.Rounds != cfg.Rounds || !arm.EmissionConserved() || !(arm.ValLoss > 0 && arm.ValLoss < 5.6) || arm.Compute <= 0 {
			t.Errorf("%s arm: %+v", arm.Name, arm)
		}
	}
	if res.HonestArm.Accepted != 2*cfg.Rounds {
		t.Errorf("the honest arm aggregated %d contributions, want %d", res.HonestArm.Accepted, 2*cfg.Rounds)
	}
	if res.HonestSlashed() != 0 {
		t.Errorf("honest workers slashed: %v %v", res.HonestArm.HonestSlashed, res.AdversarialArm.HonestSlashed)
	}
	s := res.Slow
	if s == nil || s.Rounds != cfg.Rounds || s.Contributed < 1 || s.Steps < cfg.Rounds {
		t.Fatalf("slow worker: %+v", s)
	}
	if !(s.Speed > 0.02 && s.Speed < 0.7) {
		t.Errorf("the slowed worker ran at %.2f of its peers' speed, not about a third", s.Speed)
	}
	t.Logf("%s; slow worker: %d/%d rounds at %.2f of its peers' speed", res.Summary(), s.Contributed, s.Rounds, s.Speed)
	if !summaryForm.MatchString(res.Summary()) || !strings.Contains(res.Summary(), "emission conserved: yes") {
		t.Errorf("summary %q", res.Summary())
	}
}

// TestAdversariesBadOptions: bad options are errors before anything runs.
func TestAdversariesBadOptions(t *testing.T) {
	cfg := diloco.DefaultConfig()
	text := corpus.TinyShakespeare()[:100000]
	for _, c := range []struct {
		name string
		o    AdversaryOptions
		want string
	}{
		{"negative honest", AdversaryOptions{Config: cfg, Text: text, Honest: -1}, "honest worker"},
		{"p above 1", AdversaryOptions{Config: cfg, Text: text, P: 1.5}, "probability"},
		{"p negative", AdversaryOptions{Config: cfg, Text: text, P: -0.1}, "probability"},
		{"unknown kind", AdversaryOptions{Config: cfg, Text: text, Kinds: []string{"sneaky"}}, "unknown adversary"},
		{"no binary", AdversaryOptions{Config: cfg, Text: text, Processes: &Processes{}}, "binary"},
		{"one honest process set", AdversaryOptions{Config: cfg, Text: text, Honest: 1, Processes: &Processes{Binary: "cairn"}}, "at least 2"},
		{"unknown path", AdversaryOptions{Config: cfg, Text: text, Processes: &Processes{Binary: "cairn", Paths: []string{"avx9000"}}}, "not available"},
		{"bad config", AdversaryOptions{Config: diloco.RunConfig{}, Text: text}, ""},
	} {
		_, err := Adversaries(context.Background(), c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// TestProcessPathsRoundRobin: worker processes take the kernel paths in
// turn.
func TestProcessPathsRoundRobin(t *testing.T) {
	p := &Processes{Paths: []string{"avx512", "avx2", "generic"}}
	if got := strings.Join(p.WorkerPaths(6), ","); got != "avx2,generic,avx512,avx2,generic" {
		t.Errorf("paths %s", got)
	}
}

func testLog() *slog.Logger {
	if os.Getenv("CAIRN_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// TestCastWatch: a cast's watch tells of each adversary once, at the
// settled round of its first failed verdict, and never of an honest
// worker (failed or not); the cast's behaviours put the recorder on
// worker 0, nothing on the other honest workers and the adversaries
// after them.
func TestCastWatch(t *testing.T) {
	cfg := diloco.DefaultConfig()
	cast, err := NewCast(cfg, []string{Zeros, Lazy}, 1)
	if err != nil {
		t.Fatal(err)
	}
	bs := cast.Behaviours(3)
	if len(bs) != 5 || bs[1] != nil || bs[2] != nil || bs[3] == nil || bs[4] == nil {
		t.Fatalf("behaviours %v", bs)
	}
	if _, ok := bs[0].(Recorder); !ok {
		t.Fatalf("worker 0 is %T, not the recorder", bs[0])
	}
	hid, hk := testID(t)
	zid, zk := testID(t)
	lid, lk := testID(t)
	var told []AdversaryReport
	know, settled := cast.Watch(func(a AdversaryReport) { told = append(told, a) })
	know([]string{zid, lid})
	failed := func(r uint64, k ledger.PubKey) ledger.VerdictRecord {
		return ledger.VerdictRecord{Round: r, Worker: k, Outcome: ledger.Failed, Slashed: 5}
	}
	settled(ledger.RoundInfo{Round: 0, Verdicts: []ledger.VerdictRecord{failed(0, hk), failed(0, zk)}})
	settled(ledger.RoundInfo{Round: 1, Verdicts: []ledger.VerdictRecord{failed(1, zk), {Round: 1, Worker: lk, Outcome: ledger.Unchecked}}})
	settled(ledger.RoundInfo{Round: 2, Verdicts: []ledger.VerdictRecord{failed(2, lk)}})
	if len(told) != 2 || told[0].Kind != Zeros || told[0].Worker != zid || told[0].Caught != 0 ||
		told[1].Kind != Lazy || told[1].Worker != lid || told[1].Caught != 2 || told[1].Slashed != 5 {
		t.Fatalf("told %+v (honest %s)", told, hid)
	}
	if _, err := NewCast(cfg, []string{"sneaky"}, 1); err == nil {
		t.Error("a cast of an unknown kind")
	}
}

// failFrom is a Settler that fails the contributions of the given
// accounts from round from on (as a validator that caught them would) and
// passes the rest unchecked.
type failFrom struct {
	from uint64
	mu   sync.Mutex
	bad  map[ledger.PubKey]bool
}

func (f *failFrom) Settle(rec ledger.RoundRecord, _ ledger.Hash) ([]ledger.Verdict, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var vs []ledger.Verdict
	for _, c := range rec.Accepted {
		v := ledger.Verdict{Worker: c.Worker, Outcome: ledger.Unchecked}
		if f.bad[c.Worker] && rec.Round >= f.from {
			v = ledger.Verdict{Worker: c.Worker, Outcome: ledger.Failed, Reason: "test: caught", Evidence: []byte("test evidence")}
		}
		vs = append(vs, v)
	}
	return vs, true, nil
}

// TestCastCaughtOnTheChain runs a cast on a real chain whose settlements
// fail the adversaries from round 1 (in place of the validator): the
// report finds each caught at round 1, a round after its first cheat,
// slashed, paid for round 0 and nothing after (its stake below the
// minimum, it is refused), the watch tells of each once, during the run,
// no honest worker is slashed, and every round's rewards add up to the
// emission although some of its contributions failed.
func TestCastCaughtOnTheChain(t *testing.T) {
	cfg := diloco.DefaultConfig()
	cfg.Model = gpt.DefaultConfig(16, 1, 2, 16)
	cfg.Batch, cfg.InnerSteps, cfg.Rounds, cfg.Warmup = 2, 10, 4, 2
	cfg.RoundTimeout = diloco.Duration(30 * time.Second)
	text := corpus.TinyShakespeare()[:100000]
	cfg.DataHash = node.DataHash(text)
	kinds := []string{Noise, Scaled, Lazy}
	cast, err := NewCast(cfg, kinds, 9)
	if err != nil {
		t.Fatal(err)
	}
	const honest = 2
	settler := &failFrom{from: 1, bad: map[ledger.PubKey]bool{}}
	var told []AdversaryReport
	know, settled := cast.Watch(func(a AdversaryReport) { told = append(told, a) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := node.RunLocal(ctx, node.LocalOptions{Config: cfg, Text: text, Workers: honest + len(kinds), EvalBatches: 1,
		Behaviours: cast.Behaviours(honest), Settler: settler, OnSettle: settled,
		OnStart: func(_ string, ids []string) error {
			know(ids[honest:])
			settler.mu.Lock()
			defer settler.mu.Unlock()
			for _, id := range ids[honest:] {
				k, err := p2p.AccountOf(id)
				if err != nil {
					return err
				}
				settler.bad[k] = true
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range res.Ledger.Accounts[honest:] {
		ids = append(ids, a.ID)
	}
	reps := cast.Reports(ids, res.Ledger)
	stake := node.LocalStake(node.DefaultLedgerParams())
	for _, a := range reps {
		if a.FirstCheat != 0 || a.Caught != 1 || a.Delay() != 1 || a.Reason != "test: caught" || a.Slashed != stake/2 ||
			a.Reward == 0 || a.PaidAfter != 0 {
			t.Errorf("%+v", a)
		}
	}
	if len(told) != len(kinds) {
		t.Fatalf("the watch told of %d adversaries: %+v", len(told), told)
	}
	byID := map[string]bool{}
	for _, id := range ids {
		byID[id] = true
	}
	for _, a := range told {
		if a.Caught != 1 || !byID[a.Worker] {
			t.Errorf("told %+v", a)
		}
		delete(byID, a.Worker)
	}
	arm := (&armRun{res: res, honest: []string{res.Ledger.Accounts[0].ID, res.Ledger.Accounts[1].ID}}).report(ArmAdversarial)
	if !arm.EmissionConserved() || len(arm.HonestSlashed) != 0 || arm.Burned != uint64(len(kinds))*stake/2 {
		t.Errorf("arm report %+v", arm)
	}
}

// FuzzLastJSON: a worker process's output, whatever it holds, decodes to
// its stats or an error, never a panic; the tail buffer keeps at most its
// bound.
func FuzzLastJSON(f *testing.F) {
	f.Add([]byte("log line\n{\"Rounds\":3,\"Steps\":30}\n"))
	f.Add([]byte(""))
	f.Add([]byte("{\"Compute\":\"soon\"}"))
	f.Fuzz(func(t *testing.T, out []byte) {
		var st node.WorkerStats
		_ = lastJSON(out, &st)
		tl := &tail{max: 16}
		tl.Write(out)
		tl.Write(out)
		if b := tl.bytes(); len(b) > 16 || (len(out) > 0 && !bytes.HasSuffix(append(append([]byte(nil), out...), out...), b)) {
			t.Fatalf("tail kept %q of %q twice", b, out)
		}
	})
}

// TestLastJSON: a worker process's stats are its output's last line; an
// output without one is an error.
func TestLastJSON(t *testing.T) {
	var st node.WorkerStats
	if err := lastJSON([]byte("stopped\n{\"Rounds\":3,\"Steps\":30}\n\n"), &st); err != nil || st.Rounds != 3 || st.Steps != 30 {
		t.Errorf("stats %+v, %v", st, err)
	}
	for _, out := range []string{"", "\n", "run finished: 3 contributions\n"} {
		if err := lastJSON([]byte(out), &st); err == nil {
			t.Errorf("%q decoded", out)
		}
	}
}
