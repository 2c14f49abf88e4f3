//go:build arm64

#include "textflag.h"

// NEON row kernels of package vecmath: Sum, Max, Scale, Add, AdamW and
// ExpSub (see impl_arm64.go). Four lanes a register; the reductions keep
// eight lanes (a pair of registers, lane i of a block of 8 in lane i%8) as
// the portable code's sum8 does, and combine them in its order,
// ((s0+s4)+(s1+s5))+((s2+s6)+(s3+s7)).
//
// The Go assembler lacks most vector floating-point instructions; they are
// encoded with WORD (Advanced SIMD, 4 x 32-bit lanes, Q = 1).

#define VFADD(d, n, m) WORD $(0x4E20D400 | ((m)<<16) | ((n)<<5) | (d))
#define VFSUB(d, n, m) WORD $(0x4EA0D400 | ((m)<<16) | ((n)<<5) | (d))
#define VFMUL(d, n, m) WORD $(0x6E20DC00 | ((m)<<16) | ((n)<<5) | (d))
#define VFDIV(d, n, m) WORD $(0x6E20FC00 | ((m)<<16) | ((n)<<5) | (d))
#define VFMAX(d, n, m) WORD $(0x4E20F400 | ((m)<<16) | ((n)<<5) | (d))
#define VFMIN(d, n, m) WORD $(0x4EA0F400 | ((m)<<16) | ((n)<<5) | (d))
#define VFADDP(d, n, m) WORD $(0x6E20D400 | ((m)<<16) | ((n)<<5) | (d))
#define VFMLA4(d, n, m) WORD $(0x4E20CC00 | ((m)<<16) | ((n)<<5) | (d)) // d += n*m
#define VFMLS4(d, n, m) WORD $(0x4EA0CC00 | ((m)<<16) | ((n)<<5) | (d)) // d -= n*m
#define VFSQRT(d, n) WORD $(0x6EA1F800 | ((n)<<5) | (d))
#define VFRINTN(d, n) WORD $(0x4E218800 | ((n)<<5) | (d))
#define VFCVTZS(d, n) WORD $(0x4EA1B800 | ((n)<<5) | (d))
#define VADD4(d, n, m) WORD $(0x4EA08400 | ((m)<<16) | ((n)<<5) | (d))
#define VSUB4(d, n, m) WORD $(0x6EA08400 | ((m)<<16) | ((n)<<5) | (d))
#define VSSHR4(d, n, s) WORD $(0x4F000400 | ((64-(s))<<16) | ((n)<<5) | (d))
#define VSHL4(d, n, s) WORD $(0x4F005400 | ((32+(s))<<16) | ((n)<<5) | (d))
#define VMOVQ(d, n) WORD $(0x4EA01C00 | ((n)<<16) | ((n)<<5) | (d)) // ORR d, n, n
// FADDP Sd, Vn.2S: lane 0 + lane 1
#define FADDP2(d, n) WORD $(0x7E30D800 | ((n)<<5) | (d))

// REDUCE8 leaves ((a0+b0)+(a1+b1))+((a2+b2)+(a3+b3)) of the lane pair
// Va (lanes 0-3), Vb (lanes 4-7) in Fa, using Vt.
#define REDUCE8(a, b, t) \
	VFADD(a, a, b) \
	VFADDP(t, a, a) \
	FADDP2(a, t)

// func sumNEON(x []float32) float32
TEXT ·sumNEON(SB), NOSPLIT, $0-28
	MOVD x_base+0(FP), R0
	MOVD x_len+8(FP), R2
	VEOR V0.B16, V0.B16, V0.B16
	VEOR V1.B16, V1.B16, V1.B16

sum8:
	CMP $8, R2
	BLT sumtail
	VLD1.P 32(R0), [V16.S4, V17.S4]
	VFADD(0, 0, 16)
	VFADD(1, 1, 17)
	SUB $8, R2
	B sum8

sumtail:
	// The last 1-7 values, zero-filled to 8.
	CBZ R2, sumreduce
	VEOR V16.B16, V16.B16, V16.B16
	VEOR V17.B16, V17.B16, V17.B16
	VLD1.P 4(R0), V16.S[0]
	CMP $1, R2
	BEQ sumtailadd
	VLD1.P 4(R0), V16.S[1]
	CMP $2, R2
	BEQ sumtailadd
	VLD1.P 4(R0), V16.S[2]
	CMP $3, R2
	BEQ sumtailadd
	VLD1.P 4(R0), V16.S[3]
	CMP $4, R2
	BEQ sumtailadd
	VLD1.P 4(R0), V17.S[0]
	CMP $5, R2
	BEQ sumtailadd
	VLD1.P 4(R0), V17.S[1]
	CMP $6, R2
	BEQ sumtailadd
	VLD1.P 4(R0), V17.S[2]

