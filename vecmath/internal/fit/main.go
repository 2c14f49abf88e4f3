// Command fit computes the polynomial coefficients used by package vecmath
// for exp and erf/erfc, and reports their accuracy when evaluated in float32
// arithmetic exactly as the kernels evaluate them.
//
// The fits are weighted minimax fits on a dense grid, computed with Lawson's
// iteratively reweighted least squares (each least-squares step solved by
// Householder QR in float64). Coefficients are then rounded to float32 one
// at a time, refitting the remaining ones after each rounding.
//
// Run with: go run ./vecmath/internal/fit
//
// With the default flags it reproduces the coefficients of
// vecmath/internal/coef (shared by the portable Go kernels and the
// assembly generator vecmath/internal/gen), and prints the errors of a
// float32 simulation of the kernels (exp, erf, Phi, GELU and its
// derivative) over dense sweeps.
package main

import (
	"flag"
	"fmt"
	"math"
)

// lsq solves min ||A c - b||_2 by Householder QR. A is m×n (row-major) and
// is destroyed.
func lsq(a [][]float64, b []float64) []float64 {
	m, n := len(a), len(a[0])
	b = append([]float64(nil), b...)
	for k := 0; k < n; k++ {
		var norm float64
		for i := k; i < m; i++ {
			norm = math.Hypot(norm, a[i][k])
		}
		if a[k][k] > 0 {
			norm = -norm
		}
		// v = a[k:,k] - norm*e1
		v := make([]float64, m-k)
		for i := k; i < m; i++ {
			v[i-k] = a[i][k]
		}
		v[0] -= norm
		var vv float64
		for _, x := range v {
			vv += x * x
		}
		if vv == 0 {
			continue
		}
		for j := k; j < n; j++ {
			var s float64
			for i := k; i < m; i++ {
				s += v[i-k] * a[i][j]
			}
			s = 2 * s / vv
			for i := k; i < m; i++ {
				a[i][j] -= s * v[i-k]
			}
		}
		var s float64
		for i := k; i < m; i++ {
			s += v[i-k] * b[i]
		}
		s = 2 * s / vv
		for i := k; i < m; i++ {
			b[i] -= s * v[i-k]
		}
	}
	c := make([]float64, n)
	for k := n - 1; k >= 0; k-- {
		s := b[k]
		for j := k + 1; j < n; j++ {
			s -= a[k][j] * c[j]
		}
		c[k] = s / a[k][k]
	}
	return c
}

// problem is a linear weighted minimax problem on a grid: minimise
// max_i |w_i * (sum_j c_j basis_j(x_i) - f_i)|.
type problem struct {
	x, f, w []float64
	basis   func(j int, x float64) float64
	n       int
}

// minimax runs Lawson's algorithm with the coefficients listed in fixed held
// at the given values (NaN = free).
func (p *problem) minimax(fixed []float64, iters int) []float64 {
	m := len(p.x)
	lam := make([]float64, m)
	for i := range lam {
		lam[i] = 1 / float64(m)
	}
	var free []int
	for j := 0; j < p.n; j++ {
		if math.IsNaN(fixed[j]) {
			free = append(free, j)
		}
	}
	c := append([]float64(nil), fixed...)
	for it := 0; it < iters; it++ {
		a := make([][]float64, m)
		b := make([]float64, m)
		for i := 0; i < m; i++ {
			s := math.Sqrt(lam[i]) * p.w[i]
			row := make([]float64, len(free))
			r := p.f[i]
			for j := 0; j < p.n; j++ {
				if !math.IsNaN(fixed[j]) {
					r -= fixed[j] * p.basis(j, p.x[i])
				}
			}
			for k, j := range free {
				row[k] = s * p.basis(j, p.x[i])
			}
			a[i] = row
			b[i] = s * r
		}
		sol := lsq(a, b)
		for k, j := range free {
			c[j] = sol[k]
		}
		var tot float64
		for i := 0; i < m; i++ {
			e := math.Abs(p.err(c, i))
			lam[i] *= e
			tot += lam[i]
		}
		if tot == 0 {
			break
		}
		for i := range lam {
			lam[i] /= tot
		}
	}
	return c
}

func (p *problem) err(c []float64, i int) float64 {
	var s float64
	for j := 0; j < p.n; j++ {
		s += c[j] * p.basis(j, p.x[i])
	}
	return p.w[i] * (s - p.f[i])
}

func (p *problem) maxErr(c []float64) float64 {
	var mx float64
	for i := range p.x {
		mx = math.Max(mx, math.Abs(p.err(c, i)))
	}
	return mx
}

