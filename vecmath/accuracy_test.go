package vecmath

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cairnlabs/cairn/vecmath/internal/coef"
)

// TestCoefficientBits pins the float32 values of the approximation
// constants to the bit patterns documented in package coef.
func TestCoefficientBits(t *testing.T) {
	for _, c := range []struct {
		v    float32
		bits uint32
	}{
		{coef.Ln2Hi, 0x3f318000}, {coef.Ln2Lo, 0xb95e8083},
		{coef.ExpC2, 0x3efffffe}, {coef.ExpC3, 0x3e2aaa48}, {coef.ExpC4, 0x3d2aac7e},
		{coef.ExpC5, 0x3c091dcb}, {coef.ExpC6, 0x3ab510b2},
		{coef.ErfSplit, 0x3f6c0000}, {coef.ErfCenter, 0x40133333}, {coef.ErfS0, 0x3f906eba},
		{coef.ErfP0, 0x3e0375d4}, {coef.ErfP1, 0xbec093a2}, {coef.ErfP2, 0x3de7170e},
		{coef.ErfP3, 0xbcdc0820}, {coef.ErfP4, 0x3baa6c48}, {coef.ErfP5, 0xba556a67},
		{coef.ErfP6, 0x38af6585},
		{coef.ErfR0, 0x3e682ef1}, {coef.ErfR1, 0xbdaed573}, {coef.ErfR2, 0x3cf8ff81},
		{coef.ErfR3, 0xbc28d750}, {coef.ErfR4, 0x3b5b3a84}, {coef.ErfR5, 0xba8928dc},
		{coef.ErfR6, 0x39a5ac99}, {coef.ErfR7, 0xb8bba2ed}, {coef.ErfR8, 0x37cb931a},
		{coef.ErfR9, 0xb7068c92}, {coef.ErfR10, 0x3636b60d}, {coef.ErfR11, 0xb4f5e54e},
	} {
		if got := math.Float32bits(c.v); got != c.bits {
			t.Errorf("constant %g has bits %#08x, want %#08x", c.v, got, c.bits)
		}
	}
}

// sweep returns n+1 float32 points evenly spaced on [lo, hi].
func sweep(lo, hi float64, n int) []float32 {
	x := make([]float32, n+1)
	for i := range x {
		x[i] = float32(lo + (hi-lo)*float64(i)/float64(n))
	}
	return x
}

// TestErfAccuracy sweeps erf densely over [-10, 10] against math.Erf:
// absolute error <= 1.2e-7 everywhere and relative error <= 2e-7 on
// 0 < |z| < 3 (measured: about 6e-8 and 1e-7).
func TestErfAccuracy(t *testing.T) {
	n := 2_000_000
	if testing.Short() {
		n = 200_000
	}
	var maxAbs, maxRel, atAbs, atRel float64
	for _, z := range sweep(-10, 10, n) {
		want := math.Erf(float64(z))
		got := float64(erf32(z))
		e := math.Abs(got - want)
		if e > maxAbs {
			maxAbs, atAbs = e, float64(z)
		}
		if z != 0 && math.Abs(float64(z)) < 3 && e/math.Abs(want) > maxRel {
			maxRel, atRel = e/math.Abs(want), float64(z)
		}
	}
	t.Logf("erf32 on [-10,10]: max abs error %.3g at %g, max rel error (|z|<3) %.3g at %g", maxAbs, atAbs, maxRel, atRel)
	if maxAbs > 1.2e-7 || maxRel > 2e-7 {
		t.Errorf("erf32 error too large: abs %.3g, rel %.3g", maxAbs, maxRel)
	}
	for _, c := range []struct{ z, want float64 }{
		{0, 0}, {math.Inf(1), 1}, {math.Inf(-1), -1}, {1e30, 1}, {-1e30, -1},
	} {
		if got := erf32(float32(c.z)); float64(got) != c.want {
			t.Errorf("erf32(%g) = %g, want %g", c.z, got, c.want)
		}
	}
	if !math.IsNaN(float64(erf32(float32(math.NaN())))) {
		t.Error("erf32(NaN) is not NaN")
	}
}

