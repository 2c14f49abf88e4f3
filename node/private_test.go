package node

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/verify"
)

// ascent sends its honest Δ reversed and scaled by four: a step up the
// loss from data nobody else can see, the poison a private worker could
// hope to hide.
type ascent struct{ n int }

func (a ascent) Steps(_, steps int) int { return steps }

func (a ascent) Forge(_ int, honest []byte, tokens int) ([]byte, int) {
	d := make([]float32, a.n)
	if err := compress.Decode(honest, d); err != nil {
		return honest, tokens
	}
	for i := range d {
		d[i] *= -4
	}
	p, err := compress.NewEncoder(compress.Int8, a.n).Encode(d)
	if err != nil {
		return honest, tokens
	}
	return p, tokens
}

// TestPrivateContributions: in a run that takes private contributions,
// two public workers, an honest private worker (training on text the
// run does not hold) and a private poisoner (its Δ reversed) take part.
// The private commits say so on the chain; the private contributions are
// never recomputed (a recomputation could not match) but judged by their
// held-out gain: the honest one passes and is paid every round, the
// poisoner fails with the figures as evidence and is slashed below the
// minimum stake; the public workers are judged as before. A private
// worker joining a run that takes none stops with the reason.
func TestPrivateContributions(t *testing.T) {
	cfg := tinyConfig(3)
	cfg.Private = &diloco.Private{Tolerance: 0.002}
	p := testLedgerParams
	var dirs []string
	var accts []ledger.GenesisAccount
	for range 4 {
		dir, k := identity(t)
		dirs = append(dirs, dir)
		accts = append(accts, ledger.GenesisAccount{Key: k, Stake: p.MinStake})
	}
	if _, err := StartAggregator(AggregatorOptions{DataDir: t.TempDir(), Listen: loopback, Config: cfg, Text: testText(), Log: testLog(t)}); err == nil ||
		!strings.Contains(err.Error(), "must validate") {
		t.Fatalf("a private run without validation: %v", err)
	}
	agg, err := StartAggregator(AggregatorOptions{DataDir: t.TempDir(), Listen: loopback, Config: cfg, Text: testText(), EvalBatches: 1, Threads: 1,
		Grace: 200 * time.Millisecond, Log: testLog(t), Ledger: &p, BlockInterval: 100 * time.Millisecond, Accounts: accts,
		Validation: &ValidationOptions{}, HeldOut: HeldOutOptions{Wait: 20 * time.Second, Batches: 4}})
	if err != nil {
		t.Fatal(err)
	}
	defer agg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// Text the run does not hold: the corpus past the run's 100 kB.
	secret := corpus.TinyShakespeare()[200000:260000]
	var workers []*Worker
	for i, dir := range dirs {
		o := WorkerOptions{DataDir: dir, Listen: loopback, Join: agg.Addrs()[0], Text: testText(), Threads: 1, Log: testLog(t)}
		if i >= 2 {
			o.Text, o.PrivateData = nil, secret
		}
		if i == 3 {
			o.Behaviour = ascent{cfg.Model.NumParams()}
		}
		w, err := StartWorker(o)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		workers = append(workers, w)
	}
	// The poisoner, once slashed below the minimum stake, is refused and
	// keeps asking: it is stopped when the run is over.
	evilCtx, stopEvil := context.WithCancel(ctx)
	evilDone := make(chan error, 1)
	go func() { evilDone <- workers[3].Run(evilCtx) }()
	errs := runAll(t, ctx, agg, workers[:3])
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	stopEvil()
	<-evilDone
	st := agg.ValidatorStats()
	agg.Close()
	var ids []string
	for _, w := range workers {
		ids = append(ids, w.ID())
	}
	ll := closedLedger(t, agg.opts.DataDir, ids...)
	honest, evil := accts[2].Key, accts[3].Key
	caught := 0
	for _, r := range ll.Rounds {
		for _, c := range r.Commits {
			if c.Private != (c.Worker == honest || c.Worker == evil) {
				t.Errorf("round %d: %s's commit private=%v", r.Round, c.Worker, c.Private)
			}
		}
		for _, v := range r.Verdicts {
			switch v.Worker {
			case honest:
				if v.Outcome != ledger.Passed || !strings.HasPrefix(v.Reason, "private; screened: held-out gain") || v.Reward == 0 {
					t.Errorf("round %d: the honest private worker judged %v (%s), paid %d", r.Round, v.Outcome, v.Reason, v.Reward)
				}
			case evil:
				if v.Outcome != ledger.Failed || !strings.Contains(v.Reason, "worsens the held-out loss") || v.Slashed == 0 || v.EvidenceHash == (ledger.Hash{}) {
					t.Errorf("round %d: the private poisoner judged %v (%s), slashed %d, evidence %x", r.Round, v.Outcome, v.Reason, v.Slashed, v.EvidenceHash)
				}
				caught++
			default:
				if v.Outcome == ledger.Failed {
					t.Errorf("round %d: a public worker failed: %s", r.Round, v.Reason)
				}
			}
		}
	}
	if caught == 0 {
		t.Fatal("the private poisoner was never judged")
	}
	if a := ll.Accounts[3]; a.Reward != 0 || a.Account.Stake >= p.MinStake {
		t.Errorf("the private poisoner was paid %d and keeps a stake of %d", a.Reward, a.Account.Stake)
	}
	if a := ll.Accounts[2]; a.Rounds != cfg.Rounds || a.Account.Stake != p.MinStake {
		t.Errorf("the honest private worker was paid in %d of %d rounds, stake %d", a.Rounds, cfg.Rounds, a.Account.Stake)
	}
	if st.Screened < cfg.Rounds+1 {
		t.Errorf("validator stats %+v: want every private contribution screened", st)
	}

	// A private worker cannot join a run that takes none.
	plain := tinyConfig(1)
	agg2, err := StartAggregator(AggregatorOptions{DataDir: t.TempDir(), Listen: loopback, Config: plain, Text: testText(), Log: testLog(t), Ledger: openRun()})
	if err != nil {
		t.Fatal(err)
	}
	defer agg2.Close()
	w, err := StartWorker(WorkerOptions{DataDir: t.TempDir(), Listen: loopback, Join: agg2.Addrs()[0], PrivateData: secret, Threads: 1, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel2()
	if err := w.Run(ctx2); err == nil || !strings.Contains(err.Error(), "takes no private contributions") {
		t.Fatalf("a private worker in a run that takes none: %v", err)
	}
}

// TestJudgePrivate: the rule, case by case: refused payloads, values that
// are not finite, zeros claiming tokens and a held-out loss worsened past
// the tolerance fail (with the figures as evidence); a copy that was not
// aggregated gets no verdict; an aggregated one passes when measured and
// is unchecked when not.
func TestJudgePrivate(t *testing.T) {
	rule := diloco.Private{Tolerance: 0.01}
	key := ledger.PubKey{7}
	measured := func(before, after float64) diloco.Contribution {
		return diloco.Contribution{Tokens: 64, Measured: true, LossBefore: before, LossAfter: after}
	}
	for _, tc := range []struct {
		name    string
		p       privateCase
		ok      bool
		outcome ledger.Outcome
		reason  string
	}{
		{"refused for its payload", privateCase{refused: true}, true, ledger.Failed, "refused for its payload"},
		{"never screened", privateCase{}, false, 0, ""},
		{"in a cohort whose sum passed", privateCase{accepted: true, screened: true, cohort: 3, c: measured(3, 2.9)}, true, ledger.Passed, "in a cohort of 3; its sum screened: held-out gain +0.1000"},
		{"in a cohort whose sum was not measured", privateCase{accepted: true, screened: true, cohort: 3, c: diloco.Contribution{Tokens: 64}}, true, ledger.Unchecked, "cohort of 3"},
		{"in a cohort whose sum was excluded", privateCase{screened: true, cohort: 3, c: measured(3, 3.5), flags: verify.LossWorse}, false, 0, ""},
		{"not finite", privateCase{screened: true, c: measured(3, 3), flags: verify.NonFinite}, true, ledger.Failed, "not finite"},
		{"zero claiming tokens", privateCase{screened: true, c: measured(3, 3), flags: verify.NormLow}, true, ledger.Failed, "zero although it claims tokens"},
		{"worse past the tolerance", privateCase{accepted: true, screened: true, c: measured(3, 3.02)}, true, ledger.Failed, "worsens the held-out loss by 0.0200 nats"},
		{"loss after not finite", privateCase{screened: true, c: measured(3, math.Inf(1)), flags: verify.LossWorse}, true, ledger.Failed, "worsens the held-out loss"},
		{"worse within the tolerance", privateCase{accepted: true, screened: true, c: measured(3, 3.005)}, true, ledger.Passed, "gain -0.0050"},
		{"better", privateCase{accepted: true, screened: true, c: measured(3, 2.9)}, true, ledger.Passed, "gain +0.1000"},
		{"not measured", privateCase{accepted: true, screened: true, c: diloco.Contribution{Tokens: 64}}, true, ledger.Unchecked, "not measured"},
		{"a copy, excluded", privateCase{screened: true, c: measured(3, 2.9), flags: verify.Duplicate | verify.NormLow}, false, 0, ""},
		{"excluded, within the tolerance", privateCase{screened: true, c: measured(3, 3.001), flags: verify.LossWorse}, false, 0, ""},
	} {
		v, ok, err := judgePrivate(key, tc.p, rule)
		if err != nil || ok != tc.ok || ok && (v.Outcome != tc.outcome || !strings.Contains(v.Reason, tc.reason) || v.Worker != key) {
			t.Errorf("%s: %+v %v %v", tc.name, v, ok, err)
			continue
		}
		if ok && (v.Outcome == ledger.Failed) != (len(v.Evidence) > 0) {
			t.Errorf("%s: evidence %q with outcome %v", tc.name, v.Evidence, v.Outcome)
		}
	}
}
