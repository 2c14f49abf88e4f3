package diloco

import (
	"context"
	"slices"
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

// TestOverlapState: with overlap the local state carries the worker's last
// contribution (decoded) and its round; it encodes, hashes and decodes
// with them, and a decoder refuses a last round outside the run.
func TestOverlapState(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	cfg.Overlap = true
	z := ZeroState(cfg)
	if len(z.Ahead) != cfg.Model.NumParams() || z.AheadRound != -1 {
		t.Fatalf("zero state: %d ahead values, round %d", len(z.Ahead), z.AheadRound)
	}
	s := z.Clone()
	s.Ahead[3], s.AheadRound = 0.25, 1
	b, err := s.MarshalBinary()
	if err != nil || len(b) != StateSize(cfg) {
		t.Fatalf("encoding: %d bytes, %v; want %d", len(b), err, StateSize(cfg))
	}
	got, err := UnmarshalState(b, cfg)
	if err != nil || got.Ahead[3] != 0.25 || got.AheadRound != 1 || got.Hash() != s.Hash() {
		t.Fatalf("decoded %v, ahead[3] %v, round %d", err, got.Ahead[3], got.AheadRound)
	}
	if s.Hash() == z.Hash() {
		t.Fatal("the last contribution does not change the state's hash")
	}
	plain := tinyCfg(compress.Int8)
	if _, err := UnmarshalState(b, plain); err == nil {
		t.Fatal("an overlapped run's state was accepted by a run without overlap")
	}
	if err := s.Check(plain); err == nil {
		t.Fatal("Check passed a state with a last contribution in a run without overlap")
	}
	o := StateSize(cfg) - 4*cfg.Model.NumParams() - aheadTrailer
	b[o] = byte(cfg.Rounds + 2)
	if _, err := UnmarshalState(b, cfg); err == nil {
		t.Fatal("a last contribution beyond the run's rounds was accepted")
	}
}

// TestOverlapEagerBase: with overlap a contribution to round 1 trains from
// θ0 less the worker's own round-0 contribution: bitwise what a worker
// without overlap, in the same local state, sends from those weights.
func TestOverlapEagerBase(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	cfg.Overlap = true
	pool := kernels.NewPool(1)
	defer pool.Close()
	w, err := NewWorker("w", cfg, testTrain(), pool)
	if err != nil {
		t.Fatal(err)
	}
	theta0 := InitialWeights(cfg)
	if err := w.SetWeights(0, theta0, HashWeights(0, theta0)); err != nil {
		t.Fatal(err)
	}
	p0, _, err := w.Train(context.Background(), cfg.InnerSteps, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := w.State()
	own := make([]float32, len(theta0))
	if err := compress.Decode(p0, own); err != nil {
		t.Fatal(err)
	}
	if st.AheadRound != 0 || !slices.Equal(st.Ahead, own) {
		t.Fatalf("after round 0 the state holds round %d's contribution (equal: %v)", st.AheadRound, slices.Equal(st.Ahead, own))
	}
	p1, _, err := w.TrainFrom(context.Background(), 1, theta0, cfg.InnerSteps, nil)
	if err != nil {
		t.Fatal(err)
	}

	plain := cfg
	plain.Overlap = false
	v, err := NewWorker("w", plain, testTrain(), pool)
	if err != nil {
		t.Fatal(err)
	}
	st.Ahead, st.AheadRound = nil, -1
	if err := v.SetState(st); err != nil {
		t.Fatal(err)
	}
	eager := make([]float32, len(theta0))
	for i := range eager {
		eager[i] = theta0[i] - own[i]
	}
	q1, _, err := v.TrainFrom(context.Background(), 1, eager, cfg.InnerSteps, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(p1) != string(q1) {
		t.Fatal("round 1 with overlap did not train from θ0 less the worker's own round-0 contribution")
	}
}
