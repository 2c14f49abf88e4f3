package llama

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/cairnlabs/cairn/attention"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/vecmath"
)

// Model is a Llama model: its parameters and gradients as flat buffers
// (laid out as Config.Layout()), and the activations of the last Forward,
// which Backward uses. It is not safe for concurrent use.
type Model struct {
	Config Config
	Params []float32
	Grads  []float32

	pool    *kernels.Pool
	off     offsets
	a       acts
	job     attnJob
	scratch [][]float32 // per thread, attention.Scratch(T)
}

// offsets are where each tensor starts in Params (and Grads).
type offsets struct {
	emb, norm, lm int
	layers        []layerOffsets
}

type layerOffsets struct {
	ln1, wq, wk, wv, wo, ln2, wg, wu, wd int
	// With experts: the router, its balancing bias, each routed expert's
	// gate (up and down follow it), the shared experts' gate.
	router, rbias, shared int
	experts               []int
	// With latent attention: kv_a_proj_with_mqa, kv_a_layernorm,
	// kv_b_proj (q_proj is wq, o_proj wo).
	wkva, kvnorm, wkvb int
}

// IgnoreTarget as a target leaves its position out of the loss and the
// gradient (PyTorch's ignore_index); the mean is over the others.
const IgnoreTarget = -1

// CountTargets is the number of targets that are not IgnoreTarget: the
// positions a loss is the mean over.
func CountTargets(targets []int32) int {
	n := 0
	for _, t := range targets {
		if t != IgnoreTarget {
			n++
		}
	}
	return n
}

// acts are the activations of a batch of N = B·T positions.
type acts struct {
	B, T     int
	inputs   []int32
	targets  []int32
	counted  int       // targets that are not IgnoreTarget
	cos, sin []float32 // [T, hd/2]
	layers   []layerActs
	xOut     []float32 // [N, D] the residual stream after the last layer
	rF       []float32 // [N] the final norm's 1/rms
	hF       []float32 // [N, D]
	logits   []float32 // [N, V]
	probs    []float32 // [N, V] softmax of the logits
	rowLoss  []float64 // [N]
	// scratch for Backward
	dx, dh, dqkv, dao, dgu, da []float32
	moe                        moeScratch
	mla                        mlaScratch
	cosR, sinR                 []float32 // [T, RopeDim/2] latent attention's rotary tables
	ropeT                      int       // the T the rotary tables were made for
}

type layerActs struct {
	xIn, h1, ao, xMid, h2, a []float32
	qkv                      []float32 // [N, Q+2K]: q | k | v of each position (q and k rotated)
	gu                       []float32 // [N, 2F]: gate | up of each position
	sig                      []float32 // [N, F] sigmoid(gate)
	r1, r2                   []float32
	moe                      moeActs
	mla                      mlaActs
}

// New makes a model of cfg with zero parameters on pool's threads. It
// fails on an invalid config.
func New(cfg Config, pool *kernels.Pool) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := cfg.NumParams()
	m := &Model{Config: cfg, Params: make([]float32, n), Grads: make([]float32, n), pool: pool}
	byName := map[string]int{}
	for _, t := range cfg.Layout() {
		byName[t.Name] = t.Offset
	}
	m.off.emb, m.off.norm = byName["model.embed_tokens.weight"], byName["model.norm.weight"]
	m.off.lm = m.off.emb
	if !cfg.TieEmbeddings {
		m.off.lm = byName["lm_head.weight"]
	}
	for l := range cfg.Layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		if cfg.Experts > 0 {
			lo := layerOffsets{ln1: byName[p+"input_layernorm.weight"], wq: byName[p+"self_attn.q_proj.weight"],
				wo: byName[p+"self_attn.o_proj.weight"], ln2: byName[p+"post_attention_layernorm.weight"],
				router: byName[p+"mlp.gate.weight"], rbias: byName[p+"mlp.gate.e_score_correction_bias"],
				shared: byName[p+"mlp.shared_experts.gate_proj.weight"]}
			for e := range cfg.Experts {
				lo.experts = append(lo.experts, byName[fmt.Sprintf("%smlp.experts.%d.gate_proj.weight", p, e)])
			}
			m.off.layers = append(m.off.layers, lo)
			continue
		}
		m.off.layers = append(m.off.layers, layerOffsets{
			ln1: byName[p+"input_layernorm.weight"], wq: byName[p+"self_attn.q_proj.weight"], wk: byName[p+"self_attn.k_proj.weight"],
			wv: byName[p+"self_attn.v_proj.weight"], wo: byName[p+"self_attn.o_proj.weight"], ln2: byName[p+"post_attention_layernorm.weight"],
			wg: byName[p+"mlp.gate_proj.weight"], wu: byName[p+"mlp.up_proj.weight"], wd: byName[p+"mlp.down_proj.weight"]})
	}
	if cfg.MLA() {
		for l := range cfg.Layers {
			p := fmt.Sprintf("model.layers.%d.self_attn.", l)
			lo := &m.off.layers[l]
			lo.wq, lo.wo = byName[p+"q_proj.weight"], byName[p+"o_proj.weight"]
			lo.wkva, lo.kvnorm, lo.wkvb = byName[p+"kv_a_proj_with_mqa.weight"], byName[p+"kv_a_layernorm.weight"], byName[p+"kv_b_proj.weight"]
		}
	}
	return m, nil
}

