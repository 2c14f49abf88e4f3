package kernels

import "fmt"

// Blocking of the product (see Goto and van de Geijn, "Anatomy of
// high-performance matrix multiplication"): kc×nc panels of B and mc×kc
// panels of A are packed into contiguous micro-panels that the micro-kernel
// streams through.
const (
	kcBlock = 512
	mcBlock = 192 // a multiple of every micro-kernel's MR
	ncBlock = 1024
	maxMR   = 12
	maxNR   = 32
)

// Tri tells Sgemm about triangular structure it may exploit. Attention uses
// it to skip the half of its products that the causal mask makes zero.
type Tri int

const (
	// Full is an ordinary product.
	Full Tri = iota
	// LowerC asks only for C[i][j] with j ≤ i. Elements above the diagonal
	// are left unspecified: they may be written or not.
	LowerC
	// LowerA promises op(A)[i][k] == 0 for k > i, so those terms are skipped.
	LowerA
	// UpperA promises op(A)[i][k] == 0 for k < i, so those terms are skipped.
	UpperA
)

// microKernel computes the mr×nr product of the packed panels a (mr floats
// per k) and b (nr floats per k) over kc steps and stores it to c (rows ldc
// apart), or adds it to c when acc is true.
type microKernel func(kc int, a, b, c *float32, ldc int, acc bool)

// directKernel is a microKernel that reads A from the caller's matrix,
// lda floats apart, instead of a packed panel: as columns (op(A) is a
// transpose, so the mr floats of each k are contiguous) or as mr rows. It
// computes the same bits as the packed kernel.
type directKernel func(kc int, a *float32, lda int, b, c *float32, ldc int, acc bool)

type impl struct {
	name       string
	mr, nr     int
	kernel     microKernel
	cols, rows directKernel // nil where the path packs A always
	// Packing helpers for nr = 32, nil where packing is plain Go:
	// transpose16 writes the transpose of the 16×16 block at src (rows
	// lds apart) to dst (rows ldd apart); copyPanel copies kc rows of 32
	// floats, lds apart, to dst contiguously.
	transpose16 func(dst *float32, ldd int, src *float32, lds int)
	copyPanel   func(dst, src *float32, lds, kc int)
	// initRows writes bias + add into rows rows of 32 floats, ldc apart:
	// bias the same for every row, add (rows ldc apart) each row's own;
	// either may be nil, not both.
	initRows func(dst *float32, ldc int, bias, add *float32, rows int)
	bf16     bool // the pool's large products go to AMX tiles (bf16.go)
}

// The micro-kernel in use; chosen at init from the CPU's features.
var cur impl

// Impl names the matrix-multiplication path in use: "avx512", "avx2", "neon" or
// "generic".
func Impl() string { return cur.name }

// Impls lists the paths this CPU can run, fastest first.
func Impls() []string {
	var names []string
	for _, im := range available() {
		names = append(names, im.name)
	}
	return names
}

// SetImpl selects a path by name (one of Impls()). It is meant for tests and
// benchmarks and must not be called while products are running.
func SetImpl(name string) error {
	if name == AMX {
		if !hasAMX() {
			return fmt.Errorf("kernels: %s needs AMX with bf16 and a Linux that grants it (this CPU or kernel has neither)", AMX)
		}
		cur = amxImpl()
		return nil
	}
	for _, im := range available() {
		if im.name == name {
			cur = im
			return nil
		}
	}
	return fmt.Errorf("kernels: implementation %q not available on this CPU (have %v)", name, Impls())
}

func init() { cur = available()[0] }

// Workspace is the scratch memory of a single-threaded product.
type Workspace struct {
	packA []float32
	packB []float32
	tile  [maxMR * maxNR]float32
	amxC  [32 * 32]float32 // a block of C from the AMX kernel
}

// NewWorkspace allocates the scratch memory for single-threaded products.
func NewWorkspace() *Workspace {
	return &Workspace{
		packA: make([]float32, mcBlock*kcBlock),
		packB: make([]float32, kcBlock*(ncBlock+maxNR)),
	}
}

// gemmArgs describes C = op(A)·op(B) (+ C), with op(A) m×k and op(B) k×n,
// all matrices row-major with the given leading dimensions.
type gemmArgs struct {
	tA, tB       bool
	m, n, k      int
	a            []float32
	lda          int
	b            []float32
	ldb          int
	c            []float32
	ldc          int
	acc          bool
	tri          Tri
	diag         int // row i's diagonal element is column i+diag (Tri)
	im           impl
	j0, nc       int // current column block
	p0, kc       int // current k block
	packedB      []float32
	splitColumns bool
	independent  bool      // each thread runs its panels through every block alone (runRange)
	bias, add    []float32 // SgemmInit's initial C, filled tile by tile
}

