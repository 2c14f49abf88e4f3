package vecmath

import (
	"math"

	"github.com/cairnlabs/cairn/vecmath/internal/coef"
)

// This file holds the portable implementation. It is compiled on every
// architecture (outside amd64 it is the only one but for arm64's NEON Dot
// and Axpy, and it is the reference the SIMD paths are tested against). It evaluates the same approximations as
// the assembly (see package coef), in plain float32 arithmetic; the Go
// compiler may fuse a*b+c into FMA on some architectures, which changes the
// last bits but not the accuracy.

// sum8 adds x with 8 partial sums (lane i%8) combined in a fixed tree.
func sum8(x []float32) float32 {
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	i := 0
	for ; i+8 <= len(x); i += 8 {
		v := x[i : i+8 : i+8]
		s0 += v[0]
		s1 += v[1]
		s2 += v[2]
		s3 += v[3]
		s4 += v[4]
		s5 += v[5]
		s6 += v[6]
		s7 += v[7]
	}
	if i < len(x) {
		t := x[i:]
		s0 += t[0]
		if len(t) > 1 {
			s1 += t[1]
		}
		if len(t) > 2 {
			s2 += t[2]
		}
		if len(t) > 3 {
			s3 += t[3]
		}
		if len(t) > 4 {
			s4 += t[4]
		}
		if len(t) > 5 {
			s5 += t[5]
		}
		if len(t) > 6 {
			s6 += t[6]
		}
	}
	return ((s0 + s4) + (s1 + s5)) + ((s2 + s6) + (s3 + s7))
}

func sumGeneric(x []float32) float32 { return sum8(x) }

func dotGeneric(x, y []float32) float32 {
	y = y[:len(x)]
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	i := 0
	for ; i+8 <= len(x); i += 8 {
		a := x[i : i+8 : i+8]
		b := y[i : i+8 : i+8]
		s0 += a[0] * b[0]
		s1 += a[1] * b[1]
		s2 += a[2] * b[2]
		s3 += a[3] * b[3]
		s4 += a[4] * b[4]
		s5 += a[5] * b[5]
		s6 += a[6] * b[6]
		s7 += a[7] * b[7]
	}
	var t [8]float32
	for j := 0; i < len(x); i, j = i+1, j+1 {
		t[j] = x[i] * y[i]
	}
	s0 += t[0]
	s1 += t[1]
	s2 += t[2]
	s3 += t[3]
	s4 += t[4]
	s5 += t[5]
	s6 += t[6]
	return ((s0 + s4) + (s1 + s5)) + ((s2 + s6) + (s3 + s7))
}

func maxGeneric(x []float32) float32 {
	m := float32(math.Inf(-1))
	for _, v := range x {
		if v > m {
			m = v
		}
	}
	return m
}

func axpyGeneric(a float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += a * v
	}
}

func scaleGeneric(a float32, x []float32) {
	for i := range x {
		x[i] *= a
	}
}

func softmaxGradGeneric(ds, p []float32, dot, scale float32) {
	p = p[:len(ds)]
	for i, d := range ds {
		ds[i] = p[i] * (d - dot) * scale
	}
}

func addGeneric(dst, x []float32) {
	x = x[:len(dst)]
	for i := range dst {
		dst[i] += x[i]
	}
}

// exp32 returns e**x in float32: clamp x to [ExpMin, ExpMax], reduce
// x = n*ln2 + r, evaluate the degree-6 polynomial and scale by 2**n in two
// exact steps (2**n1 * 2**n2 with n1, n2 in [-75, 64]), so that results in
// the subnormal range are rounded once and overflow gives +Inf.
func exp32(x float32) float32 {
	x = min(max(x, coef.ExpMin), coef.ExpMax) // min/max propagate NaN
	n := float32(math.RoundToEven(float64(x * coef.Log2e)))
	r := x - n*coef.Ln2Hi // exact
	r = r - n*coef.Ln2Lo
	p := coef.ExpC6*r + coef.ExpC5
	p = p*r + coef.ExpC4
	p = p*r + coef.ExpC3
	p = p*r + coef.ExpC2
	p = p*r + 1
	p = p*r + 1
	if n != n { // NaN
		return p
	}
	ni := int32(n)
	n1 := ni >> 1
	n2 := ni - n1
	return p * math.Float32frombits(uint32(n1+127)<<23) * math.Float32frombits(uint32(n2+127)<<23)
}

// erfSmallHi returns (P(s)-ErfP0)/s, the Horner part of P(s) shared by
// erf(z) = z + z*P(z*z) and Phi = 0.5 + (z/2)*(1+P(z*z)), |z| < ErfSplit.
func erfSmallHi(s float32) float32 {
	p := coef.ErfP6*s + coef.ErfP5
	p = p*s + coef.ErfP4
	p = p*s + coef.ErfP3
	p = p*s + coef.ErfP2
	return p*s + coef.ErfP1
}

