package llama

import (
	"fmt"
	"math"

	"github.com/cairnlabs/cairn/vecmath"
)

// Generator decodes a sequence token by token with a cache of each
// layer's keys (rotated) and values, so a token costs one pass over the
// weights and the cached positions. Positions count from the start of the
// window in the cache, as they do in a training window; when the window
// is full it restarts from the last half of the sequence. It reads the
// model's weights as they are at each step; it is not safe for concurrent
// use.
type Generator struct {
	m          *Model
	seq        []int32
	start, n   int         // the window is seq[start:], n tokens in the cache
	keys, vals [][]float32 // per layer [BlockSize, KV·hd]

	x, h, qkv, ao, gu, a, logits, scores []float32
	moe                                  []float32 // scratch of a mixture of experts
	// Latent attention caches per layer the normed latents ([T, r]) and
	// rotary keys ([T, dr]) only.
	lat, kpe             [][]float32
	mq, mckv, qlat, olat []float32
}

// NewGenerator returns a generator over the model's weights.
func (m *Model) NewGenerator() *Generator {
	c := m.Config
	D, Q, K, F, T := c.Dim, c.Heads*c.HeadDim(), c.KVHeads*c.HeadDim(), c.Hidden, c.BlockSize
	g := &Generator{m: m, x: make([]float32, D), h: make([]float32, D), qkv: make([]float32, Q+2*K), ao: make([]float32, c.attnWidth()),
		gu: make([]float32, 2*F), a: make([]float32, F), logits: make([]float32, c.VocabSize), scores: make([]float32, T)}
	if c.Experts > 0 {
		g.moe = make([]float32, c.Experts+D+3*max(c.ExpertHidden, c.ExpertHidden*c.SharedExperts))
	}
	if c.MLA() {
		r, dr := c.KVLoraRank, c.RopeDim
		g.mq, g.mckv, g.qlat, g.olat = make([]float32, c.Heads*(c.NopeDim+dr)), make([]float32, r+dr), make([]float32, r), make([]float32, r)
		for range c.Layers {
			g.lat = append(g.lat, make([]float32, T*r))
			g.kpe = append(g.kpe, make([]float32, T*dr))
		}
		return g
	}
	for range c.Layers {
		g.keys = append(g.keys, make([]float32, T*K))
		g.vals = append(g.vals, make([]float32, T*K))
	}
	return g
}

// Start begins a new sequence with prompt (at least one token, each in
// the vocabulary) and computes the logits of the token after it.
func (g *Generator) Start(prompt []int32) error {
	if len(prompt) == 0 {
		return fmt.Errorf("llama: the prompt is empty")
	}
	for _, t := range prompt {
		if t < 0 || int(t) >= g.m.Config.VocabSize {
			return fmt.Errorf("llama: prompt token %d outside the vocabulary [0, %d)", t, g.m.Config.VocabSize)
		}
	}
	g.seq = append(g.seq[:0], prompt...)
	g.refill(g.m.Config.BlockSize)
	return nil
}

func (g *Generator) refill(keep int) {
	g.n = 0
	g.start = max(0, len(g.seq)-keep)
	for _, t := range g.seq[g.start:] {
		g.step(t)
	}
}

// Append adds tok to the sequence and computes the logits of the next
// token. It fails for a token outside the vocabulary.
func (g *Generator) Append(tok int32) error {
	if tok < 0 || int(tok) >= g.m.Config.VocabSize {
		return fmt.Errorf("llama: token %d outside the vocabulary [0, %d)", tok, g.m.Config.VocabSize)
	}
	g.seq = append(g.seq, tok)
	if g.n == g.m.Config.BlockSize {
		g.refill(max(1, g.m.Config.BlockSize/2))
		return nil
	}
	g.step(tok)
	return nil
}

// Logits are the next-token logits after the sequence so far.
func (g *Generator) Logits() []float32 { return g.logits }

// Sequence is the prompt and every token appended since.
func (g *Generator) Sequence() []int32 { return g.seq }

// Context is the suffix of the sequence the next logits are conditioned
// on: the tokens in the cache.
func (g *Generator) Context() []int32 { return g.seq[g.start:] }

