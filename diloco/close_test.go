package diloco

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/kernels"
)

// TestPoisonedCloseIsAllOrNothing: a round whose contributions sum to
// something the outer step cannot take (one decoded at the int8 decoder's
// largest values, 127 times its largest scale) is abandoned without
// touching the weights, momentum, update residual or round, however often
// it is ticked; its buffers go back to the free list once, and the next
// round gives bitwise what an aggregator that never saw the poison gives
// (no contribution's buffer is shared with another's).
func TestPoisonedCloseIsAllOrNothing(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	n := cfg.Model.NumParams()
	tps := cfg.TokensPerStep()
	poisoned, _ := NewAggregator(cfg)
	clean, _ := NewAggregator(cfg)
	for _, a := range []*Aggregator{poisoned, clean} {
		a.Grace = 0
		// One honest round first, so that momentum and residual are not zero.
		a.Poll("a", 0, a.Hash(), at(0))
		a.Poll("b", 0, a.Hash(), at(0))
		mustTick(t, a, at(0))
		for i, id := range []string{"a", "b"} {
			if err := a.Submit(id, 0, a.Hash(), tps, encode(t, cfg.Codec, constDelta(n, 0.003*float32(1+i))), at(1)); err != nil {
				t.Fatal(err)
			}
		}
		if ev := mustTick(t, a, at(1)); ev.Closed == nil {
			t.Fatal("round 0 did not close")
		}
	}
	a := poisoned
	before := a.Snapshot()
	theta := slices.Clone(before.Theta)
	momentum := slices.Clone(before.Momentum)
	residual := slices.Clone(before.Residual)
	update := slices.Clone(before.LastUpdate)
	hash := a.Hash()

	if err := a.Submit("a", 1, hash, tps, encode(t, cfg.Codec, constDelta(n, 0.01)), at(3)); err != nil {
		t.Fatal(err)
	}
	if err := a.Submit("b", 1, hash, tps, encode(t, cfg.Codec, constDelta(n, -0.02)), at(3)); err != nil {
		t.Fatal(err)
	}
	// What a payload whose chunk scales sit at the decoder's maximum
	// decodes to: finite, but the outer step overflows.
	huge := float32(127 * math.Nextafter32(math.MaxFloat32/127, 0))
	for _, id := range []string{"a", "b"} {
		for i := range a.subs[id].delta {
			a.subs[id].delta[i] = huge
		}
	}
	for tick := 0; tick < 3; tick++ {
		ev, err := a.Tick(at(3 + float64(tick)))
		if tick == 0 && (err == nil || !ev.Abandoned || !strings.Contains(err.Error(), "not finite")) {
			t.Fatalf("a poisoned round closed: %+v, %v", ev, err)
		}
		if a.Round() != 1 || a.Hash() != hash || (tick == 0 && a.Phase() != Waiting) || a.Submitted() != 0 {
			t.Fatalf("tick %d: round %d, phase %v, %d contributions held after the poisoned round", tick, a.Round(), a.Phase(), a.Submitted())
		}
		s := a.Snapshot()
		if !slices.Equal(s.Theta, theta) || !slices.Equal(s.Momentum, momentum) || !slices.Equal(s.Residual, residual) || !slices.Equal(s.LastUpdate, update) {
			t.Fatalf("tick %d: the poisoned round changed the durable state", tick)
		}
	}
	if len(a.free) != 2 || &a.free[0][0] == &a.free[1][0] {
		t.Fatalf("free list holds %d buffers after the abandoned round, want 2 distinct", len(a.free))
	}
	// The abandoned round reopens for the workers still present.
	if a.Phase() != Open {
		t.Fatalf("after the abandoned round: %v", a.Phase())
	}
	// The round runs again (it reopened for the workers present) with
	// honest contributions: bitwise what the clean aggregator gets.
	for _, b := range []*Aggregator{poisoned, clean} {
		if b.Phase() != Open {
			t.Fatalf("round 1 is %v", b.Phase())
		}
		if err := b.Submit("a", 1, b.Hash(), tps, encode(t, cfg.Codec, constDelta(n, 0.01)), at(6)); err != nil {
			t.Fatal(err)
		}
		if err := b.Submit("b", 1, b.Hash(), 2*tps, encode(t, cfg.Codec, constDelta(n, -0.02)), at(6)); err != nil {
			t.Fatal(err)
		}
		if ev := mustTick(t, b, at(6)); ev.Closed == nil {
			t.Fatal("honest round did not close")
		}
	}
	if poisoned.Hash() != clean.Hash() || !slices.Equal(poisoned.Snapshot().Momentum, clean.Snapshot().Momentum) {
		t.Fatal("after the abandoned round the aggregator diverged from one that never saw it")
	}
	if len(poisoned.free) != 2 || &poisoned.free[0][0] == &poisoned.free[1][0] {
		t.Fatalf("free list holds %d buffers, want 2 distinct", len(poisoned.free))
	}
}