func (g *gemmArgs) check() {
	need := func(what string, rows, cols, ld, length int) {
		if rows == 0 || cols == 0 {
			return
		}
		if ld < cols {
			panic(fmt.Sprintf("kernels: %s leading dimension %d < %d columns", what, ld, cols))
		}
		if (rows-1)*ld+cols > length {
			panic(fmt.Sprintf("kernels: %s of %dx%d (ld %d) needs %d floats, has %d", what, rows, cols, ld, (rows-1)*ld+cols, length))
		}
	}
	if g.m < 0 || g.n < 0 || g.k < 0 {
		panic(fmt.Sprintf("kernels: negative dimension in %dx%dx%d product", g.m, g.n, g.k))
	}
	if g.tA {
		need("A", g.k, g.m, g.lda, len(g.a))
	} else {
		need("A", g.m, g.k, g.lda, len(g.a))
	}
	if g.tB {
		need("B", g.n, g.k, g.ldb, len(g.b))
	} else {
		need("B", g.k, g.n, g.ldb, len(g.b))
	}
	need("C", g.m, g.n, g.ldc, len(g.c))
	if g.bias != nil && len(g.bias) < g.n {
		panic(fmt.Sprintf("kernels: bias of %d floats for %d columns", len(g.bias), g.n))
	}
	if g.add != nil {
		need("addend", g.m, g.n, g.ldc, len(g.add))
	}
}

// zeroC handles k == 0: the product is zero.
func (g *gemmArgs) zeroC() {
	if g.bias != nil || g.add != nil {
		g.initTile(0, 0, g.m, g.n)
		return
	}
	if g.acc {
		return
	}
	for i := 0; i < g.m; i++ {
		clear(g.c[i*g.ldc : i*g.ldc+g.n])
	}
}

// Sgemm computes C = op(A)·op(B), or C += op(A)·op(B) when acc is true, on
// the calling goroutine only, using w's scratch memory. op(X) is X, or its
// transpose when the matching flag is set; op(A) is m×k, op(B) is k×n and C
// is m×n, all row-major with leading dimensions lda, ldb and ldc. Each
// element of C is summed over k in increasing order, in blocks of a fixed
// size, so results do not depend on how callers split work. It panics if a
// slice is too short for the shape it is given.
func (w *Workspace) Sgemm(tA, tB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool, tri Tri) {
	w.SgemmDiag(tA, tB, m, n, k, a, lda, b, ldb, c, ldc, acc, tri, 0)
}

// SgemmDiag is Sgemm with the triangle's diagonal moved: row i's diagonal
// element is column i+diag instead of column i. So LowerC asks for C[i][j]
// with j ≤ i+diag, LowerA promises op(A)[i][k] == 0 for k > i+diag and
// UpperA op(A)[i][k] == 0 for k < i+diag. A strip of rows r0.. of a
// triangular product is the product of those rows with diag r0. Every
// element is summed exactly as Sgemm sums it.
func (w *Workspace) SgemmDiag(tA, tB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool, tri Tri, diag int) {
	g := gemmArgs{tA: tA, tB: tB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, acc: acc, tri: tri, diag: diag, im: cur}
	g.check()
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		g.zeroC()
		return
	}
	w.run(&g)
}

// run computes the checked, non-empty product g on the calling goroutine.
func (w *Workspace) run(g *gemmArgs) { w.runRange(g, 0, g.m, 0, g.n) }

// runRange computes rows [ilo, ihi) and columns [jlo, jhi) of the product
// g on the calling goroutine, packing B into w. Every element is summed
// alike whatever the range, so threads that take ranges of one product need
// not meet between its blocks.
func (w *Workspace) runRange(g *gemmArgs, ilo, ihi, jlo, jhi int) {
	for g.j0 = jlo; g.j0 < jhi; g.j0 += ncBlock {
		g.nc = min(ncBlock, jhi-g.j0)
		for g.p0 = 0; g.p0 < g.k; g.p0 += kcBlock {
			g.kc = min(kcBlock, g.k-g.p0)
			panels := (g.nc + g.im.nr - 1) / g.im.nr
			g.packB(w.packB, 0, panels)
			g.packedB = w.packB
			g.compute(w, ilo, ihi, 0, panels)
		}
	}
}

