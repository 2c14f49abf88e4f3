package kernels

import "golang.org/x/sys/cpu"

//go:generate go run ./internal/asmgen -out gemm_amd64.s

//go:noescape
func sgemmKernelAVX512(kc int, a, b, c *float32, ldc int, acc bool)

//go:noescape
func sgemmKernelAVX2(kc int, a, b, c *float32, ldc int, acc bool)

//go:noescape
func transpose16AVX512(dst *float32, ldd int, src *float32, lds int)

//go:noescape
func copyPanel32AVX512(dst, src *float32, lds, kc int)

//go:noescape
func initRows32AVX512(dst *float32, ldc int, bias, add *float32, rows int)

//go:noescape
func sgemmKernelAVX512Cols(kc int, a *float32, lda int, b, c *float32, ldc int, acc bool)

//go:noescape
func sgemmKernelAVX512Rows(kc int, a *float32, lda int, b, c *float32, ldc int, acc bool)

//go:noescape
func sgemmKernelAVX2Cols(kc int, a *float32, lda int, b, c *float32, ldc int, acc bool)

//go:noescape
func sgemmKernelAVX2Rows(kc int, a *float32, lda int, b, c *float32, ldc int, acc bool)

func available() []impl {
	var list []impl
	if cpu.X86.HasAVX512F {
		list = append(list, impl{name: "avx512", mr: 12, nr: 32, kernel: sgemmKernelAVX512, cols: sgemmKernelAVX512Cols, rows: sgemmKernelAVX512Rows,
			transpose16: transpose16AVX512, copyPanel: copyPanel32AVX512, initRows: initRows32AVX512})
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		list = append(list, impl{name: "avx2", mr: 6, nr: 16, kernel: sgemmKernelAVX2, cols: sgemmKernelAVX2Cols, rows: sgemmKernelAVX2Rows})
	}
	return append(list, genericImpl)
}
