package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestToBF16(t *testing.T) {
	for _, c := range []struct {
		in   float32
		want uint16
	}{
		{1, 0x3f80}, {-2, 0xc000}, {0, 0}, {float32(math.Inf(1)), 0x7f80},
		{math.Float32frombits(0x3f808000), 0x3f80}, // tie, even below
		{math.Float32frombits(0x3f818000), 0x3f82}, // tie, even above
		{math.Float32frombits(0x3f808001), 0x3f81}, // above the tie
		{math.Float32frombits(0x7f7fffff), 0x7f80}, // rounds to infinity
		{math.Float32frombits(0x807fffff), 0x8000}, // a denormal is zero
	} {
		if got := toBF16(c.in); got != c.want {
			t.Errorf("toBF16(%#x) = %#x, want %#x", math.Float32bits(c.in), got, c.want)
		}
	}
	if got := toBF16(math.Float32frombits(0x7f800001)); got&0x7f80 != 0x7f80 || got&0x7f == 0 {
		t.Errorf("a NaN became %#x", got)
	}
}

// bf16Naive is op(A)·op(B) in float64 over operands rounded to bfloat16.
func bf16Naive(tA, tB bool, m, n, k int, a []float32, lda int, b []float32, ldb int) []float64 {
	r := func(x float32) float32 { return math.Float32frombits(uint32(toBF16(x)) << 16) }
	ra, rb := make([]float32, len(a)), make([]float32, len(b))
	for i, v := range a {
		ra[i] = r(v)
	}
	for i, v := range b {
		rb[i] = r(v)
	}
	return naive(tA, tB, m, n, k, ra, lda, rb, ldb)
}

// TestAMXMatchesBF16Naive checks the AMX path against the exact product of
// the bf16-rounded operands, for every transpose, edge blocks and padding
// in k, plain, accumulating and SgemmInit (whole blocks go straight to C,
// edge blocks through scratch), and that each is bitwise the same for any
// number of threads.
func TestAMXMatchesBF16Naive(t *testing.T) {
	useAMX(t)
	r := rand.New(rand.NewPCG(3, 4))
	for _, s := range []shape{{64, 64, 64}, {100, 70, 300}, {33, 1100, 45}, {200, 200, 520}} {
		for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			lda, ldb := s.k+1, s.n+2
			if tr[0] {
				lda = s.m + 1
			}
			if tr[1] {
				ldb = s.k + 2
			}
			rowsA, rowsB := s.m, s.k
			if tr[0] {
				rowsA = s.k
			}
			if tr[1] {
				rowsB = s.n
			}
			a, b := randSlice(r, rowsA*lda), randSlice(r, rowsB*ldb)
			want := bf16Naive(tr[0], tr[1], s.m, s.n, s.k, a, lda, b, ldb)
			start, bias := randSlice(r, s.m*s.n), randSlice(r, s.n)
			var ref [3][]float32
			for threads := 1; threads <= 3; threads++ {
				pool := NewPool(threads)
				c := make([]float32, s.m*s.n)
				pool.Sgemm(tr[0], tr[1], s.m, s.n, s.k, a, lda, b, ldb, c, s.n, false)
				acc := append([]float32(nil), start...)
				pool.Sgemm(tr[0], tr[1], s.m, s.n, s.k, a, lda, b, ldb, acc, s.n, true)
				init := make([]float32, s.m*s.n)
				pool.SgemmInit(tr[0], tr[1], s.m, s.n, s.k, a, lda, b, ldb, init, s.n, bias, start)
				pool.Close()
				tol := 1e-5 * math.Sqrt(float64(s.k))
				for i := range c {
					if math.Abs(float64(c[i])-want[i]) > tol {
						t.Fatalf("%v %v: C[%d] = %v, want %v", s, tr, i, c[i], want[i])
					}
					if w := float64(start[i]) + want[i]; math.Abs(float64(acc[i])-w) > tol {
						t.Fatalf("%v %v: accumulated C[%d] = %v, want %v", s, tr, i, acc[i], w)
					}
					if w := float64(bias[i%s.n]+start[i]) + want[i]; math.Abs(float64(init[i])-w) > tol {
						t.Fatalf("%v %v: SgemmInit C[%d] = %v, want %v", s, tr, i, init[i], w)
					}
				}
				for v, got := range [3][]float32{c, acc, init} {
					if ref[v] == nil {
						ref[v] = got
						continue
					}
					for i := range got {
						if math.Float32bits(got[i]) != math.Float32bits(ref[v][i]) {
							t.Fatalf("%v %v: product %d on %d threads differs from 1 thread at %d", s, tr, v, threads, i)
						}
					}
				}
			}
		}
	}
}

func TestBF16ConversionsMatchToBF16(t *testing.T) {
	if !HasAMX() {
		t.Skip("this CPU or kernel has no AMX bf16")
	}
	r := rand.New(rand.NewPCG(5, 6))
	src := make([]float32, 16*37)
	for i := range src {
		u := r.Uint32()
		switch i % 5 {
		case 1:
			u &= 0x807fffff // denormal or zero
		case 2:
			u |= 0x7f800000 // infinity or NaN
		}
		src[i] = math.Float32frombits(u)
	}
	dst := make([]uint16, len(src)+1)
	cvtRow(dst, src[:len(src)-3])
	for i, v := range src[:len(src)-3] {
		if dst[i] != toBF16(v) {
			t.Fatalf("cvtRow: %#x became %#x, want %#x", math.Float32bits(v), dst[i], toBF16(v))
		}
	}
	n := len(src)/2 - 5
	pair := make([]uint16, 2*n)
	pairRow(pair, src[:n], src[n:2*n])
	for i := 0; i < n; i++ {
		if pair[2*i] != toBF16(src[i]) || pair[2*i+1] != toBF16(src[n+i]) {
			t.Fatalf("pairRow at %d: %#x %#x", i, pair[2*i], pair[2*i+1])
		}
	}
	const lds, ldd = 37, 19
	block := make([]uint16, 15*ldd+16)
	transposeCvt16(block, ldd, src, lds)
	for i := 0; i < 16; i++ {
		for j := 0; j < 16; j++ {
			if block[i*ldd+j] != toBF16(src[j*lds+i]) {
				t.Fatalf("transposeCvt16 [%d][%d]: %#x, want %#x", i, j, block[i*ldd+j], toBF16(src[j*lds+i]))
			}
		}
	}
}

// TestAMXDoesNotAllocate checks that the bf16 path reuses its buffers: a
// training step must not allocate.
func TestAMXDoesNotAllocate(t *testing.T) {
	useAMX(t)
	pool := NewPool(2)
	defer pool.Close()
	m, n, k := 96, 200, 130
	a, b, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
	bias := make([]float32, n)
	allocs := testing.AllocsPerRun(5, func() {
		pool.Sgemm(false, true, m, n, k, a, k, b, k, c, n, false)
		pool.Sgemm(true, false, m, n, k, a, m, b, n, c, n, true)
		pool.SgemmInit(false, false, m, n, k, a, k, b, n, c, n, bias, nil)
	})
	if allocs != 0 {
		t.Fatalf("the AMX path allocated %v times per run", allocs)
	}
}

// useAMX switches the package to the AMX path for the test (skipping it
// where the CPU has none) and back afterwards.
func useAMX(t *testing.T) {
	t.Helper()
	if !HasAMX() {
		t.Skip("this CPU or kernel has no AMX bf16")
	}
	saved := Impl()
	t.Cleanup(func() { SetImpl(saved) })
	if err := SetImpl(AMX); err != nil {
		t.Fatal(err)
	}
}
