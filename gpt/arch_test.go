package gpt

import (
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/llama"
	"github.com/cairnlabs/cairn/safetensors"
)

// A Config naming the Llama architecture gives a Model that is the Llama
// block: the PyTorch fixture's loss and gradients through this package's
// API, its layout under Hugging Face's names, a generator that agrees with
// the forward pass, a config that survives its JSON, and GPT-only settings
// refused.
func TestLlamaArch(t *testing.T) {
	dir := filepath.Join("..", "llama", "testdata", "gqa")
	ck, err := llama.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := FromLlama(ck.Config)
	if back, err := ParseConfig(cfg.JSON()); err != nil || back != cfg {
		t.Fatalf("the config's JSON: %+v, %v", back, err)
	}
	pool := kernels.NewPool(2)
	defer pool.Close()
	m, err := New(cfg, pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Params) != int(ck.Config.NumParams()) || cfg.NumParams() != len(m.Params) || cfg.Layout()[1].Name != "model.layers.0.input_layernorm.weight" {
		t.Fatalf("%d params, layout %v", len(m.Params), cfg.Layout()[:2])
	}
	copy(m.Params, ck.Params)
	cf, err := safetensors.ReadFile(filepath.Join(dir, "case.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	in, _ := cf.Tensors["input_ids"].Int32s()
	tg, _ := cf.Tensors["targets"].Int32s()
	want, _ := cf.Tensors["loss"].Float32s()
	m.ZeroGrad()
	loss, err := m.Forward(in, tg, 2, 7)
	if err != nil || math.Abs(float64(loss-want[0])) > 1e-5 {
		t.Fatalf("loss %v (%v), PyTorch %v", loss, err, want[0])
	}
	if err := m.Backward(); err != nil {
		t.Fatal(err)
	}
	emb := cfg.Layout()[0]
	wantG, _ := cf.Tensors["grad."+emb.Name].Float32s()
	for i, g := range m.Grads[emb.Offset : emb.Offset+emb.Size()] {
		if math.Abs(float64(g-wantG[i])) > 1e-5 {
			t.Fatalf("embedding gradient %d: %v, PyTorch %v", i, g, wantG[i])
		}
	}
	g := m.NewGenerator()
	if err := g.Start(in[:5]); err != nil {
		t.Fatal(err)
	}
	m.Forward(in[:5], nil, 1, 5)
	if !slices.Equal(g.Logits(), m.Logits()[4*cfg.VocabSize:5*cfg.VocabSize]) && maxDiff(g.Logits(), m.Logits()[4*cfg.VocabSize:]) > 1e-5 {
		t.Fatal("the generator's logits differ from the forward pass's")
	}
	if len(g.Context()) != 5 {
		t.Fatalf("context %v", g.Context())
	}
	for _, bad := range []func(*Config){
		func(c *Config) { c.Activation = "gelu_erf" },
		func(c *Config) { c.KVHeads = 4 },
		func(c *Config) { c.Arch = "mamba" },
	} {
		c := cfg
		bad(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%+v validated", c)
		}
	}
}

func maxDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}
