package verify

import (
	"math"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/train"
)

// trainedDelta returns the weights θ of a small model after 60 steps of
// training on data and Δ = θ − θ' over the next 60: a contribution that
// helps.
func trainedDelta(t *testing.T, cfg gpt.Config, data []byte, pool *kernels.Pool) (theta, delta []float32) {
	t.Helper()
	o := train.NanoGPTCPU()
	o.Model, o.Batch, o.Steps, o.Warmup, o.DecaySteps = cfg, 4, 120, 2, 120
	tr, err := train.New(o, data, nil, pool)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 60; i++ {
		if _, err := tr.TrainStep(); err != nil {
			t.Fatal(err)
		}
	}
	theta = append([]float32(nil), tr.Model.Params...)
	for i := 60; i < o.Steps; i++ {
		if _, err := tr.TrainStep(); err != nil {
			t.Fatal(err)
		}
	}
	delta = make([]float32, len(theta))
	for i := range delta {
		delta[i] = theta[i] - tr.Model.Params[i]
	}
	return theta, delta
}

// TestHeldOutLoss: the held-out loss is the mean loss over the documented
// slice, deterministic, keyed by stream and round; a helpful Δ lowers it,
// its negation raises it, a zero Δ leaves it, a huge one makes it
// non-finite or enormous without an error.
func TestHeldOutLoss(t *testing.T) {
	cfg := gpt.DefaultConfig(16, 1, 2, 16)
	data, _ := corpus.Split(corpus.TinyShakespeare()[:50000], 0.9)
	pool := kernels.NewPool(1)
	defer pool.Close()
	theta, delta := trainedDelta(t, cfg, data, pool)
	const seed, stream = 1337, 0xabcdef
	h, err := NewHeldOut(cfg, data, 4, 2, seed, pool)
	if err != nil {
		t.Fatal(err)
	}
	h.Step = 1
	before, after, err := h.Loss(theta, delta, stream, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !(after < before-0.05) {
		t.Fatalf("a helpful contribution: loss %v -> %v", before, after)
	}
	h.Step = 0.25
	if b, a, _ := h.Loss(theta, delta, stream, 3); b != before || !(a < before) || !(a > after) {
		t.Fatalf("a quarter of a helpful contribution: loss %v -> %v (all of it: %v)", b, a, after)
	}
	for _, bad := range []float64{0, -1, math.NaN(), math.Inf(1)} {
		h.Step = bad
		if _, _, err := h.Loss(theta, delta, stream, 3); err == nil {
			t.Errorf("step %v accepted", bad)
		}
	}
	h.Step = 1
	// The documented slice, evaluated by hand.
	m, _ := gpt.New(cfg, pool)
	copy(m.Params, theta)
	s, _ := corpus.NewSampler(data, 4, cfg.BlockSize, seed)
	in, tg := make([]int32, 4*cfg.BlockSize), make([]int32, 4*cfg.BlockSize)
	var sum float64
	for b := 0; b < 2; b++ {
		s.Batch(HeldOutStream(stream), uint64(3*2+b), in, tg)
		l, err := m.Forward(in, tg, 4, cfg.BlockSize)
		if err != nil {
			t.Fatal(err)
		}
		sum += float64(l)
	}
	if sum/2 != before {
		t.Fatalf("held-out loss %v, the documented slice gives %v", before, sum/2)
	}
	b2, a2, _ := h.Loss(theta, delta, stream, 3)
	if b2 != before || a2 != after {
		t.Fatal("the held-out loss is not deterministic")
	}
	if b3, _, _ := h.Loss(theta, delta, stream, 4); b3 == before {
		t.Fatal("another round scores on the same slice")
	}
	if b4, _, _ := h.Loss(theta, delta, stream+1, 3); b4 == before {
		t.Fatal("another worker scores on the same slice")
	}
	if _, a, _ := h.Loss(theta, scaled(delta, -1), stream, 3); !(a > before+0.05) {
		t.Fatalf("a negated contribution: loss %v -> %v", before, a)
	}
	if b, a, _ := h.Loss(theta, make([]float32, len(theta)), stream, 3); a != b {
		t.Fatalf("a zero contribution: loss %v -> %v", b, a)
	}
	huge := make([]float32, len(theta))
	for i := range huge {
		huge[i] = float32(math.Copysign(math.MaxFloat32, float64(1-2*(i%2))))
	}
	if _, a, err := h.Loss(theta, huge, stream, 3); err != nil || !(math.IsNaN(a) || a > 100) {
		t.Fatalf("a huge contribution: loss %v, %v", a, err)
	}
	// Refusals.
	for _, tc := range []struct {
		name, want   string
		theta, delta []float32
		round        int
	}{
		{"short theta", "values", theta[1:], delta, 0},
		{"short delta", "values", theta, delta[1:], 0},
		{"negative round", "negative", theta, delta, -1},
	} {
		if _, _, err := h.Loss(tc.theta, tc.delta, stream, tc.round); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if _, err := NewHeldOut(cfg, data, 0, 2, seed, pool); err == nil {
		t.Error("batch 0 accepted")
	}
	if _, err := NewHeldOut(cfg, data[:cfg.BlockSize], 4, 2, seed, pool); err == nil {
		t.Error("data shorter than a window accepted")
	}
}

// BenchmarkHeldOutLoss: screening one contribution of the demo model
// (width 128, 4 layers, block 64) on two batches of 12.
func BenchmarkHeldOutLoss(b *testing.B) {
	cfg := gpt.DefaultConfig(128, 4, 4, 64)
	data, _ := corpus.Split(corpus.TinyShakespeare(), 0.9)
	pool := kernels.NewPool(0)
	defer pool.Close()
	h, err := NewHeldOut(cfg, data, 12, 2, 1337, pool)
	if err != nil {
		b.Fatal(err)
	}
	theta := make([]float32, cfg.NumParams())
	gpt.InitParams(cfg, theta, 1)
	delta := make([]float32, len(theta))
	for i := range delta {
		delta[i] = 1e-4 * float32(i%7-3)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := h.Loss(theta, delta, 42, i); err != nil {
			b.Fatal(err)
		}
	}
}
