package gpt

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"github.com/cairnlabs/cairn/llama"
	"github.com/cairnlabs/cairn/vecmath"
)

// Generator runs the model one token at a time, keeping each layer's keys
// and values (the KV cache) so that a new token costs one row of work. The
// model's positions are absolute, so a window cannot slide by one token
// without recomputing it. By default, once the sequence outgrows the block
// size, every token recomputes the cache for the last BlockSize tokens, as
// nanoGPT's generate crops (BlockSize rows of work a token; the parity
// fixtures check these outputs). With HalfBlockRestart set, a token that
// finds the cache full keeps only the last half block (BlockSize/2
// tokens, itself included) and recomputes that: the model always sees at
// least half a block of context, at about two rows of work a token.
type Generator struct {
	m      *Model
	keys   [][]float32 // per layer [BlockSize, C]
	values [][]float32
	n      int // positions in the cache
	seq    []int32
	start  int // seq[start:] is in the cache

	// HalfBlockRestart restarts a full cache from the last half block
	// instead of recomputing the whole window for every token.
	HalfBlockRestart bool

	x, ln, qkv, y, h, logits, scores []float32
	mv                               matVecJob

	ll *llama.Generator // a Llama's (which always restarts from half a block)
}

// NewGenerator returns a generator over the model's current weights.
func (m *Model) NewGenerator() *Generator {
	if m.ll != nil {
		return &Generator{m: m, ll: m.ll.NewGenerator()}
	}
	c := m.Config
	C, T := c.NEmbd, c.BlockSize
	g := &Generator{m: m,
		x: make([]float32, C), ln: make([]float32, C), qkv: make([]float32, 3*C), y: make([]float32, C),
		h: make([]float32, 4*C), logits: make([]float32, c.VocabSize), scores: make([]float32, T)}
	for l := 0; l < c.NLayer; l++ {
		g.keys = append(g.keys, make([]float32, T*C))
		g.values = append(g.values, make([]float32, T*C))
	}
	return g
}

// Start begins a new sequence with prompt (at least one token) and computes
// the logits of the token after it.
func (g *Generator) Start(prompt []int32) error {
	if g.ll != nil {
		return g.ll.Start(prompt)
	}
	if len(prompt) == 0 {
		return fmt.Errorf("the prompt is empty")
	}
	for _, t := range prompt {
		if t < 0 || int(t) >= g.m.Config.VocabSize {
			return fmt.Errorf("prompt token %d outside the vocabulary [0, %d)", t, g.m.Config.VocabSize)
		}
	}
	g.seq = append(g.seq[:0], prompt...)
	g.refill(g.m.Config.BlockSize)
	return nil
}

// CopyFrom makes g continue where src is: the same sequence, cache and
// next logits, copied (src is unchanged and both go on independently).
// Both must be generators of the same GPT model; a Llama's generator
// cannot be copied (an error).
func (g *Generator) CopyFrom(src *Generator) error {
	if g.m != src.m {
		return fmt.Errorf("gpt: copying a generator of another model")
	}
	if g.ll != nil {
		return fmt.Errorf("gpt: a Llama's generator cannot be copied")
	}
	C := g.m.Config.NEmbd
	for l := range g.keys {
		copy(g.keys[l][:src.n*C], src.keys[l][:src.n*C])
		copy(g.values[l][:src.n*C], src.values[l][:src.n*C])
	}
	g.n, g.start, g.HalfBlockRestart = src.n, src.start, src.HalfBlockRestart
	g.seq = append(g.seq[:0], src.seq...)
	copy(g.logits, src.logits)
	return nil
}

// refill recomputes the cache for the last keep tokens of the sequence.
func (g *Generator) refill(keep int) {
	g.n = 0
	g.start = max(0, len(g.seq)-keep)
	for _, t := range g.seq[g.start:] {
		g.step(t)
	}
}

// Append adds tok to the sequence and computes the logits of the next token.
func (g *Generator) Append(tok int32) error {
	if g.ll != nil {
		return g.ll.Append(tok)
	}
	if tok < 0 || int(tok) >= g.m.Config.VocabSize {
		return fmt.Errorf("token %d outside the vocabulary [0, %d)", tok, g.m.Config.VocabSize)
	}
	g.seq = append(g.seq, tok)
	if g.n == g.m.Config.BlockSize {
		keep := g.m.Config.BlockSize
		if g.HalfBlockRestart {
			keep = max(1, keep/2)
		}
		g.refill(keep)
		return nil
	}
	g.step(tok)
	return nil
}

// Logits are the next-token logits after the sequence so far.
func (g *Generator) Logits() []float32 {
	if g.ll != nil {
		return g.ll.Logits()
	}
	return g.logits
}

// Sequence is the prompt and every token appended since.
func (g *Generator) Sequence() []int32 {
	if g.ll != nil {
		return g.ll.Sequence()
	}
	return g.seq
}

// Context is the suffix of the sequence the next logits are conditioned
// on: the tokens in the cache.
func (g *Generator) Context() []int32 {
	if g.ll != nil {
		return g.ll.Context()
	}
	return g.seq[g.start:]
}

