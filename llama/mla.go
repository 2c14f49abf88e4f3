package llama

import (
	"math"

	"github.com/cairnlabs/cairn/vecmath"
)

// attnWidth is the width of the attention's output (o_proj's input).
func (c Config) attnWidth() int {
	if c.MLA() {
		return c.Heads * c.VDim
	}
	return c.Heads * c.HeadDim()
}

// KVCacheFloats is what generation caches per token: a layer's keys and
// values (2·KVHeads·head width), or with latent attention its latent and
// rotary key (KVLoraRank + RopeDim).
func (c Config) KVCacheFloats() int {
	if c.MLA() {
		return c.Layers * (c.KVLoraRank + c.RopeDim)
	}
	return c.Layers * 2 * c.KVHeads * c.HeadDim()
}

// mlaActs are a latent-attention layer's activations for N positions.
type mlaActs struct {
	q   []float32 // [N, H·(dn+dr)], rotary parts rotated
	ckv []float32 // [N, r+dr]: the latent before its norm, the rotary key (rotated)
	c   []float32 // [N, r] the latent, contiguous
	cn  []float32 // [N, r] normed
	rc  []float32 // [N] its norm's 1/rms
	kv  []float32 // [N, H·(dn+dv)]: each head's key without position, value
	k   []float32 // [N, H·(dn+dr)] the keys attention reads
	v   []float32 // [N, H·dv]
}

func (a *mlaActs) size(c Config, N int) {
	H, r, dn, dr, dv := c.Heads, c.KVLoraRank, c.NopeDim, c.RopeDim, c.VDim
	a.q, a.ckv, a.c, a.cn, a.rc = grow(a.q, N*H*(dn+dr)), grow(a.ckv, N*(r+dr)), grow(a.c, N*r), grow(a.cn, N*r), grow(a.rc, N)
	a.kv, a.k, a.v = grow(a.kv, N*H*(dn+dv)), grow(a.k, N*H*(dn+dr)), grow(a.v, N*H*dv)
}

// mlaScratch is the backward pass's scratch for latent attention.
type mlaScratch struct {
	dq, dk, dv, dkv, dcn, dc, dckv []float32
}

func (s *mlaScratch) size(c Config, N int) {
	H, r, dn, dr, dv := c.Heads, c.KVLoraRank, c.NopeDim, c.RopeDim, c.VDim
	s.dq, s.dk, s.dv, s.dkv = grow(s.dq, N*H*(dn+dr)), grow(s.dk, N*H*(dn+dr)), grow(s.dv, N*H*dv), grow(s.dkv, N*H*(dn+dv))
	s.dcn, s.dc, s.dckv = grow(s.dcn, N*r), grow(s.dc, N*r), grow(s.dckv, N*(r+dr))
}

// mlaForward runs layer l's latent attention on h1 into ao.
func (m *Model) mlaForward(l int) {
	c, a := m.Config, &m.a
	L, o := &a.layers[l], m.off.layers[l]
	M := &L.mla
	N, D, H, r, dn, dr, dv := a.B*a.T, c.Dim, c.Heads, c.KVLoraRank, c.NopeDim, c.RopeDim, c.VDim
	dqk := dn + dr
	m.pool.Sgemm(false, true, N, H*dqk, D, L.h1, D, m.w(o.wq, H*dqk*D), D, M.q, H*dqk, false)
	m.pool.Sgemm(false, true, N, r+dr, D, L.h1, D, m.w(o.wkva, (r+dr)*D), D, M.ckv, r+dr, false)
	for n := range N {
		copy(M.c[n*r:(n+1)*r], M.ckv[n*(r+dr):n*(r+dr)+r])
	}
	m.rmsNorm(M.cn, M.rc, M.c, m.w(o.kvnorm, r), N, r, float32(c.NormEps))
	m.pool.Sgemm(false, true, N, H*(dn+dv), r, M.cn, r, m.w(o.wkvb, H*(dn+dv)*r), r, M.kv, H*(dn+dv), false)
	m.ropeSpan(M.q, H*dqk, dn, H, dqk, dr, a.cosR, a.sinR, false)
	m.ropeSpan(M.ckv, r+dr, r, 1, dr, dr, a.cosR, a.sinR, false)
	m.rows(N, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			kpe := M.ckv[n*(r+dr)+r : (n+1)*(r+dr)]
			for h := range H {
				kv := M.kv[(n*H+h)*(dn+dv) : (n*H+h+1)*(dn+dv)]
				k := M.k[(n*H+h)*dqk : (n*H+h+1)*dqk]
				copy(k[:dn], kv[:dn])
				copy(k[dn:], kpe)
				copy(M.v[(n*H+h)*dv:(n*H+h+1)*dv], kv[dn:])
			}
		}
	})
	m.runAttention(attnJob{q: M.q, k: M.k, v: M.v, ao: L.ao, qs: H * dqk, ks: H * dqk, vs: H * dv, dqk: dqk, dvh: dv, KV: H})
}

