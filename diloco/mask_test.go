package diloco

import (
	"context"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/kernels"
)

// support is the set of positions a payload decodes to non-zero values.
func support(t *testing.T, p []byte, n int) []bool {
	t.Helper()
	out := make([]float32, n)
	if err := compress.Decode(p, out); err != nil {
		t.Fatal(err)
	}
	s := make([]bool, n)
	for i, v := range out {
		s[i] = v != 0
	}
	return s
}

// TestMaskedRound runs a round of a random-mask run: both workers send
// the positions of the round's mask seed, a contribution on another seed
// is refused with the reason, a recomputation gives the contribution
// bitwise, and the update has the contributions' positions and no others.
func TestMaskedRound(t *testing.T) {
	cfg := tinyCfg("mask:64/256:2")
	cfg.FeedbackDecay, cfg.OuterLR, cfg.Momentum = 0.95, 1, 0
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.MaskSeed(0) == cfg.MaskSeed(1) {
		t.Fatal("rounds 0 and 1 share a mask seed")
	}
	other := cfg
	other.Seed++
	if other.MaskSeed(0) == cfg.MaskSeed(0) {
		t.Fatal("two runs share round 0's mask seed")
	}
	text := corpus.TinyShakespeare()[:20000]
	train, _ := corpus.Split(text, 0.9)
	pool := kernels.NewPool(2)
	defer pool.Close()
	n := cfg.Model.NumParams()
	theta0 := InitialWeights(cfg)
	payloads := map[string][]byte{}
	var start LocalState
	for _, id := range []string{"alice", "bob"} {
		w, err := NewWorker(id, cfg, train, pool)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.SetWeights(0, theta0, HashWeights(0, theta0)); err != nil {
			t.Fatal(err)
		}
		start = w.State()
		p, _, err := w.Train(context.Background(), cfg.InnerSteps, nil)
		if err != nil {
			t.Fatal(err)
		}
		if seed, err := compress.MaskSeed(p); err != nil || seed != cfg.MaskSeed(0) {
			t.Fatalf("%s sent mask seed %#x (%v), want round 0's %#x", id, seed, err, cfg.MaskSeed(0))
		}
		payloads[id] = p
	}
	sa, sb := support(t, payloads["alice"], n), support(t, payloads["bob"], n)
	sent := 0
	for i := range sa {
		if sa[i] != sb[i] {
			t.Fatalf("position %d sent by one worker and not the other", i)
		}
		if sa[i] {
			sent++
		}
	}
	if k, chunk, _, _ := cfg.Codec.Sparse(); sent == 0 || sent > n*k/chunk+k {
		t.Fatalf("%d of %d positions sent, want about %d", sent, n, n*k/chunk)
	}
	got, _, err := Recompute(context.Background(), cfg, train, pool, "bob", 0, theta0, nil, start, cfg.InnerSteps)
	if err != nil || string(got) != string(payloads["bob"]) {
		t.Fatalf("recomputed contribution differs (err %v)", err)
	}

	a, err := NewAggregator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.Grace = 0
	h := a.Hash()
	for _, id := range []string{"alice", "bob", "mallory"} {
		a.Poll(id, 0, h, at(0))
	}
	mustTick(t, a, at(0))
	tpr := cfg.TokensPerRound()
	// Mallory's honest-looking contribution on a mask of its choosing.
	enc := compress.NewEncoder(cfg.Codec, n)
	enc.SetMaskSeed(cfg.MaskSeed(0) + 1)
	bad, err := enc.Encode(constDelta(n, 0.001))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Submit("mallory", 0, h, tpr, bad, at(1)); err == nil || !strings.Contains(err.Error(), "mask seed") {
		t.Fatalf("a contribution on another mask: %v, want a refusal naming the mask seed", err)
	}
	for _, id := range []string{"alice", "bob"} {
		if err := a.Submit(id, 0, h, tpr, payloads[id], at(1)); err != nil {
			t.Fatal(err)
		}
	}
	if ev := mustTick(t, a, at(1)); ev.Closed == nil {
		t.Fatal("the round did not close")
	}
	r := a.Poll("carol", 0, h, at(2))
	if r.Action != Update {
		t.Fatalf("a worker one round behind told %v", r.Action)
	}
	if seed, err := compress.MaskSeed(r.Update); err != nil || seed != cfg.MaskSeed(0) {
		t.Fatalf("update mask seed %#x (%v), want %#x", seed, err, cfg.MaskSeed(0))
	}
	su := support(t, r.Update, n)
	nonzero := 0
	for i := range su {
		if su[i] && !sa[i] {
			t.Fatalf("the update moves weight %d, which no contribution sent", i)
		}
		if su[i] {
			nonzero++
		}
	}
	if nonzero == 0 {
		t.Fatal("the update moves nothing")
	}
}
