package kernels

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/cpu"
)

// amxState remembers whether Linux let this process use AMX tile data:
// the permission is asked once (arch_prctl ARCH_REQ_XCOMP_PERM for
// XFEATURE_XTILEDATA) and holds for every thread of the process.
var amxState struct {
	once sync.Once
	ok   bool
}

// hasAMX reports whether the CPU has AMX with bf16 and the kernel granted
// the process the tile state.
func hasAMX() bool {
	amxState.once.Do(func() {
		if !cpu.X86.HasAMXTile || !cpu.X86.HasAMXBF16 || !cpu.X86.HasAVX512F {
			return
		}
		amxState.ok = requestAMX()
	})
	return amxState.ok
}

// amxImpl is the bf16 path: AMX tiles for the pool's large products,
// AVX-512 for everything else.
func amxImpl() impl {
	im := available()[0] // AVX-512, which every AMX CPU has
	im.name = AMX
	im.bf16 = true
	return im
}

//go:noescape
func amxRow32(cfg *byte, a *uint16, lda int, b *uint16, ldb int, chunks int, blocks int, c *float32, ldc int, load bool)

// amxRow runs the assembly row kernel: blocks 32×32 blocks of C (rows ldc
// floats apart), from C or from zero, plus A's 32 rows times B's first
// 32·blocks columns, over chunks steps of 32 in k (lda, ldb in elements).
func amxRow(a []uint16, lda int, b []uint16, ldb int, chunks, blocks int, c []float32, ldc int, load bool) {
	_, _, _ = a[31*lda+32*chunks-1], b[(16*chunks-1)*ldb+64*blocks-1], c[31*ldc+32*blocks-1]
	amxRow32(&amxConfig[0], &a[0], 2*lda, &b[0], 2*ldb, chunks, blocks, &c[0], 4*ldc, load)
}

//go:noescape
func cvtBF16AVX512(dst *uint16, src *float32, n int)

//go:noescape
func pairBF16AVX512(dst *uint16, src0, src1 *float32, n int)

//go:noescape
func transposeCvt16AVX512(dst *uint16, ldd int, src *float32, lds int)

// cvtRow rounds src into dst (as long as src).
func cvtRow(dst []uint16, src []float32) {
	n := len(src) / 16 * 16
	dst = dst[:len(src)]
	if n > 0 {
		cvtBF16AVX512(&dst[0], &src[0], n)
	}
	for i := n; i < len(src); i++ {
		dst[i] = toBF16(src[i])
	}
}

// pairRow interleaves src0 and src1, rounded, into dst (twice as long).
func pairRow(dst []uint16, src0, src1 []float32) {
	n := len(src0) / 16 * 16
	dst, src1 = dst[:2*len(src0)], src1[:len(src0)]
	if n > 0 {
		pairBF16AVX512(&dst[0], &src0[0], &src1[0], n)
	}
	for i := n; i < len(src0); i++ {
		dst[2*i], dst[2*i+1] = toBF16(src0[i]), toBF16(src1[i])
	}
}

// transposeCvt16 writes the 16×16 block at src (rows lds apart),
// transposed and rounded, to dst (rows ldd apart).
func transposeCvt16(dst []uint16, ldd int, src []float32, lds int) {
	_, _ = dst[15*ldd+15], src[15*lds+15]
	transposeCvt16AVX512(&dst[0], ldd, &src[0], lds)
}

// transposeWords16 transposes the 16×16 block of 32-bit words (pairs of
// bf16) at src (rows lds words apart) into dst (rows ldd words apart).
func transposeWords16(dst []uint16, ldd int, src []uint16, lds int) {
	_, _ = dst[2*(15*ldd+15)+1], src[2*(15*lds+15)+1]
	transpose16AVX512((*float32)(unsafe.Pointer(&dst[0])), ldd, (*float32)(unsafe.Pointer(&src[0])), lds)
}
