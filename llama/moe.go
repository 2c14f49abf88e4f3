package llama

import (
	"math"

	"github.com/cairnlabs/cairn/vecmath"
)

// moeActs are a mixture-of-experts layer's activations for N positions.
// Each position's TopK choices are assignments n·TopK+j; order lists the
// assignments expert by expert (expert e's from start[e] to start[e+1]),
// and the gathered buffers hold one row per assignment in that order.
type moeActs struct {
	aff    []float32 // [N, E] sigmoid affinities
	sel    []int32   // [N·k] chosen experts
	wt     []float32 // [N·k] their weights
	affSum []float32 // [N] the chosen affinities' sum
	order  []int32   // [N·k] assignments in expert order
	pos    []int32   // [N·k] where each assignment is in that order
	start  []int     // [E+1]
	loads  []int     // [E] assignments per expert in the last forward pass
	xg, yg []float32 // [N·k, D] gathered inputs, expert outputs (unweighted)
	gug    []float32 // [N·k, 2Fe]
	sigg   []float32 // [N·k, Fe]
	actg   []float32 // [N·k, Fe]
	gus    []float32 // [N, 2Fs] the shared experts'
	sigs   []float32 // [N, Fs]
	acts   []float32 // [N, Fs]
}

func (a *moeActs) size(c Config, N int) {
	E, k, D, Fe, Fs := c.Experts, c.TopK, c.Dim, c.ExpertHidden, c.ExpertHidden*c.SharedExperts
	a.aff, a.wt, a.affSum = grow(a.aff, N*E), grow(a.wt, N*k), grow(a.affSum, N)
	if cap(a.sel) < N*k {
		a.sel, a.order, a.pos = make([]int32, N*k), make([]int32, N*k), make([]int32, N*k)
	}
	a.sel, a.order, a.pos = a.sel[:N*k], a.order[:N*k], a.pos[:N*k]
	if len(a.start) != E+1 {
		a.start, a.loads = make([]int, E+1), make([]int, E)
	}
	a.xg, a.yg = grow(a.xg, N*k*D), grow(a.yg, N*k*D)
	a.gug, a.sigg, a.actg = grow(a.gug, N*k*2*Fe), grow(a.sigg, N*k*Fe), grow(a.actg, N*k*Fe)
	a.gus, a.sigs, a.acts = grow(a.gus, N*2*Fs), grow(a.sigs, N*Fs), grow(a.acts, N*Fs)
}

// moeScratch is the backward pass's scratch for a mixture-of-experts layer.
type moeScratch struct {
	dyg, dxg  []float32 // [N·k, D]
	dgug, dag []float32 // [N·k, 2Fe], [N·k, Fe]
	dgus, das []float32 // [N, 2Fs], [N, Fs]
	dwt       []float32 // [N·k]
	dlog      []float32 // [N, E]
}

func (s *moeScratch) size(c Config, N int) {
	E, k, D, Fe, Fs := c.Experts, c.TopK, c.Dim, c.ExpertHidden, c.ExpertHidden*c.SharedExperts
	s.dyg, s.dxg = grow(s.dyg, N*k*D), grow(s.dxg, N*k*D)
	s.dgug, s.dag = grow(s.dgug, N*k*2*Fe), grow(s.dag, N*k*Fe)
	s.dgus, s.das = grow(s.dgus, N*2*Fs), grow(s.das, N*Fs)
	s.dwt, s.dlog = grow(s.dwt, N*k), grow(s.dlog, N*E)
}