// TestExpAccuracy sweeps exp (through ExpSub with m = 0) over [-110, 90]
// in every implementation: relative error <= expRelTol (2e-7) down to
// 2^-64, 0 below, +Inf on overflow.
func TestExpAccuracy(t *testing.T) {
	n := 2_000_000
	if testing.Short() {
		n = 200_000
	}
	x := sweep(-110, 90, n)
	forEachImpl(t, func(t *testing.T) {
		y := make([]float32, len(x))
		ExpSub(y, x, 0)
		var maxRel, at float64
		for i, v := range y {
			if !expOK(v, x[i], expRelTol) {
				t.Fatalf("exp(%g) = %g, want %g", x[i], v, expRef(x[i]))
			}
			want := expRef(x[i])
			if want >= 0x1p-64 && want <= math.MaxFloat32 {
				if e := math.Abs(float64(v)-want) / want; e > maxRel {
					maxRel, at = e, float64(x[i])
				}
			}
		}
		t.Logf("%s: exp max rel error %.3g (%.2f ulp) at %g", Impl(), maxRel, maxRel/0x1p-23, at)
	})
}

// TestGeluAccuracy sweeps GELU and its derivative densely over [-14, 14]
// in every implementation against float64 references:
// |err| <= geluTol*max(1,|x|) (measured: below 1.5e-7*max(1,|x|)).
// It also checks Phi = GELU(x)/x relative to its value for -5.5 < x < -1.5
// (erfc branch), where Phi is small.
func TestGeluAccuracy(t *testing.T) {
	n := 2_000_000
	if testing.Short() {
		n = 200_000
	}
	x := sweep(-14, 14, n)
	dy := make([]float32, len(x))
	for i := range dy {
		dy[i] = 1
	}
	forEachImpl(t, func(t *testing.T) {
		y := make([]float32, len(x))
		d := make([]float32, len(x))
		GeluForward(y, x)
		GeluBackward(d, x, dy)
		var maxF, maxB, atF, atB, maxPhiRel, atPhi float64
		for i, xi := range x {
			xf := float64(xi)
			s := math.Max(1, math.Abs(xf))
			if e := math.Abs(float64(y[i])-gelu64(xf)) / s; e > maxF {
				maxF, atF = e, xf
			}
			if e := math.Abs(float64(d[i])-geluGrad64(xf)) / s; e > maxB {
				maxB, atB = e, xf
			}
			if xf > -5.5 && xf < -1.5 {
				p := phi64(xf)
				if e := math.Abs(float64(y[i])/xf-p) / p; e > maxPhiRel {
					maxPhiRel, atPhi = e, xf
				}
			}
		}
		t.Logf("%s: gelu max err/max(1,|x|) %.3g at %g; gelu' %.3g at %g; Phi rel err on (-5.5,-1.5) %.3g at %g",
			Impl(), maxF, atF, maxB, atB, maxPhiRel, atPhi)
		if maxF > geluTol || maxB > geluTol {
			t.Errorf("gelu error too large: forward %.3g, backward %.3g (tol %g)", maxF, maxB, geluTol)
		}
		if maxPhiRel > 2e-6 {
			t.Errorf("Phi relative error %.3g in the negative tail", maxPhiRel)
		}
	})
}

// TestGeneratedAssemblyUpToDate regenerates the assembly into a temporary
// directory and compares it with the checked-in files.
func TestGeneratedAssemblyUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the generator with go run")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	dir := t.TempDir()
	cmd := exec.Command(goTool, "run", "./internal/gen", "-out", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("generator failed: %v\n%s", err, out)
	}
	for _, f := range []string{"avx512_amd64.s", "avx2_amd64.s"} {
		want, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s is stale: run go generate in vecmath", f)
		}
	}
}
