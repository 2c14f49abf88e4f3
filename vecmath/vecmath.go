// Package vecmath provides the vectorised float32 row kernels of the
// training engine: reductions (Sum, Dot, Max), BLAS-1 style updates (Axpy,
// Scale, Add), softmax exponentials (ExpSub), exact GELU forward and
// backward, LayerNorm forward and backward for one row, and the AdamW
// parameter update.
//
// # Implementations
//
// Every kernel has three implementations: AVX-512 assembly ("avx512",
// amd64 with AVX512F), AVX2+FMA assembly ("avx2", amd64 fallback) and
// portable Go ("generic", every architecture). On arm64 the "neon"
// implementation has Dot, DotRows and Axpy in NEON assembly (Dot in the
// AVX2 kernel's summation order, so with its bits) and the portable Go for
// the rest. The fastest one the CPU supports is selected when the package
// is initialised; Impl reports it and SetImpl forces another one (for tests
// and benchmarks).
//
// # Determinism and accuracy
//
// Results depend only on the inputs and on the selected implementation:
// there is no concurrency, and reductions add in a fixed order (per-lane
// partial sums, then a fixed tree), independent of slice alignment.
// Different implementations may differ in the last bits.
//
// exp is computed to within about 1 ulp (relative error below 1e-7 for
// normal results, gradual underflow to 0 below about -87.3, +Inf above
// 88.72). erf (and the normal CDF used by GELU) is computed with absolute
// error below about 1e-7. NaN inputs produce NaN outputs in the elementwise
// kernels; Max ignores or returns NaN depending on position.
//
// # Lengths and aliasing
//
// Slices that are combined elementwise must have equal lengths; the
// functions panic otherwise. Any length, including 0, is allowed. An output
// may be the very same slice as an input where a function's documentation
// says so; slices must not otherwise overlap.
package vecmath

import (
	"errors"
	"fmt"
	"math"
)

// Sum returns the float32 sum of x (0 for an empty slice). Partial sums
// are kept per SIMD lane and combined in a fixed order.
func Sum(x []float32) float32 {
	return sumImpl(x)
}

// Dot returns the float32 dot product of x and y, which must have the same
// length. Partial sums are kept per SIMD lane and combined in a fixed order.
func Dot(x, y []float32) float32 {
	checkLen(len(x), len(y))
	return dotImpl(x, y)
}

// DotRows sets out[i] to Dot(w, x[i*stride:i*stride+len(w)]) for every
// row i < len(out), bitwise as Dot computes it; the AVX-512 path reads each
// block of w once for four rows. It panics if x is too short for the rows
// or stride is smaller than len(w) while there is more than one row.
func DotRows(out, w, x []float32, stride int) {
	n, rows := len(w), len(out)
	if rows == 0 {
		return
	}
	if rows > 1 && stride < n || (rows-1)*stride+n > len(x) {
		panic("vecmath: DotRows rows do not fit in x")
	}
	i := 0
	for ; dot4Impl != nil && i+4 <= rows; i += 4 {
		o := (*[4]float32)(out[i : i+4])
		dot4Impl(w, x[i*stride:i*stride+n], x[(i+1)*stride:(i+1)*stride+n],
			x[(i+2)*stride:(i+2)*stride+n], x[(i+3)*stride:(i+3)*stride+n], o)
	}
	for ; i < rows; i++ {
		out[i] = dotImpl(w, x[i*stride:i*stride+n])
	}
}

// Max returns the largest element of x, or -Inf for an empty slice. If x
// contains NaN the result is unspecified (either NaN or the maximum of some
// of the other elements).
func Max(x []float32) float32 {
	return maxImpl(x)
}

// Axpy computes y[i] += a*x[i] (fused multiply-add on the SIMD paths). x
// and y must have the same length.
func Axpy(a float32, x, y []float32) {
	checkLen(len(x), len(y))
	axpyImpl(a, x, y)
}

// Scale computes x[i] *= a.
func Scale(a float32, x []float32) {
	scaleImpl(a, x)
}

// SoftmaxGrad sets ds[i] = p[i]·(ds[i] − dot)·scale, each operation
// rounded in that order (so every implementation gives the same bits):
// with p a softmax and ds the gradient of its output, dot = Dot(p, ds)
// makes it the gradient of the softmax's input times scale. ds and p must
// have the same length.
func SoftmaxGrad(ds, p []float32, dot, scale float32) {
	checkLen(len(ds), len(p))
	smGradImpl(ds, p, dot, scale)
}

// Add computes dst[i] += x[i]. dst and x must have the same length.
func Add(dst, x []float32) {
	checkLen(len(dst), len(x))
	addImpl(dst, x)
}