// InitParams sets params (of a model of cfg) as Hugging Face initialises a
// Llama: every matrix and the embedding normal with standard deviation
// 0.02, the norms' weights 1; deterministic in seed.
func InitParams(cfg Config, params []float32, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0x11a3a))
	for _, t := range cfg.Layout() {
		p := params[t.Offset : t.Offset+t.Size()]
		if len(t.Shape) == 1 {
			for i := range p {
				p[i] = 1
			}
			continue
		}
		for i := range p {
			p[i] = float32(r.NormFloat64() * 0.02)
		}
	}
}

func (m *Model) w(off, n int) []float32  { return m.Params[off : off+n] }
func (m *Model) dw(off, n int) []float32 { return m.Grads[off : off+n] }

// ZeroGrad clears the gradients.
func (m *Model) ZeroGrad() { clear(m.Grads) }

// Logits are the last Forward's logits, [B·T, VocabSize].
func (m *Model) Logits() []float32 { return m.a.logits }

func grow(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

// size makes room for a batch of B×T.
func (m *Model) size(B, T int) {
	c := m.Config
	N, D, Q, K, F, V, hd := B*T, c.Dim, c.Heads*c.HeadDim(), c.KVHeads*c.HeadDim(), c.Hidden, c.VocabSize, c.HeadDim()
	a := &m.a
	a.B, a.T = B, T
	if len(a.layers) != c.Layers {
		a.layers = make([]layerActs, c.Layers)
	}
	for l := range a.layers {
		L := &a.layers[l]
		L.xIn, L.h1, L.xMid, L.h2 = grow(L.xIn, N*D), grow(L.h1, N*D), grow(L.xMid, N*D), grow(L.h2, N*D)
		L.qkv, L.ao = grow(L.qkv, N*(Q+2*K)), grow(L.ao, N*c.attnWidth())
		if c.MLA() {
			L.mla.size(c, N)
		}
		L.gu, L.a, L.sig = grow(L.gu, N*2*F), grow(L.a, N*F), grow(L.sig, N*F)
		L.r1, L.r2 = grow(L.r1, N), grow(L.r2, N)
	}
	a.xOut, a.hF, a.rF, a.logits, a.probs = grow(a.xOut, N*D), grow(a.hF, N*D), grow(a.rF, N), grow(a.logits, N*V), grow(a.probs, N*V)
	if cap(a.rowLoss) < N {
		a.rowLoss = make([]float64, N)
	}
	a.rowLoss = a.rowLoss[:N]
	a.dx, a.dh = grow(a.dx, N*D), grow(a.dh, N*D)
	a.dqkv, a.dao = grow(a.dqkv, N*(Q+2*K)), grow(a.dao, N*c.attnWidth())
	if c.MLA() {
		a.mla.size(c, N)
	}
	a.dgu, a.da = grow(a.dgu, N*2*F), grow(a.da, N*F)
	if c.Experts > 0 {
		for l := range a.layers {
			a.layers[l].moe.size(c, N)
		}
		a.moe.size(c, N)
	}
	if a.ropeT != T { // the tables depend on T only: made once per shape
		a.cos, a.sin = ropeTables(a.cos, a.sin, T, hd, c.RopeTheta)
		if c.MLA() {
			a.cosR, a.sinR = ropeTables(a.cosR, a.sinR, T, c.RopeDim, c.RopeTheta)
		}
		a.ropeT = T
	}
}

// ropeTables fills the rotary tables of T positions for heads of width
// hd ([T, hd/2] each), as the reference computes them: float32 inverse
// frequencies, float32 angles.
func ropeTables(cos, sin []float32, T, hd int, theta float64) ([]float32, []float32) {
	cos, sin = grow(cos, T*hd/2), grow(sin, T*hd/2)
	for i := range hd / 2 {
		inv := float32(1 / math.Pow(theta, float64(float32(2*i)/float32(hd))))
		for t := range T {
			ang := float32(t) * inv
			cos[t*hd/2+i] = float32(math.Cos(float64(ang)))
			sin[t*hd/2+i] = float32(math.Sin(float64(ang)))
		}
	}
	return cos, sin
}

// Forward runs the model on B sequences of T tokens and keeps the
// activations for Backward. With targets it returns the mean
// cross-entropy over the positions whose target is not IgnoreTarget (0 if
// none is); with nil targets, 0 (the logits are still computed). It
// fails, computing nothing, for T past the block size, wrong lengths or
// tokens outside the vocabulary.
func (m *Model) Forward(inputs, targets []int32, B, T int) (float32, error) {
	c := m.Config
	if B < 1 || T < 1 || T > c.BlockSize || len(inputs) != B*T || (targets != nil && len(targets) != B*T) {
		return 0, fmt.Errorf("%w: B %d, T %d (block size %d), %d inputs, %d targets", errShape, B, T, c.BlockSize, len(inputs), len(targets))
	}
	for k, ids := range [][]int32{inputs, targets} {
		for i, id := range ids {
			if (id < 0 || int(id) >= c.VocabSize) && !(k == 1 && id == IgnoreTarget) {
				return 0, fmt.Errorf("%w: token %d at %d outside the vocabulary of %d", errShape, id, i, c.VocabSize)
			}
		}
	}
	m.size(B, T)
	a := &m.a
	a.inputs, a.targets = inputs, targets
	N, D, Q, K, F, V := B*T, c.Dim, c.Heads*c.HeadDim(), c.KVHeads*c.HeadDim(), c.Hidden, c.VocabSize
	emb := m.w(m.off.emb, V*D)
	x := a.layers[0].xIn
	for i, id := range inputs {
		copy(x[i*D:(i+1)*D], emb[int(id)*D:(int(id)+1)*D])
	}
	for l := range c.Layers {
		o, L := m.off.layers[l], &a.layers[l]
		if l > 0 {
			copy(L.xIn, x)
		}
		x = L.xIn
		m.rmsNorm(L.h1, L.r1, x, m.w(o.ln1, D), N, D, float32(c.NormEps))
		if c.MLA() {
			m.mlaForward(l)
		} else {
			// q_proj, k_proj and v_proj lie one after the other: one GEMM.
			S := Q + 2*K
			m.pool.Sgemm(false, true, N, S, D, L.h1, D, m.w(o.wq, S*D), D, L.qkv, S, false)
			m.rope(L.qkv, S, 0, c.Heads, false)
			m.rope(L.qkv, S, Q, c.KVHeads, false)
			m.attention(L)
		}
		copy(L.xMid, x)
		O := c.attnWidth()
		m.pool.Sgemm(false, true, N, D, O, L.ao, O, m.w(o.wo, D*O), O, L.xMid, D, true)
		m.rmsNorm(L.h2, L.r2, L.xMid, m.w(o.ln2, D), N, D, float32(c.NormEps))
		next := a.xOut
		if l+1 < c.Layers {
			next = a.layers[l+1].xIn
		}
		copy(next, L.xMid)
		if c.Experts > 0 {
			m.moeForward(l, next)
		} else {
			m.swigluForward(L.h2, N, F, o.wg, o.wd, L.gu, L.sig, L.a, next)
		}
		x = next
	}
	m.rmsNorm(a.hF, a.rF, a.xOut, m.w(m.off.norm, D), N, D, float32(c.NormEps))
	m.pool.Sgemm(false, true, N, V, D, a.hF, D, m.w(m.off.lm, V*D), D, a.logits, V, false)
	if targets == nil {
		return 0, nil
	}
	m.rows(N, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			row, pr := a.logits[n*V:(n+1)*V], a.probs[n*V:(n+1)*V]
			mx := vecmath.Max(row)
			z := vecmath.ExpSub(pr, row, mx)
			vecmath.Scale(1/z, pr)
			if t := targets[n]; t == IgnoreTarget {
				a.rowLoss[n] = 0
			} else {
				a.rowLoss[n] = math.Log(float64(z)) - float64(row[t]-mx)
			}
		}
	})
	var sum float64
	for _, l := range a.rowLoss {
		sum += l
	}
	a.counted = CountTargets(targets)
	if a.counted == 0 {
		return 0, nil
	}
	return float32(sum / float64(a.counted)), nil
}