// compute multiplies rows [ilo, ihi) of op(A) by the B micro-panels
// [plo, phi) of the packed block, into C.
func (g *gemmArgs) compute(w *Workspace, ilo, ihi, plo, phi int) {
	mr, nr, kc := g.im.mr, g.im.nr, g.kc
	acc := g.acc || g.p0 > 0
	kern := g.im.kernel
	direct := g.im.rows
	if g.tA {
		direct = g.im.cols
	}
	for ic := ilo; ic < ihi; ic += mcBlock {
		mc := min(mcBlock, ihi-ic)
		// A direct kernel reads whole panels of A where they lie; only
		// a last, partial panel is packed (zero-padded), at packA[0].
		full := 0
		if direct != nil {
			full = mc / mr * mr
		}
		if full < mc {
			g.packA(w.packA, ic+full, mc-full)
		}
		for pn := plo; pn < phi; pn++ {
			jr := pn * nr
			cols := min(nr, g.nc-jr)
			j := g.j0 + jr
			bp := g.packedB[pn*kc*nr:]
			for ir := 0; ir < mc; ir += mr {
				rows := min(mr, mc-ir)
				i := ic + ir
				ks, ke := 0, kc
				switch d := i + g.diag; g.tri {
				case LowerC:
					if j > d+rows-1 {
						continue
					}
				case LowerA:
					ke = min(kc, max(0, d+rows-g.p0))
				case UpperA:
					ks = min(kc, max(0, d-g.p0))
				}
				if ks >= ke {
					ks, ke = 0, 0
				}
				cp := g.c[i*g.ldc+j:]
				if g.p0 == 0 && (g.bias != nil || g.add != nil) {
					g.initTile(i, j, rows, cols)
				}
				if ir < full {
					var a *float32
					if g.tA {
						a = &g.a[(g.p0+ks)*g.lda+i]
					} else {
						a = &g.a[i*g.lda+g.p0+ks]
					}
					if cols == nr {
						direct(ke-ks, a, g.lda, &bp[ks*nr], &cp[0], g.ldc, acc)
						continue
					}
					direct(ke-ks, a, g.lda, &bp[ks*nr], &w.tile[0], nr, false)
					g.addTile(cp, w.tile[:], rows, cols, acc)
					continue
				}
				ap := w.packA[(ir-full)*kc:]
				if rows == mr && cols == nr {
					kern(ke-ks, &ap[ks*mr], &bp[ks*nr], &cp[0], g.ldc, acc)
					continue
				}
				kern(ke-ks, &ap[ks*mr], &bp[ks*nr], &w.tile[0], nr, false)
				g.addTile(cp, w.tile[:], rows, cols, acc)
			}
		}
	}
}

// addTile stores (or adds, when acc) the rows×cols corner of a micro-tile
// computed into tile (rows nr apart) to C at cp.
func (g *gemmArgs) addTile(cp, tile []float32, rows, cols int, acc bool) {
	nr := g.im.nr
	for r := 0; r < rows; r++ {
		dst := cp[r*g.ldc : r*g.ldc+cols]
		src := tile[r*nr : r*nr+cols]
		if acc {
			for x := range dst {
				dst[x] += src[x]
			}
		} else {
			copy(dst, src)
		}
	}
}

// initTile writes SgemmInit's starting values into the rows×cols tile of C
// at (i, j), just before the first block of the product adds to it, while
// the tile is in cache: one pass over C instead of two.
func (g *gemmArgs) initTile(i, j, rows, cols int) {
	if cols == 32 && g.im.initRows != nil && rows > 0 && (g.bias != nil || g.add != nil) {
		// Bounds checked here, once, for the assembly.
		last := (i+rows-1)*g.ldc + j
		dst := &g.c[i*g.ldc+j : last+32][0]
		var bias, add *float32
		if g.bias != nil {
			bias = &g.bias[j : j+32][0]
		}
		if g.add != nil {
			add = &g.add[i*g.ldc+j : last+32][0]
		}
		g.im.initRows(dst, g.ldc, bias, add, rows)
		return
	}
	for r := i; r < i+rows; r++ {
		g.initRow(g.c[r*g.ldc+j:r*g.ldc+j+cols], r, j)
	}
}

// initRow writes SgemmInit's starting values of row i, columns j0 on, into
// dst.
func (g *gemmArgs) initRow(dst []float32, i, j0 int) {
	switch {
	case g.add == nil:
		copy(dst, g.bias[j0:j0+len(dst)])
	case g.bias == nil:
		copy(dst, g.add[i*g.ldc+j0:i*g.ldc+j0+len(dst)])
	default:
		add := g.add[i*g.ldc+j0 : i*g.ldc+j0+len(dst)]
		for x, b := range g.bias[j0 : j0+len(dst)] {
			dst[x] = b + add[x]
		}
	}
}

