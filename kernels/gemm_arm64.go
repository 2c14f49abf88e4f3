package kernels

// sgemmKernelNEON is the 8×12 NEON micro-kernel in gemm_arm64.s. Advanced
// SIMD is part of every arm64 CPU Go runs on, so it needs no feature check.
//
//go:noescape
func sgemmKernelNEON(kc int, a, b, c *float32, ldc int, acc bool)

func available() []impl {
	return []impl{{name: "neon", mr: 8, nr: 12, kernel: sgemmKernelNEON}, genericImpl}
}
