package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// naive computes op(A)·op(B) in float64.
func naive(tA, tB bool, m, n, k int, a []float32, lda int, b []float32, ldb int) []float64 {
	out := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				var x, y float32
				if tA {
					x = a[p*lda+i]
				} else {
					x = a[i*lda+p]
				}
				if tB {
					y = b[j*ldb+p]
				} else {
					y = b[p*ldb+j]
				}
				s += float64(x) * float64(y)
			}
			out[i*n+j] = s
		}
	}
	return out
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

func forEachImpl(t testing.TB, f func(name string)) {
	saved := Impl()
	defer SetImpl(saved)
	for _, name := range Impls() {
		if err := SetImpl(name); err != nil {
			t.Fatal(err)
		}
		f(name)
	}
}

type shape struct{ m, n, k int }

var shapes = []shape{
	{1, 1, 1}, {3, 5, 7}, {12, 32, 1}, {13, 33, 17}, {25, 70, 300}, {100, 64, 128},
	{192, 31, 257}, {7, 1100, 40}, {200, 200, 520}, {2, 300, 64},
}

// within reports whether got matches want to float32 accuracy for a sum of
// k products of standard normals.
func within(got float32, want float64, k int) bool {
	return math.Abs(float64(got)-want) <= 1e-5*math.Sqrt(float64(k))*4+1e-5*math.Abs(want)
}

func TestSgemmMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pool := NewPool(3)
	defer pool.Close()
	forEachImpl(t, func(name string) {
		for _, s := range shapes {
			for _, tA := range []bool{false, true} {
				for _, tB := range []bool{false, true} {
					for _, acc := range []bool{false, true} {
						for _, parallel := range []bool{false, true} {
							label := fmt.Sprintf("%s %dx%dx%d tA=%v tB=%v acc=%v parallel=%v", name, s.m, s.n, s.k, tA, tB, acc, parallel)
							ar, ac := s.m, s.k
							if tA {
								ar, ac = s.k, s.m
							}
							br, bc := s.k, s.n
							if tB {
								br, bc = s.n, s.k
							}
							lda, ldb, ldc := ac+2, bc+1, s.n+3
							a := randSlice(r, (ar-1)*lda+ac)
							b := randSlice(r, (br-1)*ldb+bc)
							c := randSlice(r, (s.m-1)*ldc+s.n)
							c0 := append([]float32(nil), c...)
							want := naive(tA, tB, s.m, s.n, s.k, a, lda, b, ldb)
							if parallel {
								pool.Sgemm(tA, tB, s.m, s.n, s.k, a, lda, b, ldb, c, ldc, acc)
							} else {
								NewWorkspace().Sgemm(tA, tB, s.m, s.n, s.k, a, lda, b, ldb, c, ldc, acc, Full)
							}
							for i := 0; i < s.m; i++ {
								for j := 0; j < s.n; j++ {
									w := want[i*s.n+j]
									if acc {
										w += float64(c0[i*ldc+j])
									}
									if !within(c[i*ldc+j], w, s.k) {
										t.Fatalf("%s: C[%d][%d] = %v, want %v", label, i, j, c[i*ldc+j], w)
									}
								}
								// padding between rows is untouched
								for j := s.n; j < ldc && i < s.m-1; j++ {
									if c[i*ldc+j] != c0[i*ldc+j] {
										t.Fatalf("%s: wrote padding C[%d][%d]", label, i, j)
									}
								}
							}
						}
					}
				}
			}
		}
	})
}

func TestSgemmZeroK(t *testing.T) {
	c := []float32{1, 2, 3, 4}
	NewWorkspace().Sgemm(false, false, 2, 2, 0, nil, 0, nil, 2, c, 2, true, Full)
	if c[0] != 1 || c[3] != 4 {
		t.Fatalf("acc with k=0 changed C: %v", c)
	}
	NewWorkspace().Sgemm(false, false, 2, 2, 0, nil, 0, nil, 2, c, 2, false, Full)
	for _, v := range c {
		if v != 0 {
			t.Fatalf("k=0 product is not zero: %v", c)
		}
	}
}

func TestSgemmPanicsOnShortSlice(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for a too-short A")
		}
	}()
	NewWorkspace().Sgemm(false, false, 4, 4, 4, make([]float32, 15), 4, make([]float32, 16), 4, make([]float32, 16), 4, false, Full)
}