// step runs token tok at the next cache position.
func (g *Generator) step(tok int32) {
	m, c := g.m, g.m.Config
	C, pos := c.NEmbd, g.n
	eps := float32(c.LayerNormEps)
	copy(g.x, m.w.wte[int(tok)*C:int(tok)*C+C])
	vecmath.Add(g.x, m.w.wpe[pos*C:pos*C+C])
	for l := range m.w.layers {
		w := &m.w.layers[l]
		vecmath.LayerNormForward(g.ln, g.x, w.ln1w, w.ln1b, eps)
		g.matVec(g.qkv, w.attnW, w.attnB, g.ln, nil)
		g.attend(l, g.qkv, g.y)
		g.matVec(g.x, w.projW, w.projB, g.y, g.x)
		vecmath.LayerNormForward(g.ln, g.x, w.ln2w, w.ln2b, eps)
		g.matVec(g.h, w.fcW, w.fcB, g.ln, nil)
		vecmath.GeluForward(g.h, g.h)
		g.matVec(g.x, w.fcProjW, w.fcProjB, g.h, g.x)
	}
	vecmath.LayerNormForward(g.ln, g.x, m.w.lnfw, m.w.lnfb, eps)
	g.matVec(g.logits, m.w.lmW, m.w.lmB, g.ln, nil)
	g.n++
}

// attend stores layer l's key and value from qkv (the token's [3C]
// projection) at the next cache position and writes into y ([C]) the
// token's attention over the cache up to and including it.
func (g *Generator) attend(l int, qkv, y []float32) {
	c := g.m.Config
	C, hd, pos := c.NEmbd, c.HeadDim(), g.n
	scale := g.m.jobs.attnScale
	copy(g.keys[l][pos*C:pos*C+C], qkv[C:2*C])
	copy(g.values[l][pos*C:pos*C+C], qkv[2*C:])
	for h := 0; h < c.NHead; h++ {
		q := qkv[h*hd : h*hd+hd]
		s := g.scores[:pos+1]
		for t := range s {
			s[t] = vecmath.Dot(q, g.keys[l][t*C+h*hd:t*C+h*hd+hd]) * scale
		}
		mx := vecmath.Max(s)
		sum := vecmath.ExpSub(s, s, mx)
		vecmath.Scale(1/sum, s)
		yh := y[h*hd : h*hd+hd]
		clear(yh)
		for t, p := range s {
			vecmath.Axpy(p, g.values[l][t*C+h*hd:t*C+h*hd+hd], yh)
		}
	}
}

// matVec computes out = W·in + b (+ out when residual is out itself),
// W [len(out), len(in)], split over the pool's threads by output rows.
func (g *Generator) matVec(out, W, b, in, residual []float32) {
	g.mv = matVecJob{out: out, W: W, b: b, in: in, residual: residual != nil}
	g.m.pool.Run(len(out), &g.mv)
}

type matVecJob struct {
	out, W, b, in []float32
	residual      bool
}

func (j *matVecJob) Do(_, lo, hi int) {
	n := len(j.in)
	for r := lo; r < hi; r++ {
		v := vecmath.Dot(j.W[r*n:r*n+n], j.in) + j.b[r]
		if j.residual {
			v += j.out[r]
		}
		j.out[r] = v
	}
}

// Entropies returns, for every token of tokens but the first, the entropy
// (nats) of the model's next-token distribution (temperature 1) given the
// tokens before it, as a Generator with HalfBlockRestart started on the
// first token sees them; the first has nothing before it and gets 0. It
// fails on a token outside the vocabulary.
func (m *Model) Entropies(tokens []int32) ([]float64, error) {
	h := make([]float64, len(tokens))
	if len(tokens) < 2 {
		return h, nil
	}
	g := m.NewGenerator()
	g.HalfBlockRestart = true
	if err := g.Start(tokens[:1]); err != nil {
		return nil, err
	}
	for t := 1; t < len(tokens); t++ {
		h[t] = Entropy(g.Logits())
		if err := g.Append(tokens[t]); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Entropy is the entropy (nats) of the softmax of logits.
func Entropy(logits []float32) float64 {
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v))
	}
	var z, ez float64
	for _, v := range logits {
		d := float64(v) - mx
		e := math.Exp(d)
		z += e
		ez += e * d
	}
	return math.Log(z) - ez/z
}

// LogProb is log p(tok) under the softmax of logits divided by temp
// (positive), computed stably.
func LogProb(logits []float32, tok int, temp float64) float64 {
	top := math.Inf(-1)
	for _, l := range logits {
		top = max(top, float64(l)/temp)
	}
	var z float64
	for _, l := range logits {
		z += math.Exp(float64(l)/temp - top)
	}
	return float64(logits[tok])/temp - top - math.Log(z)
}

// Sampling chooses the next token from logits.
type Sampling struct {
	// Temperature divides the logits; 0 means greedy (the arg max).
	Temperature float64
	// TopK keeps only the K most likely tokens; 0 keeps all.
	TopK int
}

// Sample draws a token from logits with the given settings, using r for
// randomness. Greedy sampling returns the first index of the largest logit,
// as torch.argmax does.
func Sample(logits []float32, s Sampling, r *rand.Rand) int32 {
	if s.Temperature <= 0 {
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		return int32(best)
	}
	idx := make([]int, len(logits))
	for i := range idx {
		idx[i] = i
	}
	if s.TopK > 0 && s.TopK < len(idx) {
		sort.SliceStable(idx, func(a, b int) bool { return logits[idx[a]] > logits[idx[b]] })
		idx = idx[:s.TopK]
	}
	mx := math.Inf(-1)
	for _, i := range idx {
		mx = math.Max(mx, float64(logits[i]))
	}
	w := make([]float64, len(idx))
	var sum float64
	for k, i := range idx {
		w[k] = math.Exp((float64(logits[i]) - mx) / s.Temperature)
		sum += w[k]
	}
	u := r.Float64() * sum
	for k, i := range idx {
		u -= w[k]
		if u < 0 {
			return int32(i)
		}
	}
	return int32(idx[len(idx)-1])
}
