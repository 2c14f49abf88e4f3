package diloco

import (
	"context"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/kernels"
)

// TestOverlapBase: with overlap a worker keeps the weights of the round
// before across an update, and a contribution to round r > 0 must name
// them; round 0 trains from θ0. The aggregator refuses a contribution
// trained from the current weights instead.
func TestOverlapBase(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	cfg.Overlap = true
	agg, err := NewAggregator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pool := kernels.NewPool(1)
	defer pool.Close()
	w, err := NewWorker("w", cfg, testTrain(), pool)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetWeights(0, agg.Weights(), agg.Hash()); err != nil {
		t.Fatal(err)
	}
	if _, h, ok := w.Base(0); !ok || h != agg.Hash() || agg.BaseHash() != agg.Hash() {
		t.Fatalf("round 0 base: held %v, %s; aggregator's %s, θ0 %s", ok, h, agg.BaseHash(), agg.Hash())
	}
	if _, h, ok := w.Base(1); !ok || h != agg.Hash() {
		t.Fatalf("round 1 trains from θ0: held %v, %s", ok, h)
	}
	if _, _, ok := w.Base(2); ok {
		t.Fatal("the worker claims to hold the base of round 2 at round 0")
	}
	now := time.Now()
	agg.Grace = 0
	agg.Poll("w", 0, agg.Hash(), now)
	agg.Tick(now)
	p, tokens, err := w.Train(context.Background(), cfg.InnerSteps, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := agg.Submit("w", 0, agg.Hash(), tokens, p, now); err != nil {
		t.Fatal(err)
	}
	ev, err := agg.Tick(now)
	if err != nil || ev.Closed == nil {
		t.Fatalf("round 0 did not close: %+v, %v", ev, err)
	}
	theta0 := agg.BaseHash()
	agg.Publish(now)
	r := agg.Poll("w", 0, theta0, now)
	if r.Action != Update {
		t.Fatalf("poll after round 0: %v", r.Action)
	}
	if err := w.ApplyUpdate(r.Update, r.Hash); err != nil {
		t.Fatal(err)
	}
	if agg.BaseHash() != theta0 || agg.Hash() == theta0 {
		t.Fatalf("round 1's base is %s, want θ0 %s (current %s)", agg.BaseHash(), theta0, agg.Hash())
	}
	if _, h, ok := w.Base(1); !ok || h != theta0 {
		t.Fatalf("after the update the worker holds round 1's base: %v, %s", ok, h)
	}
	if _, h, ok := w.Base(2); !ok || h != agg.Hash() {
		t.Fatalf("round 2 trains from round 1's weights: %v, %s", ok, h)
	}
	tr := agg.Poll("w", 1, agg.Hash(), now)
	if tr.Action != Train || tr.Base != theta0 {
		t.Fatalf("poll in round 1: %v with base %s, want train from %s", tr.Action, tr.Base, theta0)
	}
	if err := agg.CanSubmit("w", 1, agg.Hash(), tokens, now); err == nil {
		t.Fatal("a contribution to round 1 trained from round 1's own weights was taken")
	}
	if err := agg.CanSubmit("w", 1, theta0, tokens, now); err != nil {
		t.Fatalf("a contribution trained from round 0's weights was refused: %v", err)
	}
}
