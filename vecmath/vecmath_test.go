package vecmath

import (
	"errors"
	"math"
	"testing"
)

func TestImplSelection(t *testing.T) {
	names := implNames()
	if names[len(names)-1] != "generic" {
		t.Fatalf("generic must always be available, got %v", names)
	}
	if Impl() != names[0] {
		t.Errorf("default implementation %q, want the best available %q", Impl(), names[0])
	}
	t.Logf("available implementations: %v (default %s)", names, Impl())
	old := Impl()
	defer SetImpl(old)
	for _, n := range names {
		if err := SetImpl(n); err != nil || Impl() != n {
			t.Errorf("SetImpl(%q) = %v, Impl() = %q", n, err, Impl())
		}
	}
	if err := SetImpl("sse9"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("SetImpl(sse9) = %v, want ErrUnsupported", err)
	}
	if Impl() != names[len(names)-1] {
		t.Errorf("failed SetImpl changed the implementation to %q", Impl())
	}
}

func TestLengthMismatchPanics(t *testing.T) {
	a, b := make([]float32, 3), make([]float32, 4)
	for name, f := range map[string]func(){
		"Dot":               func() { Dot(a, b) },
		"Axpy":              func() { Axpy(1, a, b) },
		"Add":               func() { Add(a, b) },
		"ExpSub":            func() { ExpSub(a, b, 0) },
		"SoftmaxGrad":       func() { SoftmaxGrad(a, b, 0, 1) },
		"GeluForward":       func() { GeluForward(a, b) },
		"GeluBackward":      func() { GeluBackward(a, a, b) },
		"LayerNormForward":  func() { LayerNormForward(a, a, a, b, 1e-5) },
		"LayerNormBackward": func() { LayerNormBackward(a, a, a, a, a, b, 0, 1) },
		"AdamW":             func() { AdamW(a, a, a, b, 1, 0.9, 0.999, 1e-8, 0, 1, 1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic on length mismatch", name)
				}
			}()
			f()
		}()
	}
}

// Reductions: |got - exact| <= gammaSum(n) * sum|terms| (worst-case bound
// for any summation order with at least 8 partial sums), plus one rounding
// per product for Dot.
func TestSum(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := newRand(1)
		for _, n := range testLengths {
			for _, off := range []int{0, 1} {
				x := newGuarded(uniform(r, n, -1, 3), off)
				got := Sum(x.s())
				var want, abs float64
				for _, v := range x.s() {
					want += float64(v)
					abs += math.Abs(float64(v))
				}
				if tol := gammaSum(n) * abs; math.Abs(float64(got)-want) > tol {
					t.Errorf("n=%d off=%d: Sum = %g, want %g (tol %g)", n, off, got, want, tol)
				}
			}
		}
		if got := Sum(nil); got != 0 {
			t.Errorf("Sum(nil) = %g", got)
		}
		inf := float32(math.Inf(1))
		if got := Sum([]float32{1, inf, 2}); !math.IsInf(float64(got), 1) {
			t.Errorf("Sum with +Inf = %g", got)
		}
		if got := Sum([]float32{1, 2, float32(math.NaN())}); !math.IsNaN(float64(got)) {
			t.Errorf("Sum with NaN = %g", got)
		}
	})
}

func TestDot(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := newRand(2)
		for _, n := range testLengths {
			for _, off := range []int{0, 3} {
				x := newGuarded(normal(r, n, 0, 1), off)
				y := newGuarded(normal(r, n, 0.5, 2), 0)
				got := Dot(x.s(), y.s())
				var want, abs float64
				for i := range x.s() {
					p := float64(x.s()[i]) * float64(y.s()[i])
					want += p
					abs += math.Abs(p)
				}
				if tol := (gammaSum(n) + u) * abs; math.Abs(float64(got)-want) > tol {
					t.Errorf("n=%d off=%d: Dot = %g, want %g (tol %g)", n, off, got, want, tol)
				}
			}
		}
		// NaN in y past a tail must not leak in (masked loads).
		buf := []float32{1, 2, 3, float32(math.NaN())}
		if got := Dot(buf[:3], buf[:3]); got != 14 {
			t.Errorf("Dot(1,2,3) = %g, want 14", got)
		}
	})
}

