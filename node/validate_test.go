package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/verify"
	"github.com/cairnlabs/cairn/wire"
)

// TestValidationSlashesPoisoner: with the aggregator validating every
// contribution (p = 1), three honest workers pass every round, bitwise,
// and are paid the whole emission; a poisoner (zeros, then noise), which
// cannot show the state it trained from, fails, is slashed below the
// minimum stake, is refused from then on and is paid nothing after.
func TestValidationSlashesPoisoner(t *testing.T) {
	cfg := tinyConfig(4)
	p := testLedgerParams
	var dirs []string
	var accts []ledger.GenesisAccount
	for i := 0; i < 3; i++ {
		dir, k := identity(t)
		dirs = append(dirs, dir)
		accts = append(accts, ledger.GenesisAccount{Key: k, Stake: p.MinStake})
	}
	evilKey, err := p2p.LoadIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	lk, _ := p2p.LedgerKey(evilKey)
	accts = append(accts, ledger.GenesisAccount{Key: ledger.KeyOf(lk), Stake: p.MinStake})
	sample := verify.DefaultSampleOptions()
	sample.P = 1
	agg, err := StartAggregator(AggregatorOptions{DataDir: t.TempDir(), Listen: loopback, Config: cfg, Text: testText(), EvalBatches: 1, Threads: 1,
		Grace: 200 * time.Millisecond, Log: testLog(t), Ledger: &p, BlockInterval: 100 * time.Millisecond, Accounts: accts,
		Validation: &ValidationOptions{Sample: sample}})
	if err != nil {
		t.Fatal(err)
	}
	defer agg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	x := newAttackerWithKey(t, agg.Addrs()[0], evilKey)
	poison := make(chan error, 1)
	go func() { poison <- x.poisoner(agg, cfg) }()
	var workers []*Worker
	for _, dir := range dirs {
		w, err := StartWorker(WorkerOptions{DataDir: dir, Listen: loopback, Join: agg.Addrs()[0], Text: testText(), Threads: 1, Log: testLog(t)})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		workers = append(workers, w)
	}
	errs := runAll(t, ctx, agg, workers)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	x.stop()
	<-poison
	st := agg.ValidatorStats()
	agg.Close()
	ids := []string{workers[0].ID(), workers[1].ID(), workers[2].ID(), x.h.ID().String()}
	ll := closedLedger(t, agg.opts.DataDir, ids...)
	evil := accts[3].Key
	caught := -1
	for _, r := range ll.Rounds {
		for _, v := range r.Verdicts {
			switch {
			case v.Worker == evil && v.Outcome == ledger.Failed:
				if v.Slashed == 0 {
					t.Errorf("round %d: the poisoner failed but was not slashed", r.Round)
				}
				if caught < 0 {
					caught = int(r.Round)
				}
			case v.Worker == evil:
				t.Errorf("round %d: the poisoner's contribution was judged %v", r.Round, v.Outcome)
			case v.Outcome != ledger.Passed || v.Slashed != 0:
				t.Errorf("round %d: honest %s judged %v (slashed %d): %s", r.Round, v.Worker, v.Outcome, v.Slashed, v.Reason)
			}
		}
	}
	if caught != 0 {
		t.Fatalf("the poisoner was first caught in round %d, want round 0", caught)
	}
	for i, a := range ll.Accounts {
		switch {
		case i < 3 && (a.Account.Stake != p.MinStake || a.Rounds != 4):
			t.Errorf("honest worker %d: stake %d, paid in %d of 4 rounds", i, a.Account.Stake, a.Rounds)
		case i == 3 && (a.Reward != 0 || a.Account.Stake >= p.MinStake):
			t.Errorf("the poisoner was paid %d and keeps a stake of %d", a.Reward, a.Account.Stake)
		}
	}
	if st.Checked < 12 || st.Failed < 1 || st.Busy <= 0 || st.Screening <= 0 {
		t.Fatalf("validator stats %+v: want the 12 honest contributions and the poisoner's checked", st)
	}
}