// moeForward adds layer l's mixture of experts of h2 into out: the
// shared experts' SwiGLU and each token's TopK routed experts, weighted.
// Each routed expert computes only the rows routed to it.
func (m *Model) moeForward(l int, out []float32) {
	c, a := m.Config, &m.a
	L, o := &a.layers[l], m.off.layers[l]
	M := &L.moe
	N, D, E, k, Fs := a.B*a.T, c.Dim, c.Experts, c.TopK, c.ExpertHidden*c.SharedExperts
	scale := float32(c.RouteScale)
	m.pool.Sgemm(false, true, N, E, D, L.h2, D, m.w(o.router, E*D), D, M.aff, E, false)
	bias := m.w(o.rbias, E)
	m.rows(N, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			aff := M.aff[n*E : (n+1)*E]
			for e, v := range aff {
				aff[e] = 1 / (1 + float32(math.Exp(float64(-v))))
			}
			// The k highest affinity + bias (ties: the lower expert).
			sel := M.sel[n*k : (n+1)*k]
			var sum float32
			for j := range k {
				best := -1
				for e := range E {
					taken := false
					for _, s := range sel[:j] {
						taken = taken || int(s) == e
					}
					if !taken && (best < 0 || aff[e]+bias[e] > aff[best]+bias[best]) {
						best = e
					}
				}
				sel[j] = int32(best)
				sum += aff[best]
			}
			M.affSum[n] = sum
			for j, e := range sel {
				M.wt[n*k+j] = aff[e] / sum * scale
			}
		}
	})
	// Assignments expert by expert.
	clear(M.loads)
	for _, e := range M.sel {
		M.loads[e]++
	}
	M.start[0] = 0
	for e := range E {
		M.start[e+1] = M.start[e] + M.loads[e]
	}
	next := append([]int(nil), M.start[:E]...)
	for as, e := range M.sel {
		p := next[e]
		next[e]++
		M.order[p], M.pos[as] = int32(as), int32(p)
	}
	m.rows(N*k, func(lo, hi int) {
		for p := lo; p < hi; p++ {
			n := int(M.order[p]) / k
			copy(M.xg[p*D:(p+1)*D], L.h2[n*D:(n+1)*D])
		}
	})
	m.pool.Run(E, &expertsJob{m: m, l: l})
	m.rows(N, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			for j := range k {
				p := int(M.pos[n*k+j])
				vecmath.Axpy(M.wt[n*k+j], M.yg[p*D:(p+1)*D], out[n*D:(n+1)*D])
			}
		}
	})
	if Fs > 0 {
		m.swigluForward(L.h2, N, Fs, o.shared, o.shared+2*Fs*D, M.gus, M.sigs, M.acts, out)
	}
}

// expertsJob runs layer l's routed experts side by side, one expert a
// unit on its thread's workspace (each expert owns its weights' gradients
// and its rows): forward, their outputs yg; backward, their inputs'
// gradients dxg.
type expertsJob struct {
	m        *Model
	l        int
	backward bool
}

func (j *expertsJob) Do(worker, lo, hi int) {
	m := j.m
	c, a := m.Config, &m.a
	L, o := &a.layers[j.l], m.off.layers[j.l]
	M, S := &L.moe, &a.moe
	D, Fe := c.Dim, c.ExpertHidden
	ws := m.pool.Workspace(worker)
	for e := lo; e < hi; e++ {
		s, rows, g := M.start[e], M.loads[e], o.experts[e]
		if j.backward {
			m.swigluOn(ws, true, M.xg[s*D:], rows, Fe, g, g+2*Fe*D, M.gug[s*2*Fe:], M.sigg[s*Fe:], M.actg[s*Fe:], S.dxg[s*D:],
				S.dyg[s*D:], S.dgug[s*2*Fe:], S.dag[s*Fe:])
		} else {
			m.swigluOn(ws, false, M.xg[s*D:], rows, Fe, g, g+2*Fe*D, M.gug[s*2*Fe:], M.sigg[s*Fe:], M.actg[s*Fe:], M.yg[s*D:], nil, nil, nil)
		}
	}
}

// moeBackward is moeForward's backward pass given dy, the gradient of its
// output: it accumulates the experts' and the router's gradients and
// writes a.dh, the gradient of h2. The balancing bias gets none.
func (m *Model) moeBackward(l int, dy []float32) {
	c, a := m.Config, &m.a
	L, o := &a.layers[l], m.off.layers[l]
	M, S := &L.moe, &a.moe
	N, D, E, k, Fs := a.B*a.T, c.Dim, c.Experts, c.TopK, c.ExpertHidden*c.SharedExperts
	scale := float32(c.RouteScale)
	if Fs > 0 {
		m.swigluBackward(dy, L.h2, N, Fs, o.shared, o.shared+2*Fs*D, M.gus, M.sigs, M.acts, S.dgus, S.das, a.dh, false)
	} else {
		clear(a.dh)
	}
	// Each assignment's output gradient and its weight's gradient.
	m.rows(N, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			d := dy[n*D : (n+1)*D]
			for j := range k {
				as := n*k + j
				p := int(M.pos[as])
				dyg := S.dyg[p*D : (p+1)*D]
				for i, v := range d {
					dyg[i] = M.wt[as] * v
				}
				S.dwt[as] = vecmath.Dot(d, M.yg[p*D:(p+1)*D])
			}
		}
	})
	m.pool.Run(E, &expertsJob{m: m, l: l, backward: true})
	// Back to the positions, and through the router.
	m.rows(N, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			dh := a.dh[n*D : (n+1)*D]
			for j := range k {
				p := int(M.pos[n*k+j])
				vecmath.Add(dh, S.dxg[p*D:(p+1)*D])
			}
			// w_j = scale·a_j/Σa: ∂L/∂a_i = scale·(dw_i − Σ_j dw_j·w_j/scale)/Σa.
			aff, dlog := M.aff[n*E:(n+1)*E], S.dlog[n*E:(n+1)*E]
			clear(dlog)
			var t float32
			for j := range k {
				t += S.dwt[n*k+j] * M.wt[n*k+j]
			}
			sum := M.affSum[n]
			for j, e := range M.sel[n*k : (n+1)*k] {
				da := (scale*S.dwt[n*k+j] - t) / sum
				dlog[e] = da * aff[e] * (1 - aff[e])
			}
		}
	})
	m.pool.Sgemm(true, false, E, D, N, S.dlog, E, L.h2, D, m.dw(o.router, E*D), D, true)
	m.pool.Sgemm(false, false, N, D, E, S.dlog, E, m.w(o.router, E*D), D, a.dh, D, true)
}

