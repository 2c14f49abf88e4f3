//go:build arm64

#include "textflag.h"

// NEON kernels of package vecmath: Dot and Axpy (see impl_arm64.go).
//
// dotNEON sums in the order of the AVX2 kernel, so that the two give the
// same bits: four accumulators of eight lanes (here each a pair of 4-lane
// registers: V0,V1 V2,V3 V4,V5 V6,V7), element i of a 32-element block
// going to accumulator (i/8)%4, lane i%8; then blocks of 8 into the first
// accumulator; then the last 1-7 elements, zero-filled to 8, into the first
// accumulator; then ((acc0+acc1)+(acc2+acc3)) lane by lane, lane l+4 added
// to lane l, lane l+2 to lane l, lane 1 to lane 0. Every step is a fused
// multiply-add, as VFMADD231PS is.
//
// The Go assembler has no vector FADD, so it is encoded with WORD.

// FADD Vd.4S, Vn.4S, Vm.4S
#define FADD_VEC(d, n, m) WORD $(0x4E20D400 | ((m)<<16) | ((n)<<5) | (d))

// func dotNEON(x, y []float32) float32
TEXT ·dotNEON(SB), NOSPLIT, $0-52
	MOVD x_base+0(FP), R0
	MOVD x_len+8(FP), R2
	MOVD y_base+24(FP), R1
	VEOR V0.B16, V0.B16, V0.B16
	VEOR V1.B16, V1.B16, V1.B16
	VEOR V2.B16, V2.B16, V2.B16
	VEOR V3.B16, V3.B16, V3.B16
	VEOR V4.B16, V4.B16, V4.B16
	VEOR V5.B16, V5.B16, V5.B16
	VEOR V6.B16, V6.B16, V6.B16
	VEOR V7.B16, V7.B16, V7.B16

dot32:
	CMP $32, R2
	BLT dot8
	VLD1.P 64(R0), [V16.S4, V17.S4, V18.S4, V19.S4]
	VLD1.P 64(R0), [V20.S4, V21.S4, V22.S4, V23.S4]
	VLD1.P 64(R1), [V24.S4, V25.S4, V26.S4, V27.S4]
	VLD1.P 64(R1), [V28.S4, V29.S4, V30.S4, V31.S4]
	VFMLA V24.S4, V16.S4, V0.S4
	VFMLA V25.S4, V17.S4, V1.S4
	VFMLA V26.S4, V18.S4, V2.S4
	VFMLA V27.S4, V19.S4, V3.S4
	VFMLA V28.S4, V20.S4, V4.S4
	VFMLA V29.S4, V21.S4, V5.S4
	VFMLA V30.S4, V22.S4, V6.S4
	VFMLA V31.S4, V23.S4, V7.S4
	SUB $32, R2
	B dot32

dot8:
	CMP $8, R2
	BLT dottail
	VLD1.P 32(R0), [V16.S4, V17.S4]
	VLD1.P 32(R1), [V24.S4, V25.S4]
	VFMLA V24.S4, V16.S4, V0.S4
	VFMLA V25.S4, V17.S4, V1.S4
	SUB $8, R2
	B dot8

dottail:
	CBZ R2, dotreduce
	VEOR V16.B16, V16.B16, V16.B16
	VEOR V17.B16, V17.B16, V17.B16
	VEOR V24.B16, V24.B16, V24.B16
	VEOR V25.B16, V25.B16, V25.B16
	VLD1.P 4(R0), V16.S[0]
	VLD1.P 4(R1), V24.S[0]
	CMP $1, R2
	BEQ dottailfma
	VLD1.P 4(R0), V16.S[1]
	VLD1.P 4(R1), V24.S[1]
	CMP $2, R2
	BEQ dottailfma
	VLD1.P 4(R0), V16.S[2]
	VLD1.P 4(R1), V24.S[2]
	CMP $3, R2
	BEQ dottailfma
	VLD1.P 4(R0), V16.S[3]
	VLD1.P 4(R1), V24.S[3]
	CMP $4, R2
	BEQ dottailfma
	VLD1.P 4(R0), V17.S[0]
	VLD1.P 4(R1), V25.S[0]
	CMP $5, R2
	BEQ dottailfma
	VLD1.P 4(R0), V17.S[1]
	VLD1.P 4(R1), V25.S[1]
	CMP $6, R2
	BEQ dottailfma
	VLD1.P 4(R0), V17.S[2]
	VLD1.P 4(R1), V25.S[2]

dottailfma:
	VFMLA V24.S4, V16.S4, V0.S4
	VFMLA V25.S4, V17.S4, V1.S4

dotreduce:
	// lanes 0-3 (even registers) and 4-7 (odd) of (acc0+acc1)+(acc2+acc3)
	FADD_VEC(0, 0, 2)
	FADD_VEC(4, 4, 6)
	FADD_VEC(0, 0, 4)
	FADD_VEC(1, 1, 3)
	FADD_VEC(5, 5, 7)
	FADD_VEC(1, 1, 5)
	FADD_VEC(0, 0, 1)                  // lane l + lane l+4
	VEXT $8, V0.B16, V0.B16, V2.B16
	FADD_VEC(0, 0, 2)                  // lane l + lane l+2
	VMOV V0.S[1], V1.S[0]
	FADDS F1, F0, F0                   // lane 0 + lane 1
	FMOVS F0, ret+48(FP)
	RET

// func axpyNEON(a float32, x, y []float32)
//
// y[i] = a*x[i] + y[i], one fused multiply-add per element.
TEXT ·axpyNEON(SB), NOSPLIT, $0-56
	FMOVS a+0(FP), F31
	VDUP V31.S[0], V31.S4
	MOVD x_base+8(FP), R0
	MOVD x_len+16(FP), R2
	MOVD y_base+32(FP), R1

axpy16:
	CMP $16, R2
	BLT axpy4
	VLD1.P 64(R0), [V0.S4, V1.S4, V2.S4, V3.S4]
	VLD1 (R1), [V4.S4, V5.S4, V6.S4, V7.S4]
	VFMLA V31.S4, V0.S4, V4.S4
	VFMLA V31.S4, V1.S4, V5.S4
	VFMLA V31.S4, V2.S4, V6.S4
	VFMLA V31.S4, V3.S4, V7.S4
	VST1.P [V4.S4, V5.S4, V6.S4, V7.S4], 64(R1)
	SUB $16, R2
	B axpy16

axpy4:
	CMP $4, R2
	BLT axpy1
	VLD1.P 16(R0), [V0.S4]
	VLD1 (R1), [V4.S4]
	VFMLA V31.S4, V0.S4, V4.S4
	VST1.P [V4.S4], 16(R1)
	SUB $4, R2
	B axpy4

axpy1:
	CBZ R2, axpydone
	FMOVS.P 4(R0), F0
	FMOVS (R1), F4
	FMADDS F31, F4, F0, F4             // F4 = F4 + F0*F31
	FMOVS.P F4, 4(R1)
	SUB $1, R2
	B axpy1

axpydone:
	RET