sumtailadd:
	VFADD(0, 0, 16)
	VFADD(1, 1, 17)

sumreduce:
	REDUCE8(0, 1, 2)
	FMOVS F0, ret+24(FP)
	RET

// func maxNEON(x []float32) float32
//
// -Inf for no values; FMAX propagates a NaN, as the other SIMD paths do.
TEXT ·maxNEON(SB), NOSPLIT, $0-28
	MOVD x_base+0(FP), R0
	MOVD x_len+8(FP), R2
	MOVW $0xff800000, R3
	VDUP R3, V0.S4
	VMOVQ(1, 0)

max8:
	CMP $8, R2
	BLT max1
	VLD1.P 32(R0), [V16.S4, V17.S4]
	VFMAX(0, 0, 16)
	VFMAX(1, 1, 17)
	SUB $8, R2
	B max8

max1:
	VFMAX(0, 0, 1)
	VEXT $8, V0.B16, V0.B16, V2.B16
	VFMAX(0, 0, 2)
	VMOV V0.S[1], V2.S[0]
	FMAXS F2, F0, F0

max1loop:
	CBZ R2, maxdone
	FMOVS.P 4(R0), F1
	FMAXS F1, F0, F0
	SUB $1, R2
	B max1loop

maxdone:
	FMOVS F0, ret+24(FP)
	RET

// func scaleNEON(a float32, x []float32)
TEXT ·scaleNEON(SB), NOSPLIT, $0-32
	FMOVS a+0(FP), F31
	VDUP V31.S[0], V31.S4
	MOVD x_base+8(FP), R0
	MOVD x_len+16(FP), R2

scale16:
	CMP $16, R2
	BLT scale1
	VLD1 (R0), [V0.S4, V1.S4, V2.S4, V3.S4]
	VFMUL(0, 0, 31)
	VFMUL(1, 1, 31)
	VFMUL(2, 2, 31)
	VFMUL(3, 3, 31)
	VST1.P [V0.S4, V1.S4, V2.S4, V3.S4], 64(R0)
	SUB $16, R2
	B scale16

scale1:
	CBZ R2, scaledone
	FMOVS (R0), F0
	FMULS F31, F0, F0
	FMOVS.P F0, 4(R0)
	SUB $1, R2
	B scale1

scaledone:
	RET

// func addNEON(dst, x []float32)
TEXT ·addNEON(SB), NOSPLIT, $0-48
	MOVD dst_base+0(FP), R0
	MOVD dst_len+8(FP), R2
	MOVD x_base+24(FP), R1

add16:
	CMP $16, R2
	BLT add1
	VLD1 (R0), [V0.S4, V1.S4, V2.S4, V3.S4]
	VLD1.P 64(R1), [V4.S4, V5.S4, V6.S4, V7.S4]
	VFADD(0, 0, 4)
	VFADD(1, 1, 5)
	VFADD(2, 2, 6)
	VFADD(3, 3, 7)
	VST1.P [V0.S4, V1.S4, V2.S4, V3.S4], 64(R0)
	SUB $16, R2
	B add16

add1:
	CBZ R2, adddone
	FMOVS (R0), F0
	FMOVS.P 4(R1), F1
	FADDS F1, F0, F0
	FMOVS.P F0, 4(R0)
	SUB $1, R2
	B add1

adddone:
	RET

// func adamwNEON(p, g, m, v []float32, decay, beta1, omb1, beta2, omb2, eps, step, sqrtBc2 float32)
//
// Per element, as adamwGeneric: m = beta1*m + omb1*g; v = beta2*v +
// (omb2*g)*g; p = p*decay - step*(m/(sqrt(v)/sqrtBc2 + eps)).
TEXT ·adamwNEON(SB), NOSPLIT, $0-128
	MOVD p_base+0(FP), R0
	MOVD p_len+8(FP), R4
	MOVD g_base+24(FP), R1
	MOVD m_base+48(FP), R2
	MOVD v_base+72(FP), R3
	FMOVS decay+96(FP), F24
	VDUP V24.S[0], V24.S4
	FMOVS beta1+100(FP), F25
	VDUP V25.S[0], V25.S4
	FMOVS omb1+104(FP), F26
	VDUP V26.S[0], V26.S4
	FMOVS beta2+108(FP), F27
	VDUP V27.S[0], V27.S4
	FMOVS omb2+112(FP), F28
	VDUP V28.S[0], V28.S4
	FMOVS eps+116(FP), F29
	VDUP V29.S[0], V29.S4
	FMOVS step+120(FP), F30
	VDUP V30.S[0], V30.S4
	FMOVS sqrtBc2+124(FP), F31
	VDUP V31.S[0], V31.S4