// ExpSub sets dst[i] = exp(src[i]-m) and returns the float32 sum of the
// values written, accumulated per SIMD lane and combined in a fixed order.
// It is the core of a numerically stable softmax (m = Max(src)). dst and
// src must have the same length and may be the same slice. The difference
// src[i]-m is rounded to float32 before exponentiation. Results below
// 2^-64 (differences below about -44.4, including -Inf) are written as 0,
// so that a softmax never holds subnormal probabilities, which are slow to
// multiply on most CPUs and change no sum; results beyond the float32
// range give +Inf.
func ExpSub(dst, src []float32, m float32) float32 {
	checkLen(len(dst), len(src))
	return expSubImpl(dst, src, m)
}

// GeluForward sets dst[i] = GELU(src[i]) using the exact (erf) form, as
// PyTorch's default nn.GELU: 0.5*x*(1+erf(x/sqrt(2))) = x*Phi(x), where Phi
// is the standard normal CDF. Phi is evaluated with absolute error below
// about 1e-7 (relatively accurate for negative x down to about -5.6). dst and
// src must have the same length and may be the same slice.
func GeluForward(dst, src []float32) {
	checkLen(len(dst), len(src))
	geluFwdImpl(dst, src)
}

// GeluBackward sets dx[i] = dy[i] * GELU'(x[i]), where
// GELU'(x) = Phi(x) + x*exp(-x*x/2)/sqrt(2*pi). dx is overwritten, not
// accumulated. All three slices must have the same length; dx may be the
// same slice as x or dy.
func GeluBackward(dx, x, dy []float32) {
	checkLen(len(dx), len(x))
	checkLen(len(dx), len(dy))
	geluBwdImpl(dx, x, dy)
}

// LayerNormForward normalises one row x of length C = len(x):
//
//	mean = sum(x)/C
//	var  = sum((x-mean)^2)/C   (biased, two-pass)
//	rstd = 1/sqrt(var+eps)
//	out  = (x-mean)*rstd*w + b
//
// and returns mean and rstd, to be saved for LayerNormBackward. out, w and
// b must have length C; out may be the same slice as x. The sums are
// float32 with per-lane partial sums. For C == 0 it returns (0, 0) and does
// nothing.
func LayerNormForward(out, x, w, b []float32, eps float32) (mean, rstd float32) {
	checkLen(len(out), len(x))
	checkLen(len(w), len(x))
	checkLen(len(b), len(x))
	if len(x) == 0 {
		return 0, 0
	}
	return lnFwdImpl(out, x, w, b, eps)
}

// LayerNormBackward back-propagates through LayerNormForward for one row.
// With xhat = (x-mean)*rstd and g = dout*w it accumulates
//
//	dw[i] += dout[i]*xhat[i]
//	db[i] += dout[i]
//	dx[i] += rstd*(g[i] - mean(g) - xhat[i]*mean(g*xhat))
//
// Note that dx is accumulated into (it usually already holds the residual
// stream gradient), as are dw and db (summed over rows). All slices must
// have the same length.
func LayerNormBackward(dx, dw, db, dout, x, w []float32, mean, rstd float32) {
	n := len(x)
	checkLen(len(dx), n)
	checkLen(len(dw), n)
	checkLen(len(db), n)
	checkLen(len(dout), n)
	checkLen(len(w), n)
	if n == 0 {
		return
	}
	lnBwdImpl(dx, dw, db, dout, x, w, mean, rstd)
}

// AdamW performs one torch.optim.AdamW step on the parameters p with
// gradients g and moment buffers m and v (all the same length):
//
//	p = p*(1-lr*wd)
//	m = beta1*m + (1-beta1)*g
//	v = beta2*v + (1-beta2)*g*g
//	p = p - (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)
//
// where bc1 = 1-beta1^t and bc2 = 1-beta2^t are the bias corrections for
// step t. The per-call scalars (1-lr*wd, lr/bc1, sqrt(bc2), 1-beta1,
// 1-beta2) are computed once in float64 and rounded to float32, as PyTorch
// does with its Python-float hyperparameters; the per-element square root
// and divisions are correctly rounded.
func AdamW(p, g, m, v []float32, lr, beta1, beta2, eps, wd, bc1, bc2 float32) {
	n := len(p)
	checkLen(len(g), n)
	checkLen(len(m), n)
	checkLen(len(v), n)
	if n == 0 {
		return
	}
	decay := float32(1 - float64(lr)*float64(wd))
	omb1 := float32(1 - float64(beta1))
	omb2 := float32(1 - float64(beta2))
	step := float32(float64(lr) / float64(bc1))
	sqrtBc2 := float32(math.Sqrt(float64(bc2)))
	adamwImpl(p, g, m, v, decay, beta1, omb1, beta2, omb2, eps, step, sqrtBc2)
}