func TestMax(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := newRand(3)
		if got := Max(nil); !math.IsInf(float64(got), -1) {
			t.Errorf("Max(nil) = %g, want -Inf", got)
		}
		for _, n := range testLengths[1:] {
			for _, pos := range []int{0, n / 2, n - 1} {
				x := uniform(r, n, -100, -1) // all negative: a zero-filled tail would be wrong
				x[pos] = -0.5
				if got := Max(x); got != -0.5 {
					t.Errorf("n=%d pos=%d: Max = %g, want -0.5", n, pos, got)
				}
			}
		}
		ninf, inf := float32(math.Inf(-1)), float32(math.Inf(1))
		if got := Max([]float32{ninf, ninf, ninf}); got != ninf {
			t.Errorf("Max(-Inf...) = %g", got)
		}
		if got := Max([]float32{1, inf, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}); got != inf {
			t.Errorf("Max with +Inf = %g", got)
		}
	})
}

// Axpy, Scale, Add: one or two float32 roundings per element.
func TestAxpyScaleAdd(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := newRand(4)
		for _, n := range testLengths {
			a := float32(r.NormFloat64())
			x := normal(r, n, 0, 1)
			y0 := normal(r, n, 0, 1)

			y := newGuarded(y0, 1)
			Axpy(a, x, y.s())
			y.check(t, "Axpy")
			for i := range x {
				want := float64(y0[i]) + float64(a)*float64(x[i])
				tol := 2 * u * (math.Abs(float64(y0[i])) + math.Abs(float64(a)*float64(x[i])))
				if math.Abs(float64(y.s()[i])-want) > tol {
					t.Fatalf("n=%d: Axpy[%d] = %g, want %g", n, i, y.s()[i], want)
				}
			}

			s := newGuarded(x, 2)
			Scale(a, s.s())
			s.check(t, "Scale")
			for i := range x {
				if s.s()[i] != a*x[i] { // single rounding: exact match
					t.Fatalf("n=%d: Scale[%d] = %g, want %g", n, i, s.s()[i], a*x[i])
				}
			}

			d := newGuarded(y0, 0)
			Add(d.s(), x)
			d.check(t, "Add")
			for i := range x {
				if d.s()[i] != y0[i]+x[i] {
					t.Fatalf("n=%d: Add[%d] = %g, want %g", n, i, d.s()[i], y0[i]+x[i])
				}
			}
		}
	})
}

// SoftmaxGrad: three operations rounded in order, so every path gives the
// bits of the same float32 expression evaluated in Go, and nothing outside
// ds changes.
func TestSoftmaxGrad(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := newRand(9)
		for _, n := range testLengths {
			p, ds0 := uniform(r, n, 0, 1), normal(r, n, 0, 1)
			dot, scale := float32(r.NormFloat64()), float32(0.125+r.Float64())
			ds := newGuarded(ds0, 3)
			SoftmaxGrad(ds.s(), p, dot, scale)
			ds.check(t, "SoftmaxGrad")
			for i := range p {
				want := p[i] * (ds0[i] - dot)
				want *= scale
				if math.Float32bits(ds.s()[i]) != math.Float32bits(want) {
					t.Fatalf("n=%d: SoftmaxGrad[%d] = %g, want %g", n, i, ds.s()[i], want)
				}
			}
		}
	})
}

// ExpSub: each element within expRelTol of exp(float32(src-m)) (relative;
// 0 below 2^-64), the returned sum within
// gammaSum(n) of the exact sum of the values written.
const expRelTol = 2e-7

func TestExpSub(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := newRand(5)
		for _, n := range testLengths {
			for _, inPlace := range []bool{false, true} {
				src := uniform(r, n, -40, 10)
				m := float32(r.NormFloat64() * 5)
				d := newGuarded(make([]float32, n), 1)
				in := src
				if inPlace {
					copy(d.s(), src)
					in = d.s()
				}
				sum := ExpSub(d.s(), in, m)
				d.check(t, "ExpSub")
				var want, wantRef float64
				for i, v := range d.s() {
					arg := src[i] - m
					if !expOK(v, arg, expRelTol) {
						t.Fatalf("n=%d inPlace=%v: exp(%g) = %g, want %g", n, inPlace, arg, v, expRef(arg))
					}
					want += float64(v)
					wantRef += expRef(arg)
				}
				if math.Abs(float64(sum)-want) > gammaSum(n)*want {
					t.Errorf("n=%d: ExpSub sum = %g, want %g", n, sum, want)
				}
				if math.Abs(float64(sum)-wantRef) > (gammaSum(n)+expRelTol)*wantRef+1e-38 {
					t.Errorf("n=%d: ExpSub sum = %g, exact %g", n, sum, wantRef)
				}
			}
		}
	})
}

