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
#define VBIC(d, n, m) WORD $(0x4E601C00 | ((m)<<16) | ((n)<<5) | (d))  // d = n &^ m
#define VFCMGT(d, n, m) WORD $(0x6EA0E400 | ((m)<<16) | ((n)<<5) | (d)) // d = n > m
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
	VFMUL(x, t, n) \
	VFCMGT(n, 18, x) \
	VBIC(x, x, n)

// func expSubNEON(dst, src []float32, m float32, c *[12]float32) float32
//
// dst[i] = exp(src[i]-m), 0 where below ExpTiny, and the sum of the values
// written in eight lanes. c holds ExpSubMin, ExpMax, Log2e, Ln2Hi, Ln2Lo,
// ExpC6, ExpC5, ExpC4, ExpC3, ExpC2, 1 and ExpTiny (package coef).
// Registers: V20-V30 the first eleven, V18 ExpTiny, V31 m, V19 the integer
// 127, V10 and V11 the sums of lanes 0-3 and 4-7.
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
	FMOVS 44(R3), F18
	VDUP V18.S[0], V18.S4
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

#define VDUPL(d, n, i) WORD $(0x4E000400 | ((((i)<<3)|4)<<16) | ((n)<<5) | (d))
#define VFNEG(d, n) WORD $(0x6EA0F800 | ((n)<<5) | (d))
#define VFABS(d, n) WORD $(0x4EA0F800 | ((n)<<5) | (d))
#define VFCMGTZ(d, n) WORD $(0x4EA0C800 | ((n)<<5) | (d))               // d = n > 0
#define VBSL(d, n, m) WORD $(0x6E601C00 | ((m)<<16) | ((n)<<5) | (d))   // d = d ? n : m, bitwise

// The GELU kernels' registers: the constant table (see geluNEON in
// impl_arm64.go) in V20-V28, four a register, and broadcast: V13 0.5,
// V14 1, V15 Rsqrt2, V16 ErfSplit, V17 ErfTop, V18 ErfCenter, V19 the
// integer 127.
#define GELU_CONSTS \
	VLD1.P 64(R3), [V20.S4, V21.S4, V22.S4, V23.S4] \
	VLD1.P 64(R3), [V24.S4, V25.S4, V26.S4, V27.S4] \
	VLD1 (R3), [V28.S4] \
	VDUPL(13, 22, 3) \
	VDUPL(14, 22, 2) \
	VDUPL(15, 23, 0) \
	VDUPL(16, 23, 1) \
	VDUPL(17, 23, 2) \
	VDUPL(18, 23, 3) \
	MOVW $127, R4 \
	VDUP R4, V19.S4

// EXPL sets Vx to exp32(Vx) with the table's constants; temporaries Vn,
// Vr, Vp, Vt.
#define EXPL(x, n, r, p, t) \
	VDUPL(t, 20, 0) \
	VFMAX(x, x, t) \
	VDUPL(t, 20, 1) \
	VFMIN(x, x, t) \
	VDUPL(t, 20, 2) \
	VFMUL(n, x, t) \
	VFRINTN(n, n) \
	VMOVQ(r, x) \
	VDUPL(t, 20, 3) \
	VFMLS4(r, n, t) \
	VDUPL(t, 21, 0) \
	VFMLS4(r, n, t) \
	VDUPL(p, 21, 2) \
	VDUPL(t, 21, 1) \
	VFMLA4(p, t, r) \
	VDUPL(t, 21, 3) \
	VFMLA4(t, p, r) \
	VDUPL(p, 22, 0) \
	VFMLA4(p, t, r) \
	VDUPL(t, 22, 1) \
	VFMLA4(t, p, r) \
	VMOVQ(p, 14) \
	VFMLA4(p, t, r) \
	VMOVQ(t, 14) \
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

