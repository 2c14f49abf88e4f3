package node

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/diloco"
)

func TestPace(t *testing.T) {
	var p pace
	if p.budget(10*time.Second, 1e6, 0) != 10*time.Second-2*time.Second-200*time.Millisecond {
		t.Fatalf("budget before any measurement: %v", p.budget(10*time.Second, 1e6, 0))
	}
	if got := p.uploadTime(1e6, 250e3); got != 4*time.Second {
		t.Fatalf("upload at a 250 kB/s link: %v", got)
	}
	p.observeUpload(500e3, 100*time.Millisecond) // 5 MB/s, 0.5 MB
	if got := p.uploadTime(1e6, 0); got != 100*time.Millisecond {
		t.Fatalf("upload after a measurement: %v", got)
	}
	p.observeStep(100 * time.Millisecond)
	p.observeStep(200 * time.Millisecond)
	if p.step != 130*time.Millisecond {
		t.Fatalf("step average %v", p.step)
	}
	if !p.more(870*time.Millisecond, time.Second) || p.more(871*time.Millisecond, time.Second) {
		t.Fatal("a step of 130 ms fits in 1 s after 870 ms, not after 871 ms")
	}
}

// TestSlowWorkerFitsDeadline: a worker at a sixth of its peers' speed
// (H steps take it over twice the deadline) fits its steps to the
// deadline and contributes in most rounds (at least 80%; without fitting
// it would contribute in none), weighted by the tokens it claims; no
// round runs much past its deadline for it (the margin, 300 ms, covers a
// loaded machine's late timers and is still well short of the second a
// round that waited for its H steps would take), and the others
// contribute every round.
func TestSlowWorkerFitsDeadline(t *testing.T) {
	cfg := tinyConfig(10)
	cfg.InnerSteps = 16
	cfg.RoundTimeout = diloco.Duration(400 * time.Millisecond)
	var mu sync.Mutex
	var rounds []RoundInfo
	agg := startAggregator(t, t.TempDir(), cfg, func(r RoundInfo) { mu.Lock(); rounds = append(rounds, r); mu.Unlock() })
	defer agg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sleeper := func(d time.Duration) func(int, int, float32) {
		return func(int, int, float32) { time.Sleep(d) }
	}
	var workers []*Worker
	for i := 0; i < 4; i++ {
		d := 10 * time.Millisecond // H steps in ~180 ms
		if i == 3 {
			d = 60 * time.Millisecond // H steps in ~1 s: far past the deadline
		}
		w, err := StartWorker(WorkerOptions{DataDir: t.TempDir(), Listen: loopback, Join: agg.Addrs()[0], Text: testText(), Threads: 1,
			OnStep: sleeper(d), Log: testLog(t)})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		workers = append(workers, w)
	}
	errs := runAll(t, ctx, agg, workers)
	for range 5 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	slow := workers[3]
	in := func(r RoundInfo, id string) bool {
		for _, c := range r.Contributors {
			if c == id {
				return true
			}
		}
		return false
	}
	mu.Lock()
	defer mu.Unlock()
	slowRounds := 0
	for _, r := range rounds {
		if in(r, slow.ID()) {
			slowRounds++
		}
		for _, w := range workers[:3] {
			if !in(r, w.ID()) {
				t.Errorf("round %d: a fast worker did not contribute", r.Round)
			}
		}
		if r.Took > time.Duration(cfg.RoundTimeout)+300*time.Millisecond {
			t.Errorf("round %d took %v, deadline %v", r.Round, r.Took, time.Duration(cfg.RoundTimeout))
		}
	}
	st := slow.Stats()
	t.Logf("slow worker: %d of %d rounds, %d inner steps (a full round is %d), %d tokens; refused %d", slowRounds, len(rounds), st.Steps, cfg.InnerSteps, st.Tokens, st.Refused)
	if len(rounds) != cfg.Rounds || slowRounds*10 < 8*len(rounds) {
		t.Fatalf("the slow worker contributed to %d of %d rounds, want at least 80%%", slowRounds, len(rounds))
	}
	if st.Steps >= st.Rounds*cfg.InnerSteps || st.Tokens != int64(st.Steps*cfg.TokensPerStep()) {
		t.Fatalf("the slow worker trained %d steps in %d contributions and claimed %d tokens: it did not fit its rounds", st.Steps, st.Rounds, st.Tokens)
	}
}