func TestExpSubSpecial(t *testing.T) {
	inf, nan := math.Inf(1), math.NaN()
	cases := []struct {
		x, m float64
		want float64 // NaN: want NaN
	}{
		{math.Inf(-1), 0, 0},
		{-1e30, 0, 0},
		{-3.4e38, 0, 0},
		{-200, 0, 0},
		{-104, 0, 0},
		{-103.5, 0, 0}, // subnormal: flushed
		{-90, 0, 0},    // subnormal: flushed
		{-87.3, 0, 0},  // normal, below 2^-64: flushed
		{-44.4, 0, 0},  // 5.2e-20 < 2^-64: flushed
		{-44.3, 0, math.Exp(-44.3)},
		{-44.4, -0.1, math.Exp(-44.3)},
		{0, 0, 1},
		{math.Copysign(0, -1), 0, 1},
		{1, 0, math.E},
		{88.7, 0, math.Exp(88.7)},
		{88.73, 0, inf},
		{89, 0, inf},
		{1e30, 0, inf},
		{inf, 0, inf},
		{0, inf, 0},
		{5, -inf, inf},
		{nan, 0, nan},
		{0, nan, nan},
	}
	forEachImpl(t, func(t *testing.T) {
		// Repeat each case at every lane position of a vector and of the
		// tail.
		for _, c := range cases {
			for _, n := range []int{1, 5, 16, 21, 37} {
				src := make([]float32, n)
				for i := range src {
					src[i] = float32(c.m) - 1 // exp(-1) elsewhere
					if math.IsInf(c.m, 0) || math.IsNaN(c.m) {
						src[i] = float32(c.x)
					}
				}
				src[n-1] = float32(c.x)
				dst := make([]float32, n)
				sum := ExpSub(dst, src, float32(c.m))
				got := float64(dst[n-1])
				arg := float32(c.x) - float32(c.m)
				ok := false
				switch {
				case math.IsNaN(c.want):
					ok = math.IsNaN(got) && math.IsNaN(float64(sum))
				case math.IsInf(c.want, 1):
					ok = math.IsInf(got, 1) && math.IsInf(float64(sum), 1)
				case c.want == 0:
					ok = got == 0
				default:
					ok = expOK(dst[n-1], arg, expRelTol)
				}
				if !ok {
					t.Errorf("ExpSub(x=%g, m=%g) = %g (sum %g), want %g", c.x, c.m, got, sum, c.want)
				}
			}
		}
	})
}

// gelu tolerance: |err| <= geluTol*max(1,|x|) (absolute 2e-7 on Phi and
// on the derivative, scaled by |x| for the product).
const geluTol = 2e-7

func TestGelu(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := newRand(6)
		for _, n := range testLengths {
			x := normal(r, n, 0, 3)
			d := newGuarded(make([]float32, n), 2)
			GeluForward(d.s(), x)
			d.check(t, "GeluForward")
			for i, v := range d.s() {
				want := gelu64(float64(x[i]))
				if math.Abs(float64(v)-want) > geluTol*math.Max(1, math.Abs(float64(x[i]))) {
					t.Fatalf("n=%d: gelu(%g) = %g, want %g", n, x[i], v, want)
				}
			}
			dy := normal(r, n, 0, 1)
			dx := newGuarded(make([]float32, n), 1)
			GeluBackward(dx.s(), x, dy)
			dx.check(t, "GeluBackward")
			for i, v := range dx.s() {
				want := float64(dy[i]) * geluGrad64(float64(x[i]))
				tol := math.Abs(float64(dy[i])) * geluTol * math.Max(1, math.Abs(float64(x[i])))
				if math.Abs(float64(v)-want) > tol {
					t.Fatalf("n=%d: gelu'(%g)*%g = %g, want %g", n, x[i], dy[i], v, want)
				}
			}
			// In place: dst == src, dx == dy.
			y := clone(x)
			GeluForward(y, y)
			z := make([]float32, n)
			GeluForward(z, x)
			if !sameBits(y, z) {
				t.Fatalf("n=%d: in-place GeluForward differs", n)
			}
			g := clone(dy)
			GeluBackward(g, x, g)
			if !sameBits(g, dx.s()) {
				t.Fatalf("n=%d: in-place GeluBackward differs", n)
			}
		}
	})
}

