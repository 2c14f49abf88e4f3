package vecmath

// The "neon" implementation: Dot (and so DotRows) and Axpy in NEON
// assembly (neon_arm64.s), every other kernel the portable Go, which the
// compiler builds with fused multiply-adds on arm64. Advanced SIMD is part
// of every arm64 CPU Go runs on, so it needs no feature check. dotNEON sums
// in the AVX2 kernel's order and axpyNEON is one fused multiply-add per
// element, as on AVX2 and AVX-512, so both give those paths' bits.
var neonKernels = kernels{
	name:    "neon",
	sum:     sumGeneric,
	dot:     dotNEON,
	max:     maxGeneric,
	axpy:    axpyNEON,
	scale:   scaleGeneric,
	add:     addGeneric,
	expSub:  expSubGeneric,
	geluFwd: geluFwdGeneric,
	geluBwd: geluBwdGeneric,
	lnFwd:   lnFwdGeneric,
	lnBwd:   lnBwdGeneric,
	adamw:   adamwGeneric,
}

// available lists the implementations usable on this CPU, best first.
func available() []*kernels {
	return []*kernels{&neonKernels, &genericKernels}
}

//go:noescape
func dotNEON(x, y []float32) float32

//go:noescape
func axpyNEON(a float32, x, y []float32)