// TestSubmitRefusesAbsurdDelta: the payloads of issue 7.2 are refused by
// Submit, with the reason, before they can move the weights: int8 chunk
// scales at the decoder's maximum, and a plain delta of 1e6. With one
// honest co-contributor the round closes on the honest contribution alone
// and the weights stay where an honest round puts them.
func TestSubmitRefusesAbsurdDelta(t *testing.T) {
	for _, codec := range []compress.Codec{compress.Int8, compress.FP32} {
		cfg := tinyCfg(codec)
		n := cfg.Model.NumParams()
		a, _ := NewAggregator(cfg)
		a.Grace = 0
		h := a.Hash()
		// Each poison from a worker of its own: a refused payload is its
		// worker's answer to the round.
		for _, id := range []string{"honest", "evil0", "evil1", "evil2", "edge"} {
			a.Poll(id, 0, h, at(0))
		}
		mustTick(t, a, at(0))
		bound := a.maxDelta
		if !(bound > 0.1 && bound < 10) {
			t.Fatalf("bound %g for H=%d, lr %g", bound, cfg.InnerSteps, cfg.InnerLR)
		}
		maxed := constDelta(n, math.MaxFloat32/5) // the encoder caps its scales at the decoder's maximum
		poison := [][]float32{constDelta(n, 1e6), constDelta(n, 2*bound)}
		if codec == compress.Int8 {
			poison = append(poison, maxed)
		}
		for i, p := range poison {
			err := a.Submit(fmt.Sprintf("evil%d", i), 0, h, cfg.TokensPerStep(), encode(t, codec, p), at(1))
			if err == nil || !strings.Contains(err.Error(), "move a weight by less than") {
				t.Fatalf("%s: a delta of %g was not refused for its size: %v", codec, p[0], err)
			}
		}
		if a.Submitted() != 0 || len(a.free) != 1 {
			t.Fatalf("refused contributions held: %d, free buffers %d", a.Submitted(), len(a.free))
		}
		// Just inside the bound is still accepted (the check is the bound, not a guess).
		inside := make([]float32, n)
		for i := range inside {
			inside[i] = bound * 0.99
		}
		if err := a.Submit("edge", 0, h, cfg.TokensPerStep(), encode(t, codec, inside), at(1)); err != nil {
			t.Fatalf("%s: a delta inside the bound was refused: %v", codec, err)
		}
	}

	// One honest co-contributor: the evil one's payload is refused, the
	// round closes on the honest one, and θ1 is the honest round's.
	cfg := tinyCfg(compress.Int8)
	n := cfg.Model.NumParams()
	a, _ := NewAggregator(cfg)
	ref, _ := NewAggregator(cfg)
	for _, x := range []*Aggregator{a, ref} {
		x.Grace = 0
		x.Poll("honest", 0, x.Hash(), at(0))
	}
	a.Poll("evil", 0, a.Hash(), at(0))
	mustTick(t, a, at(0))
	mustTick(t, ref, at(0))
	if err := a.Submit("evil", 0, a.Hash(), cfg.TokensPerRound(), encode(t, cfg.Codec, constDelta(n, math.MaxFloat32/5)), at(1)); err == nil {
		t.Fatal("the overflowing payload was accepted")
	}
	a.Leave("evil")
	for _, x := range []*Aggregator{a, ref} {
		if err := x.Submit("honest", 0, x.Hash(), cfg.TokensPerRound(), encode(t, cfg.Codec, constDelta(n, 0.01)), at(1)); err != nil {
			t.Fatal(err)
		}
		if ev := mustTick(t, x, at(1)); ev.Closed == nil {
			t.Fatal("round did not close")
		}
	}
	if a.Hash() != ref.Hash() || absMax(a.Weights()) > 10 {
		t.Fatalf("the weights moved to |θ| = %g", absMax(a.Weights()))
	}
}

