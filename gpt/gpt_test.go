package gpt

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/kernels"
)

func testModel(t testing.TB, c Config, threads int) *Model {
	t.Helper()
	pool := kernels.NewPool(threads)
	t.Cleanup(pool.Close)
	m, err := New(c, pool)
	if err != nil {
		t.Fatal(err)
	}
	InitParams(c, m.Params, 42)
	// nanoGPT's init leaves biases at zero and LayerNorms at one; perturb
	// them so that every parameter matters.
	r := rand.New(rand.NewPCG(9, 9))
	for _, ti := range c.Layout() {
		if !ti.Matrix() {
			for i := ti.Offset; i < ti.Offset+ti.Size(); i++ {
				m.Params[i] += float32(0.1 * r.NormFloat64())
			}
		}
	}
	return m
}

func randTokens(r *rand.Rand, n, vocab int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(r.IntN(vocab))
	}
	return out
}

// TestDeterministicAcrossThreads: the loss and every gradient are bitwise
// the same for 1, 2 and 3 threads.
func TestDeterministicAcrossThreads(t *testing.T) {
	c := DefaultConfig(48, 2, 3, 40)
	r := rand.New(rand.NewPCG(1, 1))
	B, T := 5, 40
	in, tg := randTokens(r, B*T, 256), randTokens(r, B*T, 256)
	var refLoss float32
	var refGrads []float32
	for threads := 1; threads <= 3; threads++ {
		m := testModel(t, c, threads)
		loss, err := m.Forward(in, tg, B, T)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Backward(); err != nil {
			t.Fatal(err)
		}
		if threads == 1 {
			refLoss, refGrads = loss, append([]float32(nil), m.Grads...)
			continue
		}
		if math.Float32bits(loss) != math.Float32bits(refLoss) {
			t.Fatalf("%d threads: loss %v, 1 thread %v", threads, loss, refLoss)
		}
		for i := range refGrads {
			if math.Float32bits(m.Grads[i]) != math.Float32bits(refGrads[i]) {
				t.Fatalf("%d threads: grad %d = %v, 1 thread %v", threads, i, m.Grads[i], refGrads[i])
			}
		}
	}
}

// TestGradientsMatchFiniteDifferences spot-checks the backward pass against
// central differences of the loss in float64-ish precision terms.
func TestGradientsMatchFiniteDifferences(t *testing.T) {
	c := DefaultConfig(16, 2, 2, 8)
	m := testModel(t, c, 2)
	r := rand.New(rand.NewPCG(2, 2))
	B, T := 2, 8
	in, tg := randTokens(r, B*T, 256), randTokens(r, B*T, 256)
	m.ZeroGrad()
	if _, err := m.Forward(in, tg, B, T); err != nil {
		t.Fatal(err)
	}
	if err := m.Backward(); err != nil {
		t.Fatal(err)
	}
	grads := append([]float32(nil), m.Grads...)
	for _, ti := range c.Layout() {
		// the largest-gradient element of each tensor
		best := ti.Offset
		for i := ti.Offset; i < ti.Offset+ti.Size(); i++ {
			if math.Abs(float64(grads[i])) > math.Abs(float64(grads[best])) {
				best = i
			}
		}
		if grads[best] == 0 {
			continue // e.g. embedding rows of tokens not in the batch
		}
		const h = 1e-2
		orig := m.Params[best]
		m.Params[best] = orig + h
		lp, _ := m.Forward(in, tg, B, T)
		m.Params[best] = orig - h
		lm, _ := m.Forward(in, tg, B, T)
		m.Params[best] = orig
		fd := (float64(lp) - float64(lm)) / (2 * h)
		if d := math.Abs(fd - float64(grads[best])); d > 0.05*math.Abs(fd)+2e-4 {
			t.Errorf("%s[%d]: backward %v, finite difference %v", ti.Name, best-ti.Offset, grads[best], fd)
		}
	}
}