// fit32 fits, then rounds coefficients to float32 one by one (highest
// degree first), refitting the rest each time.
func (p *problem) fit32(iters int) []float32 {
	fixed := make([]float64, p.n)
	for j := range fixed {
		fixed[j] = math.NaN()
	}
	c := p.minimax(fixed, iters)
	fmt.Printf("  float64 minimax max weighted error %.3g\n", p.maxErr(c))
	for j := p.n - 1; j >= 0; j-- {
		fixed[j] = float64(float32(c[j]))
		c = p.minimax(fixed, iters)
	}
	fmt.Printf("  float32-rounded coefficients max weighted error %.3g\n", p.maxErr(c))
	out := make([]float32, p.n)
	for j := range c {
		out[j] = float32(c[j])
	}
	return out
}

func grid(lo, hi float64, n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		// Chebyshev-like clustering towards the ends.
		t := 0.5 - 0.5*math.Cos(math.Pi*float64(i)/float64(n-1))
		x[i] = lo + (hi-lo)*t
	}
	return x
}

func fma32(a, b, c float32) float32 {
	return float32(math.FMA(float64(a), float64(b), float64(c)))
}

func horner(c []float32, x float32) float32 {
	p := c[len(c)-1]
	for j := len(c) - 2; j >= 0; j-- {
		p = fma32(p, x, c[j])
	}
	return p
}

func printCoeffs(name string, c []float32) {
	for j, v := range c {
		fmt.Printf("\t%s%d = %.9g // %#08x\n", name, j, v, math.Float32bits(v))
	}
}

func main() {
	erfSplit := flag.Float64("b", 0.921875, "erf small/large split point (in z = x/sqrt2)")
	erfTop := flag.Float64("T", 4, "upper end of the erfcx fit")
	degS := flag.Int("ds", 6, "degree (in s=z*z) of the small-|z| erf polynomial")
	degR := flag.Int("dr", 11, "degree of the erfcx polynomial")
	center := flag.Float64("c", 2.3, "erfcx polynomial is in u = t - c")
	iters := flag.Int("iters", 400, "Lawson iterations")
	flag.Parse()

	// exp(r) on |r| <= ln2/2 (plus margin): 1 + r + sum_{j=2..6} c_j r^j,
	// relative error.
	{
		fmt.Println("exp: 1 + r + c2 r^2 + ... + c6 r^6 on [-0.3466, 0.3466] (relative)")
		lim := 0.3466 + 1e-3
		x := grid(-lim, lim, 2001)
		p := &problem{x: x, n: 5}
		p.basis = func(j int, r float64) float64 { return math.Pow(r, float64(j+2)) }
		for _, r := range x {
			p.f = append(p.f, math.Expm1(r)-r)
			p.w = append(p.w, 1/math.Exp(r))
		}
		c := p.fit32(*iters)
		printCoeffs("exp", append([]float32{1, 1}, c...))
		// float32 evaluation error of the polynomial alone.
		var mx float64
		for _, r := range grid(-lim, lim, 200001) {
			r32 := float32(r)
			q := horner(c, r32)
			q = fma32(q, r32, 1)
			q = fma32(q, r32, 1)
			e := math.Abs(float64(q)/math.Exp(float64(r32)) - 1)
			mx = math.Max(mx, e)
		}
		fmt.Printf("  float32 evaluation max relative error %.3g\n", mx)
	}

	// erf(z)/z = S(z^2) on [0, b], relative error.
	var cs []float32
	{
		b := *erfSplit
		fmt.Printf("erf small: erf(z) = z + z*P(z*z), degree %d, z in [0, %g] (relative)\n", *degS, b)
		x := grid(0, b+1e-3, 2001)
		p := &problem{x: x, n: *degS + 1}
		p.basis = func(j int, z float64) float64 { return math.Pow(z*z, float64(j)) }
		for _, z := range x {
			f := 2 / math.SqrtPi
			if z != 0 {
				f = math.Erf(z) / z
			}
			p.f = append(p.f, f-1)
			p.w = append(p.w, 1/f)
		}
		cs = p.fit32(*iters)
		printCoeffs("erfP", cs)
	}

	// erfcx(t) = exp(t^2) erfc(t) = R(t - c) on [b, T], relative error.
	var cr []float32
	{
		b, top, c0 := *erfSplit, *erfTop, *center
		fmt.Printf("erfcx large: erfc(t) = exp(-t*t)*R(t-%g), degree %d, t in [%g, %g] (relative)\n", c0, *degR, b, top)
		x := grid(b-1e-3, top, 3001)
		p := &problem{x: x, n: *degR + 1}
		p.basis = func(j int, t float64) float64 { return math.Pow(t-c0, float64(j)) }
		for _, t := range x {
			f := math.Erfc(t) * math.Exp(t*t)
			p.f = append(p.f, f)
			p.w = append(p.w, 1/f)
		}
		cr = p.fit32(*iters)
		printCoeffs("erfR", cr)
	}
	report(cs, cr, float32(*erfSplit), float32(*erfTop), float32(*center))
}