func TestGeluSpecial(t *testing.T) {
	inf := math.Inf(1)
	fwd := []struct{ x, want float64 }{
		{0, 0}, {1, gelu64(1)}, {-1, gelu64(-1)}, {10, 10}, {-10, gelu64(-10)},
		{1e30, 1e30}, {-1e30, 0}, {inf, inf}, {3.4e38, 3.4e38},
	}
	forEachImpl(t, func(t *testing.T) {
		for _, c := range fwd {
			for _, n := range []int{1, 16, 19} {
				x := make([]float32, n)
				x[n-1] = float32(c.x)
				y := make([]float32, n)
				GeluForward(y, x)
				got := float64(y[n-1])
				if math.Abs(got-c.want) > geluTol*math.Max(1, math.Abs(c.x)) && got != c.want {
					t.Errorf("gelu(%g) = %g, want %g", c.x, got, c.want)
				}
				dx := make([]float32, n)
				dy := make([]float32, n)
				dy[n-1] = 1
				GeluBackward(dx, x, dy)
				if c.x != inf {
					want := geluGrad64(float64(float32(c.x)))
					if math.IsNaN(want) { // x*exp(-x*x/2) = inf*0 in float64 for huge x
						want = phi64(c.x)
					}
					if math.Abs(float64(dx[n-1])-want) > geluTol*math.Max(1, math.Abs(c.x)) {
						t.Errorf("gelu'(%g) = %g, want %g", c.x, dx[n-1], want)
					}
				}
			}
		}
		x := []float32{float32(math.NaN()), 1}
		y := make([]float32, 2)
		GeluForward(y, x)
		if !math.IsNaN(float64(y[0])) {
			t.Errorf("gelu(NaN) = %g", y[0])
		}
		GeluBackward(y, x, []float32{1, 1})
		if !math.IsNaN(float64(y[0])) {
			t.Errorf("gelu'(NaN) = %g", y[0])
		}
		// gelu(-Inf) is -Inf*0: NaN (as 0.5*x*(1+erf(x/sqrt2)) in float32) or 0.
		GeluForward(y, []float32{float32(math.Inf(-1)), 0})
		if !math.IsNaN(float64(y[0])) && y[0] != 0 {
			t.Errorf("gelu(-Inf) = %g, want NaN or 0", y[0])
		}
	})
}

// lnRef is the float64 LayerNorm of float32 inputs.
func lnRef(x, w, b []float32, eps float32) (out []float64, mean, rstd float64) {
	n := float64(len(x))
	for _, v := range x {
		mean += float64(v)
	}
	mean /= n
	var v2 float64
	for _, v := range x {
		v2 += (float64(v) - mean) * (float64(v) - mean)
	}
	rstd = 1 / math.Sqrt(v2/n+float64(eps))
	out = make([]float64, len(x))
	for i, v := range x {
		out[i] = (float64(v)-mean)*rstd*float64(w[i]) + float64(b[i])
	}
	return out, mean, rstd
}

