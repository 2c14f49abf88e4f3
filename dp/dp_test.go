package dp

import (
	"math"
	"testing"
)

// exactEpsilon is the exact ε at δ of the Gaussian mechanism with noise
// multiplier z (Balle and Wang 2018: δ(ε) = Φ(1/(2z) − εz) − e^ε Φ(−1/(2z) − εz)),
// found by bisection: an independent check of the accountant.
func exactEpsilon(z, delta float64) float64 {
	phi := func(x float64) float64 { return 0.5 * math.Erfc(-x/math.Sqrt2) }
	d := func(e float64) float64 { return phi(1/(2*z)-e*z) - math.Exp(e)*phi(-1/(2*z)-e*z) }
	lo, hi := 0.0, 1000.0
	for range 200 {
		mid := (lo + hi) / 2
		if d(mid) > delta {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

// TestGaussianAgainstExact: T rounds of the Gaussian mechanism at noise
// multiplier z compose to one at z/√T, whose exact ε is known; the RDP
// accountant's ε is an upper bound on it, and a close one.
func TestGaussianAgainstExact(t *testing.T) {
	for _, c := range []struct {
		z     float64
		steps int
	}{{1, 1}, {2, 1}, {5, 1}, {1, 10}, {2, 100}, {8, 1000}, {0.8, 3}} {
		a, err := NewAccountant(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Compose(c.z, 1, c.steps); err != nil {
			t.Fatal(err)
		}
		const delta = 1e-5
		eps, order, err := a.Epsilon(delta)
		if err != nil {
			t.Fatal(err)
		}
		exact := exactEpsilon(c.z/math.Sqrt(float64(c.steps)), delta)
		if eps < exact || eps > 1.35*exact+0.2 {
			t.Errorf("z %g × %d: ε %.4f (order %g), exact %.4f", c.z, c.steps, eps, order, exact)
		}
		t.Logf("z %g × %d steps: ε %.4f at order %g, exact %.4f", c.z, c.steps, eps, order, exact)
	}
}

// TestSubsampling: sampling contributors (q < 1) at integer orders agrees
// with the full mechanism as q → 1 and only lowers ε as q falls.
func TestSubsampling(t *testing.T) {
	for _, al := range []float64{2, 5, 32} {
		full, near := gaussianRDP(1.3, 1, al), gaussianRDP(1.3, 1-1e-12, al)
		if math.Abs(full-near) > 1e-6*full {
			t.Errorf("order %g: q → 1 gives %g, q = 1 %g", al, near, full)
		}
	}
	prev := math.Inf(1)
	for _, q := range []float64{1, 0.5, 0.1, 0.01} {
		a, _ := NewAccountant(nil)
		a.Compose(1.1, q, 100)
		eps, _, err := a.Epsilon(1e-5)
		if err != nil {
			t.Fatal(err)
		}
		if !(eps < prev) {
			t.Errorf("q %g: ε %g, not below %g", q, eps, prev)
		}
		prev = eps
	}
}

// TestSpentAndRefusals: at noise multiplier 1, two rounds fit a budget of
// ε 8 at δ 1e-5 and a third does not; malformed mechanisms are refused.
func TestSpentAndRefusals(t *testing.T) {
	two, err2 := Spent(1, 1, 2, 1e-5)
	three, err3 := Spent(1, 1, 3, 1e-5)
	if err2 != nil || err3 != nil || two > 8 || three <= 8 {
		t.Fatalf("ε after 2 rounds %g, after 3 %g (%v %v)", two, three, err2, err3)
	}
	a, _ := NewAccountant(nil)
	for _, bad := range [][3]float64{{0, 1, 1}, {1, 0, 1}, {1, 1.5, 1}, {1, 1, -1}, {math.Inf(1), 1, 1}} {
		if err := a.Compose(bad[0], bad[1], int(bad[2])); err == nil {
			t.Errorf("Compose%v accepted", bad)
		}
	}
	if _, _, err := a.Epsilon(0); err == nil {
		t.Error("δ 0 accepted")
	}
	if _, err := NewAccountant([]float64{0.5}); err == nil {
		t.Error("order 0.5 accepted")
	}
}

func TestClipAndNoise(t *testing.T) {
	x := []float32{3, 4}
	n, err := Clip(x, 1)
	if err != nil || n != 5 || math.Abs(float64(x[0])-0.6) > 1e-6 || math.Abs(float64(x[1])-0.8) > 1e-6 {
		t.Fatalf("clip: norm %g, %v, %v", n, x, err)
	}
	y := []float32{0.1, 0.2}
	if Clip(y, 1); y[0] != 0.1 || y[1] != 0.2 {
		t.Fatal("an update within the bound was changed")
	}
	if _, err := Clip([]float32{float32(math.NaN())}, 1); err == nil {
		t.Fatal("NaN clipped")
	}
	z := make([]float32, 100000)
	if err := AddNoise(z, 2, [32]byte{1}); err != nil {
		t.Fatal(err)
	}
	var ss float64
	for _, v := range z {
		ss += float64(v) * float64(v)
	}
	if sd := math.Sqrt(ss / float64(len(z))); math.Abs(sd-2) > 0.05 {
		t.Fatalf("noise standard deviation %g, want 2", sd)
	}
	w := make([]float32, 10)
	AddNoise(w, 2, [32]byte{1})
	if w[3] != z[3] {
		t.Fatal("noise is not a function of its seed")
	}
}

func TestNoiseFor(t *testing.T) {
	for _, c := range []struct {
		eps   float64
		steps int
	}{{8, 1}, {8, 10}, {1, 100}} {
		z, err := NoiseFor(c.eps, 1e-5, 1, c.steps)
		if err != nil {
			t.Fatal(err)
		}
		at, _ := Spent(z, 1, c.steps, 1e-5)
		below, _ := Spent(z*0.99, 1, c.steps, 1e-5)
		if at > c.eps || below <= c.eps {
			t.Errorf("ε %g over %d steps: z %g spends %g, 1%% less noise %g", c.eps, c.steps, z, at, below)
		}
	}
	if _, err := NoiseFor(0, 1e-5, 1, 1); err == nil {
		t.Error("a zero budget was accepted")
	}
}
