package kernels

// Weight-gradient products (C = Aᵀ·B with A stored k×m) read A as
// columns: mr floats at a time, a row of A apart, a new cache line (and
// often a new page) every step, which the hardware prefetchers do not
// follow. A pool with several threads therefore first transposes A into
// a buffer of its own, 16×16 blocks at a time, and multiplies that with
// the row kernels, which stream their rows: the same operations in the
// same order, so the same bits. The copy costs m·k against the product's
// m·n·k, so only wide products take it: the MLP projection's weight
// gradient of a width-384 model (n = 1536) went from 270 to 322 GFLOP/s
// (BenchmarkSgemmShapes/dW_proj, copy included), while at n = 384 the copy
// cost more than it saved (dW_fc 310 to 271).

// transposeMin is the least m·n·k for which the pool transposes A, and
// transposeMinN the least n.
const (
	transposeMin  = 1 << 24
	transposeMinN = 1024
)

// transposeJob writes t = aᵀ (t is m×k, rows k apart; a is k×m, rows
// lda apart) by strips of 16 rows of t.
type transposeJob struct {
	t, a      []float32
	m, k, lda int
	tr16      func(dst *float32, ldd int, src *float32, lds int)
}

func (j *transposeJob) Do(_, lo, hi int) {
	m, k, lda := j.m, j.k, j.lda
	for s := lo; s < hi; s++ {
		i0 := s * 16
		i1 := min(i0+16, m)
		p := 0
		if i1-i0 == 16 {
			for ; p+16 <= k; p += 16 {
				j.tr16(&j.t[i0*k+p], k, &j.a[p*lda+i0], lda)
			}
		}
		for i := i0; i < i1; i++ {
			row := j.t[i*k : i*k+k]
			for q := p; q < k; q++ {
				row[q] = j.a[q*lda+i]
			}
		}
	}
}

// transposeA turns a product with a transposed A into one without, A
// transposed into the pool's buffer, where that pays (see above).
func (p *Pool) transposeA(args *gemmArgs) {
	if !args.tA || p.threads == 1 || args.im.transpose16 == nil || args.im.rows == nil ||
		args.n < transposeMinN || args.m*args.n*args.k < transposeMin {
		return
	}
	m, k := args.m, args.k
	if cap(p.tbuf) < m*k {
		p.tbuf = make([]float32, m*k)
	}
	t := p.tbuf[:m*k]
	p.tJob = transposeJob{t: t, a: args.a, m: m, k: k, lda: args.lda, tr16: args.im.transpose16}
	p.Run((m+15)/16, &p.tJob)
	p.tJob = transposeJob{}
	args.tA, args.a, args.lda = false, t, k
}
