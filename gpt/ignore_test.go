package gpt

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/llama"
)

// Targets set to IgnoreTarget leave their positions out of the loss and
// the gradient, in both architectures: the loss is the mean over the other
// positions, so splitting a batch's positions into two sets A and B gives
// |A|·L(A) + |B|·L(B) = N·L(all), and the same for the gradients; a
// batch with every target ignored has loss 0 and no gradient; any other
// negative target is refused.
func TestIgnoreTarget(t *testing.T) {
	pool := kernels.NewPool(2)
	defer pool.Close()
	ck, err := llama.Load(filepath.Join("..", "llama", "testdata", "gqa"))
	if err != nil {
		t.Fatal(err)
	}
	gptCfg := DefaultConfig(32, 2, 2, 16)
	gptCfg.VocabSize = 40
	for _, c := range []struct {
		name   string
		cfg    Config
		params func(*Model)
	}{
		{"gpt", gptCfg, func(m *Model) { InitParams(gptCfg, m.Params, 7) }},
		{"llama", FromLlama(ck.Config), func(m *Model) { copy(m.Params, ck.Params) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := New(c.cfg, pool)
			if err != nil {
				t.Fatal(err)
			}
			c.params(m)
			B, T := 2, min(7, c.cfg.BlockSize)
			N := B * T
			r := rand.New(rand.NewPCG(1, 2))
			in, all := make([]int32, N), make([]int32, N)
			for i := range in {
				in[i], all[i] = int32(r.IntN(c.cfg.VocabSize)), int32(r.IntN(c.cfg.VocabSize))
			}
			// A: every third position; B: the rest.
			a, b := slices.Clone(all), slices.Clone(all)
			for i := range all {
				if i%3 == 0 {
					b[i] = IgnoreTarget
				} else {
					a[i] = IgnoreTarget
				}
			}
			nA := (N + 2) / 3
			run := func(tg []int32) (float64, []float64) {
				m.ZeroGrad()
				loss, err := m.Forward(in, tg, B, T)
				if err != nil {
					t.Fatal(err)
				}
				if err := m.Backward(); err != nil {
					t.Fatal(err)
				}
				g := make([]float64, len(m.Grads))
				for i, v := range m.Grads {
					g[i] = float64(v)
				}
				return float64(loss), g
			}
			lAll, gAll := run(all)
			lA, gA := run(a)
			lB, gB := run(b)
			if lA == lB || math.Abs(float64(nA)*lA+float64(N-nA)*lB-float64(N)*lAll) > 1e-4*float64(N) {
				t.Fatalf("losses: A %v (%d positions), B %v, all %v (%d)", lA, nA, lB, lAll, N)
			}
			var worst, scale float64
			for i := range gAll {
				worst = max(worst, math.Abs(float64(nA)*gA[i]+float64(N-nA)*gB[i]-float64(N)*gAll[i]))
				scale = max(scale, math.Abs(float64(N)*gAll[i]))
			}
			if scale == 0 || worst > 1e-4*scale {
				t.Fatalf("gradients: |A|gA + |B|gB differs from N·g by %g (largest %g)", worst, scale)
			}
			none := slices.Repeat([]int32{IgnoreTarget}, N)
			lNone, gNone := run(none)
			if lNone != 0 || slices.ContainsFunc(gNone, func(v float64) bool { return v != 0 }) {
				t.Fatalf("every target ignored: loss %v, a gradient not zero", lNone)
			}
			bad := slices.Clone(all)
			bad[3] = -2
			if _, err := m.Forward(in, bad, B, T); err == nil || !strings.Contains(err.Error(), "-2") {
				t.Fatalf("a target of -2: %v", err)
			}
		})
	}
}
