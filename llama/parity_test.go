package llama

import (
	"encoding/json"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/optim"
	"github.com/cairnlabs/cairn/safetensors"
)

// Tolerances, as the GPT's parity (package parity) holds them.
const (
	tolLogits = 1e-4 // relative (to the largest magnitude) on logits, loss and the AdamW step
	tolGrad   = 1e-3 // ‖ours − theirs‖ / ‖theirs‖ per gradient tensor
)

func tensors(t *testing.T, path string) *safetensors.File {
	t.Helper()
	f, err := safetensors.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func f32(t *testing.T, f *safetensors.File, name string) []float32 {
	t.Helper()
	ts, ok := f.Tensors[name]
	if !ok {
		t.Fatalf("missing tensor %q", name)
	}
	v, err := ts.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func i32(t *testing.T, f *safetensors.File, name string) ([]int32, []int) {
	t.Helper()
	v, err := f.Tensors[name].Int32s()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v, f.Tensors[name].Shape
}

// maxRel is max |a−b| over max |b|.
func maxRel(a, b []float32) float64 {
	var d, s float64
	for i := range b {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
		s = max(s, math.Abs(float64(b[i])))
	}
	return d / max(s, 1e-30)
}

// normRel is ‖a−b‖/‖b‖.
func normRel(a, b []float32) float64 {
	var d, s float64
	for i := range b {
		x := float64(a[i]) - float64(b[i])
		d += x * x
		s += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(d / max(s, 1e-60))
}

// The Llama block against the project's PyTorch reference
// (scripts/llama/make_fixture.py): grouped-query attention (6 heads on 2
// key/value heads, odd vocabulary, context 7) and a tied, multi-head,
// one-layer model; logits, loss, every gradient, one AdamW step and
// greedy tokens, on every kernel path this machine has.
func TestParityWithPyTorch(t *testing.T) {
	for _, fx := range []string{"gqa", "tied", "moe", "mla"} {
		for _, impl := range kernels.Impls() {
			t.Run(fx+"/"+impl, func(t *testing.T) {
				prev := kernels.Impl()
				if err := kernels.SetImpl(impl); err != nil {
					t.Fatal(err)
				}
				defer kernels.SetImpl(prev)
				parity(t, filepath.Join("testdata", fx))
			})
		}
	}
}

func parity(t *testing.T, dir string) {
	mf := tensors(t, filepath.Join(dir, "model.safetensors"))
	cfg, err := ParseConfig([]byte(mf.Metadata["config"]))
	if err != nil {
		t.Fatal(err)
	}
	pool := kernels.NewPool(2)
	defer pool.Close()
	m, err := New(cfg, pool)
	if err != nil {
		t.Fatal(err)
	}
	layout := cfg.Layout()
	if len(layout) != len(mf.Tensors) {
		t.Fatalf("%d tensors in the layout, %d in the file", len(layout), len(mf.Tensors))
	}
	for _, ts := range layout {
		copy(m.Params[ts.Offset:ts.Offset+ts.Size()], f32(t, mf, ts.Name))
	}
	cf := tensors(t, filepath.Join(dir, "case.safetensors"))
	inputs, shape := i32(t, cf, "input_ids")
	targets, _ := i32(t, cf, "targets")
	B, T := shape[0], shape[1]
	loss, err := m.Forward(inputs, targets, B, T)
	if err != nil {
		t.Fatal(err)
	}
	if r := maxRel(m.Logits(), f32(t, cf, "logits")); r > tolLogits {
		t.Errorf("logits: relative error %.2e", r)
	}
	if r := maxRel([]float32{loss}, f32(t, cf, "loss")); r > tolLogits {
		t.Errorf("loss %v, PyTorch %v", loss, f32(t, cf, "loss")[0])
	}
	if err := m.Backward(); err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for _, ts := range layout {
		g := m.Grads[ts.Offset : ts.Offset+ts.Size()]
		if _, ok := cf.Tensors["grad."+ts.Name]; !ok && strings.HasSuffix(ts.Name, "e_score_correction_bias") {
			// The balancing bias is no parameter of PyTorch's: no gradient.
			if slices.ContainsFunc(g, func(v float32) bool { return v != 0 }) {
				t.Errorf("%s has a gradient", ts.Name)
			}
			continue
		}
		r := normRel(g, f32(t, cf, "grad."+ts.Name))
		worst = max(worst, r)
		if r > tolGrad {
			t.Errorf("gradient of %s: relative error %.2e", ts.Name, r)
		}
	}
	var hp struct {
		LR, Beta1, Beta2, Eps, WeightDecay float64
	}
	if err := json.Unmarshal([]byte(cf.Metadata["adamw"]), &struct {
		LR          *float64 `json:"lr"`
		Beta1       *float64 `json:"beta1"`
		Beta2       *float64 `json:"beta2"`
		Eps         *float64 `json:"eps"`
		WeightDecay *float64 `json:"weight_decay"`
	}{&hp.LR, &hp.Beta1, &hp.Beta2, &hp.Eps, &hp.WeightDecay}); err != nil {
		t.Fatal(err)
	}
	var groups []optim.Group
	for _, ts := range layout {
		groups = append(groups, optim.Group{Offset: ts.Offset, Size: ts.Size(), Decay: !strings.HasSuffix(ts.Name, "e_score_correction_bias")})
	}
	opt, err := optim.NewAdamW(len(m.Params), groups, hp.Beta1, hp.Beta2, hp.Eps, hp.WeightDecay, pool)
	if err != nil {
		t.Fatal(err)
	}
	opt.Update(m.Params, m.Grads, hp.LR)
	for _, ts := range layout {
		if _, ok := cf.Tensors["adamw_step1."+ts.Name]; !ok {
			if !slices.Equal(m.Params[ts.Offset:ts.Offset+ts.Size()], f32(t, mf, ts.Name)) {
				t.Errorf("%s moved in an AdamW step", ts.Name)
			}
			continue
		}
		if r := maxRel(m.Params[ts.Offset:ts.Offset+ts.Size()], f32(t, cf, "adamw_step1."+ts.Name)); r > tolLogits {
			t.Errorf("%s after one AdamW step: relative error %.2e", ts.Name, r)
		}
	}
	want, _ := i32(t, cf, "greedy_after_step1")
	seq := append([]int32(nil), inputs[:3]...)
	for len(seq) < len(want) {
		if _, err := m.Forward(seq, nil, 1, len(seq)); err != nil {
			t.Fatal(err)
		}
		row := m.Logits()[(len(seq)-1)*cfg.VocabSize : len(seq)*cfg.VocabSize]
		best := 0
		for i, v := range row {
			if v > row[best] {
				best = i
			}
		}
		seq = append(seq, int32(best))
	}
	for i := range want {
		if seq[i] != want[i] {
			t.Fatalf("greedy tokens %v, PyTorch %v", seq, want)
		}
	}
	t.Logf("loss %.6f; worst gradient error %.2e; greedy tokens %v", loss, worst, seq)
}

// The KV-cache generator gives the logits a full forward pass gives for
// the same window, and PyTorch's greedy tokens, for both fixtures.
func TestGeneratorMatchesForward(t *testing.T) {
	for _, fx := range []string{"gqa", "tied", "moe", "mla"} {
		ck, err := Load(filepath.Join("testdata", fx))
		if err != nil {
			t.Fatal(err)
		}
		pool := kernels.NewPool(1)
		defer pool.Close()
		m, err := New(ck.Config, pool)
		if err != nil {
			t.Fatal(err)
		}
		copy(m.Params, ck.Params)
		cf := tensors(t, filepath.Join("testdata", fx, "case.safetensors"))
		inputs, _ := i32(t, cf, "input_ids")
		V, T := ck.Config.VocabSize, ck.Config.BlockSize
		g := m.NewGenerator()
		if err := g.Start(inputs[:2]); err != nil {
			t.Fatal(err)
		}
		for n := 2; n <= T; n++ {
			if _, err := m.Forward(inputs[:n], nil, 1, n); err != nil {
				t.Fatal(err)
			}
			if r := maxRel(g.Logits(), m.Logits()[(n-1)*V:n*V]); r > 1e-5 {
				t.Fatalf("%s: position %d: the generator's logits differ from the forward pass's by %.2e", fx, n-1, r)
			}
			if n < T {
				if err := g.Append(inputs[n]); err != nil {
					t.Fatal(err)
				}
			}
		}
		// Past the block size the window restarts from its last half.
		for range 3 {
			if err := g.Append(0); err != nil {
				t.Fatal(err)
			}
		}
		if len(g.Sequence()) != T+3 || g.n > T {
			t.Fatalf("%s: sequence of %d, %d in the cache (block %d)", fx, len(g.Sequence()), g.n, T)
		}
		if err := g.Append(int32(V)); err == nil {
			t.Fatalf("%s: a token outside the vocabulary was appended", fx)
		}
	}
}
