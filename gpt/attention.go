package gpt

import (
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/vecmath"
)

// attnStrip is how many query rows attention takes at once. Their scores
// against the keys up to the strip's last row, a strip of at most
// attnStrip×T floats, stay in cache; the T×T matrix of a (sequence, head)
// never exists, forward or backward, and nothing of size T×T is kept
// between them: the backward recomputes each strip's probabilities,
// bitwise as the forward computed them.
const attnStrip = 96

// attnScratch is the per-thread scratch attention needs at context T: the
// strip of probabilities and the strip of their gradients.
func attnScratch(T int) int { return 2 * min(T, attnStrip) * T }

// attnJob is causal multi-head self-attention over (sequence, head) pairs.
// Forward: from qkv ([B*T, 3C], q|k|v) it writes y ([B*T, C]). Backward:
// from qkv and dy it writes dqkv. Each (sequence, head) is one thread's,
// so results do not depend on the thread count.
type attnJob struct {
	pool             *kernels.Pool
	qkv, y, dy, dqkv []float32
	scratch          [][]float32 // per thread, attnScratch(T) floats
	T, C, NH         int
	scale            float32
	backward         bool
}

func (j *attnJob) Do(worker, lo, hi int) {
	ws := j.pool.Workspace(worker)
	T, C, NH := j.T, j.C, j.NH
	hd, ld := C/NH, 3*C
	S := min(T, attnStrip) * T
	p, ds := j.scratch[worker][:S], j.scratch[worker][S:2*S]
	for u := lo; u < hi; u++ {
		b, h := u/NH, u%NH
		base := b*T*ld + h*hd
		q, k, v := j.qkv[base:], j.qkv[base+C:], j.qkv[base+2*C:]
		yoff := b*T*C + h*hd
		if !j.backward {
			for r0 := 0; r0 < T; r0 += attnStrip {
				m := min(attnStrip, T-r0)
				n := r0 + m
				j.probs(ws, p, q[r0*ld:], k, ld, r0, m, n)
				ws.SgemmDiag(false, false, m, hd, n, p, n, v, ld, j.y[yoff+r0*C:], C, false, kernels.LowerA, r0)
			}
			continue
		}
		dy := j.dy[yoff:]
		dq, dk, dv := j.dqkv[base:], j.dqkv[base+C:], j.dqkv[base+2*C:]
		// Strips from the last, which reaches every key and so writes
		// every row of dK and dV, to the first; the others add to them.
		for r0 := (T - 1) / attnStrip * attnStrip; r0 >= 0; r0 -= attnStrip {
			m := min(attnStrip, T-r0)
			n := r0 + m
			j.probs(ws, p, q[r0*ld:], k, ld, r0, m, n)
			ws.SgemmDiag(false, true, m, n, hd, dy[r0*C:], C, v, ld, ds, n, false, kernels.LowerC, r0)
			for i := range m {
				pr := p[i*n : i*n+r0+i+1]
				dr := ds[i*n : i*n+len(pr)]
				vecmath.SoftmaxGrad(dr, pr, vecmath.Dot(pr, dr), j.scale)
				clear(ds[i*n+r0+i+1 : i*n+n])
			}
			acc := n < T
			ws.SgemmDiag(false, false, m, hd, n, ds, n, k, ld, dq[r0*ld:], ld, false, kernels.LowerA, r0)
			ws.SgemmDiag(true, false, n, hd, m, ds, n, q[r0*ld:], ld, dk, ld, acc, kernels.UpperA, -r0)
			ws.SgemmDiag(true, false, n, hd, m, p, n, dy[r0*C:], C, dv, ld, acc, kernels.UpperA, -r0)
		}
	}
}

// probs writes into p (rows n floats apart) the causal softmax of the
// scaled scores of the m query rows at q (the sequence's rows r0 on)
// against keys 0..n-1, zero above the diagonal.
func (j *attnJob) probs(ws *kernels.Workspace, p, q, k []float32, ld, r0, m, n int) {
	hd := j.C / j.NH
	ws.SgemmDiag(false, true, m, n, hd, q, ld, k, ld, p, n, false, kernels.LowerC, r0)
	for i := range m {
		row := p[i*n : i*n+r0+i+1]
		vecmath.Scale(j.scale, row)
		mx := vecmath.Max(row)
		sum := vecmath.ExpSub(row, row, mx)
		vecmath.Scale(1/sum, row)
		clear(p[i*n+r0+i+1 : i*n+n])
	}
}
