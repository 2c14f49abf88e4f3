package kernels

import "math"

// AMX names the mixed-precision path: the pool's large products (Pool.Sgemm
// and Pool.SgemmInit with m, n ≥ 16 and k ≥ 32) round op(A) and op(B) to
// bfloat16 and multiply them on the CPU's AMX tiles, summing in float32;
// everything else (small products, Workspace.Sgemm, the vector kernels)
// runs as on AVX-512. Select it with SetImpl(AMX) where HasAMX reports
// true (Intel Sapphire Rapids and later, Linux 5.16 or later). It is not in
// Impls, which lists the exact float32 paths. Its results are deterministic
// (every element is summed by one thread in a fixed order, whatever the
// thread count) but differ from the float32 paths by bfloat16's rounding.
const AMX = "amx-bf16"

// HasAMX reports whether this CPU and kernel can run the AMX path.
func HasAMX() bool { return hasAMX() }

// amxConfig is the tile configuration of amxRow32: palette 1, eight
// tiles of 16 rows of 64 bytes.
var amxConfig = func() (c [64]byte) {
	c[0] = 1
	for t := 0; t < 8; t++ {
		c[16+2*t] = 64
		c[48+t] = 16
	}
	return c
}()

// toBF16 rounds f to the nearest bfloat16, ties to even, as VCVTNEPS2BF16
// does: NaNs stay (quiet) NaNs and denormals become zero of their sign.
func toBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 0x40
	}
	if u&0x7f800000 == 0 {
		return uint16(u>>16) & 0x8000
	}
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}

// amxEligible says whether the bf16 path takes a product of this shape; the
// choice depends on the shape alone, so results do not depend on threads.
func amxEligible(g *gemmArgs) bool {
	return g.im.bf16 && g.tri == Full && g.m >= 16 && g.n >= 16 && g.k >= 32 && g.m*g.n*g.k >= 1<<17
}

// amxGemm is a product on the bf16 path: both operands rounded into
// bfloat16 copies laid out for the tiles (A by rows, k padded to 32; B in
// pairs of k rows interleaved, columns padded to 32), then C computed in
// blocks of 32 rows shared between the threads.
type amxGemm struct {
	pool       *Pool
	args       gemmArgs
	mp, np, kp int
	a, b       []uint16
	t          []uint16 // op(B)'s columns rounded, when B is stored transposed
	stage      int      // what Do does: see the stage constants
}

// The stages of an amxGemm, one Run each.
const (
	convertingA    = iota
	convertingB    // B's rows, interleaved in pairs (B not transposed)
	convertingBT   // op(B)'s columns into t (B transposed)
	interleavingBT // t transposed word by word into b
	multiplying
)

func (p *Pool) amxSgemm(g gemmArgs) {
	j := &p.amx
	j.pool, j.args = p, g
	j.mp, j.np, j.kp = (g.m+31)/32*32, (g.n+31)/32*32, (g.k+31)/32*32
	if need := j.mp * j.kp; cap(j.a) < need {
		j.a = make([]uint16, need)
	}
	if need := j.kp * j.np; cap(j.b) < need {
		j.b = make([]uint16, need)
	}
	j.a, j.b = j.a[:j.mp*j.kp], j.b[:j.kp*j.np]
	j.stage = convertingA
	p.Run(j.mp, j)
	if g.tB {
		if need := j.np * j.kp; cap(j.t) < need {
			j.t = make([]uint16, need)
		}
		j.t = j.t[:j.np*j.kp]
		j.stage = convertingBT
		p.Run(j.np, j)
		j.stage = interleavingBT
		p.Run(j.np/16*(j.kp/32), j)
	} else {
		j.stage = convertingB
		p.Run(j.kp/2, j)
	}
	j.stage = multiplying
	p.Run(j.mp/32, j)
	j.args = gemmArgs{}
}

func (j *amxGemm) Do(worker, lo, hi int) {
	switch j.stage {
	case convertingA:
		j.convertA(lo, hi)
	case convertingB:
		j.convertB(lo, hi)
	case convertingBT:
		for col := lo; col < hi; col++ {
			row := j.t[col*j.kp : (col+1)*j.kp]
			if col < j.args.n {
				cvtRow(row, j.args.b[col*j.args.ldb:col*j.args.ldb+j.args.k])
				clear(row[j.args.k:])
			} else {
				clear(row)
			}
		}
	case interleavingBT:
		// Block (c, q): columns 16c.. of op(B), pairs of k 16q..: the
		// words of t's rows become the pair rows of b.
		blocks := j.kp / 32
		for x := lo; x < hi; x++ {
			c0, q0 := x/blocks*16, x%blocks*16
			transposeWords16(j.b[(q0*j.np+c0)*2:], j.np, j.t[c0*j.kp+2*q0:], j.kp/2)
		}
	default:
		j.multiply(j.pool.ws[worker], lo, hi)
	}
}