// TestSgemmTriangular checks the triangular shortcuts against full products
// of matrices that have the promised structure.
func TestSgemmTriangular(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	forEachImpl(t, func(name string) {
		for _, n := range []int{1, 5, 12, 13, 40, 64, 100, 300} {
			for _, d := range []int{8, 32, 33} {
				// LowerC: S = Q·K^T, only j <= i needed.
				q, kk := randSlice(r, n*d), randSlice(r, n*d)
				s := make([]float32, n*n)
				NewWorkspace().Sgemm(false, true, n, n, d, q, d, kk, d, s, n, false, LowerC)
				want := naive(false, true, n, n, d, q, d, kk, d)
				for i := 0; i < n; i++ {
					for j := 0; j <= i; j++ {
						if !within(s[i*n+j], want[i*n+j], d) {
							t.Fatalf("%s LowerC n=%d d=%d: S[%d][%d]=%v want %v", name, n, d, i, j, s[i*n+j], want[i*n+j])
						}
					}
				}
				// LowerA: P lower triangular, Y = P·V; UpperA: P^T·V.
				p := randSlice(r, n*n)
				for i := 0; i < n; i++ {
					clear(p[i*n+i+1 : i*n+n])
				}
				v := randSlice(r, n*d)
				for _, tri := range []Tri{LowerA, UpperA} {
					tA := tri == UpperA
					y := randSlice(r, n*d)
					NewWorkspace().Sgemm(tA, false, n, d, n, p, n, v, d, y, d, false, tri)
					want := naive(tA, false, n, d, n, p, n, v, d)
					for i := range y {
						if !within(y[i], want[i], n) {
							t.Fatalf("%s tri=%d n=%d d=%d: Y[%d]=%v want %v", name, tri, n, d, i, y[i], want[i])
						}
					}
				}
			}
		}
	})
}

// TestSgemmDiagStrips: strips of rows of a triangular product, computed
// with SgemmDiag, give bitwise the rows of the whole product (LowerC, and
// LowerA over the keys up to the strip's end), and a transposed strip
// (UpperA with a negative diagonal) the strip's terms of the whole sum.
func TestSgemmDiagStrips(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	forEachImpl(t, func(name string) {
		for _, n := range []int{13, 64, 100, 300, 600} {
			const d = 32
			q, kk, v := randSlice(r, n*d), randSlice(r, n*d), randSlice(r, n*d)
			w := NewWorkspace()
			s := make([]float32, n*n)
			w.Sgemm(false, true, n, n, d, q, d, kk, d, s, n, false, LowerC)
			p := randSlice(r, n*n)
			for i := 0; i < n; i++ {
				clear(p[i*n+i+1 : i*n+n])
			}
			y := make([]float32, n*d)
			w.Sgemm(false, false, n, d, n, p, n, v, d, y, d, false, LowerA)
			ut := make([]float32, n*d) // Pᵀ·V by strips, summed strip by strip
			for _, rows := range []int{12, 48, 7} {
				clear(ut)
				for r0 := 0; r0 < n; r0 += rows {
					m := min(rows, n-r0)
					cols := r0 + m
					strip := make([]float32, m*cols)
					w.SgemmDiag(false, true, m, cols, d, q[r0*d:], d, kk, d, strip, cols, false, LowerC, r0)
					ys := make([]float32, m*d)
					w.SgemmDiag(false, false, m, d, cols, p[r0*n:], n, v, d, ys, d, false, LowerA, r0)
					for i := range m {
						for j := 0; j <= r0+i; j++ {
							if math.Float32bits(strip[i*cols+j]) != math.Float32bits(s[(r0+i)*n+j]) {
								t.Fatalf("%s n=%d rows=%d: LowerC strip at %d,%d: %v, whole %v", name, n, rows, r0+i, j, strip[i*cols+j], s[(r0+i)*n+j])
							}
						}
						for x := range d {
							if math.Float32bits(ys[i*d+x]) != math.Float32bits(y[(r0+i)*d+x]) {
								t.Fatalf("%s n=%d rows=%d: LowerA strip row %d: %v, whole %v", name, n, rows, r0+i, ys[i*d+x], y[(r0+i)*d+x])
							}
						}
					}
					// (P strip)ᵀ·(V strip) over the strip's keys 0..cols.
					w.SgemmDiag(true, false, cols, d, m, p[r0*n:], n, v[r0*d:], d, ut, d, true, UpperA, -r0)
				}
				want := naive(true, false, n, d, n, p, n, v, d)
				for i := range ut {
					if !within(ut[i], want[i], n) {
						t.Fatalf("%s n=%d rows=%d: UpperA strips at %d: %v want %v", name, n, rows, i, ut[i], want[i])
					}
				}
			}
		}
	})
}