// LayerNorm forward tolerances (rows with |mean| up to 3 std):
// mean within gammaSum(n)*mean|x|, rstd relative 4*gammaSum(n), and each
// output within 8*gammaSum(n)*(|w|*(1+|xhat|+mean|x|*rstd) + |b|).
func TestLayerNormForward(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := newRand(7)
		for _, n := range testLengths[1:] {
			for _, shift := range []float64{0, 3} {
				std := 0.1 + 2*r.Float64()
				x := normal(r, n, shift*std, std)
				w := normal(r, n, 1, 0.2)
				b := normal(r, n, 0, 0.2)
				const eps = 1e-5
				o := newGuarded(make([]float32, n), 1)
				mean, rstd := LayerNormForward(o.s(), x, w, b, eps)
				o.check(t, "LayerNormForward")
				want, wm, wr := lnRef(x, w, b, eps)
				var absMean float64
				for _, v := range x {
					absMean += math.Abs(float64(v))
				}
				absMean /= float64(n)
				g := gammaSum(n)
				if math.Abs(float64(mean)-wm) > g*absMean {
					t.Errorf("n=%d: mean = %g, want %g", n, mean, wm)
				}
				if math.Abs(float64(rstd)-wr) > 4*g*wr {
					t.Errorf("n=%d: rstd = %g, want %g", n, rstd, wr)
				}
				for i, v := range o.s() {
					xh := (float64(x[i]) - wm) * wr
					tol := 8 * g * (math.Abs(float64(w[i]))*(1+math.Abs(xh)+absMean*wr) + math.Abs(float64(b[i])))
					if math.Abs(float64(v)-want[i]) > tol {
						t.Fatalf("n=%d shift=%g: out[%d] = %g, want %g (tol %g)", n, shift, i, v, want[i], tol)
					}
				}
			}
		}
		if m, s := LayerNormForward(nil, nil, nil, nil, 1e-5); m != 0 || s != 0 {
			t.Errorf("empty LayerNormForward = %g, %g", m, s)
		}
		// Constant row: var = 0, rstd = 1/sqrt(eps), out = b.
		x := []float32{2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2}
		o := make([]float32, len(x))
		m, s := LayerNormForward(o, x, x, x, 1e-4)
		if m != 2 || math.Abs(float64(s)-100) > 1e-4 || o[0] != 2 || o[len(o)-1] != 2 {
			t.Errorf("constant row: mean %g rstd %g out %v", m, s, o)
		}
	})
}

// LayerNorm backward tolerances: dw, db within 2 roundings of their terms;
// dx within 8*gammaSum(n) of |dx0| + rstd*(|g| + mean|g| + |xhat|*mean|g*xhat|).
func TestLayerNormBackward(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := newRand(8)
		for _, n := range testLengths[1:] {
			x := normal(r, n, 0.5, 1.5)
			w := normal(r, n, 1, 0.2)
			b := normal(r, n, 0, 0.2)
			out := make([]float32, n)
			mean, rstd := LayerNormForward(out, x, w, b, 1e-5)
			dout := normal(r, n, 0, 1)
			dx0, dw0, db0 := normal(r, n, 0, 1), normal(r, n, 0, 1), normal(r, n, 0, 1)
			dx, dw, db := newGuarded(dx0, 1), newGuarded(dw0, 2), newGuarded(db0, 3)
			LayerNormBackward(dx.s(), dw.s(), db.s(), dout, x, w, mean, rstd)
			dx.check(t, "dx")
			dw.check(t, "dw")
			db.check(t, "db")

			m, rs := float64(mean), float64(rstd)
			var mg, mgx, amg, amgx float64
			xh := make([]float64, n)
			gv := make([]float64, n)
			for i := range x {
				xh[i] = (float64(x[i]) - m) * rs
				gv[i] = float64(dout[i]) * float64(w[i])
				mg += gv[i]
				mgx += gv[i] * xh[i]
				amg += math.Abs(gv[i])
				amgx += math.Abs(gv[i] * xh[i])
			}
			nf := float64(n)
			mg, mgx, amg, amgx = mg/nf, mgx/nf, amg/nf, amgx/nf
			g := gammaSum(n)
			for i := range x {
				dwant := float64(dw0[i]) + float64(dout[i])*xh[i]
				if tol := 4 * u * (math.Abs(float64(dw0[i])) + math.Abs(float64(dout[i])*xh[i])); math.Abs(float64(dw.s()[i])-dwant) > tol {
					t.Fatalf("n=%d: dw[%d] = %g, want %g", n, i, dw.s()[i], dwant)
				}
				bwant := float64(db0[i]) + float64(dout[i])
				if tol := 2 * u * math.Abs(bwant); math.Abs(float64(db.s()[i])-bwant) > tol {
					t.Fatalf("n=%d: db[%d] = %g, want %g", n, i, db.s()[i], bwant)
				}
				xwant := float64(dx0[i]) + rs*(gv[i]-mg-xh[i]*mgx)
				tol := 8 * g * (math.Abs(float64(dx0[i])) + rs*(math.Abs(gv[i])+amg+math.Abs(xh[i])*amgx))
				if math.Abs(float64(dx.s()[i])-xwant) > tol {
					t.Fatalf("n=%d: dx[%d] = %g, want %g (tol %g)", n, i, dx.s()[i], xwant, tol)
				}
			}
		}
	})
}