func TestForwardRejectsBadBatches(t *testing.T) {
	m := testModel(t, DefaultConfig(16, 1, 2, 8), 1)
	cases := []struct {
		in, tg []int32
		B, T   int
		want   string
	}{
		{make([]int32, 18), nil, 2, 9, "longer than the model's block size"},
		{make([]int32, 7), nil, 1, 8, "input tokens"},
		{[]int32{0, 1, 2, 300}, nil, 1, 4, "outside the vocabulary"},
		{[]int32{0, 1, 2, 3}, []int32{0, 1, 2, -2}, 1, 4, "outside the vocabulary"},
		{[]int32{0, 1, 2, -1}, nil, 1, 4, "outside the vocabulary"}, // IgnoreTarget is a target only
		{nil, nil, 0, 4, "empty"},
	}
	for _, c := range cases {
		if _, err := m.Forward(c.in, c.tg, c.B, c.T); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Forward(B=%d, T=%d): error %v, want %q", c.B, c.T, err, c.want)
		}
	}
	if err := m.Backward(); err == nil {
		t.Error("Backward without a forward pass with targets succeeded")
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		c    Config
		want string
	}{
		{DefaultConfig(30, 2, 4, 8), "not divisible"},
		{DefaultConfig(32, 0, 4, 8), "at least 1"},
		{DefaultConfig(32, 1, 4, 0), "block_size"},
		{DefaultConfig(0, 1, 1, 8), "width"},
	}
	for _, c := range cases {
		if err := c.c.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.c, err, c.want)
		}
	}
	good := DefaultConfig(48, 3, 3, 24)
	back, err := ParseConfig(good.JSON())
	if err != nil || back != good {
		t.Fatalf("config round trip: %+v, %v", back, err)
	}
	if _, err := ParseConfig(`{"n_embd": 10, "n_head": 3, "n_layer": 1, "block_size": 4}`); err == nil {
		t.Fatal("ParseConfig accepted width 10 with 3 heads")
	}
}

// TestGeneratorMatchesForward: the KV-cache path gives the logits of a full
// forward pass over its context, also after the sequence outgrows the
// block size: the last BlockSize tokens by default (nanoGPT's crop), at
// least half a block with HalfBlockRestart.
func TestGeneratorMatchesForward(t *testing.T) {
	c := DefaultConfig(24, 2, 3, 10)
	m := testModel(t, c, 2)
	r := rand.New(rand.NewPCG(3, 3))
	seq := randTokens(r, 25, 256)
	for _, half := range []bool{false, true} {
		g := m.NewGenerator()
		g.HalfBlockRestart = half
		if err := g.Start(seq[:4]); err != nil {
			t.Fatal(err)
		}
		for n := 4; n <= len(seq); n++ {
			if n > 4 {
				if err := g.Append(seq[n-1]); err != nil {
					t.Fatal(err)
				}
			}
			win := g.Context()
			if n > c.BlockSize && len(win) < c.BlockSize/2 || len(win) > c.BlockSize || len(win) > n ||
				!slices.Equal(win, seq[n-len(win):n]) || !half && len(win) != min(n, c.BlockSize) {
				t.Fatalf("half-block restart %v: after %d tokens the context is %v", half, n, win)
			}
			if _, err := m.Forward(win, nil, 1, len(win)); err != nil {
				t.Fatal(err)
			}
			want := m.Logits()[(len(win)-1)*c.VocabSize:]
			for i, v := range g.Logits() {
				if math.Abs(float64(v-want[i])) > 1e-4*(1+math.Abs(float64(want[i]))) {
					t.Fatalf("after %d tokens: logit %d = %v, forward gives %v", n, i, v, want[i])
				}
			}
		}
	}
}

// TestLogProb: the log probabilities sum to one at any temperature, and
// match a softmax worked by hand.
func TestLogProb(t *testing.T) {
	logits := []float32{1, -2, 0.5, 3}
	for _, temp := range []float64{0.7, 1, 2} {
		var z float64
		for k := range logits {
			z += math.Exp(LogProb(logits, k, temp))
		}
		if math.Abs(z-1) > 1e-9 {
			t.Errorf("temperature %v: probabilities sum to %v", temp, z)
		}
	}
	want := math.Log(math.Exp(2) / (math.Exp(2) + 1)) // logits {2, 0}
	if got := LogProb([]float32{2, 0}, 0, 1); math.Abs(got-want) > 1e-12 {
		t.Errorf("LogProb = %v, want %v", got, want)
	}
}

