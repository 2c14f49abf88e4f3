package llama

import (
	"math"

	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/vecmath"
)

// attnJob is causal grouped-query attention over the pool's threads.
// Query head h of position t is q[t·qs + h·dqk:][:dqk]; key/value head g
// is k[t·ks + g·dqk:][:dqk] and v[t·vs + g·dv:][:dv]; query head h reads
// key/value head h/(H/KV). Forward, one unit per (sequence, query head):
// the probabilities att ([B, H, T, T], zero above the diagonal) and ao
// ([B·T, H·dv]). Backward, one unit per (sequence, key/value head), which
// owns that head's dk and dv and runs every query head that reads it: dq,
// dk, dv (laid out as q, k, v) from dao, with a per-thread [T, T] scratch.
type attnJob struct {
	pool             *kernels.Pool
	q, k, v, att, ao []float32
	dao, dq, dk, dv  []float32
	qs, ks, vs       int // row strides
	dqk, dvh         int // head widths of q and k, of v
	scratch          [][]float32
	T, H, KV         int
	backward         bool
}

func (j *attnJob) Do(worker, lo, hi int) {
	ws := j.pool.Workspace(worker)
	T, H, KV, dqk, dv := j.T, j.H, j.KV, j.dqk, j.dvh
	O, rep := H*dv, H/KV // ao's row stride
	scale := float32(1 / math.Sqrt(float64(dqk)))
	if !j.backward {
		for u := lo; u < hi; u++ {
			b, h := u/H, u%H
			kh := h / rep
			q, k, v := j.q[b*T*j.qs+h*dqk:], j.k[b*T*j.ks+kh*dqk:], j.v[b*T*j.vs+kh*dv:]
			p := j.att[u*T*T : (u+1)*T*T]
			ws.Sgemm(false, true, T, T, dqk, q, j.qs, k, j.ks, p, T, false, kernels.LowerC)
			for i := range T {
				row := p[i*T : i*T+i+1]
				vecmath.Scale(scale, row)
				mx := vecmath.Max(row)
				sum := vecmath.ExpSub(row, row, mx)
				vecmath.Scale(1/sum, row)
				clear(p[i*T+i+1 : i*T+T])
			}
			ws.Sgemm(false, false, T, dv, T, p, T, v, j.vs, j.ao[b*T*O+h*dv:], O, false, kernels.LowerA)
		}
		return
	}
	ds := j.scratch[worker]
	for u := lo; u < hi; u++ {
		b, kh := u/KV, u%KV
		k, v := j.k[b*T*j.ks+kh*dqk:], j.v[b*T*j.vs+kh*dv:]
		dk, dvv := j.dk[b*T*j.ks+kh*dqk:], j.dv[b*T*j.vs+kh*dv:]
		for r := range rep {
			h := kh*rep + r
			p := j.att[(b*H+h)*T*T : (b*H+h+1)*T*T]
			q, dao, dq := j.q[b*T*j.qs+h*dqk:], j.dao[b*T*O+h*dv:], j.dq[b*T*j.qs+h*dqk:]
			ws.Sgemm(false, true, T, T, dv, dao, O, v, j.vs, ds, T, false, kernels.LowerC)
			for i := range T {
				pr, dr := p[i*T:i*T+i+1], ds[i*T:i*T+i+1]
				s := vecmath.Dot(pr, dr)
				for x, pv := range pr {
					dr[x] = pv * (dr[x] - s) * scale
				}
				clear(ds[i*T+i+1 : i*T+T])
			}
			ws.Sgemm(false, false, T, dqk, T, ds, T, k, j.ks, dq, j.qs, false, kernels.LowerA)
			ws.Sgemm(true, false, T, dqk, T, ds, T, q, j.qs, dk, j.ks, r > 0, kernels.UpperA)
			ws.Sgemm(true, false, T, dv, T, p, T, dao, O, dvv, j.vs, r > 0, kernels.UpperA)
		}
	}
}