// rowsJob runs fn over ranges of rows on the pool's threads.
type rowsJob struct{ fn func(lo, hi int) }

func (j *rowsJob) Do(_, lo, hi int) { j.fn(lo, hi) }

func (m *Model) rows(n int, fn func(lo, hi int)) { m.pool.Run(n, &rowsJob{fn}) }

// rmsNorm writes out = w ⊙ x / rms(x) per row, and r = 1/rms, over the
// pool's threads.
func (m *Model) rmsNorm(out, r, x, w []float32, rows, D int, eps float32) {
	m.rows(rows, func(lo, hi int) { rmsNorm(out, r, x, w, lo, hi, D, eps) })
}

func rmsNorm(out, r, x, w []float32, lo, hi, D int, eps float32) {
	for n := lo; n < hi; n++ {
		xr := x[n*D : (n+1)*D]
		var ss float32
		for _, v := range xr {
			ss += v * v
		}
		rs := float32(1 / math.Sqrt(float64(ss/float32(D)+eps)))
		r[n] = rs
		or := out[n*D : (n+1)*D]
		for i, v := range xr {
			or[i] = w[i] * (v * rs)
		}
	}
}

// rmsNormBackward accumulates into dx and dw the gradients of out = w ⊙ x·r
// given dout, over the pool's threads (dx by rows, dw by columns).
func (m *Model) rmsNormBackward(dx, dw, dout, x, w, r []float32, rows, D int) {
	m.rows(rows, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			xr, dr, dxr, rs := x[n*D:(n+1)*D], dout[n*D:(n+1)*D], dx[n*D:(n+1)*D], r[n]
			var dot float32
			for i, v := range xr {
				dot += dr[i] * w[i] * v
			}
			k := dot * rs * rs * rs / float32(D)
			for i, v := range xr {
				dxr[i] += dr[i]*w[i]*rs - v*k
			}
		}
	})
	m.rows(D, func(lo, hi int) {
		for n := range rows {
			xr, dr, rs := x[n*D:(n+1)*D], dout[n*D:(n+1)*D], r[n]
			for i := lo; i < hi; i++ {
				dw[i] += dr[i] * xr[i] * rs
			}
		}
	})
}

