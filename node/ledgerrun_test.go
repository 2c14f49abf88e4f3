package node

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/metrics"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/store"
)

// logBuf collects a node's log.
type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// identity makes a node's key in a fresh data directory and returns the
// directory and its ledger account.
func identity(t *testing.T) (string, ledger.PubKey) {
	t.Helper()
	dir := t.TempDir()
	key, err := p2p.LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	lk, err := p2p.LedgerKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return dir, ledger.KeyOf(lk)
}

// closedLedger reads an aggregator's chain after it closed, for the
// workers ids, and checks what must hold of every ledger: the supply adds
// up, the file replays from its genesis, every closed round is settled,
// and the rewards of each round add up to exactly its emission.
func closedLedger(t *testing.T, dir string, ids ...string) LocalLedger {
	t.Helper()
	ll, err := readLocalLedger(filepath.Join(dir, store.FileName), ids)
	if err != nil {
		t.Fatal(err)
	}
	if ll.Invariants != nil || ll.Verified != nil {
		t.Fatalf("ledger: invariants %v, replay %v", ll.Invariants, ll.Verified)
	}
	if ll.Totals.NextSettle != ll.Totals.OpenRound {
		t.Fatalf("ledger at open round %d, settled below %d", ll.Totals.OpenRound, ll.Totals.NextSettle)
	}
	var minted uint64
	for _, r := range ll.Rounds {
		if r.Result == nil || r.Status != "settled" || len(r.Verdicts) < len(r.Result.Accepted) {
			t.Fatalf("round %d: %s, result %+v, %d verdicts", r.Round, r.Status, r.Result, len(r.Verdicts))
		}
		accepted := map[ledger.PubKey]bool{}
		for _, c := range r.Result.Accepted {
			accepted[c.Worker] = true
		}
		var paid uint64
		payable := false
		for _, v := range r.Verdicts {
			paid += v.Reward
			if v.Reward > 0 && (!accepted[v.Worker] || v.Outcome == ledger.Failed) {
				t.Fatalf("round %d paid %s, whose contribution was rejected or failed", r.Round, v.Worker)
			}
			payable = payable || accepted[v.Worker] && v.Outcome != ledger.Failed
		}
		minted += paid
		if want := map[bool]uint64{true: ll.EmissionPerRound}[payable]; paid != want {
			t.Fatalf("round %d paid %d in all, not %d (the emission, or nothing when nothing is payable)", r.Round, paid, want)
		}
	}
	if minted != ll.Totals.Minted {
		t.Fatalf("the rounds paid %d, the ledger minted %d", minted, ll.Totals.Minted)
	}
	return ll
}

// commitsOf returns a worker's commits, oldest first.
func commitsOf(t *testing.T, ll LocalLedger, id string) []ledger.CommitRecord {
	t.Helper()
	k, err := p2p.AccountOf(id)
	if err != nil {
		t.Fatal(err)
	}
	var out []ledger.CommitRecord
	for _, r := range ll.Rounds {
		for _, c := range r.Commits {
			if c.Worker == k {
				out = append(out, c)
			}
		}
	}
	return out
}

// wantContinuous checks that a worker's commits chain its local state:
// the first is a fresh start, every later one starts where the one
// before ended.
func wantContinuous(t *testing.T, who string, cs []ledger.CommitRecord) {
	t.Helper()
	for i, c := range cs {
		if i == 0 && !c.Fresh || i > 0 && (c.Fresh || c.StartState != cs[i-1].EndState) {
			t.Fatalf("%s's commit %d (round %d): fresh %v, start %s after the end %s of round %d", who, i, c.Round, c.Fresh, c.StartState,
				cs[max(i-1, 0)].EndState, cs[max(i-1, 0)].Round)
		}
	}
}