func TestSample(t *testing.T) {
	logits := []float32{0, 3, 1, 3, -2}
	if got := Sample(logits, Sampling{}, nil); got != 1 {
		t.Fatalf("greedy picked %d, want the first maximum 1", got)
	}
	r := rand.New(rand.NewPCG(4, 4))
	counts := make([]int, len(logits))
	for i := 0; i < 2000; i++ {
		counts[Sample(logits, Sampling{Temperature: 1, TopK: 2}, r)]++
	}
	if counts[0]+counts[2]+counts[4] != 0 {
		t.Fatalf("top-k 2 sampled outside the top two: %v", counts)
	}
	if counts[1] < 800 || counts[3] < 800 {
		t.Fatalf("two equal logits sampled unevenly: %v", counts)
	}
}

// TestTrainingStepDoesNotAllocate: once activations exist, forward and
// backward allocate nothing.
func TestTrainingStepDoesNotAllocate(t *testing.T) {
	c := DefaultConfig(32, 2, 4, 16)
	m := testModel(t, c, 2)
	r := rand.New(rand.NewPCG(5, 5))
	in, tg := randTokens(r, 4*16, 256), randTokens(r, 4*16, 256)
	step := func() {
		m.ZeroGrad()
		if _, err := m.Forward(in, tg, 4, 16); err != nil {
			t.Fatal(err)
		}
		if err := m.Backward(); err != nil {
			t.Fatal(err)
		}
	}
	step()
	if a := testing.AllocsPerRun(5, step); a != 0 {
		t.Fatalf("a training step allocated %v times", a)
	}
}

