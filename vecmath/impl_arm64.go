package vecmath

import "github.com/cairnlabs/cairn/vecmath/internal/coef"

// The "neon" implementation: every kernel in NEON assembly, Dot (and so
// DotRows) and Axpy in neon_arm64.s, the others in neonrows_arm64.s; Dot4
// and SoftmaxGrad (three exactly rounded operations an element, which Go
// compiles to the same bits) are left to the portable Go. Advanced SIMD is part of every arm64 CPU Go
// runs on, so it needs no feature check. dotNEON sums in the AVX2
// kernel's order and axpyNEON is one fused multiply-add per element, as on
// AVX2 and AVX-512, so both give those paths' bits; the others evaluate
// the portable code's algorithms (the same constants, eight-lane sums in
// sum8's order), within the tolerances the tests hold every path to.
var neonKernels = kernels{
	name:    "neon",
	sum:     sumNEON,
	dot:     dotNEON,
	max:     maxNEON,
	axpy:    axpyNEON,
	scale:   scaleNEON,
	add:     addNEON,
	expSub:  expSubNEONc,
	smGrad:  softmaxGradGeneric,
	geluFwd: geluFwdNEONc,
	geluBwd: geluBwdNEONc,
	lnFwd:   lnFwdNEON,
	lnBwd:   lnBwdNEON,
	adamw:   adamwNEON,
}

// available lists the implementations usable on this CPU, best first.
func available() []*kernels {
	return []*kernels{&neonKernels, &genericKernels}
}

//go:noescape
func dotNEON(x, y []float32) float32

//go:noescape
func axpyNEON(a float32, x, y []float32)

//go:noescape
func sumNEON(x []float32) float32

//go:noescape
func maxNEON(x []float32) float32

//go:noescape
func scaleNEON(a float32, x []float32)

//go:noescape
func addNEON(dst, x []float32)

//go:noescape
func adamwNEON(p, g, m, v []float32, decay, beta1, omb1, beta2, omb2, eps, step, sqrtBc2 float32)

// neonExp are the constants of exp32 as expSubNEON takes them.
var neonExp = [12]float32{coef.ExpSubMin, coef.ExpMax, coef.Log2e, coef.Ln2Hi, coef.Ln2Lo,
	coef.ExpC6, coef.ExpC5, coef.ExpC4, coef.ExpC3, coef.ExpC2, 1, coef.ExpTiny}

func expSubNEONc(dst, src []float32, m float32) float32 { return expSubNEON(dst, src, m, &neonExp) }

//go:noescape
func expSubNEON(dst, src []float32, m float32, c *[12]float32) float32

// neonGelu are the constants of phi32 as the NEON GELU kernels take them,
// four to a register.
var neonGelu = [36]float32{
	coef.ExpMin, coef.ExpMax, coef.Log2e, coef.Ln2Hi,
	coef.Ln2Lo, coef.ExpC6, coef.ExpC5, coef.ExpC4,
	coef.ExpC3, coef.ExpC2, 1, 0.5,
	coef.Rsqrt2, coef.ErfSplit, coef.ErfTop, coef.ErfCenter,
	coef.ErfP6, coef.ErfP5, coef.ErfP4, coef.ErfP3,
	coef.ErfP2, coef.ErfP1, coef.ErfS0, coef.Rsqrt2Pi,
	coef.ErfR11, coef.ErfR10, coef.ErfR9, coef.ErfR8,
	coef.ErfR7, coef.ErfR6, coef.ErfR5, coef.ErfR4,
	coef.ErfR3, coef.ErfR2, coef.ErfR1, coef.ErfR0,
}

func geluFwdNEONc(dst, src []float32)  { geluFwdNEON(dst, src, &neonGelu) }
func geluBwdNEONc(dx, x, dy []float32) { geluBwdNEON(dx, x, dy, &neonGelu) }

//go:noescape
func geluFwdNEON(dst, src []float32, c *[36]float32)

//go:noescape
func geluBwdNEON(dx, x, dy []float32, c *[36]float32)

//go:noescape
func lnFwdNEON(out, x, w, b []float32, eps float32) (mean, rstd float32)

//go:noescape
func lnBwdNEON(dx, dw, db, dout, x, w []float32, mean, rstd float32)