func checkLen(a, b int) {
	if a != b {
		panic("vecmath: slice length mismatch")
	}
}

// kernels is one implementation of every kernel. The slice lengths have
// been checked by the exported wrappers.
type kernels struct {
	name    string
	sum     func(x []float32) float32
	dot     func(x, y []float32) float32
	dot4    func(w, x0, x1, x2, x3 []float32, out *[4]float32) // nil: DotRows calls dot per row
	max     func(x []float32) float32
	axpy    func(a float32, x, y []float32)
	scale   func(a float32, x []float32)
	add     func(dst, x []float32)
	expSub  func(dst, src []float32, m float32) float32
	smGrad  func(ds, p []float32, dot, scale float32)
	geluFwd func(dst, src []float32)
	geluBwd func(dx, x, dy []float32)
	lnFwd   func(out, x, w, b []float32, eps float32) (mean, rstd float32)
	lnBwd   func(dx, dw, db, dout, x, w []float32, mean, rstd float32)
	adamw   func(p, g, m, v []float32, decay, beta1, omb1, beta2, omb2, eps, step, sqrtBc2 float32)
}

var genericKernels = kernels{
	name:    "generic",
	sum:     sumGeneric,
	dot:     dotGeneric,
	max:     maxGeneric,
	axpy:    axpyGeneric,
	scale:   scaleGeneric,
	add:     addGeneric,
	expSub:  expSubGeneric,
	smGrad:  softmaxGradGeneric,
	geluFwd: geluFwdGeneric,
	geluBwd: geluBwdGeneric,
	lnFwd:   lnFwdGeneric,
	lnBwd:   lnBwdGeneric,
	adamw:   adamwGeneric,
}

// The selected implementation, one function variable per kernel. They are
// set by init (best available) and by SetImpl.
var (
	implName    string
	sumImpl     func(x []float32) float32
	dotImpl     func(x, y []float32) float32
	dot4Impl    func(w, x0, x1, x2, x3 []float32, out *[4]float32)
	maxImpl     func(x []float32) float32
	axpyImpl    func(a float32, x, y []float32)
	scaleImpl   func(a float32, x []float32)
	addImpl     func(dst, x []float32)
	expSubImpl  func(dst, src []float32, m float32) float32
	smGradImpl  func(ds, p []float32, dot, scale float32)
	geluFwdImpl func(dst, src []float32)
	geluBwdImpl func(dx, x, dy []float32)
	lnFwdImpl   func(out, x, w, b []float32, eps float32) (mean, rstd float32)
	lnBwdImpl   func(dx, dw, db, dout, x, w []float32, mean, rstd float32)
	adamwImpl   func(p, g, m, v []float32, decay, beta1, omb1, beta2, omb2, eps, step, sqrtBc2 float32)
)

func init() {
	// available() lists the best implementation first.
	use(available()[0])
}

func use(k *kernels) {
	implName = k.name
	sumImpl = k.sum
	dotImpl = k.dot
	dot4Impl = k.dot4
	maxImpl = k.max
	axpyImpl = k.axpy
	scaleImpl = k.scale
	addImpl = k.add
	expSubImpl = k.expSub
	smGradImpl = k.smGrad
	geluFwdImpl = k.geluFwd
	geluBwdImpl = k.geluBwd
	lnFwdImpl = k.lnFwd
	lnBwdImpl = k.lnBwd
	adamwImpl = k.adamw
}

// Impl returns the name of the implementation in use: "avx512", "avx2",
// "neon" or "generic".
func Impl() string {
	return implName
}

// Impls lists the implementations this CPU supports, fastest first
// ("generic" is always last).
func Impls() []string {
	var names []string
	for _, k := range available() {
		names = append(names, k.name)
	}
	return names
}

// ErrUnsupported is returned by SetImpl for an implementation that does not
// exist or that the CPU does not support.
var ErrUnsupported = errors.New("vecmath: implementation not supported on this CPU")

// SetImpl selects the implementation by name ("avx512", "avx2", "neon" or
// "generic"). It returns ErrUnsupported (wrapped with the name) if the
// implementation is unknown or not supported by the CPU, leaving the
// selection unchanged. SetImpl must not be called concurrently with any
// other function of this package; it is meant for start-up, tests and
// benchmarks.
func SetImpl(name string) error {
	for _, k := range available() {
		if k.name == name {
			use(k)
			return nil
		}
	}
	return fmt.Errorf("%w: %q", ErrUnsupported, name)
}