// step runs tok at the next cache position.
func (g *Generator) step(tok int32) {
	m, c := g.m, g.m.Config
	D, hd, H, KV, F, V := c.Dim, c.HeadDim(), c.Heads, c.KVHeads, c.Hidden, c.VocabSize
	Q, K, S, pos := H*hd, KV*hd, H*hd+2*KV*hd, g.n
	eps := float32(c.NormEps)
	copy(g.x, m.w(m.off.emb+int(tok)*D, D))
	var r [1]float32
	scale := float32(1 / math.Sqrt(float64(hd)))
	for l := range c.Layers {
		o := m.off.layers[l]
		rmsNorm(g.h, r[:], g.x, m.w(o.ln1, D), 0, 1, D, eps)
		if c.MLA() {
			g.mlaStep(l, pos)
			O := c.attnWidth()
			m.pool.Sgemm(false, true, 1, D, O, g.ao, O, m.w(o.wo, D*O), O, g.x, D, true)
		} else {
			g.attend(l, pos, S, Q, K, scale)
			m.pool.Sgemm(false, true, 1, D, Q, g.ao, Q, m.w(o.wo, D*Q), Q, g.x, D, true)
		}
		rmsNorm(g.h, r[:], g.x, m.w(o.ln2, D), 0, 1, D, eps)
		if c.Experts > 0 {
			m.moeRow(l, g.h, g.x, g.moe)
			continue
		}
		m.pool.Sgemm(false, true, 1, 2*F, D, g.h, D, m.w(o.wg, 2*F*D), D, g.gu, 2*F, false)
		for i, v := range g.gu[:F] {
			g.a[i] = v / (1 + float32(math.Exp(float64(-v)))) * g.gu[F+i]
		}
		m.pool.Sgemm(false, true, 1, D, F, g.a, F, m.w(o.wd, D*F), F, g.x, D, true)
	}
	rmsNorm(g.h, r[:], g.x, m.w(m.off.norm, D), 0, 1, D, eps)
	m.pool.Sgemm(false, true, 1, V, D, g.h, D, m.w(m.off.lm, V*D), D, g.logits, V, false)
	g.n++
}

// attend is grouped-query attention of position pos of layer l: its q, k
// and v from g.h, the keys and values cached, g.ao written.
func (g *Generator) attend(l, pos, S, Q, K int, scale float32) {
	m, c := g.m, g.m.Config
	o := m.off.layers[l]
	D, hd, H, KV := c.Dim, c.HeadDim(), c.Heads, c.KVHeads
	{
		m.pool.Sgemm(false, true, 1, S, D, g.h, D, m.w(o.wq, S*D), D, g.qkv, S, false)
		m.ropeAt(g.qkv[:Q], H, hd, hd, pos)
		m.ropeAt(g.qkv[Q:Q+K], KV, hd, hd, pos)
		copy(g.keys[l][pos*K:(pos+1)*K], g.qkv[Q:Q+K])
		copy(g.vals[l][pos*K:(pos+1)*K], g.qkv[Q+K:])
		rep := H / KV
		for h := range H {
			kh := h / rep
			q := g.qkv[h*hd : (h+1)*hd]
			s := g.scores[:pos+1]
			for j := range s {
				s[j] = vecmath.Dot(q, g.keys[l][j*K+kh*hd:j*K+(kh+1)*hd]) * scale
			}
			mx := vecmath.Max(s)
			z := vecmath.ExpSub(s, s, mx)
			out := g.ao[h*hd : (h+1)*hd]
			clear(out)
			for j, p := range s {
				vecmath.Axpy(p/z, g.vals[l][j*K+kh*hd:j*K+(kh+1)*hd], out)
			}
		}
	}
}

// ropeAt rotates, in one position's x, heads spans of width dim lying
// spacing apart.
func (m *Model) ropeAt(x []float32, heads, spacing, dim, pos int) {
	half := dim / 2
	for i := range half {
		inv := float32(1 / math.Pow(m.Config.RopeTheta, float64(float32(2*i)/float32(dim))))
		ang := float32(pos) * inv
		cs, sn := float32(math.Cos(float64(ang))), float32(math.Sin(float64(ang)))
		for h := range heads {
			v := x[h*spacing : h*spacing+dim]
			x1, x2 := v[i], v[i+half]
			v[i] = x1*cs - x2*sn
			v[i+half] = x2*cs + x1*sn
		}
	}
}
