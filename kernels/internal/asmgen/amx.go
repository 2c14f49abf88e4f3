package main

import (
	"bytes"
	"fmt"
)

// genAMX emits the AMX bf16 row kernel
//
//	func amxRow32(cfg *byte, a *uint16, lda int, b *uint16, ldb int, chunks int, blocks int, c *float32, ldc int, load bool)
//
// Each of blocks 32×32 blocks of C in a row (rows ldc bytes apart, block j
// 128 bytes after block j-1) becomes C (when load is set) or zero, plus A·B
// over chunks steps of 32 in k: A as two 16-row tiles (rows lda bytes
// apart, 32 bf16 of k per chunk), B's block j in pair-interleaved ("VNNI")
// rows, ldb bytes apart, 16 of them per chunk, as two 16-column tiles
// starting 128 bytes after block j-1's. Tiles 0-3 accumulate C, 4-5 hold
// A, 6-7 hold B; cfg is the 64-byte tile configuration, loaded once for
// the row. The Go assembler has no AMX mnemonics, so the instructions are
// spelled out as bytes (VEX encodings from the Intel SDM).
func genAMX(w *bytes.Buffer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	bytesOf := func(comment string, b ...byte) {
		s := "\t"
		for i, x := range b {
			if i > 0 {
				s += "; "
			}
			s += fmt.Sprintf("BYTE $0x%02x", x)
		}
		p("%s // %s", s, comment)
	}
	num := map[string]int{"AX": 0, "CX": 1, "DX": 2, "BX": 3, "SI": 6, "DI": 7, "R8": 8, "R9": 9, "R10": 10, "R11": 11, "R12": 12}
	vex1 := func(base, index string) byte {
		b := byte(0x80 | 0b00010) // R (tile register, never extended) inverted = 1
		if num[index]&8 == 0 {
			b |= 0x40
		}
		if num[base]&8 == 0 {
			b |= 0x20
		}
		return b
	}
	sib := func(base, index string) byte { return byte((num[index]&7)<<3 | num[base]&7) }
	tileload := func(t int, base, index string) {
		bytesOf(fmt.Sprintf("TILELOADD (%s)(%s*1), tmm%d", base, index, t), 0xC4, vex1(base, index), 0x7B, 0x4B, byte(t<<3|4), sib(base, index))
	}
	tilestore := func(t int, base, index string) {
		bytesOf(fmt.Sprintf("TILESTORED tmm%d, (%s)(%s*1)", t, base, index), 0xC4, vex1(base, index), 0x7A, 0x4B, byte(t<<3|4), sib(base, index))
	}
	tdp := func(c, a, b int) {
		bytesOf(fmt.Sprintf("TDPBF16PS tmm%d, tmm%d, tmm%d", c, a, b), 0xC4, 0xE2, byte((^b&15)<<3|2), 0x5C, byte(0xC0|c<<3|a))
	}
	// C's four tiles: (R8), 64(R8), (R8 + 16·ldc), 64(R8 + 16·ldc).
	cTiles := func(op func(t int, base, index string)) {
		op(0, "R8", "R9")
		p("\tLEAQ 64(R8), R10")
		op(1, "R10", "R9")
		p("\tMOVQ R9, R10")
		p("\tSHLQ $4, R10")
		p("\tADDQ R8, R10")
		op(2, "R10", "R9")
		p("\tADDQ $64, R10")
		op(3, "R10", "R9")
	}
	p("")
	p("// func amxRow32(cfg *byte, a *uint16, lda int, b *uint16, ldb int, chunks int, blocks int, c *float32, ldc int, load bool)")
	p("TEXT ·amxRow32(SB), NOSPLIT, $0-73")
	p("\tMOVQ cfg+0(FP), SI")
	bytesOf("LDTILECFG (SI)", 0xC4, 0xE2, 0x78, 0x49, 0x06)
	p("\tMOVQ lda+16(FP), DX")
	p("\tMOVQ ldb+32(FP), BX")
	p("\tMOVQ BX, R11")
	p("\tSHLQ $4, R11")
	p("\tMOVQ blocks+48(FP), R12")
	p("\tMOVQ c+56(FP), R8")
	p("\tMOVQ ldc+64(FP), R9")
	p("\tMOVQ b+24(FP), R13")
	p("\tTESTQ R12, R12")
	p("\tJZ amxRow32_done")
	p("amxRow32_block:")
	p("\tMOVBQZX load+72(FP), AX")
	p("\tTESTQ AX, AX")
	p("\tJZ amxRow32_zero")
	cTiles(tileload)
	p("\tJMP amxRow32_k")
	p("amxRow32_zero:")
	for t := 0; t < 4; t++ {
		bytesOf(fmt.Sprintf("TILEZERO tmm%d", t), 0xC4, 0xE2, 0x7B, 0x49, byte(0xC0|t<<3))
	}
	p("amxRow32_k:")
	p("\tMOVQ a+8(FP), SI")
	p("\tMOVQ DX, AX")
	p("\tSHLQ $4, AX")
	p("\tADDQ SI, AX")
	p("\tMOVQ R13, DI")
	p("\tLEAQ 64(R13), CX")
	p("\tMOVQ chunks+40(FP), R10")
	p("amxRow32_loop:")
	tileload(4, "SI", "DX")
	tileload(5, "AX", "DX")
	tileload(6, "DI", "BX")
	tileload(7, "CX", "BX")
	tdp(0, 4, 6)
	tdp(1, 4, 7)
	tdp(2, 5, 6)
	tdp(3, 5, 7)
	p("\tADDQ $64, SI")
	p("\tADDQ $64, AX")
	p("\tADDQ R11, DI")
	p("\tADDQ R11, CX")
	p("\tDECQ R10")
	p("\tJNZ amxRow32_loop")
	cTiles(tilestore)
	p("\tADDQ $128, R8")
	p("\tADDQ $128, R13")
	p("\tDECQ R12")
	p("\tJNZ amxRow32_block")
	p("amxRow32_done:")
	bytesOf("TILERELEASE", 0xC4, 0xE2, 0x78, 0x49, 0xC0)
	p("\tRET")
}

