package vecmath

import (
	"math"
	"math/rand/v2"
	"testing"
)

// u is the float32 unit roundoff (half an ulp of 1).
const u = 0x1p-24

// testLengths covers empty, scalar, sub-vector, exact vector, vector+tail
// and unrolled-loop boundaries for both 8 and 16 lanes.
var testLengths = []int{0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 1000, 4099}

// implNames lists the implementations this CPU supports, best first.
func implNames() []string { return Impls() }

// forEachImpl runs f as a subtest once per supported implementation, with
// that implementation selected, and restores the selection afterwards.
func forEachImpl(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	old := Impl()
	t.Cleanup(func() {
		if err := SetImpl(old); err != nil {
			t.Fatal(err)
		}
	})
	for _, name := range implNames() {
		t.Run(name, func(t *testing.T) {
			if err := SetImpl(name); err != nil {
				t.Fatal(err)
			}
			f(t)
		})
	}
}

// withImpl runs f with implementation name selected.
func withImpl(t testing.TB, name string, f func()) {
	t.Helper()
	old := Impl()
	if err := SetImpl(name); err != nil {
		t.Fatal(err)
	}
	defer SetImpl(old)
	f()
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)) }

func uniform(r *rand.Rand, n int, lo, hi float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(lo + (hi-lo)*r.Float64())
	}
	return x
}

func normal(r *rand.Rand, n int, mean, std float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(mean + std*r.NormFloat64())
	}
	return x
}

// guarded is a slice embedded in a larger buffer whose surrounding
// elements hold a sentinel, to detect out-of-range stores by the masked
// tails. off shifts the start so that slices are not always 64-byte
// aligned.
type guarded struct {
	buf      []float32
	off, n   int
	sentinel uint32
}

const guardLen = 33

func newGuarded(vals []float32, off int) *guarded {
	g := &guarded{buf: make([]float32, off+len(vals)+guardLen), off: off, n: len(vals), sentinel: 0x7fc0dead}
	s := math.Float32frombits(g.sentinel)
	for i := range g.buf {
		g.buf[i] = s
	}
	copy(g.buf[off:], vals)
	return g
}

func (g *guarded) s() []float32 { return g.buf[g.off : g.off+g.n : g.off+g.n] }

func (g *guarded) check(t *testing.T, what string) {
	t.Helper()
	for i, v := range g.buf {
		if i >= g.off && i < g.off+g.n {
			continue
		}
		if math.Float32bits(v) != g.sentinel {
			t.Fatalf("%s: write outside the slice at buffer index %d (slice [%d:%d])", what, i, g.off, g.off+g.n)
		}
	}
}

func clone(x []float32) []float32 { return append([]float32(nil), x...) }

func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// gammaSum bounds the relative error of a float32 sum of n terms computed
// with at least 8 partial sums combined by a tree: (n/8 + 4) roundings.
func gammaSum(n int) float64 { return float64(n/8+4) * u }

// ---- float64 references ----

func phi64(x float64) float64 { return 0.5 * math.Erfc(-x/math.Sqrt2) }

func gelu64(x float64) float64 { return x * phi64(x) }

func geluGrad64(x float64) float64 {
	return phi64(x) + x*math.Exp(-0.5*x*x)/math.Sqrt(2*math.Pi)
}

// expRef is exp(x) rounded to float32 (the target of exp32).
func expRef(x float32) float64 { return math.Exp(float64(x)) }

// expOK reports whether got is an acceptable float32 exp of x as ExpSub
// writes it: relative error at most rel, 0 for results below 2^-64 (either
// within rel of it), and +Inf exactly when the result overflows (allowing
// +Inf within rel of the largest float32).
func expOK(got float32, x float32, rel float64) bool {
	want := expRef(x)
	g := float64(got)
	switch {
	case math.IsNaN(float64(x)):
		return math.IsNaN(g)
	case want < 0x1p-64*(1-rel):
		return g == 0
	case want < 0x1p-64*(1+rel) && g == 0:
		return true
	case want > math.MaxFloat32*(1+rel):
		return math.IsInf(g, 1)
	case math.IsInf(g, 1):
		return want > math.MaxFloat32*(1-rel)
	}
	return math.Abs(g-want) <= rel*want+0x1p-149
}
