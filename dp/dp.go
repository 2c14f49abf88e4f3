// Package dp holds differential privacy for contributors' updates: clipping
// an update to a norm bound, the Gaussian noise added to a cohort's sum,
// and a Rényi-DP accountant that composes the Gaussian mechanism over
// rounds and converts the total to (ε, δ).
//
// The accountant follows Mironov's Rényi DP (arXiv:1702.07476): the
// Gaussian mechanism with noise multiplier z (noise standard deviation over
// the clipping norm) has RDP ε(α) = α/(2z²) at order α; with each
// contributor taking part with probability q (Poisson sampling), integer
// orders use the binomial expansion log A_α / (α−1) of Mironov, Talwar and
// Zhang (arXiv:1908.10530). Orders compose by addition, and (ε, δ) is the
// minimum over orders of ε(α) + log(1−1/α) − log(δα)/(α−1) (Canonne, Kamath
// and Steinke, arXiv:2004.00010, Prop. 12; α > 1.01), never below 0.
//
// Like the protocols, everything here is deterministic: noise comes from a
// seed the caller gives.
package dp

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Orders is the default grid of Rényi orders (tensorflow/privacy's).
var Orders = func() []float64 {
	o := []float64{1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5}
	for a := 5; a <= 63; a++ {
		o = append(o, float64(a))
	}
	return append(o, 128, 256, 512)
}()

// Accountant accumulates the Rényi DP of a sequence of Gaussian
// mechanisms. The zero value is not usable; use NewAccountant.
type Accountant struct {
	orders []float64
	rdp    []float64
	steps  int
}

// NewAccountant returns an accountant over the given orders (nil: Orders),
// which must all exceed 1.
func NewAccountant(orders []float64) (*Accountant, error) {
	if orders == nil {
		orders = Orders
	}
	for _, a := range orders {
		if !(a > 1) || math.IsInf(a, 0) {
			return nil, fmt.Errorf("dp: Rényi order %g (must exceed 1)", a)
		}
	}
	return &Accountant{orders: slices.Clone(orders), rdp: make([]float64, len(orders))}, nil
}

// Steps is how many mechanisms have been composed.
func (a *Accountant) Steps() int { return a.steps }

// Compose adds steps releases of the Gaussian mechanism with noise
// multiplier z, each contributor included with probability q (1: every
// round takes everyone). It fails on z ≤ 0, q outside (0, 1] or negative
// steps, and leaves the accountant unchanged then.
func (a *Accountant) Compose(z, q float64, steps int) error {
	if !(z > 0) || math.IsInf(z, 0) || !(q > 0 && q <= 1) || steps < 0 {
		return fmt.Errorf("dp: Gaussian mechanism with noise multiplier %g, sampling rate %g, %d steps", z, q, steps)
	}
	add := make([]float64, len(a.orders))
	for i, al := range a.orders {
		add[i] = float64(steps) * gaussianRDP(z, q, al)
	}
	for i := range a.rdp {
		a.rdp[i] += add[i]
	}
	a.steps += steps
	return nil
}

// gaussianRDP is the RDP at order al of one release: exact for q = 1; for
// q < 1 the integer-order expansion, +Inf at fractional orders (they then
// take no part in the conversion).
func gaussianRDP(z, q, al float64) float64 {
	if q == 1 {
		return al / (2 * z * z)
	}
	if al != math.Trunc(al) {
		return math.Inf(1)
	}
	// log A_α = log Σ_{i=0}^{α} C(α,i) (1−q)^{α−i} q^i exp((i²−i)/(2z²)),
	// summed in log space.
	n := int(al)
	logA := math.Inf(-1)
	for i := 0; i <= n; i++ {
		lc := lgamma(n+1) - lgamma(i+1) - lgamma(n-i+1)
		t := lc + float64(n-i)*math.Log1p(-q) + float64(i)*math.Log(q) + float64(i*i-i)/(2*z*z)
		logA = logAdd(logA, t)
	}
	return logA / (al - 1)
}

func lgamma(n int) float64 {
	v, _ := math.Lgamma(float64(n))
	return v
}

func logAdd(a, b float64) float64 {
	if math.IsInf(a, -1) {
		return b
	}
	if math.IsInf(b, -1) {
		return a
	}
	hi, lo := max(a, b), min(a, b)
	return hi + math.Log1p(math.Exp(lo-hi))
}

// Epsilon converts what has been composed to ε at the given δ, with the
// order that attains it. It fails on δ outside (0, 1).
func (a *Accountant) Epsilon(delta float64) (eps, order float64, err error) {
	if !(delta > 0 && delta < 1) {
		return 0, 0, fmt.Errorf("dp: δ %g (must be in (0, 1))", delta)
	}
	eps, order = math.Inf(1), math.NaN()
	for i, al := range a.orders {
		if al <= 1.01 || math.IsInf(a.rdp[i], 1) {
			continue
		}
		e := a.rdp[i] + math.Log1p(-1/al) - (math.Log(delta)+math.Log(al))/(al-1)
		if e < eps {
			eps, order = e, al
		}
	}
	if math.IsInf(eps, 1) {
		return eps, order, errors.New("dp: no order gives a finite ε")
	}
	return max(0, eps), order, nil
}

// NoiseFor is the smallest noise multiplier (to 0.1%) at which steps
// releases of the Gaussian mechanism at sampling rate q spend at most eps
// at delta. It fails where even a multiplier of 1000 spends more.
func NoiseFor(eps, delta, q float64, steps int) (float64, error) {
	spent := func(z float64) (float64, error) { return Spent(z, q, steps, delta) }
	if !(eps > 0) || math.IsInf(eps, 0) {
		return 0, fmt.Errorf("dp: a budget of ε %g", eps)
	}
	if !(delta > 0 && delta < 1) {
		return 0, fmt.Errorf("dp: δ %g (must be in (0, 1))", delta)
	}
	lo, hi := 0.01, 1000.0
	if e, err := spent(hi); err != nil || e > eps {
		return 0, fmt.Errorf("dp: no noise multiplier up to %g keeps %d rounds within ε %g", hi, steps, eps)
	}
	for hi/lo > 1.001 {
		mid := math.Sqrt(lo * hi)
		e, err := spent(mid)
		if err != nil {
			return 0, err
		}
		if e <= eps {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi, nil
}

// Spent is ε at delta after steps releases at noise multiplier z and
// sampling rate q.
func Spent(z, q float64, steps int, delta float64) (float64, error) {
	a, err := NewAccountant(nil)
	if err != nil {
		return 0, err
	}
	if err := a.Compose(z, q, steps); err != nil {
		return 0, err
	}
	e, _, err := a.Epsilon(delta)
	return e, err
}

// Clip scales x in place so that its L2 norm is at most c, and returns
// the norm it had. It fails on a non-positive c and on a non-finite norm
// (NaN or Inf in x), leaving x unchanged.
func Clip(x []float32, c float64) (float64, error) {
	if !(c > 0) || math.IsInf(c, 0) {
		return 0, fmt.Errorf("dp: clipping norm %g", c)
	}
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	norm := math.Sqrt(ss)
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return norm, errors.New("dp: an update with a non-finite norm")
	}
	if norm > c {
		f := float32(c / norm)
		for i := range x {
			x[i] *= f
		}
	}
	return norm, nil
}

// AddNoise adds independent Gaussian noise of standard deviation sigma to
// every value of x, drawn from a generator seeded with seed (the caller's
// fresh secret randomness: the noise protects only while it is unknown).
func AddNoise(x []float32, sigma float64, seed [32]byte) error {
	if !(sigma >= 0) || math.IsInf(sigma, 0) {
		return fmt.Errorf("dp: noise standard deviation %g", sigma)
	}
	r := rand.New(rand.NewChaCha8(seed))
	for i := range x {
		x[i] += float32(sigma * r.NormFloat64())
	}
	return nil
}