func TestRetryReveal(t *testing.T) {
	ctx := context.Background()
	calls := 0
	flaky := func(context.Context) ([]byte, error) {
		if calls++; calls < 3 {
			return nil, errors.New("stream reset")
		}
		return []byte("state"), nil
	}
	warned := 0
	b, err := retryReveal(ctx, 3, time.Millisecond, flaky, func(int, error) { warned++ })
	if err != nil || string(b) != "state" || calls != 3 || warned != 2 {
		t.Fatalf("flaky worker: %q %v after %d calls, %d warnings", b, err, calls, warned)
	}
	calls = 0
	refusing := func(context.Context) ([]byte, error) {
		calls++
		return nil, &wire.RemoteError{Msg: "no state kept for round 3"}
	}
	if _, err := retryReveal(ctx, 3, time.Millisecond, refusing, func(int, error) {}); err == nil || calls != 1 {
		t.Fatalf("a refusal was asked again: %d calls, %v", calls, err)
	}
	calls = 0
	gone := func(context.Context) ([]byte, error) { calls++; return nil, errors.New("no route") }
	if _, err := retryReveal(ctx, 3, time.Millisecond, gone, func(int, error) {}); err == nil || calls != 3 {
		t.Fatalf("an unreachable worker: %d calls, %v", calls, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := retryReveal(cctx, 3, time.Hour, gone, func(int, error) {}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// Workers that leave as soon as they hear the run is over (as a worker
// process exits) are still there to reveal their last rounds' start
// states: a finished run answers Wait until every round is settled, so
// no honest worker fails verification for having left.
func TestFinishedRunKeepsWorkersForTheirReveals(t *testing.T) {
	cfg := tinyConfig(3)
	cfg.InnerSteps = 60 // recomputing takes a while: the last rounds are judged after the workers would have left
	p := testLedgerParams
	var dirs []string
	var accts []ledger.GenesisAccount
	for i := 0; i < 2; i++ {
		dir, k := identity(t)
		dirs = append(dirs, dir)
		accts = append(accts, ledger.GenesisAccount{Key: k, Stake: p.MinStake})
	}
	sample := verify.DefaultSampleOptions()
	sample.P = 1 // every contribution recomputed, the last rounds' too
	agg, err := StartAggregator(AggregatorOptions{DataDir: t.TempDir(), Listen: loopback, Config: cfg, Text: testText(), EvalBatches: 1, Threads: 1,
		Grace: 200 * time.Millisecond, Log: testLog(t), Ledger: &p, BlockInterval: 100 * time.Millisecond, Accounts: accts,
		Validation: &ValidationOptions{Sample: sample}})
	if err != nil {
		t.Fatal(err)
	}
	defer agg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	errs := make(chan error, 3)
	var ids []string
	for _, dir := range dirs {
		w, err := StartWorker(WorkerOptions{DataDir: dir, Listen: loopback, Join: agg.Addrs()[0], Text: testText(), Threads: 1, Log: testLog(t)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, w.ID())
		go func() {
			err := w.Run(ctx)
			w.Close() // gone at once, as a process that exits
			errs <- err
		}()
	}
	go func() { errs <- agg.Run(ctx) }()
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	st := agg.ValidatorStats()
	agg.Close()
	ll := closedLedger(t, agg.opts.DataDir, ids...)
	for _, r := range ll.Rounds {
		for _, v := range r.Verdicts {
			if v.Outcome == ledger.Failed {
				t.Fatalf("round %d: honest worker %s failed verification: %s", r.Round, v.Worker, v.Reason)
			}
		}
	}
	if st.Checked != 2*cfg.Rounds || st.Failed != 0 || ll.Totals.NextSettle != uint64(cfg.Rounds) {
		t.Fatalf("validator %+v, settled below %d", st, ll.Totals.NextSettle)
	}
}
