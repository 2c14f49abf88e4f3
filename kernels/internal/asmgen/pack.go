package main

import (
	"bytes"
	"fmt"
)

// genPack emits the AVX-512 packing helpers:
//
//	func transpose16AVX512(dst *float32, ldd int, src *float32, lds int)
//
// writes the transpose of the 16×16 block at src (rows lds floats apart) to
// dst (rows ldd floats apart), and
//
//	func copyPanel32AVX512(dst, src *float32, lds, kc int)
//
// copies kc rows of 32 floats, lds apart, to dst contiguously, and
//
//	func initRows32AVX512(dst *float32, ldc int, bias, add *float32, rows int)
//
// writes bias + add into rows rows of 32 floats, ldc apart: bias (32 floats)
// is the same for every row, add (rows ldc apart) its own; either may be
// nil, not both.
func genPack(w *bytes.Buffer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	z := func(i int) string { return fmt.Sprintf("Z%d", i) }
	p("")
	p("// func transpose16AVX512(dst *float32, ldd int, src *float32, lds int)")
	p("TEXT ·transpose16AVX512(SB), NOSPLIT, $0-32")
	p("\tMOVQ dst+0(FP), DI")
	p("\tMOVQ ldd+8(FP), R8")
	p("\tSHLQ $2, R8")
	p("\tMOVQ src+16(FP), SI")
	p("\tMOVQ lds+24(FP), R9")
	p("\tSHLQ $2, R9")
	transpose16Body(p, z)
	// Columns 0-3 are in Z20-23, 4-7 in Z24-27, 8-11 in Z28-31, 12-15 in
	// Z8-11.
	for c := 0; c < 16; c++ {
		reg := []int{20, 24, 28, 8}[c/4] + c%4
		p("\tVMOVUPS %s, (DI)", z(reg))
		p("\tADDQ R8, DI")
	}
	p("\tVZEROUPPER")
	p("\tRET")

	p("")
	p("// func copyPanel32AVX512(dst, src *float32, lds, kc int)")
	p("TEXT ·copyPanel32AVX512(SB), NOSPLIT, $0-32")
	p("\tMOVQ dst+0(FP), DI")
	p("\tMOVQ src+8(FP), SI")
	p("\tMOVQ lds+16(FP), R9")
	p("\tSHLQ $2, R9")
	p("\tMOVQ kc+24(FP), CX")
	p("\tTESTQ CX, CX")
	p("\tJZ copyPanel32AVX512_done")
	p("copyPanel32AVX512_loop:")
	p("\tVMOVUPS (SI), Z0")
	p("\tVMOVUPS 64(SI), Z1")
	p("\tVMOVUPS Z0, (DI)")
	p("\tVMOVUPS Z1, 64(DI)")
	p("\tADDQ R9, SI")
	p("\tADDQ $128, DI")
	p("\tDECQ CX")
	p("\tJNZ copyPanel32AVX512_loop")
	p("copyPanel32AVX512_done:")
	p("\tVZEROUPPER")
	p("\tRET")

	p("")
	p("// func initRows32AVX512(dst *float32, ldc int, bias, add *float32, rows int)")
	p("TEXT ·initRows32AVX512(SB), NOSPLIT, $0-40")
	p("\tMOVQ dst+0(FP), DI")
	p("\tMOVQ ldc+8(FP), R8")
	p("\tSHLQ $2, R8")
	p("\tMOVQ bias+16(FP), SI")
	p("\tMOVQ add+24(FP), DX")
	p("\tMOVQ rows+32(FP), CX")
	p("\tTESTQ CX, CX")
	p("\tJZ initRows32AVX512_done")
	p("\tTESTQ SI, SI")
	p("\tJZ initRows32AVX512_add")
	p("\tVMOVUPS (SI), Z0")
	p("\tVMOVUPS 64(SI), Z1")
	p("\tTESTQ DX, DX")
	p("\tJZ initRows32AVX512_bias")
	// bias + add, in that order as initRow sums them (addition commutes
	// bitwise).
	p("initRows32AVX512_sum:")
	p("\tVADDPS (DX), Z0, Z2")
	p("\tVADDPS 64(DX), Z1, Z3")
	p("\tVMOVUPS Z2, (DI)")
	p("\tVMOVUPS Z3, 64(DI)")
	p("\tADDQ R8, DI")
	p("\tADDQ R8, DX")
	p("\tDECQ CX")
	p("\tJNZ initRows32AVX512_sum")
	p("\tJMP initRows32AVX512_done")
	p("initRows32AVX512_bias:")
	p("\tVMOVUPS Z0, (DI)")
	p("\tVMOVUPS Z1, 64(DI)")
	p("\tADDQ R8, DI")
	p("\tDECQ CX")
	p("\tJNZ initRows32AVX512_bias")
	p("\tJMP initRows32AVX512_done")
	p("initRows32AVX512_add:")
	p("\tVMOVUPS (DX), Z2")
	p("\tVMOVUPS 64(DX), Z3")
	p("\tVMOVUPS Z2, (DI)")
	p("\tVMOVUPS Z3, 64(DI)")
	p("\tADDQ R8, DI")
	p("\tADDQ R8, DX")
	p("\tDECQ CX")
	p("\tJNZ initRows32AVX512_add")
	p("initRows32AVX512_done:")
	p("\tVZEROUPPER")
	p("\tRET")
}