// SgemmInit computes C = bias + add + op(A)·op(B), split over the pool's
// threads, where bias (length n, or nil) is added to every row and add (m×n
// with leading dimension ldc, or nil; it may not overlap C) element by
// element. C's starting value, bias + add, is summed first, then each block
// of the product in turn, exactly as filling C and calling Sgemm with acc
// would give, but without a separate pass over C. It panics if a slice is
// too short for its shape; see Workspace.Sgemm for the other arguments.
func (p *Pool) SgemmInit(tA, tB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, bias, add []float32) {
	p.sgemm(gemmArgs{tA: tA, tB: tB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, acc: bias != nil || add != nil, im: cur, bias: bias, add: add})
}

// Sgemm computes C = op(A)·op(B), or C += op(A)·op(B) when acc is true,
// split over the pool's threads; see Workspace.Sgemm for the arguments. The
// result is bitwise the same for any number of threads.
func (p *Pool) Sgemm(tA, tB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool) {
	p.sgemm(gemmArgs{tA: tA, tB: tB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, acc: acc, im: cur})
}

// sgemm runs the product that args describes on the pool.
func (p *Pool) sgemm(args gemmArgs) {
	args.check()
	m, n, k := args.m, args.n, args.k
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		args.zeroC()
		return
	}
	if amxEligible(&args) {
		p.amxSgemm(args)
		return
	}
	if p.threads == 1 || m*n*k < 1<<17 {
		p.ws[0].run(&args)
		return
	}
	p.transposeA(&args)
	g := &p.gemm.args
	*g = args
	g.packedB = p.packB
	rowPanels := (m + g.im.mr - 1) / g.im.mr
	// A product of several blocks (k beyond kcBlock or n beyond ncBlock)
	// makes threads that share a packed B meet twice per block. There each
	// thread instead takes whole micro-panels of C, rows or columns, and
	// runs the blocked product over them alone, packing what it needs of B
	// itself: they meet once, at the end. Sharing rows, every thread packs
	// all of B (cheap beside its share of the arithmetic); sharing columns,
	// every thread reads all of A. So columns when C is at least as wide as
	// it is tall, or when rows would leave the busiest thread more tiles.
	colPanels, t := (n+g.im.nr-1)/g.im.nr, p.threads
	if k > kcBlock || n > ncBlock {
		byRows, byCols := (rowPanels+t-1)/t*colPanels, (colPanels+t-1)/t*rowPanels
		g.independent = true
		g.splitColumns = byCols < byRows || byCols == byRows && n >= m
		if g.splitColumns {
			p.Run(colPanels, &p.gemm)
		} else {
			p.Run(rowPanels, &p.gemm)
		}
		p.gemm.args = gemmArgs{}
		return
	}
	g.splitColumns = rowPanels < 2*p.threads
	for g.j0 = 0; g.j0 < n; g.j0 += ncBlock {
		g.nc = min(ncBlock, n-g.j0)
		for g.p0 = 0; g.p0 < k; g.p0 += kcBlock {
			g.kc = min(kcBlock, k-g.p0)
			panels := (g.nc + g.im.nr - 1) / g.im.nr
			p.packJ.args = g
			p.Run(panels, &p.packJ)
			if g.splitColumns {
				p.Run(panels, &p.gemm)
			} else {
				p.Run(rowPanels, &p.gemm)
			}
		}
	}
	p.gemm.args = gemmArgs{}
	p.packJ.args = nil
}

// packBJob packs B micro-panels in parallel.
type packBJob struct {
	pool *Pool
	args *gemmArgs
}

func (j *packBJob) Do(_, lo, hi int) { j.args.packB(j.args.packedB, lo, hi) }

// gemmJob computes a share of the product: a range of row micro-panels, or
// of column micro-panels when there are too few rows to share.
type gemmJob struct {
	pool *Pool
	args gemmArgs
}

func (j *gemmJob) Do(worker, lo, hi int) {
	g := &j.args
	w := j.pool.ws[worker]
	if g.independent {
		own := *g // this thread moves through the blocks alone
		if g.splitColumns {
			w.runRange(&own, 0, g.m, lo*g.im.nr, min(hi*g.im.nr, g.n))
		} else {
			w.runRange(&own, lo*g.im.mr, min(hi*g.im.mr, g.m), 0, g.n)
		}
		return
	}
	if g.splitColumns {
		g.compute(w, 0, g.m, lo, hi)
		return
	}
	panels := (g.nc + g.im.nr - 1) / g.im.nr
	g.compute(w, lo*g.im.mr, min(hi*g.im.mr, g.m), 0, panels)
}