// TestHonestDeltaFarBelowBound: contributions from real inner training
// (tiny model, warm-up, the run's learning rate) stay far below the bound,
// over several rounds.
func TestHonestDeltaFarBelowBound(t *testing.T) {
	cfg := tinyCfg(compress.FP32)
	cfg.InnerSteps, cfg.Rounds = 8, 4
	text := corpus.TinyShakespeare()[:20000]
	train, _ := corpus.Split(text, 0.9)
	pool := kernels.NewPool(2)
	defer pool.Close()
	a, _ := NewAggregator(cfg)
	a.Grace = 0
	w, err := NewWorker("alice", cfg, train, pool)
	if err != nil {
		t.Fatal(err)
	}
	bound := a.maxDelta
	var largest float32
	for r := 0; r < cfg.Rounds; r++ {
		if err := w.SetWeights(r, a.Weights(), a.Hash()); err != nil {
			t.Fatal(err)
		}
		a.Poll("alice", r, a.Hash(), at(float64(r)))
		mustTick(t, a, at(float64(r)))
		p, tokens, err := w.Train(context.Background(), cfg.InnerSteps, nil)
		if err != nil {
			t.Fatal(err)
		}
		d := make([]float32, cfg.Model.NumParams())
		if err := compress.Decode(p, d); err != nil {
			t.Fatal(err)
		}
		largest = max(largest, absMax(d))
		if err := a.Submit("alice", r, a.Hash(), tokens, p, at(float64(r)+0.5)); err != nil {
			t.Fatalf("round %d: an honest contribution was refused: %v", r, err)
		}
		if ev := mustTick(t, a, at(float64(r)+0.5)); ev.Closed == nil {
			t.Fatalf("round %d did not close", r)
		}
	}
	t.Logf("largest honest |Δ| %g, bound %g (%.0fx)", largest, bound, bound/largest)
	if !(largest > 0 && largest < bound/20) {
		t.Fatalf("largest honest |Δ| %g, bound %g: want far below", largest, bound)
	}
}