// transpose16Body loads 16 rows of 16 floats from SI (rows R9 bytes apart)
// and leaves their transpose's rows 0-3 in Z20-23, 4-7 in Z24-27, 8-11 in
// Z28-31 and 12-15 in Z8-11.
func transpose16Body(p func(string, ...any), z func(int) string) {
	for r := 0; r < 16; r++ {
		p("\tVMOVUPS (SI), %s", z(r))
		p("\tADDQ R9, SI")
	}
	// Pairs of rows interleaved within 128-bit lanes: Z16+2i holds the
	// low halves of rows 2i and 2i+1, Z17+2i the high halves.
	for i := 0; i < 8; i++ {
		p("\tVUNPCKLPS %s, %s, %s", z(2*i+1), z(2*i), z(16+2*i))
		p("\tVUNPCKHPS %s, %s, %s", z(2*i+1), z(2*i), z(17+2*i))
	}
	// Then pairs of pairs as 64-bit units: for rows 4g..4g+3, Z(4g+x)
	// holds in lane L their column 4L+x.
	for g := 0; g < 4; g++ {
		t := 16 + 4*g
		p("\tVUNPCKLPD %s, %s, %s", z(t+2), z(t), z(4*g))
		p("\tVUNPCKHPD %s, %s, %s", z(t+2), z(t), z(4*g+1))
		p("\tVUNPCKLPD %s, %s, %s", z(t+3), z(t+1), z(4*g+2))
		p("\tVUNPCKHPD %s, %s, %s", z(t+3), z(t+1), z(4*g+3))
	}
	// Finally whole lanes: column 4L+x gathers lane L of Z(x), Z(4+x),
	// Z(8+x), Z(12+x).
	for x := 0; x < 4; x++ {
		p("\tVSHUFF32X4 $0x88, %s, %s, %s", z(4+x), z(x), z(16))
		p("\tVSHUFF32X4 $0xdd, %s, %s, %s", z(4+x), z(x), z(17))
		p("\tVSHUFF32X4 $0x88, %s, %s, %s", z(12+x), z(8+x), z(18))
		p("\tVSHUFF32X4 $0xdd, %s, %s, %s", z(12+x), z(8+x), z(19))
		p("\tVSHUFF32X4 $0x88, %s, %s, %s", z(18), z(16), z(20+x))
		p("\tVSHUFF32X4 $0xdd, %s, %s, %s", z(18), z(16), z(28+x))
		p("\tVSHUFF32X4 $0x88, %s, %s, %s", z(19), z(17), z(24+x))
		p("\tVSHUFF32X4 $0xdd, %s, %s, %s", z(19), z(17), z(8+x))
	}
}