// PHI sets V7 to Phi(V0) and V4 to exp(-V0*V0/2), as phi32 does, both of
// its branches evaluated and the right one kept lane by lane; it uses
// V1-V12.
#define PHI \
	VFMUL(1, 0, 13) \
	VFMUL(1, 1, 0) \
	VFMUL(2, 0, 15) \
	VFABS(3, 2) \
	VFNEG(4, 1) \
	EXPL(4, 5, 6, 7, 8) \
	VDUPL(5, 24, 1) \
	VDUPL(6, 24, 0) \
	VFMLA4(5, 6, 1) \
	VDUPL(6, 24, 2) \
	VFMLA4(6, 5, 1) \
	VDUPL(5, 24, 3) \
	VFMLA4(5, 6, 1) \
	VDUPL(6, 25, 0) \
	VFMLA4(6, 5, 1) \
	VDUPL(5, 25, 1) \
	VFMLA4(5, 6, 1) \
	VDUPL(6, 25, 2) \
	VFMLA4(6, 5, 1) \
	VFMUL(7, 2, 13) \
	VMOVQ(5, 13) \
	VFMLA4(5, 7, 6) \
	VFMIN(9, 3, 17) \
	VFSUB(9, 9, 18) \
	VDUPL(10, 26, 1) \
	VDUPL(11, 26, 0) \
	VFMLA4(10, 11, 9) \
	VDUPL(11, 26, 2) \
	VFMLA4(11, 10, 9) \
	VDUPL(10, 26, 3) \
	VFMLA4(10, 11, 9) \
	VDUPL(11, 27, 0) \
	VFMLA4(11, 10, 9) \
	VDUPL(10, 27, 1) \
	VFMLA4(10, 11, 9) \
	VDUPL(11, 27, 2) \
	VFMLA4(11, 10, 9) \
	VDUPL(10, 27, 3) \
	VFMLA4(10, 11, 9) \
	VDUPL(11, 28, 0) \
	VFMLA4(11, 10, 9) \
	VDUPL(10, 28, 1) \
	VFMLA4(10, 11, 9) \
	VDUPL(11, 28, 2) \
	VFMLA4(11, 10, 9) \
	VDUPL(10, 28, 3) \
	VFMLA4(10, 11, 9) \
	VFMUL(10, 4, 10) \
	VFMUL(10, 10, 13) \
	VFSUB(11, 14, 10) \
	VFCMGTZ(12, 0) \
	VBSL(12, 11, 10) \
	VFCMGT(7, 16, 3) \
	VBSL(7, 5, 12)

// func geluFwdNEON(dst, src []float32, c *[36]float32)
TEXT ·geluFwdNEON(SB), NOSPLIT, $0-56
	MOVD dst_base+0(FP), R0
	MOVD dst_len+8(FP), R2
	MOVD src_base+24(FP), R1
	MOVD c+48(FP), R3
	GELU_CONSTS

gf4:
	CMP $4, R2
	BLT gftail
	VLD1.P 16(R1), [V0.S4]
	PHI
	VFMUL(0, 0, 7)
	VST1.P [V0.S4], 16(R0)
	SUB $4, R2
	B gf4

gftail:
	CBZ R2, gfdone
	VEOR V0.B16, V0.B16, V0.B16
	MOVD R1, R6
	VLD1.P 4(R6), V0.S[0]
	CMP $1, R2
	BEQ gftailphi
	VLD1.P 4(R6), V0.S[1]
	CMP $2, R2
	BEQ gftailphi
	VLD1.P 4(R6), V0.S[2]

gftailphi:
	PHI
	VFMUL(0, 0, 7)
	VST1.P V0.S[0], 4(R0)
	CMP $1, R2
	BEQ gfdone
	VST1.P V0.S[1], 4(R0)
	CMP $2, R2
	BEQ gfdone
	VST1.P V0.S[2], 4(R0)

gfdone:
	RET

// func geluBwdNEON(dx, x, dy []float32, c *[36]float32)
//
// dx = dy*((x*Rsqrt2Pi)*e + Phi(x)), e = exp(-x*x/2).
TEXT ·geluBwdNEON(SB), NOSPLIT, $0-80
	MOVD dx_base+0(FP), R0
	MOVD dx_len+8(FP), R2
	MOVD x_base+24(FP), R1
	MOVD dy_base+48(FP), R5
	MOVD c+72(FP), R3
	GELU_CONSTS

gb4:
	CMP $4, R2
	BLT gbtail
	VLD1.P 16(R1), [V0.S4]
	PHI
	VDUPL(8, 25, 3)
	VFMUL(8, 0, 8)
	VFMLA4(7, 8, 4)
	VLD1.P 16(R5), [V9.S4]
	VFMUL(7, 9, 7)
	VST1.P [V7.S4], 16(R0)
	SUB $4, R2
	B gb4

gbtail:
	CBZ R2, gbdone
	VEOR V0.B16, V0.B16, V0.B16
	VEOR V9.B16, V9.B16, V9.B16
	MOVD R1, R6
	MOVD R5, R7
	VLD1.P 4(R6), V0.S[0]
	VLD1.P 4(R7), V9.S[0]
	CMP $1, R2
	BEQ gbtailphi
	VLD1.P 4(R6), V0.S[1]
	VLD1.P 4(R7), V9.S[1]
	CMP $2, R2
	BEQ gbtailphi
	VLD1.P 4(R6), V0.S[2]
	VLD1.P 4(R7), V9.S[2]