// BenchmarkTrainStep times a training step (forward and backward, no
// optimizer) at the anchor's default shape, at the nanoGPT CPU recipe's and
// at the anchor's width-384 shape.
func BenchmarkTrainStep(b *testing.B) {
	for _, s := range []struct {
		name    string
		d, L, H int
		B, T    int
	}{{"anchor", 128, 4, 4, 16, 128}, {"recipe", 128, 4, 4, 12, 64}, {"d384", 384, 6, 6, 8, 256}} {
		b.Run(s.name, func(b *testing.B) {
			c := DefaultConfig(s.d, s.L, s.H, s.T)
			m := testModel(b, c, 2)
			r := rand.New(rand.NewPCG(6, 6))
			in, tg := randTokens(r, s.B*s.T, 256), randTokens(r, s.B*s.T, 256)
			for b.Loop() {
				m.ZeroGrad()
				m.Forward(in, tg, s.B, s.T)
				m.Backward()
			}
			b.ReportMetric(float64(s.B*s.T*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// TestConfigLimits: shapes whose parameter count overflows an int (the
// n_embd of issue 7.6) or exceeds MaxParams, or whose training batch
// would not fit, are refused in one line, without building a layout; the
// 64-bit count agrees with the layout wherever both exist.
func TestConfigLimits(t *testing.T) {
	huge := DefaultConfig(3221225472, 1, 1, 64)
	cases := []struct {
		c    Config
		want string
	}{
		{huge, "n_embd"},
		{DefaultConfig(65536, 4096, 1, 64), "parameters"},
		{DefaultConfig(1<<14, 1, 1, 1<<20), "parameters"},
		{DefaultConfig(64, 1<<30, 1, 64), "layers"},
		{DefaultConfig(64, 1, 1, 1<<40), "block_size"},
		{Config{VocabSize: 1 << 40, NEmbd: 8, NLayer: 1, NHead: 1, BlockSize: 8, Bias: true, LayerNormEps: 1e-5, Activation: "gelu"}, "vocab_size"},
	}
	for _, c := range cases {
		if err := c.c.Validate(); err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: error %v, want one line about %q", c.c, err, c.want)
		}
	}
	if _, err := ParseConfig(`{"n_embd": 3221225472, "n_head": 1, "n_layer": 1, "block_size": 64}`); err == nil {
		t.Fatal("ParseConfig accepted n_embd 3221225472")
	}
	for _, c := range []Config{DefaultConfig(8, 1, 2, 8), DefaultConfig(128, 4, 4, 64), DefaultConfig(768, 12, 12, 1024)} {
		if uint64(c.NumParams()) != c.ParamCount() {
			t.Fatalf("%+v: layout counts %d parameters, ParamCount %d", c, c.NumParams(), c.ParamCount())
		}
	}
	big := DefaultConfig(2048, 24, 16, 2048)
	if err := big.Validate(); err != nil {
		t.Fatalf("a 1.2B-parameter shape is refused: %v", err)
	}
	if err := big.ValidateBatch(1 << 12); err == nil || !strings.Contains(err.Error(), "activation") {
		t.Fatalf("a batch of 4096 × 2048 tokens of width 2048: %v", err)
	}
	if err := DefaultConfig(128, 4, 4, 64).ValidateBatch(12); err != nil {
		t.Fatal(err)
	}
	for _, b := range []int{0, -1, MaxBatch + 1} {
		if err := DefaultConfig(128, 4, 4, 64).ValidateBatch(b); err == nil {
			t.Fatalf("batch %d accepted", b)
		}
	}
	if total, largest := huge.ActivationFloats(1 << 62); total != math.MaxUint64 || largest != math.MaxUint64 {
		t.Fatalf("activation count does not saturate: %d %d", total, largest)
	}
}

// FuzzParseConfig: any JSON either fails to parse in one line or gives a
// config whose parameter count is within MaxParams and matches its layout.
func FuzzParseConfig(f *testing.F) {
	f.Add(DefaultConfig(128, 4, 4, 64).JSON())
	f.Add(`{"n_embd": 3221225472, "n_head": 1, "n_layer": 1, "block_size": 64}`)
	f.Add(`{"n_embd": 65536, "n_head": 1, "n_layer": 4096, "block_size": 1048576, "vocab_size": 1048576}`)
	moe := LlamaConfig(32, 2, 4, 2, 64, 16)
	moe.Experts, moe.SharedExperts, moe.TopK, moe.ExpertHidden, moe.RouteScale = 4, 1, 2, 16, 1
	f.Add(moe.JSON())
	mla := LlamaConfig(32, 2, 4, 4, 64, 16)
	mla.KVLoraRank, mla.NopeDim, mla.RopeDim, mla.VDim = 8, 4, 4, 8
	f.Add(mla.JSON())
	f.Add(`{"arch": "llama", "activation": "silu", "n_embd": 1, "n_head": 1, "n_kv_head": 1, "n_layer": 4096, "block_size": 1, "vocab_size": 1, "layer_norm_eps": 1e-5, "rope_theta": 10000, "n_experts": 1024, "top_k": 1, "n_expert_hidden": 1, "route_scale": 1}`)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConfig(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if n := c.ParamCount(); n > MaxParams || uint64(c.NumParams()) != n {
			t.Fatalf("%+v: %d parameters (layout %d)", c, n, c.NumParams())
		}
	})
}

func TestEntropies(t *testing.T) {
	if h := Entropy(make([]float32, 64)); math.Abs(h-math.Log(64)) > 1e-12 {
		t.Errorf("uniform over 64: entropy %g, want %g", h, math.Log(64))
	}
	if h := Entropy([]float32{0, -200, -200}); h > 1e-60 {
		t.Errorf("certain: entropy %g, want 0", h)
	}
	c := DefaultConfig(24, 2, 3, 10)
	m := testModel(t, c, 1)
	r := rand.New(rand.NewPCG(4, 4))
	seq := randTokens(r, 30, 256)
	h, err := m.Entropies(seq)
	if err != nil || len(h) != len(seq) || h[0] != 0 {
		t.Fatalf("Entropies: %v, %d values, first %v", err, len(h), h)
	}
	g := m.NewGenerator()
	g.HalfBlockRestart = true
	if err := g.Start(seq[:1]); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(seq); i++ {
		if want := Entropy(g.Logits()); h[i] != want || !(h[i] > 0 && h[i] <= math.Log(256)+1e-9) {
			t.Fatalf("token %d: entropy %g, generator gives %g", i, h[i], want)
		}
		if err := g.Append(seq[i]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Entropies([]int32{1, 999}); err == nil {
		t.Error("Entropies accepted a token outside the vocabulary")
	}
}

// A clone starts with the original's weights and does not share them.
func TestClone(t *testing.T) {
	pool := kernels.NewPool(1)
	defer pool.Close()
	m, err := New(DefaultConfig(8, 1, 2, 8), pool)
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.Params {
		m.Params[i] = float32(i%7) - 3
	}
	c, err := m.Clone()
	if err != nil {
		t.Fatal(err)
	}
	if c.Config != m.Config || !slices.Equal(c.Params, m.Params) {
		t.Fatal("the clone's configuration or weights differ from the original's")
	}
	c.Params[0]++
	if c.Params[0] == m.Params[0] {
		t.Fatal("the clone shares the original's weights")
	}
}