// TestStakeAdmission: in a run with a minimum stake, a worker staked at
// genesis takes part, one funded at genesis bonds the minimum by itself
// and takes part, and one with neither is refused with the reason (its
// stake, the minimum, what to do), which its log shows, and stops by
// itself once its AdmissionPatience has passed, saying why. The staked
// workers' balances are their rewards, which add up to the emission.
func TestStakeAdmission(t *testing.T) {
	cfg := tinyConfig(2)
	adir, a := identity(t)
	bdir, b := identity(t)
	cdir, _ := identity(t)
	p := testLedgerParams
	agg, err := StartAggregator(AggregatorOptions{DataDir: t.TempDir(), Listen: loopback, Config: cfg, Text: testText(), EvalBatches: 1, Threads: 1,
		Grace: 200 * time.Millisecond, Log: testLog(t), Ledger: &p, BlockInterval: 100 * time.Millisecond,
		Accounts: []ledger.GenesisAccount{{Key: a, Stake: p.MinStake}, {Key: b, Balance: p.MinStake + 50}}})
	if err != nil {
		t.Fatal(err)
	}
	defer agg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var workers []*Worker
	reg := metrics.NewRegistry()
	for _, dir := range []string{adir, bdir} {
		w, err := StartWorker(WorkerOptions{DataDir: dir, Listen: loopback, Join: agg.Addrs()[0], Text: testText(), Threads: 1, Log: testLog(t), Metrics: reg})
		reg = nil // the first worker's
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		workers = append(workers, w)
	}
	var clog logBuf
	c, err := StartWorker(WorkerOptions{DataDir: cdir, Listen: loopback, Join: agg.Addrs()[0], Text: testText(), Threads: 1,
		Log: slog.New(slog.NewTextHandler(&clog, nil)), AdmissionPatience: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cdone := make(chan error, 1)
	go func() { cdone <- c.Run(ctx) }()
	errs := runAll(t, ctx, agg, workers)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	want := "has a stake of 0 units, below this run's minimum of 100: it needs 100 more bonded"
	if err := <-cdone; !errors.Is(err, ErrNotAdmitted) || !strings.Contains(err.Error(), want) {
		t.Fatalf("the unstaked worker ended with %v, want it to stop saying why it is not admitted", err)
	}
	if st := c.Stats(); st.Rounds != 0 {
		t.Fatalf("the unstaked worker contributed %d times", st.Rounds)
	}
	if !strings.Contains(clog.String(), want) || !strings.Contains(clog.String(), "--stake "+c.ID()+"=100") {
		t.Fatalf("the unstaked worker's log does not say why it is refused:\n%s", clog.String())
	}
	agg.Close()
	ll := closedLedger(t, agg.opts.DataDir, workers[0].ID(), workers[1].ID())
	for i, w := range workers {
		st, acct := w.Stats(), ll.Accounts[i]
		if st.Rounds != 2 || acct.Rounds != 2 || acct.Account.Stake != p.MinStake {
			t.Fatalf("worker %d: %d contributions, paid in %d rounds, stake %d", i, st.Rounds, acct.Rounds, acct.Account.Stake)
		}
		if st.Balance != acct.Account.Balance || st.Stake != acct.Account.Stake {
			t.Fatalf("worker %d read balance %d and stake %d, the ledger holds %d and %d", i, st.Balance, st.Stake, acct.Account.Balance, acct.Account.Stake)
		}
		wantContinuous(t, w.ID(), commitsOf(t, ll, w.ID()))
	}
	if m := workers[0].met; m.Gauge("cairn_balance", "").Value() != float64(ll.Accounts[0].Account.Balance) || m.Gauge("cairn_stake", "").Value() != float64(p.MinStake) {
		t.Fatalf("the first worker's metrics: balance %v, stake %v", m.Gauge("cairn_balance", "").Value(), m.Gauge("cairn_stake", "").Value())
	}
	if ll.Accounts[0].Account.Balance != ll.Accounts[0].Reward || ll.Accounts[1].Account.Balance != 50+ll.Accounts[1].Reward ||
		ll.Accounts[0].Reward+ll.Accounts[1].Reward != 2*p.EmissionPerRound {
		t.Fatalf("accounts %+v", ll.Accounts)
	}
}

// TestCommitsContinueAfterRefusalAndLostAck: a worker whose contribution
// is refused (it arrives after the deadline, before its commit is
// recorded) rolls its local state back, and one whose acknowledgement is
// lost (the stream dies after the aggregator recorded the contribution)
// reconnects; both commit validly afterwards: their commits on the chain
// continue their local state without a fresh start. Each keeps the start
// state of its last SettlementLag+1 accepted contributions, which hashes
// to what it committed.
func TestCommitsContinueAfterRefusalAndLostAck(t *testing.T) {
	cfg := tinyConfig(5)
	cfg.RoundTimeout = diloco.Duration(1500 * time.Millisecond)
	dir := t.TempDir()
	agg := startAggregator(t, dir, cfg, nil)
	defer agg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	slow := func(int, int, float32) { time.Sleep(20 * time.Millisecond) } // rounds of ~100 ms
	late := func(round, step int, _ float32) {
		for round == 1 && step == 0 { // until round 1 has closed without it
			agg.mu.Lock()
			r := agg.agg.Round()
			agg.mu.Unlock()
			if r > 1 || ctx.Err() != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	var workers []*Worker
	for _, on := range []func(int, int, float32){slow, late, slow} {
		w, err := StartWorker(WorkerOptions{DataDir: t.TempDir(), Listen: loopback, Join: agg.Addrs()[0], Text: testText(), Threads: 1, Log: testLog(t), OnStep: on})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		workers = append(workers, w)
	}
	lost := workers[2].ID()
	var dropped atomic.Int32
	agg.dropAck = func(from string, round int) bool {
		return from == lost && round == 1 && dropped.Add(1) == 1
	}
	errs := runAll(t, ctx, agg, workers)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	agg.Close()
	ids := []string{workers[0].ID(), workers[1].ID(), lost}
	ll := closedLedger(t, dir, ids...)
	if st := workers[1].Stats(); st.Refused == 0 {
		t.Fatal("the late worker was never refused")
	}
	if st := workers[2].Stats(); st.Reconnects == 0 || dropped.Load() != 1 || st.Rounds != cfg.Rounds {
		t.Fatalf("the worker whose acknowledgement was lost reconnected %d times and counts %d contributions of %d (the resent one acknowledged)",
			st.Reconnects, st.Rounds, cfg.Rounds)
	}
	for i, id := range ids {
		cs := commitsOf(t, ll, id)
		wantContinuous(t, id, cs)
		if i > 0 && (len(cs) < 2 || cs[len(cs)-1].Round <= 1) {
			t.Fatalf("worker %d committed %d times, last in round %d: nothing after round 1", i, len(cs), cs[len(cs)-1].Round)
		}
		if i == 1 {
			for _, c := range cs {
				if c.Round == 1 {
					t.Fatal("the late worker's refused contribution was committed")
				}
			}
		}
		// The reveals: the last SettlementLag+1 accepted contributions.
		w := workers[i]
		rounds := w.Revealable()
		if n := int(DefaultLedgerParams().SettlementLag) + 1; len(rounds) != min(n, w.Stats().Rounds) {
			t.Fatalf("worker %d keeps reveals of rounds %v", i, rounds)
		}
		for _, r := range rounds {
			rv, ok := w.Reveal(r)
			var rec *ledger.CommitRecord
			for j := range cs {
				if cs[j].Round == r {
					rec = &cs[j]
				}
			}
			if !ok || rec == nil || ledger.Hash(rv.Start.Hash()) != rec.StartState || rv.Commit.EndState != rec.EndState || digest(rv.Payload) != rec.DeltaHash {
				t.Fatalf("worker %d's reveal of round %d does not match its commit %+v", i, r, rec)
			}
		}
	}
}

// TestResultRecordedAfterRestart: the aggregator dies after saving a
// closed round and before the block with the round's result (its queued
// commits die with it). The restarted aggregator records the saved result
// (with the commits) before anything else, so the ledger's open round is
// the run's again, and the run finishes with every round recorded and
// settled and every worker's commits continuous.
func TestResultRecordedAfterRestart(t *testing.T) {
	cfg := tinyConfig(4)
	dir := t.TempDir()
	first := startAggregator(t, dir, cfg, nil)
	died := make(chan struct{})
	first.crashAfterSave = func(round int) bool {
		if round == 1 {
			close(died)
			return true
		}
		return false
	}
	addr := first.Addrs()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	slow := func(int, int, float32) { time.Sleep(20 * time.Millisecond) }
	var workers []*Worker
	for i := 0; i < 2; i++ {
		w, err := StartWorker(WorkerOptions{DataDir: t.TempDir(), Listen: loopback, Join: addr, Text: testText(), Threads: 1, OnStep: slow, Log: testLog(t)})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		workers = append(workers, w)
	}
	werrs := make(chan error, 2)
	for _, w := range workers {
		go func() { werrs <- w.Run(ctx) }()
	}
	firstCtx, stop := context.WithCancel(ctx)
	firstDone := make(chan error, 1)
	go func() { firstDone <- first.Run(firstCtx) }()
	<-died
	stop()
	<-firstDone
	first.Close()
	s, err := store.OpenReadOnly(filepath.Join(dir, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	tot, _ := s.Ledger().Totals()
	r1, _ := s.Ledger().Round(1)
	s.Close()
	if tot.OpenRound != 1 || len(r1.Commits) != 0 {
		t.Fatalf("after the crash the ledger has round %d open and %d commits of round 1: the crash came too late", tot.OpenRound, len(r1.Commits))
	}

	second, err := StartAggregator(AggregatorOptions{Ledger: openRun(), DataDir: dir, Listen: []string{addrWithoutPeer(t, addr)}, Config: cfg,
		Text: testText(), EvalBatches: 1, Threads: 1, Grace: 200 * time.Millisecond, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if open, round := second.led.open.Load(), second.agg.Round(); open != 2 || round != 2 {
		t.Fatalf("restarted: ledger round %d open, run at round %d", open, round)
	}
	if err := second.Run(ctx); err != nil {
		t.Fatal(err)
	}
	for range workers {
		if err := <-werrs; err != nil {
			t.Fatal(err)
		}
	}
	second.Close()
	ll := closedLedger(t, dir, workers[0].ID(), workers[1].ID())
	if ll.Totals.OpenRound != 4 || len(ll.Rounds[1].Result.Accepted) != 2 || len(ll.Rounds[1].Commits) != 2 {
		t.Fatalf("after the run: open round %d; round 1 accepted %d of %d commits", ll.Totals.OpenRound, len(ll.Rounds[1].Result.Accepted), len(ll.Rounds[1].Commits))
	}
	for _, w := range workers {
		wantContinuous(t, w.ID(), commitsOf(t, ll, w.ID()))
	}
}

// slowSettler is not ready with a round's verdicts until released.
type slowSettler struct {
	release chan struct{}
	asked   atomic.Int32
}

func (s *slowSettler) Settle(rec ledger.RoundRecord, b ledger.Hash) ([]ledger.Verdict, bool, error) {
	s.asked.Add(1)
	select {
	case <-s.release:
		return SettleUnchecked{}.Settle(rec, b)
	default:
		return nil, false, nil
	}
}

// TestRoundHeldForSettlement: with a settlement lag of 1, round 1 may not
// close before round 0 is settled: while the Settler works, round 1's
// contribution waits (the run does not move on); once the verdicts are
// ready the round closes and the run finishes, every round settled.
func TestRoundHeldForSettlement(t *testing.T) {
	cfg := tinyConfig(3)
	p := testLedgerParams
	p.MinStake = 0
	settler := &slowSettler{release: make(chan struct{})}
	dir := t.TempDir()
	agg, err := StartAggregator(AggregatorOptions{DataDir: dir, Listen: loopback, Config: cfg, Text: testText(), EvalBatches: 1, Threads: 1,
		Grace: 100 * time.Millisecond, Log: testLog(t), Ledger: &p, Settler: settler, BlockInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer agg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w := startWorker(t, agg.Addrs()[0])
	errs := runAll(t, ctx, agg, []*Worker{w})
	held := func() bool {
		agg.mu.Lock()
		defer agg.mu.Unlock()
		return agg.agg.Round() == 1 && agg.agg.Phase() == diloco.Open && agg.agg.Submitted() == 1
	}
	for !held() {
		select {
		case err := <-errs:
			t.Fatalf("the run ended (%v) without waiting for round 0's settlement", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	time.Sleep(300 * time.Millisecond)
	if !held() || settler.asked.Load() < 2 {
		t.Fatalf("round 1 closed before round 0 was settled (the settler was asked %d times)", settler.asked.Load())
	}
	close(settler.release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	agg.Close()
	closedLedger(t, dir, w.ID())
}

// TestLedgerHostKeepsRoomForItsOwn: peers' transactions fill the mempool
// only up to the host's reserve, so a flood cannot keep the aggregator's
// round result out.
func TestLedgerHostKeepsRoomForItsOwn(t *testing.T) {
	n := newLedgerNet(t, 1, LedgerHostOptions{MaxPool: 16})
	ctx := context.Background()
	c := n.client(t, 0)
	for i := 0; i < 14; i++ {
		if err := c.Transfer(ctx, n.agg.acct(), 1); err != nil {
			t.Fatalf("transfer %d: %v", i, err)
		}
	}
	if err := c.Transfer(ctx, n.agg.acct(), 1); !errors.Is(err, ledger.ErrMempoolFull) {
		t.Fatalf("a peer's transaction beyond its share: %v", err)
	}
	if _, err := n.host.SubmitResult(&ledger.ResultTx{Round: 0}); err != nil {
		t.Fatalf("the host's own result with the peers' share full: %v", err)
	}
}

// FuzzDecodeSavedResult: a saved result that decodes re-encodes to one
// that decodes the same; nothing panics.
func FuzzDecodeSavedResult(f *testing.F) {
	f.Add([]byte(`{"round":3,"model_hash":"` + strings.Repeat("ab", 32) + `","accepted":[],"rejected":[{"worker":"` + strings.Repeat("01", 32) + `","reason":"late"}],"commits":["AQID"]}`))
	f.Add([]byte(`{"commits":[""]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeSavedResult(b)
		if err != nil {
			return
		}
		again, err := decodeSavedResult(mustJSON(t, s))
		if err != nil {
			t.Fatalf("re-encoded result does not decode: %v", err)
		}
		if string(mustJSON(t, again)) != string(mustJSON(t, s)) {
			t.Fatal("re-encoded result decodes differently")
		}
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