adamw4:
	CMP $4, R4
	BLT adamw1
	VLD1.P 16(R1), [V1.S4]            // g
	VLD1 (R2), [V2.S4]                // m
	VLD1 (R3), [V3.S4]                // v
	VLD1 (R0), [V0.S4]                // p
	VFMUL(2, 2, 25)                   // beta1*m
	VFMLA4(2, 26, 1)                  // + omb1*g
	VFMUL(4, 28, 1)                   // omb2*g
	VFMUL(4, 4, 1)                    // (omb2*g)*g
	VFMUL(3, 3, 27)                   // beta2*v
	VFADD(3, 3, 4)                    // + (omb2*g)*g
	VST1.P [V2.S4], 16(R2)
	VST1.P [V3.S4], 16(R3)
	VFSQRT(5, 3)
	VFDIV(5, 5, 31)                   // sqrt(v)/sqrtBc2
	VFADD(5, 5, 29)                   // + eps
	VFDIV(5, 2, 5)                    // m/denom
	VFMUL(5, 5, 30)                   // step*(m/denom)
	VFMUL(0, 0, 24)                   // p*decay
	VFSUB(0, 0, 5)
	VST1.P [V0.S4], 16(R0)
	SUB $4, R4
	B adamw4

adamw1:
	CBZ R4, adamwdone
	FMOVS.P 4(R1), F1
	FMOVS (R2), F2
	FMOVS (R3), F3
	FMOVS (R0), F0
	FMULS F25, F2, F2
	FMADDS F26, F2, F1, F2            // F2 = F2 + F1*F26
	FMULS F28, F1, F4
	FMULS F1, F4, F4
	FMULS F27, F3, F3
	FADDS F4, F3, F3
	FMOVS.P F2, 4(R2)
	FMOVS.P F3, 4(R3)
	FSQRTS F3, F5
	FDIVS F31, F5, F5
	FADDS F29, F5, F5
	FDIVS F5, F2, F5
	FMULS F30, F5, F5
	FMULS F24, F0, F0
	FSUBS F5, F0, F0
	FMOVS.P F0, 4(R0)
	SUB $1, R4
	B adamw1

adamwdone:
	RET

// EXP sets Vx to exp(Vx - m) lane by lane, as exp32 does (see
// expSubNEON's registers), with temporaries Vn, Vr, Vp, Vt.
#define EXP(x, n, r, p, t) \
	VFSUB(x, x, 31) \
	VFMAX(x, x, 20) \
	VFMIN(x, x, 21) \
	VFMUL(n, x, 22) \
	VFRINTN(n, n) \
	VMOVQ(r, x) \
	VFMLS4(r, n, 23) \
	VFMLS4(r, n, 24) \
	VMOVQ(p, 26) \
	VFMLA4(p, 25, r) \
	VMOVQ(t, 27) \
	VFMLA4(t, p, r) \
	VMOVQ(p, 28) \
	VFMLA4(p, t, r) \
	VMOVQ(t, 29) \
	VFMLA4(t, p, r) \
	VMOVQ(p, 30) \
	VFMLA4(p, t, r) \
	VMOVQ(t, 30) \
	VFMLA4(t, p, r) \
	VFCVTZS(n, n) \
	VSSHR4(r, n, 1) \
	VSUB4(n, n, r) \
	VADD4(r, r, 19) \
	VSHL4(r, r, 23) \
	VADD4(n, n, 19) \
	VSHL4(n, n, 23) \
	VFMUL(t, t, r) \
	VFMUL(x, t, n)