gbtailphi:
	VMOVQ(30, 9)
	PHI
	VDUPL(8, 25, 3)
	VFMUL(8, 0, 8)
	VFMLA4(7, 8, 4)
	VFMUL(7, 30, 7)
	VST1.P V7.S[0], 4(R0)
	CMP $1, R2
	BEQ gbdone
	VST1.P V7.S[1], 4(R0)
	CMP $2, R2
	BEQ gbdone
	VST1.P V7.S[2], 4(R0)

gbdone:
	RET


// func lnFwdNEON(out, x, w, b []float32, eps float32) (mean, rstd float32)
//
// As lnFwdGeneric: the mean and the variance summed in eight lanes
// (sum8's order), rstd = 1/sqrt(variance+eps), out = ((x-mean)*rstd)*w + b.
TEXT ·lnFwdNEON(SB), NOSPLIT, $0-112
	MOVD out_base+0(FP), R0
	MOVD x_base+24(FP), R1
	MOVD x_len+32(FP), R2
	MOVD w_base+48(FP), R3
	MOVD b_base+72(FP), R4
	// The mean.
	VEOR V0.B16, V0.B16, V0.B16
	VEOR V1.B16, V1.B16, V1.B16
	MOVD R1, R5
	MOVD R2, R7
lnf8:
	CMP $8, R7
	BLT lnftail
	VLD1.P 32(R5), [V16.S4, V17.S4]
	VFADD(0, 0, 16)
	VFADD(1, 1, 17)
	SUB $8, R7
	B lnf8
lnftail:
	CBZ R7, lnfmean
	VEOR V16.B16, V16.B16, V16.B16
	VEOR V17.B16, V17.B16, V17.B16
	MOVD R5, R6
	VLD1.P 4(R6), V16.S[0]
	CMP $1, R7
	BEQ lnftailadd
	VLD1.P 4(R6), V16.S[1]
	CMP $2, R7
	BEQ lnftailadd
	VLD1.P 4(R6), V16.S[2]
	CMP $3, R7
	BEQ lnftailadd
	VLD1.P 4(R6), V16.S[3]
	CMP $4, R7
	BEQ lnftailadd
	VLD1.P 4(R6), V17.S[0]
	CMP $5, R7
	BEQ lnftailadd
	VLD1.P 4(R6), V17.S[1]
	CMP $6, R7
	BEQ lnftailadd
	VLD1.P 4(R6), V17.S[2]
lnftailadd:
	VFADD(0, 0, 16)
	VFADD(1, 1, 17)
lnfmean:
	REDUCE8(0, 1, 2)
	SCVTFS R2, F30
	FDIVS F30, F0, F29                // mean
	VDUP V29.S[0], V29.S4
	// The variance.
	VEOR V0.B16, V0.B16, V0.B16
	VEOR V1.B16, V1.B16, V1.B16
	MOVD R1, R5
	MOVD R2, R7
lnfv8:
	CMP $8, R7
	BLT lnfvtail
	VLD1.P 32(R5), [V16.S4, V17.S4]
	VFSUB(16, 16, 29)
	VFSUB(17, 17, 29)
	VFMLA4(0, 16, 16)
	VFMLA4(1, 17, 17)
	SUB $8, R7
	B lnfv8
lnfvtail:
	// The missing lanes hold the mean: their difference is 0.
	CBZ R7, lnfrstd
	VMOVQ(16, 29)
	VMOVQ(17, 29)
	MOVD R5, R6
	VLD1.P 4(R6), V16.S[0]
	CMP $1, R7
	BEQ lnfvtailadd
	VLD1.P 4(R6), V16.S[1]
	CMP $2, R7
	BEQ lnfvtailadd
	VLD1.P 4(R6), V16.S[2]
	CMP $3, R7
	BEQ lnfvtailadd
	VLD1.P 4(R6), V16.S[3]
	CMP $4, R7
	BEQ lnfvtailadd
	VLD1.P 4(R6), V17.S[0]
	CMP $5, R7
	BEQ lnfvtailadd
	VLD1.P 4(R6), V17.S[1]
	CMP $6, R7
	BEQ lnfvtailadd
	VLD1.P 4(R6), V17.S[2]
lnfvtailadd:
	VFSUB(16, 16, 29)
	VFSUB(17, 17, 29)
	VFMLA4(0, 16, 16)
	VFMLA4(1, 17, 17)