// mlaBackward is mlaForward's backward pass given a.dao: it accumulates
// its weights' gradients and writes a.dh, the gradient of h1.
func (m *Model) mlaBackward(l int) {
	c, a := m.Config, &m.a
	L, o := &a.layers[l], m.off.layers[l]
	M, S := &L.mla, &a.mla
	N, D, H, r, dn, dr, dv := a.B*a.T, c.Dim, c.Heads, c.KVLoraRank, c.NopeDim, c.RopeDim, c.VDim
	dqk := dn + dr
	m.runAttention(attnJob{q: M.q, k: M.k, v: M.v, dao: a.dao, dq: S.dq, dk: S.dk, dv: S.dv,
		qs: H * dqk, ks: H * dqk, vs: H * dv, dqk: dqk, dvh: dv, KV: H, backward: true})
	// Back from the heads' keys and values to kv and the shared rotary key.
	m.rows(N, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			dkpe := S.dckv[n*(r+dr)+r : (n+1)*(r+dr)]
			clear(dkpe)
			for h := range H {
				dk := S.dk[(n*H+h)*dqk : (n*H+h+1)*dqk]
				dkv := S.dkv[(n*H+h)*(dn+dv) : (n*H+h+1)*(dn+dv)]
				copy(dkv[:dn], dk[:dn])
				copy(dkv[dn:], S.dv[(n*H+h)*dv:(n*H+h+1)*dv])
				for i, g := range dk[dn:] {
					dkpe[i] += g
				}
			}
		}
	})
	m.ropeSpan(S.dq, H*dqk, dn, H, dqk, dr, a.cosR, a.sinR, true)
	m.ropeSpan(S.dckv, r+dr, r, 1, dr, dr, a.cosR, a.sinR, true)
	// kv = cn·Wkvbᵀ
	m.pool.Sgemm(true, false, H*(dn+dv), r, N, S.dkv, H*(dn+dv), M.cn, r, m.dw(o.wkvb, H*(dn+dv)*r), r, true)
	m.pool.Sgemm(false, false, N, r, H*(dn+dv), S.dkv, H*(dn+dv), m.w(o.wkvb, H*(dn+dv)*r), r, S.dcn, r, false)
	clear(S.dc)
	m.rmsNormBackward(S.dc, m.dw(o.kvnorm, r), S.dcn, M.c, m.w(o.kvnorm, r), M.rc, N, r)
	for n := range N {
		copy(S.dckv[n*(r+dr):n*(r+dr)+r], S.dc[n*r:(n+1)*r])
	}
	// ckv = h1·Wkvaᵀ, q = h1·Wqᵀ
	m.pool.Sgemm(true, false, r+dr, D, N, S.dckv, r+dr, L.h1, D, m.dw(o.wkva, (r+dr)*D), D, true)
	m.pool.Sgemm(false, false, N, D, r+dr, S.dckv, r+dr, m.w(o.wkva, (r+dr)*D), D, a.dh, D, false)
	m.pool.Sgemm(true, false, H*dqk, D, N, S.dq, H*dqk, L.h1, D, m.dw(o.wq, H*dqk*D), D, true)
	m.pool.Sgemm(false, false, N, D, H*dqk, S.dq, H*dqk, m.w(o.wq, H*dqk*D), D, a.dh, D, true)
}

// mlaStep is latent attention of position pos of layer l in generation:
// from g.h it caches the position's normed latent and rotary key, then
// attends with the key and value up-projections absorbed into the query
// and the output (q·W_ukᵀ against the cached latents; W_uv times the
// probability-weighted latent), so no per-head key or value is ever
// materialised; g.ao written.
func (g *Generator) mlaStep(l, pos int) {
	m, c := g.m, g.m.Config
	o := m.off.layers[l]
	D, H, r, dn, dr, dv := c.Dim, c.Heads, c.KVLoraRank, c.NopeDim, c.RopeDim, c.VDim
	dqk := dn + dr
	m.pool.Sgemm(false, true, 1, H*dqk, D, g.h, D, m.w(o.wq, H*dqk*D), D, g.mq, H*dqk, false)
	m.pool.Sgemm(false, true, 1, r+dr, D, g.h, D, m.w(o.wkva, (r+dr)*D), D, g.mckv, r+dr, false)
	var rs [1]float32
	lat, kpe := g.lat[l][pos*r:(pos+1)*r], g.kpe[l][pos*dr:(pos+1)*dr]
	rmsNorm(lat, rs[:], g.mckv[:r], m.w(o.kvnorm, r), 0, 1, r, float32(c.NormEps))
	copy(kpe, g.mckv[r:])
	m.ropeAt(kpe, 1, dr, dr, pos)
	m.ropeAt(g.mq[dn:], H, dqk, dr, pos)
	wkvb := m.w(o.wkvb, H*(dn+dv)*r)
	scale := float32(1 / math.Sqrt(float64(dqk)))
	for h := range H {
		q := g.mq[h*dqk : (h+1)*dqk]
		clear(g.qlat)
		for i := range dn {
			vecmath.Axpy(q[i], wkvb[(h*(dn+dv)+i)*r:(h*(dn+dv)+i+1)*r], g.qlat)
		}
		s := g.scores[:pos+1]
		for j := range s {
			s[j] = (vecmath.Dot(g.qlat, g.lat[l][j*r:(j+1)*r]) + vecmath.Dot(q[dn:], g.kpe[l][j*dr:(j+1)*dr])) * scale
		}
		mx := vecmath.Max(s)
		z := vecmath.ExpSub(s, s, mx)
		clear(g.olat)
		for j, p := range s {
			vecmath.Axpy(p/z, g.lat[l][j*r:(j+1)*r], g.olat)
		}
		out := g.ao[h*dv : (h+1)*dv]
		for t := range dv {
			out[t] = vecmath.Dot(wkvb[(h*(dn+dv)+dn+t)*r:(h*(dn+dv)+dn+t+1)*r], g.olat)
		}
	}
}