// TestSgemmDeterministicAcrossThreads checks that the thread count does not
// change a single bit of the result.
func TestSgemmDeterministicAcrossThreads(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	forEachImpl(t, func(name string) {
		for _, s := range []shape{{300, 200, 700}, {10, 2000, 300}, {513, 129, 1030}} {
			a, b := randSlice(r, s.m*s.k), randSlice(r, s.k*s.n)
			var ref []float32
			for threads := 1; threads <= 4; threads++ {
				pool := NewPool(threads)
				c := make([]float32, s.m*s.n)
				pool.Sgemm(false, false, s.m, s.n, s.k, a, s.k, b, s.n, c, s.n, false)
				pool.Close()
				if ref == nil {
					ref = c
					continue
				}
				for i := range c {
					if math.Float32bits(c[i]) != math.Float32bits(ref[i]) {
						t.Fatalf("%s %v: %d threads differ from 1 thread at %d: %v vs %v", name, s, threads, i, c[i], ref[i])
					}
				}
			}
		}
	})
}

func TestSgemmDoesNotAllocate(t *testing.T) {
	pool := NewPool(2)
	defer pool.Close()
	m, n, k := 256, 384, 300
	a, b, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
	allocs := testing.AllocsPerRun(10, func() {
		pool.Sgemm(false, true, m, n, k, a, k, b, k, c, n, false)
		pool.Sgemm(true, false, m, n, k, a, m, b, n, c, n, true)
	})
	if allocs != 0 {
		t.Fatalf("Sgemm allocated %v times per run", allocs)
	}
}

