package diloco

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
)

func tinyCfg(codec compress.Codec) RunConfig {
	c := DefaultConfig()
	c.Model = gpt.DefaultConfig(8, 1, 2, 8)
	c.Batch, c.InnerSteps, c.Rounds, c.Warmup = 2, 3, 3, 1
	c.Codec = codec
	c.RoundTimeout = Duration(10 * time.Second)
	return c
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// mustTick ticks a and, as a node does once the state is durable,
// publishes a round that closed.
func mustTick(t *testing.T, a *Aggregator, now time.Time) Event {
	t.Helper()
	ev, err := a.Tick(now)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Closed != nil {
		if a.Phase() != Unpublished {
			t.Fatalf("a closed round is %v before Publish", a.Phase())
		}
		ev.Opened = a.Publish(now).Opened
	}
	return ev
}

func constDelta(n int, v float32) []float32 {
	d := make([]float32, n)
	for i := range d {
		d[i] = v * float32(1+i%5)
	}
	return d
}

func encode(t *testing.T, c compress.Codec, d []float32) []byte {
	t.Helper()
	p, err := compress.NewEncoder(c, len(d)).Encode(d)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRoundLifecycle replays a script: two workers poll, the round opens
// after the grace period, both contribute, the round closes and the outer
// Nesterov step moves θ by exactly lr·(1+μ)·Δ on the first round (fp32, so
// the arithmetic is visible), weighted by tokens (two contributions within
// the clipping bound: the robust aggregate is their weighted mean).
func TestRoundLifecycle(t *testing.T) {
	cfg := tinyCfg(compress.FP32)
	cfg.InnerSteps = 4 // contributions of 1 and 3 steps: weights 1/4 and 3/4
	a, err := NewAggregator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.Grace = time.Second
	n := cfg.Model.NumParams()
	theta0 := append([]float32(nil), a.Weights()...)
	h0 := a.Hash()
	if h0 != HashWeights(0, InitialWeights(cfg)) {
		t.Fatal("round 0 weights are not the seed's")
	}
	for _, id := range []string{"a", "b"} {
		if r := a.Poll(id, 0, h0, at(0)); r.Action != Wait {
			t.Fatalf("poll before the round opens: %v", r.Action)
		}
	}
	mustTick(t, a, at(0)) // quorum reached: the grace period starts
	if ev := mustTick(t, a, at(0.5)); ev.Opened {
		t.Fatal("opened before the grace period ended")
	}
	if ev := mustTick(t, a, at(1.1)); !ev.Opened || a.Phase() != Open {
		t.Fatal("did not open after the grace period")
	}
	if r := a.Poll("a", 0, h0, at(1.2)); r.Action != Train || r.Deadline <= 0 {
		t.Fatalf("participant told %v", r.Action)
	}
	if r := a.Poll("late", 0, h0, at(1.2)); r.Action != Wait {
		t.Fatalf("a worker that arrived after the opening was told %v", r.Action)
	}
	da, db := constDelta(n, 0.01), constDelta(n, -0.007)
	tpr := cfg.TokensPerRound()
	if err := a.Submit("a", 0, h0, tpr/4, encode(t, cfg.Codec, da), at(2)); err != nil {
		t.Fatal(err)
	}
	if ev := mustTick(t, a, at(2)); ev.Closed != nil {
		t.Fatal("closed while a participant was still training")
	}
	if err := a.Submit("b", 0, h0, 3*tpr/4, encode(t, cfg.Codec, db), at(3)); err != nil {
		t.Fatal(err)
	}
	ev := mustTick(t, a, at(3))
	if ev.Closed == nil || len(ev.Closed.Contributors) != 2 || ev.Closed.Tokens != tpr {
		t.Fatalf("close: %+v", ev.Closed)
	}
	if !ev.Opened || a.Round() != 1 {
		t.Fatalf("round 1 did not open at once (round %d, %v)", a.Round(), a.Phase())
	}
	lr, mu := cfg.OuterLR, cfg.Momentum
	for i, v := range a.Weights() {
		delta := (0.25*float64(da[i]) + 0.75*float64(db[i]))
		want := float64(theta0[i]) - lr*(1+mu)*delta
		if math.Abs(float64(v)-want) > 1e-6 {
			t.Fatalf("θ1[%d] = %v, want %v", i, v, want)
		}
	}
	if a.Hash() != HashWeights(1, a.Weights()) {
		t.Fatal("hash does not match the weights")
	}
	// A worker one round behind gets the update; applying it reproduces θ1.
	r := a.Poll("late", 0, h0, at(3.1))
	if r.Action != Update {
		t.Fatalf("worker one round behind told %v", r.Action)
	}
	theta := append([]float32(nil), theta0...)
	if err := applyUpdate(theta, make([]float32, n), r.Update); err != nil {
		t.Fatal(err)
	}
	if HashWeights(1, theta) != r.Hash {
		t.Fatal("applying the published update does not give the published hash")
	}
	if r := a.Poll("x", 0, Hash{1}, at(3.1)); r.Action != Resync {
		t.Fatalf("worker with wrong weights told %v", r.Action)
	}
}

// TestDeadlineAndProbation: a participant that never contributes holds the
// round up only until its deadline; afterwards rounds do not wait for it
// until it contributes in time again.
func TestDeadlineAndProbation(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	a, _ := NewAggregator(cfg)
	a.Grace = 0
	n := cfg.Model.NumParams()
	a.Poll("good", 0, a.Hash(), at(0))
	a.Poll("idle", 0, a.Hash(), at(0))
	mustTick(t, a, at(0))
	if err := a.Submit("good", 0, a.Hash(), cfg.TokensPerStep(), encode(t, cfg.Codec, constDelta(n, 0.01)), at(1)); err != nil {
		t.Fatal(err)
	}
	if ev := mustTick(t, a, at(9.9)); ev.Closed != nil {
		t.Fatal("closed before the deadline although a participant is missing")
	}
	ev := mustTick(t, a, at(10))
	if ev.Closed == nil || len(ev.Closed.Missing) != 1 || ev.Closed.Missing[0] != "idle" {
		t.Fatalf("deadline close: %+v", ev.Closed)
	}
	// Round 1: idle polls again (it gets to train) but is not waited for.
	a.Poll("good", 1, a.Hash(), at(10.1))
	if r := a.Poll("idle", 1, a.Hash(), at(10.1)); r.Action != Wait && r.Action != Train {
		t.Fatalf("idle told %v", r.Action)
	}
	if err := a.Submit("good", 1, a.Hash(), cfg.TokensPerStep(), encode(t, cfg.Codec, constDelta(n, 0.011)), at(11)); err != nil {
		t.Fatal(err)
	}
	if ev := mustTick(t, a, at(11)); ev.Closed == nil {
		t.Fatal("round waited for a worker on probation")
	}
}

func TestQuorumReopens(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	cfg.Quorum = 2
	a, _ := NewAggregator(cfg)
	a.Grace = 0
	n := cfg.Model.NumParams()
	a.Poll("a", 0, a.Hash(), at(0))
	if ev := mustTick(t, a, at(0)); ev.Opened {
		t.Fatal("opened with one worker and quorum 2")
	}
	a.Poll("b", 0, a.Hash(), at(1))
	if ev := mustTick(t, a, at(1)); !ev.Opened {
		t.Fatal("did not open at quorum")
	}
	a.Submit("a", 0, a.Hash(), cfg.TokensPerStep(), encode(t, cfg.Codec, constDelta(n, 0.01)), at(2))
	ev := mustTick(t, a, at(11))
	if !ev.Reopened || a.Phase() != Waiting || a.Round() != 0 || a.Submitted() != 1 {
		t.Fatalf("below quorum at the deadline: %+v, phase %v, round %d, %d held", ev, a.Phase(), a.Round(), a.Submitted())
	}
	// The held contribution still counts once a second one arrives.
	a.Poll("c", 0, a.Hash(), at(12))
	mustTick(t, a, at(12))
	if err := a.Submit("c", 0, a.Hash(), cfg.TokensPerStep(), encode(t, cfg.Codec, constDelta(n, 0.02)), at(13)); err != nil {
		t.Fatal(err)
	}
	if ev := mustTick(t, a, at(13)); ev.Closed == nil || len(ev.Closed.Contributors) != 2 {
		t.Fatalf("close after reopening: %+v", ev.Closed)
	}
}

func TestLeaveDoesNotStall(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	a, _ := NewAggregator(cfg)
	a.Grace = 0
	n := cfg.Model.NumParams()
	a.Poll("a", 0, a.Hash(), at(0))
	a.Poll("crashed", 0, a.Hash(), at(0))
	mustTick(t, a, at(0))
	a.Submit("a", 0, a.Hash(), cfg.TokensPerStep(), encode(t, cfg.Codec, constDelta(n, 0.01)), at(1))
	if ev := mustTick(t, a, at(1)); ev.Closed != nil {
		t.Fatal("closed early")
	}
	a.Leave("crashed")
	if ev := mustTick(t, a, at(1.5)); ev.Closed == nil {
		t.Fatal("round waited for a worker that left")
	}
}

func TestSubmitRefusals(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	a, _ := NewAggregator(cfg)
	a.Grace = 0
	n := cfg.Model.NumParams()
	h := a.Hash()
	for _, id := range []string{"a", "x", "p1", "p2", "p3"} {
		a.Poll(id, 0, h, at(0))
	}
	mustTick(t, a, at(0))
	a.Poll("late", 0, h, at(0.5)) // present, but after the round opened
	good := encode(t, cfg.Codec, constDelta(n, 0.01))
	other := encode(t, compress.FP32, constDelta(n, 0.01))
	tps := cfg.TokensPerStep()
	short := encode(t, cfg.Codec, constDelta(n-1, 0.01))
	// A payload refused for what it holds is its worker's answer to the
	// round (TestRefusedPayloadAnswersRound): each gets its own worker.
	cases := []struct {
		who    string
		round  int
		hash   Hash
		tokens int
		p      []byte
		when   float64
		want   string
	}{
		{"x", 1, h, tps, good, 1, "round is 0"},
		{"x", 0, Hash{7}, tps, good, 1, "not the round's"},
		{"x", 0, h, 0, good, 1, "claims 0 tokens"},
		{"x", 0, h, cfg.TokensPerRound() + 1, good, 1, "claims"},
		{"x", 0, h, tps + 1, good, 1, "inner steps of"},
		{"p1", 0, h, tps, other, 1, "fp32"},
		{"p2", 0, h, tps, short, 1, "values"},
		{"p3", 0, h, tps, []byte("garbage"), 1, "compress"},
		{"x", 0, h, tps, good, 10, "after its deadline"},
	}
	for i, c := range cases {
		err := a.Submit(c.who, c.round, c.hash, c.tokens, c.p, at(c.when))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("case %d: %v, want %q", i, err, c.want)
		}
	}
	for _, id := range []string{"late", "stranger"} {
		if err := a.Submit(id, 0, h, cfg.TokensPerStep(), good, at(1)); err == nil || !strings.Contains(err.Error(), "not a participant") {
			t.Errorf("%s: %v, want a refusal as not a participant", id, err)
		}
	}
	if err := a.Submit("a", 0, h, cfg.TokensPerStep(), good, at(1)); err != nil {
		t.Fatal(err)
	}
	if err := a.Submit("a", 0, h, cfg.TokensPerStep(), good, at(1)); err == nil || !strings.Contains(err.Error(), "already") {
		t.Fatalf("duplicate: %v", err)
	}
}

// TestRefusedPayloadAnswersRound: a participant whose payload is refused
// for what it holds (here a value far beyond what an honest worker's
// inner steps can move a weight by) has answered the round: polls tell
// it to wait rather than train it again, anything else it sends to the
// round is refused with the reason, the round closes as soon as the
// others have contributed instead of waiting for it until the deadline,
// it is reported missing (it sent nothing usable), and it is on probation
// in the next round (not waited for), which it may contribute to again.
func TestRefusedPayloadAnswersRound(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	a, _ := NewAggregator(cfg)
	a.Grace = 0
	n := cfg.Model.NumParams()
	h := a.Hash()
	for _, id := range []string{"good", "bad"} {
		a.Poll(id, 0, h, at(0))
	}
	mustTick(t, a, at(0))
	tps := cfg.TokensPerStep()
	huge := encode(t, cfg.Codec, constDelta(n, 1e30))
	if err := a.Submit("bad", 0, h, tps, huge, at(1)); err == nil || !strings.Contains(err.Error(), "moves weight") {
		t.Fatalf("absurd payload: %v", err)
	}
	if r := a.Poll("bad", 0, h, at(1.1)); r.Action != Wait {
		t.Fatalf("a participant whose payload was refused is told to %v", r.Action)
	}
	err := a.Submit("bad", 0, h, tps, encode(t, cfg.Codec, constDelta(n, 0.01)), at(1.2))
	if err == nil || !strings.Contains(err.Error(), "was refused") {
		t.Fatalf("a second contribution to the round: %v", err)
	}
	if ev := mustTick(t, a, at(1.3)); ev.Closed != nil {
		t.Fatal("closed before the participant it waits for contributed")
	}
	if err := a.Submit("good", 0, h, tps, encode(t, cfg.Codec, constDelta(n, 0.01)), at(2)); err != nil {
		t.Fatal(err)
	}
	ev := mustTick(t, a, at(2))
	if ev.Closed == nil {
		t.Fatal("the round waited for a participant whose payload it refused")
	}
	if !slices.Equal(ev.Closed.Missing, []string{"bad"}) || len(ev.Closed.Contributors) != 1 {
		t.Fatalf("close: missing %v, contributors %v", ev.Closed.Missing, ev.Closed.Contributors)
	}
	// Round 1 opened without it (it had not polled since); it polls, and
	// the round closes on the other's contribution. It takes part in
	// round 2, on probation: told to train, not waited for, and its
	// honest contribution is taken.
	for r := 1; r <= 2; r++ {
		hr := a.Hash()
		a.Poll("good", r, hr, at(float64(r)+1.1))
		reply := a.Poll("bad", r, hr, at(float64(r)+1.1))
		if r == 2 && (reply.Action != Train || reply.Waited) {
			t.Fatalf("round 2 tells the refused worker %v (waited %v), want an unwaited train", reply.Action, reply.Waited)
		}
		if err := a.Submit("good", r, hr, tps, encode(t, cfg.Codec, constDelta(n, 0.01+0.002*float32(r))), at(float64(r)+1.5)); err != nil {
			t.Fatal(err)
		}
		if r == 2 {
			if err := a.Submit("bad", r, hr, tps, encode(t, cfg.Codec, constDelta(n, 0.011)), at(float64(r)+1.5)); err != nil {
				t.Fatalf("round 2: %v", err)
			}
		}
		ev := mustTick(t, a, at(float64(r)+1.5))
		if ev.Closed == nil || len(ev.Closed.Contributors) != r {
			t.Fatalf("round %d: %+v", r, ev.Closed)
		}
	}
}

// TestSnapshotRestore: a restored aggregator continues exactly as the
// original would have.
func TestSnapshotRestore(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	run := func(a *Aggregator, round int, when float64) {
		a.Grace = 0
		n := cfg.Model.NumParams()
		a.Poll("a", round, a.Hash(), at(when))
		mustTick(t, a, at(when))
		if err := a.Submit("a", round, a.Hash(), cfg.TokensPerStep(), encode(t, cfg.Codec, constDelta(n, 0.01*float32(round+1))), at(when+1)); err != nil {
			t.Fatal(err)
		}
		if ev := mustTick(t, a, at(when+1)); ev.Closed == nil {
			t.Fatal("round did not close")
		}
	}
	a, _ := NewAggregator(cfg)
	run(a, 0, 0)
	s := a.Snapshot()
	b, err := Restore(Snapshot{Cfg: s.Cfg, Round: s.Round, Theta: append([]float32(nil), s.Theta...),
		Momentum: append([]float32(nil), s.Momentum...), Residual: append([]float32(nil), s.Residual...),
		LastUpdate: append([]byte(nil), s.LastUpdate...), PrevHash: s.PrevHash})
	if err != nil {
		t.Fatal(err)
	}
	if b.Hash() != a.Hash() || b.Phase() != Waiting {
		t.Fatal("restored state differs")
	}
	if r := b.Poll("old", 0, s.PrevHash, at(3)); r.Action != Update {
		t.Fatalf("restored aggregator cannot bring a worker one round behind up to date: %v", r.Action)
	}
	run(a, 1, 5)
	run(b, 1, 5)
	if a.Hash() != b.Hash() {
		t.Fatal("restored aggregator diverged")
	}
	s.Theta = s.Theta[:3]
	if _, err := Restore(s); err == nil {
		t.Fatal("restored a snapshot of the wrong size")
	}
}

// TestWorkerRound: a worker's contribution is a deterministic function of
// (run, weights, worker id), the data it trains on is recomputable, and
// ApplyUpdate refuses an update that does not give the published hash.
func TestWorkerRound(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	text := corpus.TinyShakespeare()[:20000]
	train, _ := corpus.Split(text, 0.9)
	pool := kernels.NewPool(2)
	defer pool.Close()
	mk := func(id string) *Worker {
		w, err := NewWorker(id, cfg, train, pool)
		if err != nil {
			t.Fatal(err)
		}
		theta := InitialWeights(cfg)
		if err := w.SetWeights(0, theta, HashWeights(0, theta)); err != nil {
			t.Fatal(err)
		}
		return w
	}
	a1, a2, b := mk("alice"), mk("alice"), mk("bob")
	p1, tok, err := a1.Train(context.Background(), a1.Cfg.InnerSteps, nil)
	if err != nil || tok != cfg.TokensPerRound() {
		t.Fatalf("train: %v, %d tokens", err, tok)
	}
	p2, _, _ := a2.Train(context.Background(), a1.Cfg.InnerSteps, nil)
	pb, _, _ := b.Train(context.Background(), a1.Cfg.InnerSteps, nil)
	if string(p1) != string(p2) {
		t.Fatal("the same worker id from the same weights gave different contributions")
	}
	if string(p1) == string(pb) {
		t.Fatal("two workers trained on the same data")
	}
	// A worker short of time trains the first steps of its round only and
	// claims their tokens.
	short := mk("alice")
	ps, tok, err := short.Train(context.Background(), 1, nil)
	if err != nil || tok != cfg.TokensPerStep() || string(ps) == string(p1) {
		t.Fatalf("one step of a round: %v, %d tokens (want %d), same payload as H steps: %v", err, tok, cfg.TokensPerStep(), string(ps) == string(p1))
	}
	for _, steps := range []int{0, -1, cfg.InnerSteps + 1} {
		if _, _, err := short.Train(context.Background(), steps, nil); err == nil {
			t.Fatalf("trained %d inner steps of a round of %d", steps, cfg.InnerSteps)
		}
	}
	// The batches are (seed, stream(id), round·H + step): recompute one.
	s, _ := corpus.NewSampler(train, cfg.Batch, cfg.Model.BlockSize, cfg.Seed)
	in, tg := make([]int32, cfg.Batch*cfg.Model.BlockSize), make([]int32, cfg.Batch*cfg.Model.BlockSize)
	s.Batch(Stream("alice"), uint64(cfg.GlobalStep(0, cfg.InnerSteps-1)), in, tg)
	lastIn, lastTg := a1.inner.LastBatch()
	if !slices.Equal(in, lastIn) || !slices.Equal(tg, lastTg) {
		t.Fatal("the last batch cannot be recomputed from (seed, worker, round, step)")
	}
	if err := a1.ApplyUpdate(encode(t, cfg.Codec, constDelta(cfg.Model.NumParams(), 0.01)), Hash{}); err == nil {
		t.Fatal("an update that does not give the published hash was accepted")
	}
	if a1.Round() != -1 {
		t.Fatal("a worker with unverified weights still claims a round")
	}
	if _, _, err := a1.Train(context.Background(), a1.Cfg.InnerSteps, nil); err == nil {
		t.Fatal("trained without verified weights")
	}
}
