package llama

import (
	"math"

	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/vecmath"
)

// attnJob is causal grouped-query attention over the pool's threads.
// Forward, one unit per (sequence, query head): the probabilities
// att ([B, H, T, T], zero above the diagonal) and ao ([B·T, H·hd]) from
// qkv (each row q, k, v: H·hd, KV·hd, KV·hd values). Backward, one unit per
// (sequence, key/value head), which owns that head's dk and dv and runs
// every query head that reads it: dqkv from dao, with a per-thread [T, T]
// scratch.
type attnJob struct {
	pool         *kernels.Pool
	qkv, att, ao []float32 // qkv: [B·T, H·hd + 2·KV·hd]
	dao, dqkv    []float32
	scratch      [][]float32
	T, H, KV, hd int
	backward     bool
}

func (j *attnJob) Do(worker, lo, hi int) {
	ws := j.pool.Workspace(worker)
	T, H, KV, hd := j.T, j.H, j.KV, j.hd
	Q, K, rep := H*hd, KV*hd, H/KV
	S := Q + 2*K // qkv's row stride: q, then k, then v
	scale := float32(1 / math.Sqrt(float64(hd)))
	if !j.backward {
		for u := lo; u < hi; u++ {
			b, h := u/H, u%H
			row := j.qkv[b*T*S:]
			q, k, v := row[h*hd:], row[Q+(h/rep)*hd:], row[Q+K+(h/rep)*hd:]
			p := j.att[u*T*T : (u+1)*T*T]
			ws.Sgemm(false, true, T, T, hd, q, S, k, S, p, T, false, kernels.LowerC)
			for i := range T {
				row := p[i*T : i*T+i+1]
				vecmath.Scale(scale, row)
				mx := vecmath.Max(row)
				sum := vecmath.ExpSub(row, row, mx)
				vecmath.Scale(1/sum, row)
				clear(p[i*T+i+1 : i*T+T])
			}
			ws.Sgemm(false, false, T, hd, T, p, T, v, S, j.ao[b*T*Q+h*hd:], Q, false, kernels.LowerA)
		}
		return
	}
	ds := j.scratch[worker]
	for u := lo; u < hi; u++ {
		b, kh := u/KV, u%KV
		row, drow := j.qkv[b*T*S:], j.dqkv[b*T*S:]
		k, v := row[Q+kh*hd:], row[Q+K+kh*hd:]
		dk, dv := drow[Q+kh*hd:], drow[Q+K+kh*hd:]
		for r := range rep {
			h := kh*rep + r
			p := j.att[(b*H+h)*T*T : (b*H+h+1)*T*T]
			q, dao, dq := row[h*hd:], j.dao[b*T*Q+h*hd:], drow[h*hd:]
			ws.Sgemm(false, true, T, T, hd, dao, Q, v, S, ds, T, false, kernels.LowerC)
			for i := range T {
				pr, dr := p[i*T:i*T+i+1], ds[i*T:i*T+i+1]
				s := vecmath.Dot(pr, dr)
				for x, pv := range pr {
					dr[x] = pv * (dr[x] - s) * scale
				}
				clear(ds[i*T+i+1 : i*T+T])
			}
			ws.Sgemm(false, false, T, hd, T, ds, T, k, S, dq, S, false, kernels.LowerA)
			ws.Sgemm(true, false, T, hd, T, ds, T, q, S, dk, S, r > 0, kernels.UpperA)
			ws.Sgemm(true, false, T, hd, T, p, T, dao, Q, dv, S, r > 0, kernels.UpperA)
		}
	}
}