// exp32 mirrors the kernels' exp: range reduction with a split ln2 and the
// fitted polynomial, scaled by 2^n (gradual underflow, overflow to +Inf).
func exp32(x float32, c []float32) float32 {
	x = min(max(x, -104), 88.8)
	n := float32(math.RoundToEven(float64(x * 1.44269504)))
	r := fma32(n, -0.693359375, x)
	r = fma32(n, 2.12194440e-4, r)
	q := horner(c, r)
	q = fma32(q, r, 1)
	q = fma32(q, r, 1)
	return float32(math.Ldexp(float64(q), int(n)))
}

var expC = []float32{0.49999994, 0.166665196, 0.0416684076, 0.0083689196, 0.00138141797}

// phi32 mirrors the kernels' Phi(x) = 0.5*(1+erf(x/sqrt2)); it also returns
// exp(-x*x/2) as the kernels compute it.
func phi32(x float32, cs, cr []float32, b, top, c0 float32) (phi, e float32) {
	s := (x * 0.5) * x
	z := x * 0.707106781
	t := float32(math.Abs(float64(z)))
	e = exp32(-s, expC)
	if t < b {
		// Phi = 0.5 + (z/2)*(1+P(s)), rounded once at the end.
		cs1 := append([]float32{1 + cs[0]}, cs[1:]...)
		return fma32(0.5*z, horner(cs1, s), 0.5), e
	}
	u := min(t, top) - c0
	q := e * horner(cr, u)
	h := 0.5 * q
	if x > 0 {
		return 1 - h, e
	}
	return h, e
}

func erf32(z float32, cs, cr []float32, b, top, c0 float32) float32 {
	s := z * z
	t := float32(math.Abs(float64(z)))
	if t < b {
		return fma32(z, horner(cs, s), z)
	}
	u := min(t, top) - c0
	q := exp32(-s, expC) * horner(cr, u)
	return float32(math.Copysign(float64(1-q), float64(z)))
}

func report(cs, cr []float32, b, top, c0 float32) {
	var eErf, eErfRel, ePhi, ePhiRel, eGelu, eBack, eExp float64
	var at [7]float64
	upd := func(m *float64, v float64, x float64, k int) {
		if v > *m {
			*m = v
			at[k] = x
		}
	}
	for i := -2000000; i <= 2000000; i++ {
		z := float32(float64(i) * 10 / 2000000)
		want := math.Erf(float64(z))
		got := float64(erf32(z, cs, cr, b, top, c0))
		upd(&eErf, math.Abs(got-want), float64(z), 0)
		if z != 0 && math.Abs(float64(z)) < 3 {
			upd(&eErfRel, math.Abs(got-want)/math.Abs(want), float64(z), 1)
		}
		x := float32(float64(i) * 14 / 2000000)
		pw := 0.5 * math.Erfc(-float64(x)/math.Sqrt2)
		pg, e := phi32(x, cs, cr, b, top, c0)
		upd(&ePhi, math.Abs(float64(pg)-pw), float64(x), 2)
		if x > -5.5 {
			upd(&ePhiRel, math.Abs(float64(pg)-pw)/pw, float64(x), 3)
		}
		gw := float64(x) * pw
		gg := float64(x * pg)
		upd(&eGelu, math.Abs(gg-gw)/math.Max(1, math.Abs(float64(x))), float64(x), 4)
		bw := pw + float64(x)*math.Exp(-float64(x)*float64(x)/2)/math.Sqrt(2*math.Pi)
		bg := float64(fma32(x*0.398942280, e, pg))
		upd(&eBack, math.Abs(bg-bw)/math.Max(1, math.Abs(float64(x))), float64(x), 5)
		y := float32(float64(i) * 87 / 2000000)
		ew := math.Exp(float64(y))
		upd(&eExp, math.Abs(float64(exp32(y, expC))-ew)/ew, float64(y), 6)
	}
	fmt.Printf("float32 simulation of the kernels:\n")
	fmt.Printf("  erf  max abs err %.3g (z=%g), max rel err (|z|<3) %.3g (z=%g)\n", eErf, at[0], eErfRel, at[1])
	fmt.Printf("  Phi  max abs err %.3g (x=%g), max rel err (x>-5.5) %.3g (x=%g)\n", ePhi, at[2], ePhiRel, at[3])
	fmt.Printf("  gelu max err/max(1,|x|) %.3g (x=%g); backward %.3g (x=%g)\n", eGelu, at[4], eBack, at[5])
	fmt.Printf("  exp  max rel err on [-87,87] %.3g (x=%g)\n", eExp, at[6])
}
