package vecmath

import "github.com/cairnlabs/cairn/vecmath/internal/coef"

// The "neon" implementation: Dot (and so DotRows) and Axpy in NEON
// assembly (neon_arm64.s), Sum, Max, Scale, Add and AdamW too
// (neonrows_arm64.s) and ExpSub, every other kernel the portable Go, which the
// compiler builds with fused multiply-adds on arm64. Advanced SIMD is part
// of every arm64 CPU Go runs on, so it needs no feature check. dotNEON sums
// in the AVX2 kernel's order and axpyNEON is one fused multiply-add per
// element, as on AVX2 and AVX-512, so both give those paths' bits.
var neonKernels = kernels{
	name:    "neon",
	sum:     sumNEON,
	dot:     dotNEON,
	max:     maxNEON,
	axpy:    axpyNEON,
	scale:   scaleNEON,
	add:     addNEON,
	expSub:  expSubNEONc,
	geluFwd: geluFwdGeneric,
	geluBwd: geluBwdGeneric,
	lnFwd:   lnFwdGeneric,
	lnBwd:   lnBwdGeneric,
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
var neonExp = [11]float32{coef.ExpMin, coef.ExpMax, coef.Log2e, coef.Ln2Hi, coef.Ln2Lo,
	coef.ExpC6, coef.ExpC5, coef.ExpC4, coef.ExpC3, coef.ExpC2, 1}

func expSubNEONc(dst, src []float32, m float32) float32 { return expSubNEON(dst, src, m, &neonExp) }

//go:noescape
func expSubNEON(dst, src []float32, m float32, c *[11]float32) float32
