package llama

import (
	"math"

	"github.com/cairnlabs/cairn/attention"
	"github.com/cairnlabs/cairn/kernels"
)

// attnJob is causal grouped-query attention over the pool's threads, by
// package attention's strips (no T×T matrix is kept). Query head h of
// position t is q[t·qs + h·dqk:][:dqk]; key/value head g is
// k[t·ks + g·dqk:][:dqk] and v[t·vs + g·dv:][:dv]; query head h reads
// key/value head h/(H/KV). Forward, one unit per (sequence, query head):
// ao ([B·T, H·dv]). Backward, one unit per (sequence, key/value head),
// which owns that head's dk and dv and runs every query head that reads
// it: dq, dk, dv (laid out as q, k, v) from dao.
type attnJob struct {
	pool            *kernels.Pool
	q, k, v, ao     []float32
	dao, dq, dk, dv []float32
	qs, ks, vs      int // row strides
	dqk, dvh        int // head widths of q and k, of v
	scratch         [][]float32
	T, H, KV        int
	backward        bool
}

func (j *attnJob) Do(worker, lo, hi int) {
	ws := j.pool.Workspace(worker)
	T, H, KV, dqk, dv := j.T, j.H, j.KV, j.dqk, j.dvh
	O, rep := H*dv, H/KV // ao's row stride
	scale := float32(1 / math.Sqrt(float64(dqk)))
	head := func(b, h int) attention.Head {
		kh := h / rep
		return attention.Head{Q: j.q[b*T*j.qs+h*dqk:], K: j.k[b*T*j.ks+kh*dqk:], V: j.v[b*T*j.vs+kh*dv:],
			QS: j.qs, KS: j.ks, VS: j.vs, T: T, DQK: dqk, DV: dv, Scale: scale}
	}
	if !j.backward {
		for u := lo; u < hi; u++ {
			b, h := u/H, u%H
			attention.Forward(ws, head(b, h), j.ao[b*T*O+h*dv:], O, j.scratch[worker])
		}
		return
	}
	for u := lo; u < hi; u++ {
		b, kh := u/KV, u%KV
		dk, dvv := j.dk[b*T*j.ks+kh*dqk:], j.dv[b*T*j.vs+kh*dv:]
		for r := range rep {
			h := kh*rep + r
			attention.Backward(ws, head(b, h), j.dao[b*T*O+h*dv:], O, j.dq[b*T*j.qs+h*dqk:], j.qs, dk, j.ks, dvv, j.vs, r > 0, j.scratch[worker])
		}
	}
}
