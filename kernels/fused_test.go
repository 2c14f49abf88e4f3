package kernels

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// fusedGolden is the FNV-64a hash of the bits of fusedProducts' results
// on every path that sums with fused multiply-adds.
const fusedGolden = 0xbd404d7bbd856649

// fusedProducts runs a few products, k beyond one k block and edge tiles
// included, on inputs made from integers so that every architecture sees
// the same floats, and hashes the results' bits.
func fusedProducts() uint64 {
	r := rand.New(rand.NewPCG(11, 12))
	gen := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(int32(r.Uint32())>>8) * 0x1p-23 // exact: 24-bit integers
		}
		return s
	}
	h := fnv.New64a()
	w := NewWorkspace()
	for _, s := range []struct {
		tA, tB  bool
		m, n, k int
		acc     bool
	}{{false, false, 37, 45, 300, false}, {true, false, 50, 29, 513, true}, {false, true, 9, 70, 257, true}} {
		a, b, c := gen(s.m*s.k), gen(s.k*s.n), gen(s.m*s.n)
		lda, ldb := s.k, s.n
		if s.tA {
			lda = s.m
		}
		if s.tB {
			ldb = s.k
		}
		w.Sgemm(s.tA, s.tB, s.m, s.n, s.k, a, lda, b, ldb, c, s.n, s.acc, Full)
		for _, v := range c {
			u := math.Float32bits(v)
			h.Write([]byte{byte(u), byte(u >> 8), byte(u >> 16), byte(u >> 24)})
		}
	}
	return h.Sum64()
}

// TestFusedPathsAgree: every micro-kernel sums each element of C from zero
// in k order with fused multiply-adds, per k block, and adds the block to C
// with one rounding, so the AVX-512, AVX2 and NEON paths, and the portable
// one where Go fuses (arm64), give the same bits whatever their tile
// shapes; the golden hash ties them together across machines.
func TestFusedPathsAgree(t *testing.T) {
	forEachImpl(t, func(name string) {
		if name == "generic" && runtime.GOARCH != "arm64" {
			return // Go does not fuse multiply-adds here
		}
		if got := fusedProducts(); got != fusedGolden {
			t.Errorf("%s: products hash to %#x, want %#x", name, got, uint64(fusedGolden))
		}
	})
}
