package llama

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/cairnlabs/cairn/kernels"
)

// Model is a Llama model: its parameters and gradients as flat buffers
// (laid out as Config.Layout()), and the activations of the last Forward,
// which Backward uses. It is not safe for concurrent use.
type Model struct {
	Config Config
	Params []float32
	Grads  []float32

	pool *kernels.Pool
	off  offsets
	a    acts
}

// offsets are where each tensor starts in Params (and Grads).
type offsets struct {
	emb, norm, lm int
	layers        []layerOffsets
}

type layerOffsets struct{ ln1, wq, wk, wv, wo, ln2, wg, wu, wd int }

// acts are the activations of a batch of N = B·T positions.
type acts struct {
	B, T     int
	inputs   []int32
	targets  []int32
	cos, sin []float32 // [T, hd/2]
	layers   []layerActs
	xOut     []float32 // [N, D] the residual stream after the last layer
	rF       []float32 // [N] the final norm's 1/rms
	hF       []float32 // [N, D]
	logits   []float32 // [N, V]
	// scratch for Backward
	dx, dh, dq, dk, dv, dao, dg, du, da []float32
	datt                                []float32
}

type layerActs struct {
	xIn, h1, q, k, v, ao, xMid, h2, g, u, a []float32
	r1, r2                                  []float32
	att                                     []float32 // [B, H, T, T] attention probabilities
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
		m.off.layers = append(m.off.layers, layerOffsets{
			ln1: byName[p+"input_layernorm.weight"], wq: byName[p+"self_attn.q_proj.weight"], wk: byName[p+"self_attn.k_proj.weight"],
			wv: byName[p+"self_attn.v_proj.weight"], wo: byName[p+"self_attn.o_proj.weight"], ln2: byName[p+"post_attention_layernorm.weight"],
			wg: byName[p+"mlp.gate_proj.weight"], wu: byName[p+"mlp.up_proj.weight"], wd: byName[p+"mlp.down_proj.weight"]})
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
		L.q, L.ao, L.k, L.v = grow(L.q, N*Q), grow(L.ao, N*Q), grow(L.k, N*K), grow(L.v, N*K)
		L.g, L.u, L.a = grow(L.g, N*F), grow(L.u, N*F), grow(L.a, N*F)
		L.r1, L.r2 = grow(L.r1, N), grow(L.r2, N)
		L.att = grow(L.att, B*c.Heads*T*T)
	}
	a.xOut, a.hF, a.rF, a.logits = grow(a.xOut, N*D), grow(a.hF, N*D), grow(a.rF, N), grow(a.logits, N*V)
	a.dx, a.dh = grow(a.dx, N*D), grow(a.dh, N*D)
	a.dq, a.dao, a.dk, a.dv = grow(a.dq, N*Q), grow(a.dao, N*Q), grow(a.dk, N*K), grow(a.dv, N*K)
	a.dg, a.du, a.da = grow(a.dg, N*F), grow(a.du, N*F), grow(a.da, N*F)
	a.datt = grow(a.datt, T)
	a.cos, a.sin = grow(a.cos, T*hd/2), grow(a.sin, T*hd/2)
	// The rotary tables as the reference computes them: float32 inverse
	// frequencies, float32 angles.
	for i := range hd / 2 {
		inv := float32(1 / math.Pow(c.RopeTheta, float64(float32(2*i)/float32(hd))))
		for t := range T {
			ang := float32(t) * inv
			a.cos[t*hd/2+i] = float32(math.Cos(float64(ang)))
			a.sin[t*hd/2+i] = float32(math.Sin(float64(ang)))
		}
	}
}