// rope rotates each head's halves of the heads at offset off of each row
// of x (row stride stride) by the position's angles (inverse: by minus
// them, the backward pass).
func (m *Model) rope(x []float32, stride, off, heads int, inverse bool) {
	hd := m.Config.HeadDim()
	m.ropeSpan(x, stride, off, heads, hd, hd, m.a.cos, m.a.sin, inverse)
}

// ropeSpan rotates, in each row of x, heads spans of width dim that start
// at off and lie spacing apart, with the tables cos and sin of that width.
func (m *Model) ropeSpan(x []float32, stride, off, heads, spacing, dim int, cos, sin []float32, inverse bool) {
	a := &m.a
	m.rows(a.B*a.T, func(lo, hi int) { ropeRows(x, stride, off, heads, spacing, dim, a.T, cos, sin, inverse, lo, hi) })
}

func ropeRows(x []float32, stride, off, heads, spacing, dim, T int, cos, sin []float32, inverse bool, lo, hi int) {
	half := dim / 2
	for n := lo; n < hi; n++ {
		t := n % T
		cs, sn := cos[t*half:(t+1)*half], sin[t*half:(t+1)*half]
		for h := range heads {
			v := x[n*stride+off+h*spacing : n*stride+off+h*spacing+dim]
			for i := range half {
				x1, x2, s := v[i], v[i+half], sn[i]
				if inverse {
					s = -s
				}
				v[i] = x1*cs[i] - x2*s
				v[i+half] = x2*cs[i] + x1*s
			}
		}
	}
}

// attention runs causal grouped-query attention over the pool on the
// fused q|k|v rows.
func (m *Model) attention(L *layerActs) {
	c := m.Config
	hd, Q, K := c.HeadDim(), c.Heads*c.HeadDim(), c.KVHeads*c.HeadDim()
	S := Q + 2*K
	m.runAttention(attnJob{q: L.qkv, k: L.qkv[Q:], v: L.qkv[Q+K:], ao: L.ao, qs: S, ks: S, vs: S, dqk: hd, dvh: hd, KV: c.KVHeads})
}