// convertA writes rows [lo, hi) of the bf16 copy of op(A): rows of A as
// they are, or, A transposed, by 16×16 blocks turned over in registers.
func (j *amxGemm) convertA(lo, hi int) {
	g, kp := &j.args, j.kp
	for i := lo; i < hi; i++ {
		row := j.a[i*kp : (i+1)*kp]
		switch {
		case i >= g.m:
			clear(row)
		case !g.tA:
			cvtRow(row, g.a[i*g.lda:i*g.lda+g.k])
			clear(row[g.k:])
		default:
			clear(row[g.k:])
		}
	}
	if !g.tA {
		return
	}
	for i0 := lo; i0 < min(hi, g.m); i0 += 16 {
		rows := min(16, hi-i0, g.m-i0)
		kk := 0
		if rows == 16 {
			for ; kk+16 <= g.k; kk += 16 {
				transposeCvt16(j.a[i0*kp+kk:], kp, g.a[kk*g.lda+i0:], g.lda)
			}
		}
		for ; kk < g.k; kk++ {
			for r, v := range g.a[kk*g.lda+i0 : kk*g.lda+i0+rows] {
				j.a[(i0+r)*kp+kk] = toBF16(v)
			}
		}
	}
}

// convertB writes pair rows [lo, hi) of the interleaved copy of B (not
// transposed: each row of B is contiguous).
func (j *amxGemm) convertB(lo, hi int) {
	g, np := &j.args, j.np
	for pr := lo; pr < hi; pr++ {
		dst := j.b[pr*2*np : (pr+1)*2*np]
		k0, k1 := 2*pr, 2*pr+1
		switch {
		case k1 < g.k:
			pairRow(dst, g.b[k0*g.ldb:k0*g.ldb+g.n], g.b[k1*g.ldb:k1*g.ldb+g.n])
		case k0 < g.k:
			for col, v := range g.b[k0*g.ldb : k0*g.ldb+g.n] {
				dst[2*col], dst[2*col+1] = toBF16(v), 0
			}
		default:
			clear(dst[:2*g.n])
		}
		clear(dst[2*g.n:])
	}
}

// multiply computes row blocks [lo, hi) of C, 32 rows each. Whole blocks
// go straight to C on the row kernel: from zero, from C (acc), or from
// SgemmInit's starting values written there first. Blocks at the edges of
// C go through a 32×32 scratch block and are stored as Sgemm would: over
// C, added to it, or added to the starting values.
func (j *amxGemm) multiply(w *Workspace, lo, hi int) {
	g, kp, np := &j.args, j.kp, j.np
	init := g.bias != nil || g.add != nil
	for rb := lo; rb < hi; rb++ {
		i0 := rb * 32
		rows, whole := min(32, g.m-i0), g.n/32
		first := 0 // column block where the scratch path starts
		if rows == 32 && whole > 0 {
			if init {
				for r := i0; r < i0+32; r++ {
					g.initRow(g.c[r*g.ldc:r*g.ldc+whole*32], r, 0)
				}
			}
			amxRow(j.a[i0*kp:], kp, j.b, 2*np, kp/32, whole, g.c[i0*g.ldc:], g.ldc, init || g.acc)
			first = whole
		}
		for cb := first; cb < np/32; cb++ {
			j0 := cb * 32
			amxRow(j.a[i0*kp:], kp, j.b[2*j0:], 2*np, kp/32, 1, w.amxC[:], 32, false)
			cols := min(32, g.n-j0)
			for r := 0; r < rows; r++ {
				s := w.amxC[r*32 : r*32+cols]
				dst := g.c[(i0+r)*g.ldc+j0 : (i0+r)*g.ldc+j0+cols]
				switch {
				case init:
					g.initRow(dst, i0+r, j0)
					fallthrough
				case g.acc:
					for x, v := range s {
						dst[x] += v
					}
				default:
					copy(dst, s)
				}
			}
		}
	}
}