// func expSubNEON(dst, src []float32, m float32, c *[11]float32) float32
//
// dst[i] = exp(src[i]-m), and the sum of the values written in eight
// lanes. c holds ExpMin, ExpMax, Log2e, Ln2Hi, Ln2Lo, ExpC6, ExpC5, ExpC4,
// ExpC3, ExpC2 and 1 (package coef). Registers: V20-V30 those constants,
// V31 m, V19 the integer 127, V10 and V11 the sums of lanes 0-3 and 4-7.
TEXT ·expSubNEON(SB), NOSPLIT, $0-68
	MOVD dst_base+0(FP), R0
	MOVD dst_len+8(FP), R2
	MOVD src_base+24(FP), R1
	MOVD c+56(FP), R3
	FMOVS m+48(FP), F31
	VDUP V31.S[0], V31.S4
	FMOVS 0(R3), F20
	VDUP V20.S[0], V20.S4
	FMOVS 4(R3), F21
	VDUP V21.S[0], V21.S4
	FMOVS 8(R3), F22
	VDUP V22.S[0], V22.S4
	FMOVS 12(R3), F23
	VDUP V23.S[0], V23.S4
	FMOVS 16(R3), F24
	VDUP V24.S[0], V24.S4
	FMOVS 20(R3), F25
	VDUP V25.S[0], V25.S4
	FMOVS 24(R3), F26
	VDUP V26.S[0], V26.S4
	FMOVS 28(R3), F27
	VDUP V27.S[0], V27.S4
	FMOVS 32(R3), F28
	VDUP V28.S[0], V28.S4
	FMOVS 36(R3), F29
	VDUP V29.S[0], V29.S4
	FMOVS 40(R3), F30
	VDUP V30.S[0], V30.S4
	MOVW $127, R4
	VDUP R4, V19.S4
	VEOR V10.B16, V10.B16, V10.B16
	VEOR V11.B16, V11.B16, V11.B16

exp8:
	CMP $8, R2
	BLT exptail
	VLD1.P 32(R1), [V0.S4, V1.S4]
	EXP(0, 2, 3, 4, 5)
	EXP(1, 6, 7, 8, 9)
	VST1.P [V0.S4, V1.S4], 32(R0)
	VFADD(10, 10, 0)
	VFADD(11, 11, 1)
	SUB $8, R2
	B exp8

exptail:
	// The last 1-7 values, in lanes of a block otherwise zero; only their
	// lanes are stored and copied to V12, V13 for the sums.
	CBZ R2, expreduce
	VEOR V0.B16, V0.B16, V0.B16
	VEOR V1.B16, V1.B16, V1.B16
	VEOR V12.B16, V12.B16, V12.B16
	VEOR V13.B16, V13.B16, V13.B16
	MOVD R1, R5
	VLD1.P 4(R5), V0.S[0]
	CMP $1, R2
	BEQ exptailexp
	VLD1.P 4(R5), V0.S[1]
	CMP $2, R2
	BEQ exptailexp
	VLD1.P 4(R5), V0.S[2]
	CMP $3, R2
	BEQ exptailexp
	VLD1.P 4(R5), V0.S[3]
	CMP $4, R2
	BEQ exptailexp
	VLD1.P 4(R5), V1.S[0]
	CMP $5, R2
	BEQ exptailexp
	VLD1.P 4(R5), V1.S[1]
	CMP $6, R2
	BEQ exptailexp
	VLD1.P 4(R5), V1.S[2]

exptailexp:
	EXP(0, 2, 3, 4, 5)
	EXP(1, 6, 7, 8, 9)
	VST1.P V0.S[0], 4(R0)
	VMOV V0.S[0], V12.S[0]
	CMP $1, R2
	BEQ exptailsum
	VST1.P V0.S[1], 4(R0)
	VMOV V0.S[1], V12.S[1]
	CMP $2, R2
	BEQ exptailsum
	VST1.P V0.S[2], 4(R0)
	VMOV V0.S[2], V12.S[2]
	CMP $3, R2
	BEQ exptailsum
	VST1.P V0.S[3], 4(R0)
	VMOV V0.S[3], V12.S[3]
	CMP $4, R2
	BEQ exptailsum
	VST1.P V1.S[0], 4(R0)
	VMOV V1.S[0], V13.S[0]
	CMP $5, R2
	BEQ exptailsum
	VST1.P V1.S[1], 4(R0)
	VMOV V1.S[1], V13.S[1]
	CMP $6, R2
	BEQ exptailsum
	VST1.P V1.S[2], 4(R0)
	VMOV V1.S[2], V13.S[2]

exptailsum:
	VFADD(10, 10, 12)
	VFADD(11, 11, 13)

expreduce:
	REDUCE8(10, 11, 12)
	FMOVS F10, ret+64(FP)
	RET
