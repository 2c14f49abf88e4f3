package vecmath

import (
	"math"
	"math/big"
	"testing"
)

// fma32 returns a*b+c rounded once to float32, on any architecture: the
// product is exact in float64, TwoSum gives the float64 sum s and its
// error e exactly, and e decides the rounding of s only when s lies exactly
// halfway between two float32s (elsewhere no float32 or halfway point lies
// between s and s+e).
func fma32(a, b, c float32) float32 {
	p, cc := float64(a)*float64(b), float64(c)
	s := p + cc
	if math.IsInf(s, 0) || math.IsNaN(s) {
		return float32(s)
	}
	bv := s - p
	e := (p - (s - bv)) + (cc - bv)
	r := float32(s)
	if e == 0 || float64(r) == s {
		return r
	}
	lo, hi := r, r
	if float64(r) < s {
		hi = math.Nextafter32(r, float32(math.Inf(1)))
	} else {
		lo = math.Nextafter32(r, float32(math.Inf(-1)))
	}
	if s != (float64(lo)+float64(hi))/2 {
		return r
	}
	if e > 0 {
		return hi
	}
	return lo
}

func TestFMA32(t *testing.T) {
	// a*b = 2^-24 - 2^-70 and c = 1 + 2^-23, so c - a*b = 1 + 2^-24 + 2^-70:
	// its float64 sum is the halfway point 1 + 2^-24, which ties-to-even
	// would round down to 1, but the exact value lies 2^-70 above it.
	a, b := float32(0x1p-24*(1+0x1p-23)), float32(1-0x1p-23)
	c := float32(1 + 0x1p-23)
	if got := fma32(-a, b, c); got != c {
		t.Errorf("fma32 below a tie = %v, want %v", got, c)
	}
	if got := fma32(a, b, -c); got != -c {
		t.Errorf("fma32 above a tie = %v, want %v", got, -c)
	}
	// Against exact arithmetic on operands of mixed magnitudes.
	r := newRand(12)
	exact := new(big.Float).SetPrec(400)
	prod := new(big.Float).SetPrec(400)
	for i := 0; i < 20000; i++ {
		v := func() float32 {
			return float32(math.Ldexp(r.NormFloat64(), r.IntN(60)-30))
		}
		a, b, c := v(), v(), v()
		if i%3 == 0 { // near cancellation
			c = -float32(float64(a) * float64(b) * (1 + r.NormFloat64()*0x1p-20))
		}
		prod.SetFloat64(float64(a))
		prod.Mul(prod, new(big.Float).SetFloat64(float64(b)))
		exact.SetFloat64(float64(c))
		exact.Add(exact, prod)
		want, _ := exact.Float32()
		if got := fma32(a, b, c); math.Float32bits(got) != math.Float32bits(want) && !(got == 0 && want == 0) {
			t.Fatalf("fma32(%v, %v, %v) = %v, want %v", a, b, c, got, want)
		}
	}
}

// dotLanes is the summation order of the SIMD Dot kernels with w lanes per
// register (8: AVX2 and NEON, 16: AVX-512): four accumulators over blocks
// of 4w elements, then blocks of w into the first, then the last partial
// block, zero-filled, into the first; then (acc0+acc1)+(acc2+acc3) lane by
// lane, and halving: lane l+w/2 added to lane l, and so on.
func dotLanes(x, y []float32, w int) float32 {
	acc := make([][]float32, 4)
	for j := range acc {
		acc[j] = make([]float32, w)
	}
	n, i := len(x), 0
	for ; n-i >= 4*w; i += 4 * w {
		for j := range 4 {
			for l := range w {
				acc[j][l] = fma32(x[i+j*w+l], y[i+j*w+l], acc[j][l])
			}
		}
	}
	for ; n-i >= w; i += w {
		for l := range w {
			acc[0][l] = fma32(x[i+l], y[i+l], acc[0][l])
		}
	}
	if i < n {
		for l := range w {
			var a, b float32
			if i+l < n {
				a, b = x[i+l], y[i+l]
			}
			acc[0][l] = fma32(a, b, acc[0][l])
		}
	}
	s := make([]float32, w)
	for l := range s {
		s[l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l])
	}
	for h := w / 2; h >= 1; h /= 2 {
		for l := range h {
			s[l] += s[l+h]
		}
	}
	return s[0]
}

// simdLanes are the SIMD paths whose Dot follows dotLanes, with their
// lanes per register.
var simdLanes = map[string]int{"avx512": 16, "avx2": 8, "neon": 8}

// TestSIMDDotOrder pins the order of every SIMD Dot (and so DotRows) bit
// for bit; as NEON and AVX2 share it, they agree bitwise.
func TestSIMDDotOrder(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		w, ok := simdLanes[Impl()]
		if !ok {
			t.Skip("no fixed SIMD order")
		}
		r := newRand(13)
		for _, n := range append(testLengths, 40, 47, 71, 96, 129, 1037) {
			x, y := normal(r, n, 0, 1), normal(r, n, 0.5, 2)
			got, want := Dot(x, y), dotLanes(x, y, w)
			if math.Float32bits(got) != math.Float32bits(want) {
				t.Fatalf("n=%d: Dot = %v, order model %v", n, got, want)
			}
		}
	})
}

// TestSIMDAxpyFused: every SIMD Axpy is one fused multiply-add per element.
func TestSIMDAxpyFused(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		if _, ok := simdLanes[Impl()]; !ok {
			t.Skip("not a SIMD path")
		}
		r := newRand(14)
		for _, n := range testLengths {
			a := float32(r.NormFloat64())
			x, y := normal(r, n, 0, 1), normal(r, n, 0, 1)
			want := make([]float32, n)
			for i := range want {
				want[i] = fma32(a, x[i], y[i])
			}
			Axpy(a, x, y)
			if !sameBits(y, want) {
				t.Fatalf("n=%d: Axpy differs from fused a*x+y", n)
			}
		}
	})
}