func BenchmarkSgemm1024(b *testing.B) {
	for _, name := range Impls() {
		b.Run(name, func(b *testing.B) {
			saved := Impl()
			defer SetImpl(saved)
			SetImpl(name)
			n := 1024
			pool := NewPool(2)
			defer pool.Close()
			r := rand.New(rand.NewPCG(1, 1))
			x, y, z := randSlice(r, n*n), randSlice(r, n*n), make([]float32, n*n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				pool.Sgemm(false, false, n, n, n, x, n, y, n, z, n, false)
			}
			b.ReportMetric(2*float64(n*n*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// TestSgemmInitMatchesFillThenAccumulate checks that SgemmInit gives the
// bits of filling C with bias + add and accumulating the product into it,
// on every path, for products below and above the parallel threshold, with
// transposes, edge tiles, several column blocks and k = 0, and that a short
// bias or addend panics.
func TestSgemmInitMatchesFillThenAccumulate(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	forEachImpl(t, func(name string) {
		for _, s := range []shape{{13, 33, 17}, {200, 70, 300}, {64, 1100, 40}, {5, 9, 0}} {
			for _, tr := range [][2]bool{{false, true}, {true, false}} {
				lda, ldb := s.k, s.n
				if tr[0] {
					lda = s.m
				}
				if tr[1] {
					ldb = s.k
				}
				ldc := s.n + 3
				a, b := randSlice(r, s.m*s.k), randSlice(r, s.k*s.n)
				bias, add := randSlice(r, s.n), randSlice(r, s.m*ldc)
				for _, v := range []struct {
					bias, add []float32
				}{{bias, nil}, {nil, add}, {bias, add}} {
					fill := make([]float32, s.m*ldc)
					for i := 0; i < s.m; i++ {
						for j := 0; j < s.n; j++ {
							x := float32(0)
							if v.bias != nil {
								x = v.bias[j]
							}
							if v.add != nil {
								x += v.add[i*ldc+j]
							}
							fill[i*ldc+j] = x
						}
					}
					for threads := 1; threads <= 3; threads++ {
						pool := NewPool(threads)
						want := slices.Clone(fill)
						pool.Sgemm(tr[0], tr[1], s.m, s.n, s.k, a, lda, b, ldb, want, ldc, true)
						got := make([]float32, s.m*ldc)
						pool.SgemmInit(tr[0], tr[1], s.m, s.n, s.k, a, lda, b, ldb, got, ldc, v.bias, v.add)
						pool.Close()
						for i := 0; i < s.m; i++ {
							for j := 0; j < s.n; j++ {
								if math.Float32bits(got[i*ldc+j]) != math.Float32bits(want[i*ldc+j]) {
									t.Fatalf("%s %v %v bias=%v add=%v threads=%d: C[%d][%d] = %v, want %v", name, s, tr, v.bias != nil, v.add != nil, threads, i, j, got[i*ldc+j], want[i*ldc+j])
								}
							}
						}
					}
				}
			}
		}
	})
	pool := NewPool(2)
	defer pool.Close()
	for _, c := range []struct {
		name      string
		bias, add []float32
	}{{"bias", make([]float32, 4), nil}, {"addend", nil, make([]float32, 10)}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("short %s did not panic", c.name)
				}
			}()
			pool.SgemmInit(false, false, 4, 5, 3, make([]float32, 12), 3, make([]float32, 15), 5, make([]float32, 20), 5, c.bias, c.add)
		}()
	}
}

// TestPackHelpers checks the assembly packing helpers element by element
// against their definitions, with strides wider than the blocks.
func TestPackHelpers(t *testing.T) {
	var im impl
	for _, x := range available() {
		if x.transpose16 != nil {
			im = x
		}
	}
	if im.transpose16 == nil {
		t.Skip("no path on this CPU has assembly packing helpers")
	}
	r := rand.New(rand.NewPCG(9, 10))
	const lds, ldd = 21, 19
	src := randSlice(r, 15*lds+16)
	dst := make([]float32, 15*ldd+16)
	im.transpose16(&dst[0], ldd, &src[0], lds)
	for i := 0; i < 16; i++ {
		for j := 0; j < 16; j++ {
			if dst[i*ldd+j] != src[j*lds+i] {
				t.Fatalf("transpose16: dst[%d][%d] = %v, want src[%d][%d] = %v", i, j, dst[i*ldd+j], j, i, src[j*lds+i])
			}
		}
	}
	const kc, ld = 7, 45
	src = randSlice(r, (kc-1)*ld+32)
	dst = make([]float32, kc*32)
	im.copyPanel(&dst[0], &src[0], ld, kc)
	for k := 0; k < kc; k++ {
		for j := 0; j < 32; j++ {
			if dst[k*32+j] != src[k*ld+j] {
				t.Fatalf("copyPanel: dst[%d][%d] = %v, want %v", k, j, dst[k*32+j], src[k*ld+j])
			}
		}
	}
	const rows, ldc = 5, 37
	bias, add := randSlice(r, 32), randSlice(r, (rows-1)*ldc+32)
	for _, v := range []struct {
		name      string
		bias, add []float32
	}{{"bias", bias, nil}, {"add", nil, add}, {"bias+add", bias, add}} {
		dst = randSlice(r, rows*ldc)
		before := slices.Clone(dst)
		var bp, ap *float32
		if v.bias != nil {
			bp = &v.bias[0]
		}
		if v.add != nil {
			ap = &v.add[0]
		}
		im.initRows(&dst[0], ldc, bp, ap, rows)
		for i := 0; i < rows; i++ {
			for j := 0; j < ldc; j++ {
				want := before[i*ldc+j] // beyond the 32 columns: untouched
				if j < 32 {
					want = 0
					if v.bias != nil {
						want = v.bias[j]
					}
					if v.add != nil {
						want += v.add[i*ldc+j]
					}
				}
				if math.Float32bits(dst[i*ldc+j]) != math.Float32bits(want) {
					t.Fatalf("initRows %s: dst[%d][%d] = %v, want %v", v.name, i, j, dst[i*ldc+j], want)
				}
			}
		}
	}
}

// BenchmarkSgemmShapes times the weight-gradient and forward products of a
// width-384 model's MLP (8×256 tokens) on two threads.
func BenchmarkSgemmShapes(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, s := range []struct {
		name    string
		tA, tB  bool
		m, n, k int
	}{
		{"dW_fc", true, false, 1536, 384, 2048},
		{"dW_proj", true, false, 384, 1536, 2048},
		{"dW_qkv", true, false, 1152, 384, 2048},
		{"fwd_fc", false, true, 2048, 1536, 384},
		{"dX_fc", false, false, 2048, 384, 1536},
	} {
		b.Run(s.name, func(b *testing.B) {
			lda, ldb := s.k, s.n
			if s.tA {
				lda = s.m
			}
			if s.tB {
				ldb = s.k
			}
			a, bb, c := randSlice(r, s.m*s.k), randSlice(r, s.k*s.n), make([]float32, s.m*s.n)
			pool := NewPool(2)
			defer pool.Close()
			for b.Loop() {
				pool.Sgemm(s.tA, s.tB, s.m, s.n, s.k, a, lda, bb, ldb, c, s.n, true)
			}
			b.ReportMetric(2*float64(s.m*s.n*s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkSgemmAttention times one thread's products of causal attention
// for one (sequence, head) at ctx 256 and head width 64: the scores
// (lower triangle of Q·Kᵀ) and the probabilities times V.
func BenchmarkSgemmAttention(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	const T, hd, ld = 256, 64, 3 * 384
	q, k, v := randSlice(r, T*ld), randSlice(r, T*ld), randSlice(r, T*ld)
	p, y := randSlice(r, T*T), make([]float32, T*384)
	w := NewWorkspace()
	b.Run("scores", func(b *testing.B) {
		for b.Loop() {
			w.Sgemm(false, true, T, T, hd, q, ld, k, ld, p, T, false, LowerC)
		}
		b.ReportMetric(float64(T*(T+1)*hd)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
	b.Run("pv", func(b *testing.B) {
		for b.Loop() {
			w.Sgemm(false, false, T, hd, T, p, T, v, ld, y, 384, false, LowerA)
		}
		b.ReportMetric(float64(T*(T+1)*hd)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
}
