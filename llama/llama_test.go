package llama

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/optim"
)

// The PyTorch fixture's directory loads as a Hugging Face model directory;
// Save writes one that loads back to the same parameters; bad files are
// refused with the file and the reason.
func TestLoadSave(t *testing.T) {
	ck, err := Load(filepath.Join("testdata", "gqa"))
	if err != nil {
		t.Fatal(err)
	}
	if ck.Config.KVHeads != 2 || ck.Config.Heads != 6 || ck.Config.TieEmbeddings {
		t.Fatalf("config %+v", ck.Config)
	}
	dir := t.TempDir()
	if err := Save(dir, ck.Config, ck.Params, map[string]string{"note": "x"}); err != nil {
		t.Fatal(err)
	}
	back, err := Load(dir)
	if err != nil || back.Config != ck.Config || !slices.Equal(back.Params, ck.Params) || back.Metadata["note"] != "x" {
		t.Fatalf("saved and loaded back: %v", err)
	}
	os.Remove(filepath.Join(dir, ConfigFile)) // the metadata's config serves
	if _, err := Load(dir); err != nil {
		t.Fatalf("without config.json: %v", err)
	}
	for _, tc := range []struct{ config, want string }{
		{`{"model_type": "gpt2"}`, `"gpt2" model`},
		{strings.Replace(ck.Config.JSON(), `"num_attention_heads":6`, `"num_attention_heads":5`, 1), "do not divide"},
		{`{not json`, "config"},
		{strings.Replace(ck.Config.JSON(), `"hidden_act":"silu"`, `"hidden_act":"gelu"`, 1), "only silu"},
		{strings.Replace(ck.Config.JSON(), `"intermediate_size":40`, `"intermediate_size":41`, 1), "has shape"},
	} {
		os.WriteFile(filepath.Join(dir, ConfigFile), []byte(tc.config), 0o644)
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), dir) {
			t.Errorf("config %s: error %v, want %q and the path", tc.config, err, tc.want)
		}
	}
}

// A small Llama learns: a few AdamW-free SGD steps on a repeated sequence
// lower its loss; Forward refuses batches that do not fit.
func TestTrainsAndRefuses(t *testing.T) {
	cfg := Config{VocabSize: 40, Dim: 16, Hidden: 32, Layers: 2, Heads: 4, KVHeads: 2, NormEps: 1e-5, RopeTheta: 10000, BlockSize: 8}
	pool := kernels.NewPool(1)
	defer pool.Close()
	m, err := New(cfg, pool)
	if err != nil {
		t.Fatal(err)
	}
	InitParams(cfg, m.Params, 1)
	in := []int32{1, 2, 3, 4, 5, 6, 7, 8}
	tg := []int32{2, 3, 4, 5, 6, 7, 8, 9}
	first, last := float32(0), float32(0)
	for step := range 60 {
		m.ZeroGrad()
		loss, err := m.Forward(in, tg, 1, 8)
		if err != nil {
			t.Fatal(err)
		}
		if step == 0 {
			first = loss
		}
		last = loss
		if err := m.Backward(); err != nil {
			t.Fatal(err)
		}
		for i, g := range m.Grads {
			m.Params[i] -= 0.5 * g
		}
	}
	if !(last < first/2) {
		t.Fatalf("loss %v after 60 steps, %v at the start", last, first)
	}
	for _, tc := range []struct {
		in     []int32
		B, T   int
		reason string
	}{
		{make([]int32, 9), 1, 9, "block size"},
		{[]int32{40}, 1, 1, "outside the vocabulary"},
		{[]int32{1, 2}, 1, 3, "inputs"},
	} {
		if _, err := m.Forward(tc.in, nil, tc.B, tc.T); err == nil || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%v: error %v, want %q", tc.in, err, tc.reason)
		}
	}
	if err := m.Backward(); err == nil {
		t.Error("Backward after a Forward without targets worked")
	}
}

