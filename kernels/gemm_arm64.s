//go:build arm64

#include "textflag.h"

// The NEON micro-kernel of package kernels: an 8×12 block of C from packed
// panels of A (8 floats per k) and B (12 floats per k).
//
// Registers:
//	R0	k steps left      R1	A panel      R2	B panel
//	R3	C row             R4	ldc in bytes
//	V0, V1	A[0:4], A[4:8] of the current k step
//	V2-V4	B[0:4], B[4:8], B[8:12] of the current k step
//	V8-V31	the accumulators: row r, columns 4v..4v+3 in V(8+3r+v)
//
// Every accumulator starts at zero and takes one fused multiply-add per k
// step, in increasing k order, which is how the portable kernel (whose
// multiply-adds the compiler fuses on arm64) sums, so both paths give the
// same bits. With acc set, C is then added to the sums.
//
// The Go assembler has no FMLA by element nor vector FADD, so those two are
// encoded with WORD by the macros below (operands are register numbers).

// FMLA Vd.4S, Vn.4S, Vm.S[i]
#define FMLA_ELEM(d, n, m, i) WORD $(0x4F801000 | ((m)<<16) | (((i)&1)<<21) | (((i)>>1)<<11) | ((n)<<5) | (d))

// FADD Vd.4S, Vn.4S, Vm.4S
#define FADD_VEC(d, n, m) WORD $(0x4E20D400 | ((m)<<16) | ((n)<<5) | (d))

// KSTEP loads one k step of A and B and multiply-adds the 8×12 outer
// product into the accumulators.
#define KSTEP \
	VLD1.P 32(R1), [V0.S4, V1.S4]; \
	VLD1.P 48(R2), [V2.S4, V3.S4, V4.S4]; \
	FMLA_ELEM(8, 2, 0, 0); \
	FMLA_ELEM(9, 3, 0, 0); \
	FMLA_ELEM(10, 4, 0, 0); \
	FMLA_ELEM(11, 2, 0, 1); \
	FMLA_ELEM(12, 3, 0, 1); \
	FMLA_ELEM(13, 4, 0, 1); \
	FMLA_ELEM(14, 2, 0, 2); \
	FMLA_ELEM(15, 3, 0, 2); \
	FMLA_ELEM(16, 4, 0, 2); \
	FMLA_ELEM(17, 2, 0, 3); \
	FMLA_ELEM(18, 3, 0, 3); \
	FMLA_ELEM(19, 4, 0, 3); \
	FMLA_ELEM(20, 2, 1, 0); \
	FMLA_ELEM(21, 3, 1, 0); \
	FMLA_ELEM(22, 4, 1, 0); \
	FMLA_ELEM(23, 2, 1, 1); \
	FMLA_ELEM(24, 3, 1, 1); \
	FMLA_ELEM(25, 4, 1, 1); \
	FMLA_ELEM(26, 2, 1, 2); \
	FMLA_ELEM(27, 3, 1, 2); \
	FMLA_ELEM(28, 4, 1, 2); \
	FMLA_ELEM(29, 2, 1, 3); \
	FMLA_ELEM(30, 3, 1, 3); \
	FMLA_ELEM(31, 4, 1, 3)

// ROWADD adds the accumulators V(a)..V(a+2) to C's row at R3, stores the
// sums there and moves R3 to the next row.
#define ROWADD(a) \
	VLD1 (R3), [V0.S4, V1.S4, V2.S4]; \
	FADD_VEC(0, 0, (a)); \
	FADD_VEC(1, 1, (a)+1); \
	FADD_VEC(2, 2, (a)+2); \
	VST1.P [V0.S4, V1.S4, V2.S4], (R3)(R4)

// func sgemmKernelNEON(kc int, a, b, c *float32, ldc int, acc bool)
TEXT ·sgemmKernelNEON(SB), NOSPLIT, $0-41
	MOVD kc+0(FP), R0
	MOVD a+8(FP), R1
	MOVD b+16(FP), R2
	MOVD c+24(FP), R3
	MOVD ldc+32(FP), R4
	LSL $2, R4
	VEOR V8.B16, V8.B16, V8.B16
	VEOR V9.B16, V9.B16, V9.B16
	VEOR V10.B16, V10.B16, V10.B16
	VEOR V11.B16, V11.B16, V11.B16
	VEOR V12.B16, V12.B16, V12.B16
	VEOR V13.B16, V13.B16, V13.B16
	VEOR V14.B16, V14.B16, V14.B16
	VEOR V15.B16, V15.B16, V15.B16
	VEOR V16.B16, V16.B16, V16.B16
	VEOR V17.B16, V17.B16, V17.B16
	VEOR V18.B16, V18.B16, V18.B16
	VEOR V19.B16, V19.B16, V19.B16
	VEOR V20.B16, V20.B16, V20.B16
	VEOR V21.B16, V21.B16, V21.B16
	VEOR V22.B16, V22.B16, V22.B16
	VEOR V23.B16, V23.B16, V23.B16
	VEOR V24.B16, V24.B16, V24.B16
	VEOR V25.B16, V25.B16, V25.B16
	VEOR V26.B16, V26.B16, V26.B16
	VEOR V27.B16, V27.B16, V27.B16
	VEOR V28.B16, V28.B16, V28.B16
	VEOR V29.B16, V29.B16, V29.B16
	VEOR V30.B16, V30.B16, V30.B16
	VEOR V31.B16, V31.B16, V31.B16
	LSR $2, R0, R5
	AND $3, R0
	CBZ R5, tail

loop4:
	KSTEP
	KSTEP
	KSTEP
	KSTEP
	SUB $1, R5
	CBNZ R5, loop4

tail:
	CBZ R0, store

loop1:
	KSTEP
	SUB $1, R0
	CBNZ R0, loop1

store:
	MOVBU acc+40(FP), R6
	CBZ R6, write
	ROWADD(8)
	ROWADD(11)
	ROWADD(14)
	ROWADD(17)
	ROWADD(20)
	ROWADD(23)
	ROWADD(26)
	ROWADD(29)
	RET

write:
	VST1.P [V8.S4, V9.S4, V10.S4], (R3)(R4)
	VST1.P [V11.S4, V12.S4, V13.S4], (R3)(R4)
	VST1.P [V14.S4, V15.S4, V16.S4], (R3)(R4)
	VST1.P [V17.S4, V18.S4, V19.S4], (R3)(R4)
	VST1.P [V20.S4, V21.S4, V22.S4], (R3)(R4)
	VST1.P [V23.S4, V24.S4, V25.S4], (R3)(R4)
	VST1.P [V26.S4, V27.S4, V28.S4], (R3)(R4)
	VST1.P [V29.S4, V30.S4, V31.S4], (R3)(R4)
	RET
