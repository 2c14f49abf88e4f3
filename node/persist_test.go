package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/safetensors"
)

// TestRoundDurableBeforeWorkersHearOfIt: whenever a worker starts training
// round r, the aggregator's state file on disk already holds round r,
// although the save is slow: workers are only told of a round once it is
// durable.
func TestRoundDurableBeforeWorkersHearOfIt(t *testing.T) {
	cfg := tinyConfig(3)
	dir := t.TempDir()
	agg := startAggregator(t, dir, cfg, nil)
	defer agg.Close()
	slowSave := agg.saveState
	agg.saveState = func(s *savedState) error {
		time.Sleep(200 * time.Millisecond)
		return slowSave(s)
	}
	var mu sync.Mutex
	var problems []string
	checked := 0
	onStep := func(round, step int, _ float32) {
		if round == 0 || step != 0 {
			return
		}
		f, err := safetensors.ReadFile(filepath.Join(dir, StateFile))
		mu.Lock()
		defer mu.Unlock()
		checked++
		if err != nil {
			problems = append(problems, err.Error())
			return
		}
		if saved, _ := strconv.Atoi(f.Metadata["round"]); saved < round {
			problems = append(problems, "training round "+strconv.Itoa(round)+" while the state on disk is round "+f.Metadata["round"])
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var workers []*Worker
	for i := 0; i < 2; i++ {
		w, err := StartWorker(WorkerOptions{DataDir: t.TempDir(), Listen: loopback, Join: agg.Addrs()[0], Text: testText(), Threads: 1, OnStep: onStep, Log: testLog(t)})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		workers = append(workers, w)
	}
	errs := runAll(t, ctx, agg, workers)
	for i := 0; i < 3; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if checked < 4 || len(problems) > 0 {
		t.Fatalf("%d round starts checked; %v", checked, problems)
	}
}

// TestFailedSaveStopsAggregator: when the state cannot be written (its
// path is taken by a directory: a disk failure even root cannot write
// through), the closed round is never handed to a worker; after its
// retries the aggregator stops with an error that says so.
func TestFailedSaveStopsAggregator(t *testing.T) {
	cfg := tinyConfig(3)
	dir := t.TempDir()
	var reported atomic.Int32
	agg := startAggregator(t, dir, cfg, func(RoundInfo) { reported.Add(1) })
	defer agg.Close()
	agg.saveAttempts, agg.saveBackoff = 3, 10*time.Millisecond
	blocker := filepath.Join(dir, StateFile)
	if err := os.MkdirAll(filepath.Join(blocker, "in-the-way"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	workers := []*Worker{startWorker(t, agg.Addrs()[0]), startWorker(t, agg.Addrs()[0])}
	wctx, stopWorkers := context.WithCancel(ctx)
	werrs := make(chan error, 2)
	for _, w := range workers {
		go func() { werrs <- w.Run(wctx) }()
	}
	err := agg.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "failed 3 times") || !strings.Contains(err.Error(), "not published") || !strings.Contains(err.Error(), blocker) {
		t.Fatalf("aggregator with a failing disk: %v", err)
	}
	time.Sleep(200 * time.Millisecond) // anything published would reach the workers now
	stopWorkers()
	agg.Close() // the process exits: the workers' held polls end
	for range workers {
		if err := <-werrs; err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	}
	for _, w := range workers {
		if r := w.w.Round(); r != 0 {
			t.Fatalf("a worker moved to round %d, which was never saved", r)
		}
		if st := w.Stats(); st.Rounds != 1 {
			t.Fatalf("a worker contributed %d times, want once (round 0)", st.Rounds)
		}
	}
	if reported.Load() != 0 {
		t.Fatal("an unsaved round was reported")
	}
}

// TestTransientSaveFailureRetried: a save that fails twice and then works
// delays the round; the run goes on and finishes.
func TestTransientSaveFailureRetried(t *testing.T) {
	cfg := tinyConfig(2)
	agg := startAggregator(t, t.TempDir(), cfg, nil)
	defer agg.Close()
	agg.saveBackoff = 10 * time.Millisecond
	var fails atomic.Int32
	save := agg.saveState
	agg.saveState = func(s *savedState) error {
		if fails.Add(1) <= 2 {
			return errors.New("disk full")
		}
		return save(s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	workers := []*Worker{startWorker(t, agg.Addrs()[0])}
	errs := runAll(t, ctx, agg, workers)
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	theta, round := agg.Weights()
	if round != 2 || workers[0].w.Hash() != diloco.HashWeights(2, theta) || fails.Load() != 4 {
		t.Fatalf("round %d, %d save attempts", round, fails.Load())
	}
}
