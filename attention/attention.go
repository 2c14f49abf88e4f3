// Package attention is causal scaled dot-product attention for one
// (sequence, head) at a time, forward and backward, over float32 rows
// laid out as the models keep them (a head's rows a fixed stride apart).
//
// It works by strips of Strip query rows: a strip's scores against the
// keys up to its last row, at most Strip×T floats, stay in cache while
// they become probabilities and are multiplied out, so the T×T matrix of
// a head never exists, forward or backward, and nothing of size T×T is
// kept between the two (FlashAttention's point, for CPU caches): the
// backward recomputes each strip's probabilities, bitwise as the forward
// computed them. Every element is summed in a fixed order, so results
// depend on the inputs and the kernel path only.
package attention

import (
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/vecmath"
)

// Strip is how many query rows are taken at once.
const Strip = 96

// Scratch is the number of floats of per-thread scratch Forward and
// Backward need at context T: a strip of probabilities and one of their
// gradients.
func Scratch(T int) int { return 2 * min(T, Strip) * T }

// Head is one (sequence, head): row t of the queries is Q[t·QS:][:DQK],
// of the keys K[t·KS:][:DQK], of the values V[t·VS:][:DV], for t < T.
type Head struct {
	Q, K, V    []float32
	QS, KS, VS int
	T          int
	DQK, DV    int
	Scale      float32 // of the scores, usually 1/√DQK
}

// Forward writes the head's output row t to y[t·ys:][:DV]: the softmax of
// the scaled scores of query t against keys 0..t, times the values.
// scratch holds at least Scratch(T) floats. It panics if a slice is too
// short for the shape.
func Forward(ws *kernels.Workspace, h Head, y []float32, ys int, scratch []float32) {
	T := h.T
	p := scratch[:min(T, Strip)*T]
	for r0 := 0; r0 < T; r0 += Strip {
		m := min(Strip, T-r0)
		n := r0 + m
		probs(ws, h, p, r0, m, n)
		ws.SgemmDiag(false, false, m, h.DV, n, p, n, h.V, h.VS, y[r0*ys:], ys, false, kernels.LowerA, r0)
	}
}

// Backward writes the gradients of the head's queries to dq (rows dqs
// apart) and of its keys and values to dk and dv (rows dks and dvs apart)
// given dy (rows dys apart), the gradient of Forward's output. With acc
// the key and value gradients are added to what dk and dv hold (heads
// that share keys and values); dq is always overwritten. scratch holds at
// least Scratch(T) floats. It panics if a slice is too short.
func Backward(ws *kernels.Workspace, h Head, dy []float32, dys int, dq []float32, dqs int, dk []float32, dks int, dv []float32, dvs int, acc bool, scratch []float32) {
	T := h.T
	S := min(T, Strip) * T
	p, ds := scratch[:S], scratch[S:2*S]
	// Strips from the last, which reaches every key and so writes every
	// row of dk and dv, to the first; the others add to them.
	for r0 := (T - 1) / Strip * Strip; r0 >= 0; r0 -= Strip {
		m := min(Strip, T-r0)
		n := r0 + m
		probs(ws, h, p, r0, m, n)
		ws.SgemmDiag(false, true, m, n, h.DV, dy[r0*dys:], dys, h.V, h.VS, ds, n, false, kernels.LowerC, r0)
		for i := range m {
			pr := p[i*n : i*n+r0+i+1]
			dr := ds[i*n : i*n+len(pr)]
			vecmath.SoftmaxGrad(dr, pr, vecmath.Dot(pr, dr), h.Scale)
			clear(ds[i*n+len(pr) : i*n+n])
		}
		add := acc || n < T
		ws.SgemmDiag(false, false, m, h.DQK, n, ds, n, h.K, h.KS, dq[r0*dqs:], dqs, false, kernels.LowerA, r0)
		ws.SgemmDiag(true, false, n, h.DQK, m, ds, n, h.Q[r0*h.QS:], h.QS, dk, dks, add, kernels.UpperA, -r0)
		ws.SgemmDiag(true, false, n, h.DV, m, p, n, dy[r0*dys:], dys, dv, dvs, add, kernels.UpperA, -r0)
	}
}

// probs writes into p (rows n floats apart) the causal softmax of the
// scaled scores of query rows r0..r0+m-1 against keys 0..n-1, zero above
// the diagonal.
func probs(ws *kernels.Workspace, h Head, p []float32, r0, m, n int) {
	ws.SgemmDiag(false, true, m, n, h.DQK, h.Q[r0*h.QS:], h.QS, h.K, h.KS, p, n, false, kernels.LowerC, r0)
	for i := range m {
		row := p[i*n : i*n+r0+i+1]
		vecmath.Scale(h.Scale, row)
		mx := vecmath.Max(row)
		sum := vecmath.ExpSub(row, row, mx)
		vecmath.Scale(1/sum, row)
		clear(p[i*n+r0+i+1 : i*n+n])
	}
}