// Balance moves each layer's balancing bias by gamma towards an even
// load (DeepSeek-V3's auxiliary-loss-free balancing): down for an expert
// that took more than its share of the last forward pass's assignments,
// up for one that took fewer. A model without experts is unchanged.
func (m *Model) Balance(gamma float32) {
	c := m.Config
	if c.Experts == 0 || len(m.a.layers) == 0 {
		return
	}
	mean := float64(m.a.B*m.a.T*c.TopK) / float64(c.Experts)
	for l := range c.Layers {
		bias := m.w(m.off.layers[l].rbias, c.Experts)
		for e, n := range m.a.layers[l].moe.loads {
			switch {
			case float64(n) > mean:
				bias[e] -= gamma
			case float64(n) < mean:
				bias[e] += gamma
			}
		}
	}
}

// Loads returns how many of the last forward pass's assignments each
// routed expert of layer l took (nil without experts).
func (m *Model) Loads(l int) []int {
	if m.Config.Experts == 0 || l < 0 || l >= len(m.a.layers) {
		return nil
	}
	return m.a.layers[l].moe.loads
}

// moeRow adds layer l's mixture of experts of one position's h into out,
// as moeForward does for a batch (the generator's step). scratch holds
// at least E + D + 3·max(Fe, Fs) values.
func (m *Model) moeRow(l int, h, out, scratch []float32) {
	c, o := m.Config, m.off.layers[l]
	D, E, k, Fe, Fs := c.Dim, c.Experts, c.TopK, c.ExpertHidden, c.ExpertHidden*c.SharedExperts
	F := max(Fe, Fs)
	aff, y, gu, act := scratch[:E], scratch[E:E+D], scratch[E+D:E+D+2*F], scratch[E+D+2*F:E+D+3*F]
	m.pool.Sgemm(false, true, 1, E, D, h, D, m.w(o.router, E*D), D, aff, E, false)
	for e, v := range aff {
		aff[e] = 1 / (1 + float32(math.Exp(float64(-v))))
	}
	bias := m.w(o.rbias, E)
	var sel [64]int
	chosen := sel[:0]
	if k > len(sel) {
		chosen = make([]int, 0, k)
	}
	var sum float32
	for range k {
		best := -1
		for e := range E {
			taken := false
			for _, s := range chosen {
				taken = taken || s == e
			}
			if !taken && (best < 0 || aff[e]+bias[e] > aff[best]+bias[best]) {
				best = e
			}
		}
		chosen = append(chosen, best)
		sum += aff[best]
	}
	ffn := func(g, F int, w float32) {
		m.pool.Sgemm(false, true, 1, 2*F, D, h, D, m.w(g, 2*F*D), D, gu, 2*F, false)
		for i, v := range gu[:F] {
			act[i] = v / (1 + float32(math.Exp(float64(-v)))) * gu[F+i]
		}
		m.pool.Sgemm(false, true, 1, D, F, act, F, m.w(g+2*F*D, D*F), F, y, D, false)
		vecmath.Axpy(w, y, out)
	}
	for _, e := range chosen {
		ffn(o.experts[e], Fe, aff[e]/sum*float32(c.RouteScale))
	}
	if Fs > 0 {
		ffn(o.shared, Fs, 1)
	}
}