// attentionBackward writes dqkv given dao.
func (m *Model) attentionBackward(L *layerActs, dao, dqkv []float32) {
	c := m.Config
	hd, Q, K := c.HeadDim(), c.Heads*c.HeadDim(), c.KVHeads*c.HeadDim()
	S := Q + 2*K
	m.runAttention(attnJob{q: L.qkv, k: L.qkv[Q:], v: L.qkv[Q+K:], dao: dao, dq: dqkv, dk: dqkv[Q:], dv: dqkv[Q+K:],
		qs: S, ks: S, vs: S, dqk: hd, dvh: hd, KV: c.KVHeads, backward: true})
}

// runAttention runs j (its buffers, strides and widths set) on the pool:
// forward over (sequence, query head), backward over (sequence, key/value
// head).
func (m *Model) runAttention(j attnJob) {
	a := &m.a
	j.pool, j.T, j.H = m.pool, a.T, m.Config.Heads
	if need := attention.Scratch(a.T); len(m.scratch) != m.pool.Threads() || len(m.scratch[0]) < need {
		m.scratch = make([][]float32, m.pool.Threads())
		for i := range m.scratch {
			m.scratch[i] = make([]float32, need)
		}
	}
	j.scratch = m.scratch
	units := a.B * j.H
	if j.backward {
		units = a.B * j.KV
	}
	m.job = j
	m.pool.Run(units, &m.job)
}

// Backward accumulates into Grads the gradient of the mean loss of the
// last Forward (which must have had targets).
func (m *Model) Backward() error {
	c, a := m.Config, &m.a
	if a.targets == nil {
		return fmt.Errorf("llama: Backward needs a Forward with targets")
	}
	N, D, Q, K, F, V := a.B*a.T, c.Dim, c.Heads*c.HeadDim(), c.KVHeads*c.HeadDim(), c.Hidden, c.VocabSize
	// dlogits = (softmax − onehot)/N, in place of the probabilities.
	dl := a.probs
	invN := 1 / float32(max(a.counted, 1))
	m.rows(N, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			row := dl[n*V : (n+1)*V]
			if t := a.targets[n]; t == IgnoreTarget {
				clear(row)
			} else {
				vecmath.Scale(invN, row)
				row[t] -= invN
			}
		}
	})
	// logits = hF·Wlmᵀ
	m.pool.Sgemm(true, false, V, D, N, dl, V, a.hF, D, m.dw(m.off.lm, V*D), D, true)
	m.pool.Sgemm(false, false, N, D, V, dl, V, m.w(m.off.lm, V*D), D, a.dh, D, false)
	dx := a.dx
	clear(dx)
	m.rmsNormBackward(dx, m.dw(m.off.norm, D), a.dh, a.xOut, m.w(m.off.norm, D), a.rF, N, D)
	for l := c.Layers - 1; l >= 0; l-- {
		o, L := m.off.layers[l], &a.layers[l]
		// x = xMid + mlp(h2): dx flows to xMid unchanged.
		if c.Experts > 0 {
			m.moeBackward(l, dx)
		} else {
			m.swigluBackward(dx, L.h2, N, F, o.wg, o.wd, L.gu, L.sig, L.a, a.dgu, a.da, a.dh, false)
		}
		m.rmsNormBackward(dx, m.dw(o.ln2, D), a.dh, L.xMid, m.w(o.ln2, D), L.r2, N, D)
		// xMid = xIn + ao·Woᵀ
		O := c.attnWidth()
		m.pool.Sgemm(true, false, D, O, N, dx, D, L.ao, O, m.dw(o.wo, D*O), O, true)
		m.pool.Sgemm(false, false, N, O, D, dx, D, m.w(o.wo, D*O), O, a.dao, O, false)
		if c.MLA() {
			m.mlaBackward(l)
		} else {
			S := Q + 2*K
			m.attentionBackward(L, a.dao, a.dqkv)
			m.rope(a.dqkv, S, 0, c.Heads, true)
			m.rope(a.dqkv, S, Q, c.KVHeads, true)
			m.pool.Sgemm(true, false, S, D, N, a.dqkv, S, L.h1, D, m.dw(o.wq, S*D), D, true)
			m.pool.Sgemm(false, false, N, D, S, a.dqkv, S, m.w(o.wq, S*D), D, a.dh, D, false)
		}
		m.rmsNormBackward(dx, m.dw(o.ln1, D), a.dh, L.xIn, m.w(o.ln1, D), L.r1, N, D)
	}
	demb := m.dw(m.off.emb, V*D)
	for n, id := range a.inputs {
		row := demb[int(id)*D : (int(id)+1)*D]
		for i, g := range dx[n*D : (n+1)*D] {
			row[i] += g
		}
	}
	a.targets = nil // the probabilities now hold the logits' gradient
	return nil
}