func FuzzParseConfig(f *testing.F) {
	b, _ := os.ReadFile(filepath.Join("testdata", "gqa", ConfigFile))
	f.Add(b)
	f.Add([]byte(`{"hidden_size": 1e9}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed a config Validate refuses: %v", err)
		}
		if c.NumParams() > MaxParams || c.NumParams() < 1 {
			t.Fatalf("%d parameters", c.NumParams())
		}
	})
}

// BenchmarkTrainStep is a training step (forward, backward, AdamW) at the
// anchor benchmark's shape (d128, 4 layers, 4 heads, ctx 64, batch 12,
// vocabulary 256; SwiGLU width 344 ≈ 8/3·d), on all cores; it reports
// tokens/s, as scripts/llama/bench.py does for the PyTorch reference.
// BenchmarkTrainStep times a training step (forward, backward, AdamW) at
// the anchor benchmark's shape for the dense block, a mixture of experts
// (8 routed, top 2, 1 shared, each 112 wide) and latent attention (latent
// 34, rotary 16, positionless 16, values 32); scripts/llama/bench.sh runs
// it beside the PyTorch reference of the same blocks.
func BenchmarkTrainStep(b *testing.B) {
	dense := Config{VocabSize: 256, Dim: 128, Hidden: 344, Layers: 4, Heads: 4, KVHeads: 4, NormEps: 1e-5, RopeTheta: 10000, BlockSize: 64}
	moe := dense
	moe.Experts, moe.SharedExperts, moe.TopK, moe.ExpertHidden, moe.RouteScale = 8, 1, 2, 112, 1
	mla := dense
	mla.KVLoraRank, mla.NopeDim, mla.RopeDim, mla.VDim = 34, 16, 16, 32
	for _, c := range []struct {
		name string
		cfg  Config
	}{{"dense", dense}, {"moe", moe}, {"mla", mla}} {
		b.Run(c.name, func(b *testing.B) { benchmarkTrainStep(b, c.cfg) })
	}
}

func benchmarkTrainStep(b *testing.B, cfg Config) {
	pool := kernels.NewPool(0)
	defer pool.Close()
	m, err := New(cfg, pool)
	if err != nil {
		b.Fatal(err)
	}
	InitParams(cfg, m.Params, 1)
	opt, err := optim.NewAdamW(len(m.Params), []optim.Group{{Size: len(m.Params), Decay: true}}, 0.9, 0.95, 1e-8, 0.1, pool)
	if err != nil {
		b.Fatal(err)
	}
	const B, T = 12, 64
	in, tg := make([]int32, B*T), make([]int32, B*T)
	for i := range in {
		in[i], tg[i] = int32(i*7%256), int32(i*13%256)
	}
	for b.Loop() {
		m.ZeroGrad()
		if _, err := m.Forward(in, tg, B, T); err != nil {
			b.Fatal(err)
		}
		m.Backward()
		opt.Update(m.Params, m.Grads, 1e-3)
		m.Balance(0.01) // as training does (gpt.BalanceStep)
	}
	b.ReportMetric(float64(B*T*b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// Balancing: a step moves the bias of every expert that took more than
// its share down and of every one that took less up; training a mixture
// of experts with it keeps every expert within twice its even share.
func TestBalance(t *testing.T) {
	cfg := Config{VocabSize: 40, Dim: 16, Hidden: 0, Layers: 1, Heads: 2, KVHeads: 1, NormEps: 1e-5, RopeTheta: 10000, BlockSize: 16,
		Experts: 4, SharedExperts: 1, TopK: 1, ExpertHidden: 8, RouteScale: 1}
	pool := kernels.NewPool(1)
	defer pool.Close()
	m, err := New(cfg, pool)
	if err != nil {
		t.Fatal(err)
	}
	InitParams(cfg, m.Params, 3)
	// A router whose affinities differ from token to token (as a trained
	// one's do), and a bias that sends nearly everything to expert 3.
	rt, rb := m.off.layers[0].router, m.off.layers[0].rbias
	for i := range 4 * 16 {
		m.Params[rt+i] = float32(math.Sin(float64(i)*1.7)) * 2
	}
	for e := range 4 {
		m.Params[rb+e] = float32(e)
	}
	in := make([]int32, 4*16)
	for i := range in {
		in[i] = int32(i * 7 % 40)
	}
	if _, err := m.Forward(in, in, 4, 16); err != nil {
		t.Fatal(err)
	}
	before := slices.Clone(m.Params[rb : rb+4])
	loads := slices.Clone(m.Loads(0))
	m.Balance(0.5)
	for e, n := range loads {
		d := m.Params[rb+e] - before[e]
		if (n > 16 && d != -0.5) || (n < 16 && d != 0.5) || (n == 16 && d != 0) {
			t.Fatalf("expert %d took %d of 64: bias moved by %v", e, n, d)
		}
	}
	total := make([]int, 4)
	for step := range 200 {
		if _, err := m.Forward(in, in, 4, 16); err != nil {
			t.Fatal(err)
		}
		m.Balance(0.02)
		if step >= 150 {
			for e, n := range m.Loads(0) {
				total[e] += n
			}
		}
	}
	if busiest := float64(slices.Max(total)) / 50; busiest > 2*16 {
		t.Fatalf("after balancing the busiest expert still takes %.1f assignments of 64 a step (even: 16)", busiest)
	}
}

// BenchmarkGenerate decodes with the KV cache at the anchor width (d128,
// 4 layers, 4 heads, context 256) with grouped-query and with latent
// attention (latent 32, rotary 16), reporting tokens/s and the cache's
// floats per token.
func BenchmarkGenerate(b *testing.B) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"mha", Config{VocabSize: 256, Dim: 128, Hidden: 344, Layers: 4, Heads: 4, KVHeads: 4, NormEps: 1e-5, RopeTheta: 10000, BlockSize: 256}},
		{"mla", Config{VocabSize: 256, Dim: 128, Hidden: 344, Layers: 4, Heads: 4, KVHeads: 4, NormEps: 1e-5, RopeTheta: 10000, BlockSize: 256,
			KVLoraRank: 32, NopeDim: 16, RopeDim: 16, VDim: 32}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			pool := kernels.NewPool(1)
			defer pool.Close()
			m, err := New(tc.cfg, pool)
			if err != nil {
				b.Fatal(err)
			}
			InitParams(tc.cfg, m.Params, 1)
			g := m.NewGenerator()
			n := 0
			for b.Loop() {
				if err := g.Start([]int32{1}); err != nil {
					b.Fatal(err)
				}
				for i := range 255 {
					g.Append(int32(i % 256))
				}
				n += 256
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "tokens/s")
			b.ReportMetric(float64(tc.cfg.KVCacheFloats()), "cache-floats/token")
		})
	}
}