// AdamW: m, v within 4 roundings of their terms, p within 4 roundings of
// p*decay plus 12 of the step (sqrt, two divisions, the moments).
func TestAdamW(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := newRand(9)
		for _, n := range testLengths {
			for step := 1; step <= 3; step++ {
				const lr, beta1, beta2, eps, wd = 3e-4, 0.9, 0.95, 1e-8, 0.1
				bc1 := float32(1 - math.Pow(beta1, float64(step)))
				bc2 := float32(1 - math.Pow(beta2, float64(step)))
				p0, g0 := normal(r, n, 0, 0.05), normal(r, n, 0, 1e-2)
				m0, v0 := normal(r, n, 0, 1e-2), uniform(r, n, 0, 1e-4)
				p, m, v := newGuarded(p0, 1), newGuarded(m0, 0), newGuarded(v0, 2)
				g := clone(g0)
				AdamW(p.s(), g, m.s(), v.s(), lr, beta1, beta2, eps, wd, bc1, bc2)
				p.check(t, "p")
				m.check(t, "m")
				v.check(t, "v")
				if !sameBits(g, g0) {
					t.Fatal("AdamW modified g")
				}
				for i := range p0 {
					gi := float64(g0[i])
					b1, b2 := float64(float32(beta1)), float64(float32(beta2))
					mw := b1*float64(m0[i]) + (1-b1)*gi
					vw := b2*float64(v0[i]) + (1-b2)*gi*gi
					if tol := 4 * u * (math.Abs(b1*float64(m0[i])) + math.Abs((1-b1)*gi)); math.Abs(float64(m.s()[i])-mw) > tol {
						t.Fatalf("n=%d: m[%d] = %g, want %g", n, i, m.s()[i], mw)
					}
					if tol := 4 * u * vw; math.Abs(float64(v.s()[i])-vw) > tol {
						t.Fatalf("n=%d: v[%d] = %g, want %g", n, i, v.s()[i], vw)
					}
					lr64 := float64(float32(lr))
					pd := float64(p0[i]) * (1 - lr64*float64(float32(wd)))
					upd := lr64 / float64(bc1) * mw / (math.Sqrt(vw)/math.Sqrt(float64(bc2)) + float64(float32(eps)))
					pw := pd - upd
					if tol := 4*u*math.Abs(pd) + 12*u*math.Abs(upd); math.Abs(float64(p.s()[i])-pw) > tol {
						t.Fatalf("n=%d step=%d: p[%d] = %g, want %g (tol %g)", n, step, i, p.s()[i], pw, tol)
					}
				}
			}
		}
	})
}