lnfrstd:
	REDUCE8(0, 1, 2)
	FDIVS F30, F0, F0                 // variance
	FMOVS eps+96(FP), F1
	FADDS F1, F0, F0
	FSQRTS F0, F0
	FMOVS $1.0, F1
	FDIVS F0, F1, F28                 // rstd
	FMOVS F29, mean+104(FP)
	FMOVS F28, rstd+108(FP)
	VDUP V28.S[0], V28.S4
	// out = ((x-mean)*rstd)*w + b
lnfo4:
	CMP $4, R2
	BLT lnfo1
	VLD1.P 16(R1), [V0.S4]
	VLD1.P 16(R3), [V1.S4]
	VLD1.P 16(R4), [V2.S4]
	VFSUB(0, 0, 29)
	VFMUL(0, 0, 28)
	VFMLA4(2, 0, 1)
	VST1.P [V2.S4], 16(R0)
	SUB $4, R2
	B lnfo4
lnfo1:
	CBZ R2, lnfdone
	FMOVS.P 4(R1), F0
	FMOVS.P 4(R3), F1
	FMOVS.P 4(R4), F2
	FSUBS F29, F0, F0
	FMULS F28, F0, F0
	FMADDS F1, F2, F0, F2             // F2 = F2 + F0*F1
	FMOVS.P F2, 4(R0)
	SUB $1, R2
	B lnfo1
lnfdone:
	RET

// func lnBwdNEON(dx, dw, db, dout, x, w []float32, mean, rstd float32)
//
// As lnBwdGeneric: xh = (x-mean)*rstd, g = dout*w; dw += dout*xh,
// db += dout; the means of g and g*xh (eight lanes, sum8's order) mg,
// mgx; dx += rstd*((g-mg) - xh*mgx).
TEXT ·lnBwdNEON(SB), NOSPLIT, $0-152
	MOVD dx_base+0(FP), R0
	MOVD dx_len+8(FP), R2
	MOVD dw_base+24(FP), R8
	MOVD db_base+48(FP), R9
	MOVD dout_base+72(FP), R10
	MOVD x_base+96(FP), R11
	MOVD w_base+120(FP), R12
	FMOVS mean+144(FP), F29
	VDUP V29.S[0], V29.S4
	FMOVS rstd+148(FP), F28
	VDUP V28.S[0], V28.S4
	VEOR V0.B16, V0.B16, V0.B16       // sum of g, lanes 0-3
	VEOR V1.B16, V1.B16, V1.B16       // lanes 4-7
	VEOR V2.B16, V2.B16, V2.B16       // sum of g*xh
	VEOR V3.B16, V3.B16, V3.B16
	MOVD R10, R13
	MOVD R11, R14
	MOVD R12, R15
	MOVD R2, R7
lnb8:
	CMP $8, R7
	BLT lnbtail
	VLD1.P 32(R14), [V16.S4, V17.S4]  // x
	VLD1.P 32(R13), [V18.S4, V19.S4]  // dout
	VLD1.P 32(R15), [V20.S4, V21.S4]  // w
	VLD1 (R8), [V22.S4, V23.S4]       // dw
	VLD1 (R9), [V24.S4, V25.S4]       // db
	VFSUB(16, 16, 29)
	VFSUB(17, 17, 29)
	VFMUL(16, 16, 28)                 // xh
	VFMUL(17, 17, 28)
	VFMUL(20, 18, 20)                 // g
	VFMUL(21, 19, 21)
	VFADD(0, 0, 20)
	VFADD(1, 1, 21)
	VFMLA4(2, 20, 16)
	VFMLA4(3, 21, 17)
	VFMLA4(22, 18, 16)
	VFMLA4(23, 19, 17)
	VFADD(24, 24, 18)
	VFADD(25, 25, 19)
	VST1.P [V22.S4, V23.S4], 32(R8)
	VST1.P [V24.S4, V25.S4], 32(R9)
	SUB $8, R7
	B lnb8
lnbtail:
	// The last 1-7: the missing lanes of dout are 0, so g is.
	CBZ R7, lnbmeans
	VEOR V16.B16, V16.B16, V16.B16
	VEOR V17.B16, V17.B16, V17.B16
	VEOR V18.B16, V18.B16, V18.B16
	VEOR V19.B16, V19.B16, V19.B16
	VEOR V20.B16, V20.B16, V20.B16
	VEOR V21.B16, V21.B16, V21.B16
	MOVD R14, R6
	VLD1.P 4(R6), V16.S[0]
	CMP $1, R7
	BEQ lnbtx
	VLD1.P 4(R6), V16.S[1]
	CMP $2, R7
	BEQ lnbtx
	VLD1.P 4(R6), V16.S[2]
	CMP $3, R7
	BEQ lnbtx
	VLD1.P 4(R6), V16.S[3]
	CMP $4, R7
	BEQ lnbtx
	VLD1.P 4(R6), V17.S[0]
	CMP $5, R7
	BEQ lnbtx
	VLD1.P 4(R6), V17.S[1]
	CMP $6, R7
	BEQ lnbtx
	VLD1.P 4(R6), V17.S[2]
