package llama

import (
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/vecmath"
)

// swigluForward adds down(silu(gate(h))·up(h)) for rows of h ([rows, D])
// into out ([rows, D]), with gate and up at wg (one after the other: one
// [2F, D] GEMM) and down at wd ([D, F]); gu ([rows, 2F]), sig (sigmoid of
// the gate) and act ([rows, F]) keep what the backward pass needs.
func (m *Model) swigluForward(h []float32, rows, F, wg, wd int, gu, sig, act, out []float32) {
	D := m.Config.Dim
	if rows == 0 {
		return
	}
	m.pool.Sgemm(false, true, rows, 2*F, D, h, D, m.w(wg, 2*F*D), D, gu, 2*F, false)
	m.rows(rows, func(lo, hi int) { siluGate(gu, sig, act, F, lo, hi) })
	m.pool.Sgemm(false, true, rows, D, F, act, F, m.w(wd, D*F), F, out, D, true)
}

// swigluBackward is swigluForward's backward pass given dy ([rows, D]):
// it accumulates the weights' gradients and writes dh ([rows, D]; added
// to it when acc), using dgu ([rows, 2F]) and da ([rows, F]) as scratch.
func (m *Model) swigluBackward(dy, h []float32, rows, F, wg, wd int, gu, sig, act, dgu, da, dh []float32, acc bool) {
	D := m.Config.Dim
	if rows == 0 {
		return
	}
	m.pool.Sgemm(true, false, D, F, rows, dy, D, act, F, m.dw(wd, D*F), F, true)
	m.pool.Sgemm(false, false, rows, F, D, dy, D, m.w(wd, D*F), F, da, F, false)
	m.rows(rows, func(lo, hi int) { siluGateBackward(gu, sig, da, dgu, F, lo, hi) })
	m.pool.Sgemm(true, false, 2*F, D, rows, dgu, 2*F, h, D, m.dw(wg, 2*F*D), D, true)
	m.pool.Sgemm(false, false, rows, D, 2*F, dgu, 2*F, m.w(wg, 2*F*D), D, dh, D, acc)
}

// swigluOn is swigluForward (or, backward, swigluBackward with dh not
// accumulated) on one thread's workspace: for the experts, which run side
// by side. out is written, not added to.
func (m *Model) swigluOn(ws *kernels.Workspace, backward bool, h []float32, rows, F, wg, wd int, gu, sig, act, out, dy, dgu, da []float32) {
	D := m.Config.Dim
	if rows == 0 {
		return
	}
	if !backward {
		ws.Sgemm(false, true, rows, 2*F, D, h, D, m.w(wg, 2*F*D), D, gu, 2*F, false, kernels.Full)
		siluGate(gu, sig, act, F, 0, rows)
		ws.Sgemm(false, true, rows, D, F, act, F, m.w(wd, D*F), F, out, D, false, kernels.Full)
		return
	}
	ws.Sgemm(true, false, D, F, rows, dy, D, act, F, m.dw(wd, D*F), F, true, kernels.Full)
	ws.Sgemm(false, false, rows, F, D, dy, D, m.w(wd, D*F), F, da, F, false, kernels.Full)
	siluGateBackward(gu, sig, da, dgu, F, 0, rows)
	ws.Sgemm(true, false, 2*F, D, rows, dgu, 2*F, h, D, m.dw(wg, 2*F*D), D, true, kernels.Full)
	ws.Sgemm(false, false, rows, D, 2*F, dgu, 2*F, m.w(wg, 2*F*D), D, out, D, false, kernels.Full)
}

// siluGate writes act = silu(gate)·up and sig = sigmoid(gate) for rows
// lo..hi of gu (gate | up, [rows, 2F]).
func siluGate(gu, sig, act []float32, F, lo, hi int) {
	for n := lo; n < hi; n++ {
		g, u := gu[n*2*F:n*2*F+F], gu[n*2*F+F:(n+1)*2*F]
		sg, a := sig[n*F:(n+1)*F], act[n*F:(n+1)*F]
		for i, v := range g {
			sg[i] = -v
		}
		vecmath.ExpSub(sg, sg, 0)
		for i, v := range g {
			sg[i] = 1 / (1 + sg[i])
			a[i] = v * sg[i] * u[i]
		}
	}
}

// siluGateBackward writes dgu (d gate | d up) from da, the gradient of
// act, for rows lo..hi.
func siluGateBackward(gu, sig, da, dgu []float32, F, lo, hi int) {
	for n := lo; n < hi; n++ {
		g, u := gu[n*2*F:n*2*F+F], gu[n*2*F+F:(n+1)*2*F]
		dg, du := dgu[n*2*F:n*2*F+F], dgu[n*2*F+F:(n+1)*2*F]
		dn, sg := da[n*F:(n+1)*F], sig[n*F:(n+1)*F]
		for i, gv := range g {
			s := sg[i]
			du[i] = dn[i] * gv * s
			dg[i] = dn[i] * u[i] * s * (1 + gv*(1-s))
		}
	}
}
