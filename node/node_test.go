package node

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/gpt"
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

func testLog(t *testing.T) *slog.Logger {
	if os.Getenv("CAIRN_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

func startAggregator(t *testing.T, dir string, cfg diloco.RunConfig, onRound func(RoundInfo)) *Aggregator {
	t.Helper()
	a, err := StartAggregator(AggregatorOptions{DataDir: dir, Listen: loopback, Config: cfg, Text: testText(),
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
	agg := startAggregator(t, t.TempDir(), cfg, func(r RoundInfo) { mu.Lock(); rounds = append(rounds, r); mu.Unlock() })
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
}