// Forward runs the model on B sequences of T tokens and keeps the
// activations for Backward. With targets it returns the mean
// cross-entropy; with nil targets, 0 (the logits are still computed). It
// fails, computing nothing, for T past the block size, wrong lengths or
// tokens outside the vocabulary.
func (m *Model) Forward(inputs, targets []int32, B, T int) (float32, error) {
	c := m.Config
	if B < 1 || T < 1 || T > c.BlockSize || len(inputs) != B*T || (targets != nil && len(targets) != B*T) {
		return 0, fmt.Errorf("%w: B %d, T %d (block size %d), %d inputs, %d targets", errShape, B, T, c.BlockSize, len(inputs), len(targets))
	}
	for _, ids := range [][]int32{inputs, targets} {
		for i, id := range ids {
			if id < 0 || int(id) >= c.VocabSize {
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
		rmsNorm(L.h1, L.r1, x, m.w(o.ln1, D), N, D, float32(c.NormEps))
		m.pool.Sgemm(false, true, N, Q, D, L.h1, D, m.w(o.wq, Q*D), D, L.q, Q, false)
		m.pool.Sgemm(false, true, N, K, D, L.h1, D, m.w(o.wk, K*D), D, L.k, K, false)
		m.pool.Sgemm(false, true, N, K, D, L.h1, D, m.w(o.wv, K*D), D, L.v, K, false)
		m.rope(L.q, c.Heads, false)
		m.rope(L.k, c.KVHeads, false)
		m.attention(L)
		copy(L.xMid, x)
		m.pool.Sgemm(false, true, N, D, Q, L.ao, Q, m.w(o.wo, D*Q), Q, L.xMid, D, true)
		rmsNorm(L.h2, L.r2, L.xMid, m.w(o.ln2, D), N, D, float32(c.NormEps))
		m.pool.Sgemm(false, true, N, F, D, L.h2, D, m.w(o.wg, F*D), D, L.g, F, false)
		m.pool.Sgemm(false, true, N, F, D, L.h2, D, m.w(o.wu, F*D), D, L.u, F, false)
		for i, g := range L.g {
			L.a[i] = silu(g) * L.u[i]
		}
		next := a.xOut
		if l+1 < c.Layers {
			next = a.layers[l+1].xIn
		}
		copy(next, L.xMid)
		m.pool.Sgemm(false, true, N, D, F, L.a, F, m.w(o.wd, D*F), F, next, D, true)
		x = next
	}
	rmsNorm(a.hF, a.rF, a.xOut, m.w(m.off.norm, D), N, D, float32(c.NormEps))
	m.pool.Sgemm(false, true, N, V, D, a.hF, D, m.w(m.off.lm, V*D), D, a.logits, V, false)
	if targets == nil {
		return 0, nil
	}
	var sum float64
	for n := range N {
		row := a.logits[n*V : (n+1)*V]
		mx := row[0]
		for _, v := range row {
			mx = max(mx, v)
		}
		var z float64
		for _, v := range row {
			z += math.Exp(float64(v - mx))
		}
		sum += math.Log(z) - float64(row[targets[n]]-mx)
	}
	return float32(sum / float64(N)), nil
}

func silu(x float32) float32 { return x / (1 + float32(math.Exp(float64(-x)))) }

// rmsNorm writes out = w ⊙ x / rms(x) per row, and r = 1/rms.
func rmsNorm(out, r, x, w []float32, rows, D int, eps float32) {
	for n := range rows {
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
// given dout.
func rmsNormBackward(dx, dw, dout, x, w, r []float32, rows, D int) {
	for n := range rows {
		xr, dr, dxr, rs := x[n*D:(n+1)*D], dout[n*D:(n+1)*D], dx[n*D:(n+1)*D], r[n]
		var dot float32
		for i, v := range xr {
			g := dr[i] * w[i]
			dot += g * v
			dw[i] += dr[i] * v * rs
		}
		k := dot * rs * rs * rs / float32(D)
		for i, v := range xr {
			dxr[i] += dr[i]*w[i]*rs - v*k
		}
	}
}

// rope rotates each head's halves of x ([N, heads·hd]) by the position's
// angles (inverse: by minus them, the backward pass).
func (m *Model) rope(x []float32, heads int, inverse bool) {
	a := &m.a
	hd := m.Config.HeadDim()
	half := hd / 2
	for n := range a.B * a.T {
		t := n % a.T
		cs, sn := a.cos[t*half:(t+1)*half], a.sin[t*half:(t+1)*half]
		for h := range heads {
			v := x[(n*heads+h)*hd : (n*heads+h+1)*hd]
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

// attention is causal grouped-query attention: query head h reads
// key/value head h/(Heads/KVHeads).
func (m *Model) attention(L *layerActs) {
	c, a := m.Config, &m.a
	B, T, H, KV, hd := a.B, a.T, c.Heads, c.KVHeads, c.HeadDim()
	rep := H / KV
	scale := float32(1 / math.Sqrt(float64(hd)))
	clear(L.ao)
	for b := range B {
		for h := range H {
			kh := h / rep
			for i := range T {
				q := L.q[((b*T+i)*H+h)*hd : ((b*T+i)*H+h+1)*hd]
				p := L.att[((b*H+h)*T+i)*T : ((b*H+h)*T+i+1)*T]
				mx := float32(math.Inf(-1))
				for j := 0; j <= i; j++ {
					k := L.k[((b*T+j)*KV+kh)*hd : ((b*T+j)*KV+kh+1)*hd]
					var s float32
					for d := range hd {
						s += q[d] * k[d]
					}
					p[j] = s * scale
					mx = max(mx, p[j])
				}
				var z float32
				for j := 0; j <= i; j++ {
					p[j] = float32(math.Exp(float64(p[j] - mx)))
					z += p[j]
				}
				out := L.ao[((b*T+i)*H+h)*hd : ((b*T+i)*H+h+1)*hd]
				for j := 0; j <= i; j++ {
					p[j] /= z
					v := L.v[((b*T+j)*KV+kh)*hd : ((b*T+j)*KV+kh+1)*hd]
					for d := range hd {
						out[d] += p[j] * v[d]
					}
				}
				for j := i + 1; j < T; j++ {
					p[j] = 0
				}
			}
		}
	}
}

// attentionBackward writes dq and accumulates dk, dv (zeroed by the
// caller) given dao.
func (m *Model) attentionBackward(L *layerActs, dao, dq, dk, dv []float32) {
	c, a := m.Config, &m.a
	B, T, H, KV, hd := a.B, a.T, c.Heads, c.KVHeads, c.HeadDim()
	rep := H / KV
	scale := float32(1 / math.Sqrt(float64(hd)))
	dp := a.datt
	for b := range B {
		for h := range H {
			kh := h / rep
			for i := range T {
				p := L.att[((b*H+h)*T+i)*T : ((b*H+h)*T+i+1)*T]
				do := dao[((b*T+i)*H+h)*hd : ((b*T+i)*H+h+1)*hd]
				// dp_j = do·v_j; dv_j += p_j do
				var dot float32
				for j := 0; j <= i; j++ {
					v := L.v[((b*T+j)*KV+kh)*hd : ((b*T+j)*KV+kh+1)*hd]
					dvj := dv[((b*T+j)*KV+kh)*hd : ((b*T+j)*KV+kh+1)*hd]
					var s float32
					for d := range hd {
						s += do[d] * v[d]
						dvj[d] += p[j] * do[d]
					}
					dp[j] = s
					dot += s * p[j]
				}
				q := L.q[((b*T+i)*H+h)*hd : ((b*T+i)*H+h+1)*hd]
				dqi := dq[((b*T+i)*H+h)*hd : ((b*T+i)*H+h+1)*hd]
				clear(dqi)
				for j := 0; j <= i; j++ {
					ds := p[j] * (dp[j] - dot) * scale
					k := L.k[((b*T+j)*KV+kh)*hd : ((b*T+j)*KV+kh+1)*hd]
					dkj := dk[((b*T+j)*KV+kh)*hd : ((b*T+j)*KV+kh+1)*hd]
					for d := range hd {
						dqi[d] += ds * k[d]
						dkj[d] += ds * q[d]
					}
				}
			}
		}
	}
}

// Backward accumulates into Grads the gradient of the mean loss of the
// last Forward (which must have had targets).
func (m *Model) Backward() error {
	c, a := m.Config, &m.a
	if a.targets == nil {
		return fmt.Errorf("llama: Backward needs a Forward with targets")
	}
	N, D, Q, K, F, V := a.B*a.T, c.Dim, c.Heads*c.HeadDim(), c.KVHeads*c.HeadDim(), c.Hidden, c.VocabSize
	// dlogits = (softmax − onehot)/N, in place of the logits.
	dl := a.logits
	for n := range N {
		row := dl[n*V : (n+1)*V]
		mx := row[0]
		for _, v := range row {
			mx = max(mx, v)
		}
		var z float64
		for _, v := range row {
			z += math.Exp(float64(v - mx))
		}
		for i, v := range row {
			row[i] = float32(math.Exp(float64(v-mx)) / z / float64(N))
		}
		row[a.targets[n]] -= 1 / float32(N)
	}
	// logits = hF·Wlmᵀ
	m.pool.Sgemm(true, false, V, D, N, dl, V, a.hF, D, m.dw(m.off.lm, V*D), D, true)
	m.pool.Sgemm(false, false, N, D, V, dl, V, m.w(m.off.lm, V*D), D, a.dh, D, false)
	dx := a.dx
	clear(dx)
	rmsNormBackward(dx, m.dw(m.off.norm, D), a.dh, a.xOut, m.w(m.off.norm, D), a.rF, N, D)
	for l := c.Layers - 1; l >= 0; l-- {
		o, L := m.off.layers[l], &a.layers[l]
		// x = xMid + a·Wdᵀ: dx flows to xMid unchanged.
		m.pool.Sgemm(true, false, D, F, N, dx, D, L.a, F, m.dw(o.wd, D*F), F, true)
		m.pool.Sgemm(false, false, N, F, D, dx, D, m.w(o.wd, D*F), F, a.da, F, false)
		for i, g := range L.g {
			s := float32(1 / (1 + math.Exp(float64(-g))))
			a.du[i] = a.da[i] * g * s
			a.dg[i] = a.da[i] * L.u[i] * s * (1 + g*(1-s))
		}
		m.pool.Sgemm(true, false, F, D, N, a.dg, F, L.h2, D, m.dw(o.wg, F*D), D, true)
		m.pool.Sgemm(true, false, F, D, N, a.du, F, L.h2, D, m.dw(o.wu, F*D), D, true)
		m.pool.Sgemm(false, false, N, D, F, a.dg, F, m.w(o.wg, F*D), D, a.dh, D, false)
		m.pool.Sgemm(false, false, N, D, F, a.du, F, m.w(o.wu, F*D), D, a.dh, D, true)
		rmsNormBackward(dx, m.dw(o.ln2, D), a.dh, L.xMid, m.w(o.ln2, D), L.r2, N, D)
		// xMid = xIn + ao·Woᵀ
		m.pool.Sgemm(true, false, D, Q, N, dx, D, L.ao, Q, m.dw(o.wo, D*Q), Q, true)
		m.pool.Sgemm(false, false, N, Q, D, dx, D, m.w(o.wo, D*Q), Q, a.dao, Q, false)
		clear(a.dk)
		clear(a.dv)
		m.attentionBackward(L, a.dao, a.dq, a.dk, a.dv)
		m.rope(a.dq, c.Heads, true)
		m.rope(a.dk, c.KVHeads, true)
		m.pool.Sgemm(true, false, Q, D, N, a.dq, Q, L.h1, D, m.dw(o.wq, Q*D), D, true)
		m.pool.Sgemm(true, false, K, D, N, a.dk, K, L.h1, D, m.dw(o.wk, K*D), D, true)
		m.pool.Sgemm(true, false, K, D, N, a.dv, K, L.h1, D, m.dw(o.wv, K*D), D, true)
		m.pool.Sgemm(false, false, N, D, Q, a.dq, Q, m.w(o.wq, Q*D), D, a.dh, D, false)
		m.pool.Sgemm(false, false, N, D, K, a.dk, K, m.w(o.wk, K*D), D, a.dh, D, true)
		m.pool.Sgemm(false, false, N, D, K, a.dv, K, m.w(o.wv, K*D), D, a.dh, D, true)
		rmsNormBackward(dx, m.dw(o.ln1, D), a.dh, L.xIn, m.w(o.ln1, D), L.r1, N, D)
	}
	demb := m.dw(m.off.emb, V*D)
	for n, id := range a.inputs {
		row := demb[int(id)*D : (int(id)+1)*D]
		for i, g := range dx[n*D : (n+1)*D] {
			row[i] += g
		}
	}
	a.targets = nil // the logits now hold their gradient
	return nil
}
