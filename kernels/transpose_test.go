package kernels

import (
	"math/rand/v2"
	"testing"
)

// TestTransposedAProduct: a weight-gradient product large enough for the
// pool to transpose A first (m·n·k ≥ transposeMin, n ≥ transposeMinN),
// with a row stride wider than A and shapes off the 16×16 blocks, gives
// bitwise the product one thread computes reading A's columns in place,
// accumulating and not; and the pool did transpose it.
func TestTransposedAProduct(t *testing.T) {
	if cur.transpose16 == nil || cur.rows == nil {
		t.Skipf("the %s path reads transposed A in place", cur.name)
	}
	r := rand.New(rand.NewPCG(7, 8))
	for _, s := range []struct{ m, n, k, lda int }{{96, 1024, 256, 96}, {61, 1030, 301, 70}} {
		if s.m*s.n*s.k < transposeMin || s.n < transposeMinN {
			t.Fatalf("%+v is too small to be transposed", s)
		}
		a, b := randSlice(r, s.k*s.lda), randSlice(r, s.k*s.n)
		for _, acc := range []bool{false, true} {
			c0 := randSlice(r, s.m*s.n)
			want, got := append([]float32(nil), c0...), append([]float32(nil), c0...)
			one, two := NewPool(1), NewPool(2)
			one.Sgemm(true, false, s.m, s.n, s.k, a, s.lda, b, s.n, want, s.n, acc)
			two.Sgemm(true, false, s.m, s.n, s.k, a, s.lda, b, s.n, got, s.n, acc)
			transposed := cap(two.tbuf) >= s.m*s.k
			one.Close()
			two.Close()
			if !transposed {
				t.Fatalf("%+v: the pool did not transpose A", s)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%+v acc %v: c[%d] = %v, want %v (one thread, A read in place)", s, acc, i, got[i], want[i])
				}
			}
		}
	}
}