lnbtx:
	MOVD R13, R6
	VLD1.P 4(R6), V18.S[0]
	CMP $1, R7
	BEQ lnbtd
	VLD1.P 4(R6), V18.S[1]
	CMP $2, R7
	BEQ lnbtd
	VLD1.P 4(R6), V18.S[2]
	CMP $3, R7
	BEQ lnbtd
	VLD1.P 4(R6), V18.S[3]
	CMP $4, R7
	BEQ lnbtd
	VLD1.P 4(R6), V19.S[0]
	CMP $5, R7
	BEQ lnbtd
	VLD1.P 4(R6), V19.S[1]
	CMP $6, R7
	BEQ lnbtd
	VLD1.P 4(R6), V19.S[2]
lnbtd:
	MOVD R15, R6
	VLD1.P 4(R6), V20.S[0]
	CMP $1, R7
	BEQ lnbtw
	VLD1.P 4(R6), V20.S[1]
	CMP $2, R7
	BEQ lnbtw
	VLD1.P 4(R6), V20.S[2]
	CMP $3, R7
	BEQ lnbtw
	VLD1.P 4(R6), V20.S[3]
	CMP $4, R7
	BEQ lnbtw
	VLD1.P 4(R6), V21.S[0]
	CMP $5, R7
	BEQ lnbtw
	VLD1.P 4(R6), V21.S[1]
	CMP $6, R7
	BEQ lnbtw
	VLD1.P 4(R6), V21.S[2]
lnbtw:
	VFSUB(16, 16, 29)
	VFSUB(17, 17, 29)
	VFMUL(16, 16, 28)
	VFMUL(17, 17, 28)
	VFMUL(20, 18, 20)
	VFMUL(21, 19, 21)
	VFADD(0, 0, 20)
	VFADD(1, 1, 21)
	VFMLA4(2, 20, 16)
	VFMLA4(3, 21, 17)
	// dw and db of the tail, one by one.
	MOVD R7, R6
	MOVD R14, R5                      // the tail's x
	MOVD R13, R4                      // and dout
lnbtdw:
	FMOVS.P 4(R5), F4
	FMOVS.P 4(R4), F5
	FSUBS F29, F4, F4
	FMULS F28, F4, F4
	FMOVS (R8), F6
	FMADDS F4, F6, F5, F6             // F6 = F6 + F5*F4
	FMOVS.P F6, 4(R8)
	FMOVS (R9), F7
	FADDS F5, F7, F7
	FMOVS.P F7, 4(R9)
	SUB $1, R6
	CBNZ R6, lnbtdw
lnbmeans:
	SCVTFS R2, F30
	REDUCE8(0, 1, 4)
	FDIVS F30, F0, F26                // mg
	REDUCE8(2, 3, 4)
	FDIVS F30, F2, F27                // mgx
	VDUP V26.S[0], V26.S4
	VDUP V27.S[0], V27.S4
	// dx += rstd*((g-mg) - xh*mgx)
lnbdx4:
	CMP $4, R2
	BLT lnbdx1
	VLD1.P 16(R11), [V16.S4]          // x
	VLD1.P 16(R10), [V18.S4]          // dout
	VLD1.P 16(R12), [V20.S4]          // w
	VLD1 (R0), [V22.S4]               // dx
	VFSUB(16, 16, 29)
	VFMUL(16, 16, 28)                 // xh
	VFMUL(20, 18, 20)                 // g
	VFSUB(20, 20, 26)                 // g - mg
	VFMLS4(20, 16, 27)                // - xh*mgx
	VFMLA4(22, 28, 20)                // dx += rstd*(...)
	VST1.P [V22.S4], 16(R0)
	SUB $4, R2
	B lnbdx4
lnbdx1:
	CBZ R2, lnbdone
	FMOVS.P 4(R11), F16
	FMOVS.P 4(R10), F18
	FMOVS.P 4(R12), F20
	FMOVS (R0), F22
	FSUBS F29, F16, F16
	FMULS F28, F16, F16
	FMULS F20, F18, F20
	FSUBS F26, F20, F20
	FMSUBS F27, F20, F16, F20         // F20 = F20 - F16*F27
	FMADDS F20, F22, F28, F22         // F22 = F22 + F28*F20
	FMOVS.P F22, 4(R0)
	SUB $1, R2
	B lnbdx1
lnbdone:
	RET
