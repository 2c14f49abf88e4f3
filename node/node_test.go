package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/metrics"
	"github.com/cairnlabs/cairn/p2p"
)

var loopback = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}

func testText() []byte { return corpus.TinyShakespeare()[:100000] }

func tinyConfig(rounds int) diloco.RunConfig {
	c := diloco.DefaultConfig()
	c.Model = gpt.DefaultConfig(16, 1, 2, 16)
	c.Batch, c.InnerSteps, c.Rounds, c.Warmup = 2, 4, rounds, 2
	c.RoundTimeout = diloco.Duration(20 * time.Second)
	c.DataHash = DataHash(testText())
	return c
}

// openRun is the default ledger rules without a minimum stake: every
// worker takes part, as in the tests that are not about stakes.
func openRun() *LedgerParams {
	p := DefaultLedgerParams()
	p.MinStake = 0
	return &p
}

func testLog(t *testing.T) *slog.Logger {
	if os.Getenv("CAIRN_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

func startAggregator(t *testing.T, dir string, cfg diloco.RunConfig, onRound func(RoundInfo)) *Aggregator {
	t.Helper()
	a, err := StartAggregator(AggregatorOptions{Ledger: openRun(), DataDir: dir, Listen: loopback, Config: cfg, Text: testText(),
		EvalBatches: 2, Threads: 1, Grace: 200 * time.Millisecond, Log: testLog(t), OnRound: onRound})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func startWorker(t *testing.T, join string) *Worker {
	t.Helper()
	w, err := StartWorker(WorkerOptions{DataDir: t.TempDir(), Listen: loopback, Join: join, Text: testText(), Threads: 1, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// TestRunOverLoopback: an aggregator and three workers finish a run over
// real libp2p connections and all hold the same final weights.
func TestRunOverLoopback(t *testing.T) {
	cfg := tinyConfig(4)
	var mu sync.Mutex
	var rounds []RoundInfo
	reg := metrics.NewRegistry()
	agg, err := StartAggregator(AggregatorOptions{Ledger: openRun(), DataDir: t.TempDir(), Listen: loopback, Config: cfg, Text: testText(),
		EvalBatches: 2, Threads: 1, Grace: 200 * time.Millisecond, Log: testLog(t), Metrics: reg,
		OnRound: func(r RoundInfo) { mu.Lock(); rounds = append(rounds, r); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	defer agg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var workers []*Worker
	for i := 0; i < 3; i++ {
		workers = append(workers, startWorker(t, agg.Addrs()[0]))
	}
	errs := make(chan error, 4)
	for _, w := range workers {
		go func() { errs <- w.Run(ctx) }()
	}
	go func() { errs <- agg.Run(ctx) }()
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	theta, round := agg.Weights()
	if round != 4 {
		t.Fatalf("aggregator at round %d, want 4", round)
	}
	want := diloco.HashWeights(4, theta)
	for _, w := range workers {
		if w.w.Round() != 4 || w.w.Hash() != want {
			t.Fatalf("worker at round %d hash %s, aggregator %s", w.w.Round(), w.w.Hash(), want)
		}
	}
	if len(rounds) != 4 {
		t.Fatalf("%d rounds reported", len(rounds))
	}
	for _, r := range rounds {
		if len(r.Contributors) != 3 {
			t.Fatalf("round %d aggregated %d contributions, want 3", r.Round, len(r.Contributors))
		}
	}
	if rounds[3].ValLoss >= rounds[0].ValLoss {
		t.Fatalf("validation loss did not fall: %v then %v", rounds[0].ValLoss, rounds[3].ValLoss)
	}
	var page strings.Builder
	reg.WriteTo(&page)
	for _, want := range []string{"cairn_round 4\n", "cairn_val_loss " + fmt.Sprint(rounds[3].ValLoss) + "\n", "cairn_contributions_total 12\n"} {
		if !strings.Contains(page.String(), want) {
			t.Fatalf("metrics lack %q:\n%s", want, page.String())
		}
	}
	if !strings.Contains(page.String(), "cairn_bytes_received_total ") || strings.Contains(page.String(), "cairn_bytes_received_total 0\n") {
		t.Fatalf("no bytes counted:\n%s", page.String())
	}
}

func runAll(t *testing.T, ctx context.Context, agg *Aggregator, workers []*Worker) chan error {
	errs := make(chan error, len(workers)+1)
	for _, w := range workers {
		go func() { errs <- w.Run(ctx) }()
	}
	go func() { errs <- agg.Run(ctx) }()
	return errs
}

// TestWorkerCrashDoesNotStallRound: a worker that dies in the middle of a
// round (its host closes, as a SIGKILL would) does not hold the round up:
// it closes with the others' contributions long before its deadline.
func TestWorkerCrashDoesNotStallRound(t *testing.T) {
	cfg := tinyConfig(3)
	cfg.RoundTimeout = diloco.Duration(30 * time.Second)
	var mu sync.Mutex
	var rounds []RoundInfo
	agg := startAggregator(t, t.TempDir(), cfg, func(r RoundInfo) { mu.Lock(); rounds = append(rounds, r); mu.Unlock() })
	defer agg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, b := startWorker(t, agg.Addrs()[0]), startWorker(t, agg.Addrs()[0])
	victimCtx, kill := context.WithCancel(ctx)
	victim, err := StartWorker(WorkerOptions{DataDir: t.TempDir(), Listen: loopback, Join: agg.Addrs()[0], Text: testText(), Threads: 1,
		OnStep: func(round, step int, _ float32) {
			if round == 1 && step == 1 {
				kill()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	victimDone := make(chan struct{})
	go func() {
		victim.Run(victimCtx)
		victim.Close() // the process is gone: its connections drop
		close(victimDone)
	}()
	start := time.Now()
	errs := runAll(t, ctx, agg, []*Worker{a, b})
	for i := 0; i < 3; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	<-victimDone
	if el := time.Since(start); el > 20*time.Second {
		t.Fatalf("run took %v: the crashed worker stalled a round", el)
	}
	if len(rounds[0].Contributors) != 3 || len(rounds[1].Contributors) != 2 || len(rounds[2].Contributors) != 2 {
		t.Fatalf("contributors per round: %d %d %d, want 3 2 2", len(rounds[0].Contributors), len(rounds[1].Contributors), len(rounds[2].Contributors))
	}
}

// TestLateJoinerContributesNextRound: a worker that joins while round r is
// open fetches the weights from a peer or the aggregator, checks their
// hash and is aggregated in round r+1.
func TestLateJoinerContributesNextRound(t *testing.T) {
	cfg := tinyConfig(8)
	joinerCh := make(chan *Worker, 1)
	var mu sync.Mutex
	var rounds []RoundInfo
	var agg *Aggregator
	agg = startAggregator(t, t.TempDir(), cfg, func(r RoundInfo) {
		mu.Lock()
		rounds = append(rounds, r)
		mu.Unlock()
		if r.Round == 1 { // round 2 is open now
			joinerCh <- startWorker(t, agg.Addrs()[0])
		}
	})
	defer agg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	slow := func(int, int, float32) { time.Sleep(20 * time.Millisecond) } // rounds of ~100 ms
	var early []*Worker
	for i := 0; i < 2; i++ {
		w, err := StartWorker(WorkerOptions{DataDir: t.TempDir(), Listen: loopback, Join: agg.Addrs()[0], Text: testText(), Threads: 1, OnStep: slow})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		early = append(early, w)
	}
	errs := runAll(t, ctx, agg, early)
	joiner := <-joinerCh
	go func() { errs <- joiner.Run(ctx) }()
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	id := joiner.ID()
	in := func(r RoundInfo) bool {
		for _, c := range r.Contributors {
			if c == id {
				return true
			}
		}
		return false
	}
	j := joiner.Stats().JoinRound
	if j < 2 || j+1 >= cfg.Rounds {
		t.Fatalf("joiner joined at round %d, want 2 to %d", j, cfg.Rounds-2)
	}
	if in(rounds[j]) || !in(rounds[j+1]) {
		t.Fatalf("joiner during round %d contributed to rounds %d/%d: %v %v, want false true", j, j, j+1, in(rounds[j]), in(rounds[j+1]))
	}
	if st := joiner.Stats(); st.StateFetches != 1 {
		t.Fatalf("joiner fetched the weights %d times, want 1", st.StateFetches)
	}
	theta, _ := agg.Weights()
	if joiner.w.Hash() != diloco.HashWeights(cfg.Rounds, theta) {
		t.Fatal("joiner's final weights differ from the aggregator's")
	}
}

// TestAggregatorRestartResumes: the aggregator dies after round 1 and a
// new one starts from its data directory on the same address; the workers
// reconnect by themselves and the run resumes from the last completed
// round without a jump in validation loss.
func TestAggregatorRestartResumes(t *testing.T) {
	cfg := tinyConfig(8)
	dir := t.TempDir()
	var mu sync.Mutex
	var rounds []RoundInfo
	record := func(r RoundInfo) { mu.Lock(); rounds = append(rounds, r); mu.Unlock() }
	first := startAggregator(t, dir, cfg, record)
	addr := first.Addrs()[0] // tcp
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	slow := func(int, int, float32) { time.Sleep(40 * time.Millisecond) } // rounds of ~200 ms
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
	firstCtx, crash := context.WithCancel(ctx)
	firstDone := make(chan error, 1)
	go func() { firstDone <- first.Run(firstCtx) }()
	for {
		mu.Lock()
		n := len(rounds)
		mu.Unlock()
		if n >= 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	crash()
	<-firstDone
	first.Close()
	mu.Lock()
	before := rounds[len(rounds)-1]
	mu.Unlock()

	listen := []string{addrWithoutPeer(t, addr)}
	second, err := StartAggregator(AggregatorOptions{Ledger: openRun(), DataDir: dir, Listen: listen, Config: cfg, Text: testText(),
		EvalBatches: 2, Threads: 1, Grace: 200 * time.Millisecond, Log: testLog(t), OnRound: record})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if second.ID() != first.ID() {
		t.Fatal("restarted aggregator has another identity")
	}
	restarted := time.Now()
	if err := second.Run(ctx); err != nil {
		t.Fatal(err)
	}
	// Six rounds of ~200 ms and a final linger of 2 s: a poll that slept
	// through a state change would hold a round up for pollHold (15 s).
	if el := time.Since(restarted); el > pollHold-3*time.Second {
		t.Fatalf("the resumed run took %v", el)
	}
	for range workers {
		if err := <-werrs; err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var resumed *RoundInfo
	for i := range rounds {
		if rounds[i].Resumed {
			resumed = &rounds[i]
		}
	}
	if resumed == nil || resumed.Round < before.Round || resumed.Round >= cfg.Rounds-1 {
		t.Fatalf("no resume report mid-run after round %d: %+v", before.Round, rounds)
	}
	if d := resumed.ValLoss - before.ValLoss; resumed.Round == before.Round && (d > 0.05 || d < -0.05) {
		t.Fatalf("validation loss jumped by %v across the restart", d)
	}
	last := rounds[len(rounds)-1]
	if last.Round != cfg.Rounds-1 {
		t.Fatalf("last round %d, want %d", last.Round, cfg.Rounds-1)
	}
	// Both workers found the new aggregator by themselves (redialing, or
	// reconnecting after an error), contributed to it and ended in step.
	theta, _ := second.Weights()
	for _, w := range workers {
		if st := w.Stats(); st.Rounds <= before.Round+1 {
			t.Fatalf("a worker made %d contributions, none after the restart", st.Rounds)
		}
		if w.w.Hash() != diloco.HashWeights(cfg.Rounds, theta) {
			t.Fatal("a worker ended with other weights than the aggregator")
		}
	}
}

func addrWithoutPeer(t *testing.T, full string) string {
	info, err := p2p.ParseAddr(full)
	if err != nil {
		t.Fatal(err)
	}
	return info.Addrs[0].String()
}

// TestRunFromInitialWeights: a run that starts from given weights (a
// pretrained model) instead of the seed's: workers notice that θ0 is not
// theirs, fetch it, check its hash and train from it.
func TestRunFromInitialWeights(t *testing.T) {
	cfg := tinyConfig(2)
	init := diloco.InitialWeights(cfg)
	for i := range init {
		init[i] *= 0.5
	}
	agg, err := StartAggregator(AggregatorOptions{Ledger: openRun(), DataDir: t.TempDir(), Listen: loopback, Config: cfg, Init: init, Text: testText(),
		EvalBatches: 2, Threads: 1, Grace: 200 * time.Millisecond, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer agg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	workers := []*Worker{startWorker(t, agg.Addrs()[0]), startWorker(t, agg.Addrs()[0])}
	errs := runAll(t, ctx, agg, workers)
	for i := 0; i < 3; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	theta, _ := agg.Weights()
	for _, w := range workers {
		if st := w.Stats(); st.StateFetches != 1 || st.Rounds != 2 {
			t.Fatalf("worker fetched θ0 %d times and contributed %d times", st.StateFetches, st.Rounds)
		}
		if w.w.Hash() != diloco.HashWeights(2, theta) {
			t.Fatal("worker ended with other weights")
		}
	}
}

// TestPeerServesWeights: a worker hands its verified weights to a peer
// that asks by hash, and refuses a hash it does not hold.
func TestPeerServesWeights(t *testing.T) {
	cfg := tinyConfig(1)
	agg := startAggregator(t, t.TempDir(), cfg, nil)
	defer agg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	holder, asker := startWorker(t, agg.Addrs()[0]), startWorker(t, agg.Addrs()[0])
	if err := holder.setup(cfg); err != nil {
		t.Fatal(err)
	}
	theta := diloco.InitialWeights(cfg)
	hash := diloco.HashWeights(0, theta)
	if err := holder.w.SetWeights(0, theta, hash); err != nil {
		t.Fatal(err)
	}
	holder.publishWeights()
	if err := asker.setup(cfg); err != nil {
		t.Fatal(err)
	}
	id, err := asker.tr.Connect(ctx, holder.Addrs()[0])
	if err != nil || id != holder.ID() {
		t.Fatalf("connect to the holder: %v", err)
	}
	if err := asker.fetchFrom(ctx, id, 0, diloco.Hash{1}, true); err == nil {
		t.Fatal("a peer served weights it does not hold")
	}
	if err := asker.fetchFrom(ctx, id, 0, hash, true); err != nil {
		t.Fatal(err)
	}
	if asker.w.Round() != 0 || asker.w.Hash() != hash {
		t.Fatal("fetched weights were not installed")
	}
}

// TestRunLocalIsReproducible: a whole network in one process, with
// identities derived from the run seed, ends with bitwise the same weights
// every time. Its ledger records every accepted contribution's commit,
// each round's result and settlement; the rewards of each round add up to
// exactly its emission and are the workers' balances (they start at 0).
func TestRunLocalIsReproducible(t *testing.T) {
	cfg := tinyConfig(2)
	run := func() []float32 {
		reg := metrics.NewRegistry()
		res, err := RunLocal(context.Background(), LocalOptions{Config: cfg, Text: testText(), Workers: 2, EvalBatches: 1, Log: testLog(t), Metrics: reg})
		if err != nil {
			t.Fatal(err)
		}
		if got := reg.Gauge("cairn_round", "").Value(); got != 2 {
			t.Fatalf("the aggregator's metrics say round %v, want 2", got)
		}
		if res.Contributed != 4 {
			t.Fatalf("%d contributions, want 4", res.Contributed)
		}
		l := res.Ledger
		if l.Invariants != nil || l.Verified != nil || l.Totals.OpenRound != 2 || l.Totals.NextSettle != 2 {
			t.Fatalf("ledger: invariants %v, replay %v, totals %+v", l.Invariants, l.Verified, l.Totals)
		}
		commits, accepted := 0, 0
		for _, r := range l.Rounds {
			commits += len(r.Commits)
			accepted += len(r.Result.Accepted)
		}
		if commits != res.Contributed || accepted != res.Contributed {
			t.Fatalf("%d contributions accepted, %d commits and %d accepted on the ledger", res.Contributed, commits, accepted)
		}
		var paid uint64
		for i, a := range l.Accounts {
			paid += a.Reward
			if a.Account.Balance != a.Reward || a.Rounds != 2 || a.Account.Stake != LocalStake(DefaultLedgerParams()) ||
				res.PerWorker[i].Balance != a.Reward || res.PerWorker[i].Stake != a.Account.Stake {
				t.Fatalf("worker %d: %+v, its stats %+v", i, a, res.PerWorker[i])
			}
		}
		if want := 2 * DefaultLedgerParams().EmissionPerRound; paid != want || l.Totals.Minted != want || l.Totals.Burned != 0 {
			t.Fatalf("paid %d, minted %d, want %d", paid, l.Totals.Minted, want)
		}
		return res.Weights
	}
	a, b := run(), run()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("weight %d differs between two identical runs: %v vs %v", i, a[i], b[i])
		}
	}
}