// TestAgreeWithGeneric checks every SIMD implementation against the
// portable one on the same inputs: elementwise results within 4 ulp of the
// value plus 2 ulp of the largest value in the array (4e-7*max(1,|x|)*|dy|
// for the erf-based GELU values, 1e-5 relative for LayerNorm outputs),
// reductions within 20*gammaSum(n).
func TestAgreeWithGeneric(t *testing.T) {
	type result struct {
		vals [][]float32
		scal []float32
	}
	run := func(name string) result {
		var res result
		withImpl(t, name, func() {
			r := newRand(10)
			const n = 1037
			x, y := normal(r, n, 0, 2), normal(r, n, 0, 2)
			res.scal = append(res.scal, Sum(x), Dot(x, y), Max(x))
			a := clone(y)
			Axpy(0.3, x, a)
			e := make([]float32, n)
			res.scal = append(res.scal, ExpSub(e, x, Max(x)))
			gf, gb := make([]float32, n), make([]float32, n)
			GeluForward(gf, x)
			GeluBackward(gb, x, y)
			o := make([]float32, n)
			w, b := normal(r, n, 1, 0.1), normal(r, n, 0, 0.1)
			mean, rstd := LayerNormForward(o, x, w, b, 1e-5)
			res.scal = append(res.scal, mean, rstd)
			dx, dw, db := clone(y), clone(x), clone(y)
			LayerNormBackward(dx, dw, db, y, x, w, mean, rstd)
			p, m, v := normal(r, n, 0, 0.02), normal(r, n, 0, 1e-3), uniform(r, n, 0, 1e-5)
			AdamW(p, y, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.01, 0.1, 0.001)
			res.vals = [][]float32{a, e, gf, gb, o, dx, dw, db, p, m, v, x}
		})
		return res
	}
	ref := run("generic")
	names := []string{"axpy", "expsub", "geluFwd", "geluBwd", "lnFwd", "lnBwd.dx", "lnBwd.dw", "lnBwd.db", "adamw.p", "adamw.m", "adamw.v"}
	scalNames := []string{"sum", "dot", "max", "expsum", "mean", "rstd"}
	x := ref.vals[len(ref.vals)-1]
	for _, impl := range implNames() {
		if impl == "generic" {
			continue
		}
		got := run(impl)
		for k, name := range names {
			var maxAbs float64
			for _, v := range ref.vals[k] {
				maxAbs = math.Max(maxAbs, math.Abs(float64(v)))
			}
			for i := range ref.vals[k] {
				a, b := float64(got.vals[k][i]), float64(ref.vals[k][i])
				// 4 ulp of the value, plus 2 ulp of the largest value of
				// the array for results that cancel (y + a*x ~ 0).
				tol := 8*u*math.Abs(b) + 4*u*maxAbs
				switch name {
				case "geluFwd", "geluBwd":
					tol = 4e-7 * math.Max(1, math.Abs(float64(x[i]))) * 3 // |dy| <~ 3
				case "lnBwd.dx", "lnFwd":
					tol = 1e-5 * math.Max(1, math.Abs(b))
				}
				if math.Abs(a-b) > tol {
					t.Errorf("%s %s[%d] = %g, generic %g", impl, name, i, a, b)
					break
				}
			}
		}
		for k, name := range scalNames {
			a, b := float64(got.scal[k]), float64(ref.scal[k])
			if math.Abs(a-b) > 2*gammaSum(1037)*math.Max(1, math.Abs(b))*10 {
				t.Errorf("%s %s = %g, generic %g", impl, name, a, b)
			}
		}
	}
}

// TestDeterminism runs every kernel twice on equal inputs placed at
// different alignments and requires bitwise equal results.
func TestDeterminism(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := newRand(11)
		for _, n := range []int{17, 100, 1000, 4099} {
			x, y := normal(r, n, 0, 2), normal(r, n, 0, 1)
			w, b := normal(r, n, 1, 0.1), normal(r, n, 0, 0.1)
			outputs := func(off int) [][]float32 {
				at := func(v []float32) []float32 { return newGuarded(v, off).s() }
				xs, ys := at(x), at(y)
				scal := []float32{Sum(xs), Dot(xs, ys), Max(xs)}
				e := at(make([]float32, n))
				scal = append(scal, ExpSub(e, xs, 1))
				gf, gb := at(make([]float32, n)), at(make([]float32, n))
				GeluForward(gf, xs)
				GeluBackward(gb, xs, ys)
				o := at(make([]float32, n))
				mean, rstd := LayerNormForward(o, xs, at(w), at(b), 1e-5)
				scal = append(scal, mean, rstd)
				dx, dw, db := at(y), at(x), at(y)
				LayerNormBackward(dx, dw, db, ys, xs, at(w), mean, rstd)
				p, m, v := at(x), at(y), at(w)
				for i := range v {
					v[i] *= v[i]
				}
				AdamW(p, ys, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.01, 0.5, 0.3)
				a := at(y)
				Axpy(0.7, xs, a)
				return [][]float32{scal, e, gf, gb, o, dx, dw, db, p, m, v, a}
			}
			ref := outputs(0)
			for _, off := range []int{0, 1, 5} {
				got := outputs(off)
				for k := range ref {
					if !sameBits(got[k], ref[k]) {
						t.Fatalf("n=%d off=%d: output %d not bitwise reproducible", n, off, k)
					}
				}
			}
		}
	})
}

func TestZeroLength(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		var e []float32
		if Sum(e) != 0 || Dot(e, e) != 0 || ExpSub(e, e, 0) != 0 {
			t.Error("empty reductions must be 0")
		}
		Axpy(1, e, e)
		Scale(2, e)
		Add(e, e)
		GeluForward(e, e)
		GeluBackward(e, e, e)
		LayerNormBackward(e, e, e, e, e, e, 0, 1)
		AdamW(e, e, e, e, 1e-3, 0.9, 0.999, 1e-8, 0, 1, 1)
	})
}
