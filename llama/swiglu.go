package llama

import "github.com/cairnlabs/cairn/vecmath"

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
	m.rows(rows, func(lo, hi int) {
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
	})
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
	m.rows(rows, func(lo, hi int) {
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
	})
	m.pool.Sgemm(true, false, 2*F, D, rows, dgu, 2*F, h, D, m.dw(wg, 2*F*D), D, true)
	m.pool.Sgemm(false, false, rows, D, 2*F, dgu, 2*F, m.w(wg, 2*F*D), D, dh, D, acc)
}