// TestWorkerRecoversFromPoisonedWeights: training from global weights that
// give a non-finite loss is an error, not a crash, and leaves the worker
// able to train the next weights exactly as a fresh worker would (the
// optimizer's poisoned moments are reset).
func TestWorkerRecoversFromPoisonedWeights(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	train, _ := corpus.Split(corpus.TinyShakespeare()[:20000], 0.9)
	pool := kernels.NewPool(2)
	defer pool.Close()
	w, _ := NewWorker("alice", cfg, train, pool)
	fresh, _ := NewWorker("alice", cfg, train, pool)
	bad := InitialWeights(cfg)
	for i := range bad {
		bad[i] = -2e38
	}
	if err := w.SetWeights(0, bad, HashWeights(0, bad)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Train(context.Background(), cfg.InnerSteps, nil); err == nil || !strings.Contains(err.Error(), "loss is") {
		t.Fatalf("training from poisoned weights: %v", err)
	}
	good := InitialWeights(cfg)
	for _, x := range []*Worker{w, fresh} {
		if err := x.SetWeights(1, good, HashWeights(1, good)); err != nil {
			t.Fatal(err)
		}
	}
	p, _, err := w.Train(context.Background(), cfg.InnerSteps, nil)
	if err != nil {
		t.Fatalf("the worker cannot train after a poisoned round: %v", err)
	}
	q, _, _ := fresh.Train(context.Background(), cfg.InnerSteps, nil)
	if string(p) != string(q) {
		t.Fatal("after a poisoned round the worker trains differently from a fresh one")
	}
}

// TestClosedRoundUnpublishedUntilPublish: a closed round tells nobody
// anything (no update, no training, no new round, no contributions) until
// the caller, having persisted the snapshot, publishes it.
func TestClosedRoundUnpublishedUntilPublish(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	n := cfg.Model.NumParams()
	a, _ := NewAggregator(cfg)
	a.Grace = 0
	h0 := a.Hash()
	a.Poll("a", 0, h0, at(0))
	mustTick(t, a, at(0))
	if err := a.Submit("a", 0, h0, cfg.TokensPerStep(), encode(t, cfg.Codec, constDelta(n, 0.01)), at(1)); err != nil {
		t.Fatal(err)
	}
	ev, err := a.Tick(at(1))
	if err != nil || ev.Closed == nil || ev.Opened || a.Phase() != Unpublished {
		t.Fatalf("close: %+v %v, phase %v", ev, err, a.Phase())
	}
	snap := a.Snapshot()
	if snap.Round != 1 || HashWeights(1, snap.Theta) != a.Hash() || snap.LastUpdate == nil {
		t.Fatal("the snapshot to persist is not the closed round's result")
	}
	for s := 1.0; s < 30; s += 5 {
		if r := a.Poll("a", 0, h0, at(s)); r.Action != Wait {
			t.Fatalf("before Publish a worker one round behind was told %v", r.Action)
		}
		if r := a.Poll("b", 1, a.Hash(), at(s)); r.Action != Wait {
			t.Fatalf("before Publish a worker with the new weights was told %v", r.Action)
		}
		if ev := mustTick(t, a, at(s)); ev.Opened || a.Phase() != Unpublished {
			t.Fatalf("the next round opened before Publish: %+v", ev)
		}
	}
	if err := a.Submit("a", 1, a.Hash(), cfg.TokensPerStep(), encode(t, cfg.Codec, constDelta(n, 0.01)), at(30)); err == nil {
		t.Fatal("a contribution was taken before Publish")
	}
	if ev := a.Publish(at(30)); !ev.Opened || a.Phase() != Open {
		t.Fatalf("publish: %+v, phase %v", ev, a.Phase())
	}
	if r := a.Poll("a", 0, h0, at(30)); r.Action != Update || r.Hash != a.Hash() {
		t.Fatalf("after Publish a worker one round behind was told %v", r.Action)
	}
	if ev := a.Publish(at(31)); ev.Opened {
		t.Fatal("a second Publish did something")
	}
}

// TestWorkerStopsEarly: KeepTraining ends a round's training after the
// steps it allows, and the contribution is exactly Train of that many
// steps (so its tokens, and its data, can be recomputed).
func TestWorkerStopsEarly(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	train, _ := corpus.Split(corpus.TinyShakespeare()[:20000], 0.9)
	pool := kernels.NewPool(2)
	defer pool.Close()
	theta := InitialWeights(cfg)
	mk := func() *Worker {
		w, _ := NewWorker("alice", cfg, train, pool)
		if err := w.SetWeights(0, theta, HashWeights(0, theta)); err != nil {
			t.Fatal(err)
		}
		return w
	}
	stopping, fixed := mk(), mk()
	var asked []int
	stopping.KeepTraining = func(done int) bool { asked = append(asked, done); return done < 2 }
	p, tokens, err := stopping.Train(context.Background(), cfg.InnerSteps, nil)
	if err != nil || tokens != 2*cfg.TokensPerStep() || !slices.Equal(asked, []int{1, 2}) {
		t.Fatalf("stopped training: %v, %d tokens, asked %v", err, tokens, asked)
	}
	q, _, _ := fixed.Train(context.Background(), 2, nil)
	if string(p) != string(q) {
		t.Fatal("stopping after 2 steps differs from training 2 steps")
	}
}
