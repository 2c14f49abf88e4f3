// Package kernels holds the matrix products the engine spends its time in,
// and the thread pool that runs them.
//
// Sgemm (on a Workspace, one goroutine) and Pool.Sgemm / Pool.SgemmInit
// (split over the pool's threads) compute C = op(A)·op(B) (+ C, or + bias
// + residual) on row-major float32 matrices, blocked as BLAS libraries do:
// B packed into panels, A read in place by micro-kernels in Go assembly
// (AVX-512 12×32, AVX2 6×16, NEON 8×12) or packed for the portable Go path.
// Every element of C is summed over k in increasing order in blocks of a
// fixed size, by one thread, so results are bitwise the same for any
// number of threads; paths (Impls, SetImpl) differ by rounding.
//
// The AMX path (SetImpl(AMX), where HasAMX) rounds the operands of the
// pool's large products to bfloat16 and multiplies them on the CPU's tiles
// with float32 sums; it is deterministic on its own path but not exact.
//
// Malformed arguments (negative sizes, slices too short for their shapes)
// are programming errors and panic.
package kernels
