package gpt

import (
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/vecmath"
)

// attnJob is causal multi-head self-attention over (sequence, head) pairs.
// Forward: from qkv ([B*T, 3C], q|k|v) it writes the probabilities att
// ([B, NH, T, T], zero above the diagonal) and y ([B*T, C]). Backward: from
// dy it writes dqkv, using a per-thread [T, T] scratch for the gradient of
// the scores.
type attnJob struct {
	pool                  *kernels.Pool
	qkv, att, y, dy, dqkv []float32
	scratch               [][]float32
	T, C, NH              int
	scale                 float32
	backward              bool
}

func (j *attnJob) Do(worker, lo, hi int) {
	ws := j.pool.Workspace(worker)
	T, C, NH := j.T, j.C, j.NH
	hd := C / NH
	for u := lo; u < hi; u++ {
		b, h := u/NH, u%NH
		base := b*T*3*C + h*hd
		q, k, v := j.qkv[base:], j.qkv[base+C:], j.qkv[base+2*C:]
		p := j.att[u*T*T : (u+1)*T*T]
		yoff := b*T*C + h*hd
		if !j.backward {
			ws.Sgemm(false, true, T, T, hd, q, 3*C, k, 3*C, p, T, false, kernels.LowerC)
			// Scale every score in one call (the product leaves finite
			// values or the zeros cleared last time above the diagonal),
			// then each row's softmax.
			vecmath.Scale(j.scale, p)
			for i := 0; i < T; i++ {
				row := p[i*T : i*T+i+1]
				mx := vecmath.Max(row)
				sum := vecmath.ExpSub(row, row, mx)
				vecmath.Scale(1/sum, row)
				clear(p[i*T+i+1 : i*T+T])
			}
			ws.Sgemm(false, false, T, hd, T, p, T, v, 3*C, j.y[yoff:], C, false, kernels.LowerA)
			continue
		}
		dy := j.dy[yoff:]
		ds := j.scratch[worker]
		ws.Sgemm(false, true, T, T, hd, dy, C, v, 3*C, ds, T, false, kernels.LowerC)
		for i := 0; i < T; i++ {
			pr := p[i*T : i*T+i+1]
			dr := ds[i*T : i*T+i+1]
			s := vecmath.Dot(pr, dr)
			for x, pv := range pr {
				dr[x] = pv * (dr[x] - s) * j.scale
			}
			clear(ds[i*T+i+1 : i*T+T])
		}
		dq := j.dqkv[base:]
		ws.Sgemm(false, false, T, hd, T, ds, T, k, 3*C, dq, 3*C, false, kernels.LowerA)
		ws.Sgemm(true, false, T, hd, T, ds, T, q, 3*C, j.dqkv[base+C:], 3*C, false, kernels.UpperA)
		ws.Sgemm(true, false, T, hd, T, p, T, dy, C, j.dqkv[base+2*C:], 3*C, false, kernels.UpperA)
	}
}
