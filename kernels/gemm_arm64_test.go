package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestNEONIsFirst(t *testing.T) {
	names := Impls()
	if len(names) < 2 || names[0] != "neon" || !slices.Contains(names, "generic") {
		t.Fatalf("Impls() = %v, want neon first and generic available", names)
	}
}

// TestNEONKernelMatchesGeneric checks the 8×12 micro-kernel bit for bit
// against the portable 4×4 kernel run on each of its 4×4 sub-blocks: on
// arm64 both sum every element with fused multiply-adds in k order.
func TestNEONKernelMatchesGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const mr, nr = 8, 12
	for _, kc := range []int{0, 1, 2, 3, 4, 5, 7, 8, 9, 31, 255, 256} {
		for _, acc := range []bool{false, true} {
			for _, ldc := range []int{nr, nr + 1, 29} {
				a, b := randSlice(r, kc*mr+1), randSlice(r, kc*nr+1)
				c := randSlice(r, (mr-1)*ldc+nr)
				want := append([]float32(nil), c...)
				sgemmKernelNEON(kc, &a[0], &b[0], &c[0], ldc, acc)
				subA, subB := make([]float32, kc*4+1), make([]float32, kc*4+1)
				for i0 := 0; i0 < mr; i0 += 4 {
					for j0 := 0; j0 < nr; j0 += 4 {
						for k := 0; k < kc; k++ {
							copy(subA[k*4:k*4+4], a[k*mr+i0:])
							copy(subB[k*4:k*4+4], b[k*nr+j0:])
						}
						sgemmKernelGeneric(kc, &subA[0], &subB[0], &want[i0*ldc+j0], ldc, acc)
					}
				}
				for i := range c {
					if math.Float32bits(c[i]) != math.Float32bits(want[i]) {
						t.Fatalf("kc=%d acc=%v ldc=%d: c[%d] = %v, generic %v", kc, acc, ldc, i, c[i], want[i])
					}
				}
			}
		}
	}
}

// TestSgemmNEONMatchesGeneric runs whole products, edge tiles and all, on
// both paths: full products must agree bit for bit, and the triangular
// shortcuts (which skip different zero terms for different panel shapes)
// up to the sign of zeros.
func TestSgemmNEONMatchesGeneric(t *testing.T) {
	defer SetImpl(Impl())
	r := rand.New(rand.NewPCG(9, 10))
	pool := NewPool(3)
	defer pool.Close()
	sizes := []int{1, 7, 8, 9, 12, 13, 23, 25, 191, 193, 257}
	for trial := 0; trial < 150; trial++ {
		m, n, k := sizes[r.IntN(len(sizes))], sizes[r.IntN(len(sizes))], sizes[r.IntN(len(sizes))]
		if trial%10 == 0 {
			n = 1030 // more than one column block
		}
		tA, tB, acc, parallel := r.IntN(2) == 0, r.IntN(2) == 0, r.IntN(2) == 0, r.IntN(2) == 0
		tri := Full
		if !parallel && m == n && trial%3 == 0 {
			tri = LowerC
		}
		if !parallel && trial%3 == 1 {
			// LowerA/UpperA need a square triangular op(A).
			k = m
			tri = LowerA
			if tA {
				tri = UpperA
			}
		}
		ar, ac := m, k
		if tA {
			ar, ac = k, m
		}
		br, bc := k, n
		if tB {
			br, bc = n, k
		}
		lda, ldb, ldc := ac+r.IntN(3), bc+r.IntN(3), n+r.IntN(3)
		a, b := randSlice(r, (ar-1)*lda+ac), randSlice(r, (br-1)*ldb+bc)
		if tri == LowerA || tri == UpperA {
			for i := 0; i < m; i++ { // op(A) triangular as promised
				for p := 0; p < k; p++ {
					if (tri == LowerA && p <= i) || (tri == UpperA && p >= i) {
						continue
					}
					if tA {
						a[p*lda+i] = 0
					} else {
						a[i*lda+p] = 0
					}
				}
			}
		}
		c0 := randSlice(r, (m-1)*ldc+n)
		run := func(name string) []float32 {
			if err := SetImpl(name); err != nil {
				t.Fatal(err)
			}
			c := append([]float32(nil), c0...)
			if parallel {
				pool.Sgemm(tA, tB, m, n, k, a, lda, b, ldb, c, ldc, acc)
			} else {
				NewWorkspace().Sgemm(tA, tB, m, n, k, a, lda, b, ldb, c, ldc, acc, tri)
			}
			return c
		}
		got, want := run("neon"), run("generic")
		label := fmt.Sprintf("%dx%dx%d tA=%v tB=%v acc=%v parallel=%v tri=%d", m, n, k, tA, tB, acc, parallel, tri)
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				if tri == LowerC && j > i {
					continue
				}
				x, y := got[i*ldc+j], want[i*ldc+j]
				same := math.Float32bits(x) == math.Float32bits(y)
				if tri == LowerA || tri == UpperA {
					same = x == y
				}
				if !same {
					t.Fatalf("%s: C[%d][%d] neon %v, generic %v", label, i, j, x, y)
				}
			}
		}
	}
}