// cvtBF16 spells VCVTNEPS2BF16 Y(dst), Z(src) (EVEX.512.F3.0F38.W0 72 /r),
// which the Go assembler lacks: round 16 floats to bfloat16, ties to even,
// denormal inputs as zero, NaNs kept quiet.
func cvtBF16(dst, src int) string {
	inv := func(bit, v int) int {
		if v&bit != 0 {
			return 0
		}
		return 1
	}
	p0 := inv(8, dst)<<7 | inv(16, src)<<6 | inv(8, src)<<5 | inv(16, dst)<<4 | 0b10
	modrm := 0xC0 | (dst&7)<<3 | src&7
	return fmt.Sprintf("BYTE $0x62; BYTE $0x%02x; BYTE $0x7e; BYTE $0x48; BYTE $0x72; BYTE $0x%02x // VCVTNEPS2BF16 Z%d, Y%d", p0, modrm, src, dst)
}

// genBF16Pack emits the AVX-512 conversions that feed the AMX kernel:
//
//	func cvtBF16AVX512(dst *uint16, src *float32, n int)
//
// rounds n floats (a multiple of 16) to bfloat16;
//
//	func transposeCvt16AVX512(dst *uint16, ldd int, src *float32, lds int)
//
// writes the 16×16 block at src (rows lds floats apart), transposed and
// rounded, to dst (rows ldd bf16 apart); and
//
//	func pairBF16AVX512(dst *uint16, src0, src1 *float32, n int)
//
// interleaves two rows of n floats (a multiple of 16), rounded:
// dst[2j] = src0[j], dst[2j+1] = src1[j].
func genBF16Pack(w *bytes.Buffer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	z := func(i int) string { return fmt.Sprintf("Z%d", i) }
	p("")
	p("// func cvtBF16AVX512(dst *uint16, src *float32, n int)")
	p("TEXT ·cvtBF16AVX512(SB), NOSPLIT, $0-24")
	p("\tMOVQ dst+0(FP), DI")
	p("\tMOVQ src+8(FP), SI")
	p("\tMOVQ n+16(FP), CX")
	p("\tSHRQ $4, CX")
	p("\tJZ cvtBF16AVX512_done")
	p("cvtBF16AVX512_loop:")
	p("\tVMOVUPS (SI), Z0")
	p("\t%s", cvtBF16(1, 0))
	p("\tVMOVDQU Y1, (DI)")
	p("\tADDQ $64, SI")
	p("\tADDQ $32, DI")
	p("\tDECQ CX")
	p("\tJNZ cvtBF16AVX512_loop")
	p("cvtBF16AVX512_done:")
	p("\tVZEROUPPER")
	p("\tRET")

	p("")
	p("// func pairBF16AVX512(dst *uint16, src0, src1 *float32, n int)")
	p("TEXT ·pairBF16AVX512(SB), NOSPLIT, $0-32")
	p("\tMOVQ dst+0(FP), DI")
	p("\tMOVQ src0+8(FP), SI")
	p("\tMOVQ src1+16(FP), DX")
	p("\tMOVQ n+24(FP), CX")
	p("\tSHRQ $4, CX")
	p("\tJZ pairBF16AVX512_done")
	p("pairBF16AVX512_loop:")
	p("\tVMOVUPS (SI), Z0")
	p("\tVMOVUPS (DX), Z1")
	p("\t%s", cvtBF16(2, 0))
	p("\t%s", cvtBF16(3, 1))
	p("\tVPMOVZXWD Y2, Z2")
	p("\tVPMOVZXWD Y3, Z3")
	p("\tVPSLLD $16, Z3, Z3")
	p("\tVPORD Z3, Z2, Z2")
	p("\tVMOVDQU32 Z2, (DI)")
	p("\tADDQ $64, SI")
	p("\tADDQ $64, DX")
	p("\tADDQ $64, DI")
	p("\tDECQ CX")
	p("\tJNZ pairBF16AVX512_loop")
	p("pairBF16AVX512_done:")
	p("\tVZEROUPPER")
	p("\tRET")

	p("")
	p("// func transposeCvt16AVX512(dst *uint16, ldd int, src *float32, lds int)")
	p("TEXT ·transposeCvt16AVX512(SB), NOSPLIT, $0-32")
	p("\tMOVQ dst+0(FP), DI")
	p("\tMOVQ ldd+8(FP), R8")
	p("\tSHLQ $1, R8")
	p("\tMOVQ src+16(FP), SI")
	p("\tMOVQ lds+24(FP), R9")
	p("\tSHLQ $2, R9")
	transpose16Body(p, z)
	for c := 0; c < 16; c++ {
		reg := []int{20, 24, 28, 8}[c/4] + c%4
		p("\t%s", cvtBF16(0, reg))
		p("\tVMOVDQU Y0, (DI)")
		p("\tADDQ R8, DI")
	}
	p("\tVZEROUPPER")
	p("\tRET")
}