// erfcxPoly returns R(u) ~ exp(t*t)*erfc(t) for u = min(t, ErfTop) -
// ErfCenter, t >= ErfSplit.
func erfcxPoly(u float32) float32 {
	r := coef.ErfR11*u + coef.ErfR10
	r = r*u + coef.ErfR9
	r = r*u + coef.ErfR8
	r = r*u + coef.ErfR7
	r = r*u + coef.ErfR6
	r = r*u + coef.ErfR5
	r = r*u + coef.ErfR4
	r = r*u + coef.ErfR3
	r = r*u + coef.ErfR2
	r = r*u + coef.ErfR1
	return r*u + coef.ErfR0
}

// erf32 returns erf(z) with absolute error below about 1e-7 (and relative
// error below about 1e-7 for |z| < 3). Only the tests use it directly; the
// GELU kernels evaluate the same two branches through phi32.
func erf32(z float32) float32 {
	t := float32(math.Abs(float64(z)))
	s := z * z
	if t < coef.ErfSplit {
		return z + z*(erfSmallHi(s)*s+coef.ErfP0)
	}
	q := exp32(-s) * erfcxPoly(min(t, coef.ErfTop)-coef.ErfCenter) // erfc(t)
	if z < 0 {
		return q - 1
	}
	return 1 - q
}

// phi32 returns Phi(x) = 0.5*(1+erf(x/sqrt2)), the standard normal CDF, and
// e = exp(-x*x/2). For x < -1.3 Phi is computed as erfc(|x|/sqrt2)/2, so it
// is accurate relative to its (small) value.
func phi32(x float32) (phi, e float32) {
	s := (x * 0.5) * x // x*x/2, one rounding
	z := x * coef.Rsqrt2
	t := float32(math.Abs(float64(z)))
	e = exp32(-s)
	if t < coef.ErfSplit {
		// 0.5 + (z/2)*(1 + P(s))
		return (0.5*z)*(erfSmallHi(s)*s+coef.ErfS0) + 0.5, e
	}
	h := 0.5 * (e * erfcxPoly(min(t, coef.ErfTop)-coef.ErfCenter)) // erfc(t)/2
	if x > 0 {
		return 1 - h, e
	}
	return h, e
}

func expSubGeneric(dst, src []float32, m float32) float32 {
	src = src[:len(dst)]
	var s [8]float32
	for i, v := range src {
		e := exp32(max(v-m, coef.ExpSubMin))
		if e < coef.ExpTiny {
			e = 0
		}
		dst[i] = e
		s[i&7] += e
	}
	return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]))
}

func geluFwdGeneric(dst, src []float32) {
	src = src[:len(dst)]
	for i, x := range src {
		p, _ := phi32(x)
		dst[i] = x * p
	}
}

func geluBwdGeneric(dx, x, dy []float32) {
	x = x[:len(dx)]
	dy = dy[:len(dx)]
	for i, v := range x {
		p, e := phi32(v)
		dx[i] = dy[i] * ((v*coef.Rsqrt2Pi)*e + p)
	}
}

func lnFwdGeneric(out, x, w, b []float32, eps float32) (mean, rstd float32) {
	n := len(x)
	out = out[:n]
	w = w[:n]
	b = b[:n]
	mean = sum8(x) / float32(n)
	var s [8]float32
	for i, v := range x {
		d := v - mean
		s[i&7] += d * d
	}
	variance := (((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]))) / float32(n)
	rstd = 1 / float32(math.Sqrt(float64(variance+eps)))
	for i, v := range x {
		out[i] = ((v-mean)*rstd)*w[i] + b[i]
	}
	return mean, rstd
}

func lnBwdGeneric(dx, dw, db, dout, x, w []float32, mean, rstd float32) {
	n := len(x)
	dx = dx[:n]
	dw = dw[:n]
	db = db[:n]
	dout = dout[:n]
	w = w[:n]
	var sg, sgx [8]float32
	for i, v := range x {
		xh := (v - mean) * rstd
		d := dout[i]
		g := d * w[i]
		sg[i&7] += g
		sgx[i&7] += g * xh
		dw[i] += d * xh
		db[i] += d
	}
	fn := float32(n)
	mg := (((sg[0] + sg[4]) + (sg[1] + sg[5])) + ((sg[2] + sg[6]) + (sg[3] + sg[7]))) / fn
	mgx := (((sgx[0] + sgx[4]) + (sgx[1] + sgx[5])) + ((sgx[2] + sgx[6]) + (sgx[3] + sgx[7]))) / fn
	for i, v := range x {
		xh := (v - mean) * rstd
		g := dout[i] * w[i]
		dx[i] += rstd * ((g - mg) - xh*mgx)
	}
}

func adamwGeneric(p, g, m, v []float32, decay, beta1, omb1, beta2, omb2, eps, step, sqrtBc2 float32) {
	n := len(p)
	g = g[:n]
	m = m[:n]
	v = v[:n]
	for i := range p {
		gi := g[i]
		mi := beta1*m[i] + omb1*gi
		vi := beta2*v[i] + (omb2*gi)*gi
		m[i] = mi
		v[i] = vi
		denom := float32(math.Sqrt(float64(vi)))/sqrtBc2 + eps
		p[i] = p[i]*decay - step*(mi/denom)
	}
}
