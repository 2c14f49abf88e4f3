package attention

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/cairnlabs/cairn/kernels"
)

// naive is Forward and Backward of one head in float64, straight from the
// definition, on rows laid out contiguously (q, k: T×dqk; v, dy: T×dv).
func naive(q, k, v, dy []float32, T, dqk, dv int, scale float64) (y, dq, dk, dvv []float64) {
	y, dq, dk, dvv = make([]float64, T*dv), make([]float64, T*dqk), make([]float64, T*dqk), make([]float64, T*dv)
	P := make([][]float64, T)
	for i := range T {
		P[i] = make([]float64, i+1)
		mx := math.Inf(-1)
		for j := range P[i] {
			for x := range dqk {
				P[i][j] += float64(q[i*dqk+x]) * float64(k[j*dqk+x])
			}
			P[i][j] *= scale
			mx = max(mx, P[i][j])
		}
		var sum float64
		for j := range P[i] {
			P[i][j] = math.Exp(P[i][j] - mx)
			sum += P[i][j]
		}
		for j := range P[i] {
			P[i][j] /= sum
			for x := range dv {
				y[i*dv+x] += P[i][j] * float64(v[j*dv+x])
			}
		}
	}
	for i := range T {
		dP := make([]float64, i+1)
		var dot float64
		for j := range dP {
			for x := range dv {
				dP[j] += float64(dy[i*dv+x]) * float64(v[j*dv+x])
				dvv[j*dv+x] += P[i][j] * float64(dy[i*dv+x])
			}
			dot += P[i][j] * dP[j]
		}
		for j := range dP {
			dS := P[i][j] * (dP[j] - dot) * scale
			for x := range dqk {
				dq[i*dqk+x] += dS * float64(k[j*dqk+x])
				dk[j*dqk+x] += dS * float64(q[i*dqk+x])
			}
		}
	}
	return
}

func randn(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

// strided spreads rows of width w to rows stride floats apart (at offset
// off), the way models interleave heads.
func strided(x []float32, w, stride, off int) []float32 {
	out := make([]float32, len(x)/w*stride)
	for t := range len(x) / w {
		copy(out[t*stride+off:], x[t*w:(t+1)*w])
	}
	return out
}

// TestAgainstDefinition: at contexts of less than a strip, one strip, and
// several with a partial last one, with strided rows and value heads of
// another width than query heads, Forward and Backward match the float64
// definition; with acc, the key and value gradients are added to what was
// there.
func TestAgainstDefinition(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ws := kernels.NewWorkspace()
	for _, T := range []int{1, 7, Strip, 2*Strip + 17} {
		for _, shape := range []struct{ dqk, dv int }{{16, 16}, {24, 8}} {
			dqk, dv := shape.dqk, shape.dv
			q, k, v, dy := randn(r, T*dqk), randn(r, T*dqk), randn(r, T*dv), randn(r, T*dv)
			scale := 1 / math.Sqrt(float64(dqk))
			wy, wdq, wdk, wdv := naive(q, k, v, dy, T, dqk, dv, scale)
			const s = 100 // every row 100 floats apart, at offsets 3, 40, 70
			h := Head{Q: strided(q, dqk, s, 3)[3:], K: strided(k, dqk, s, 40)[40:], V: strided(v, dv, s, 70)[70:],
				QS: s, KS: s, VS: s, T: T, DQK: dqk, DV: dv, Scale: float32(scale)}
			scratch := make([]float32, Scratch(T))
			y := make([]float32, T*s)
			Forward(ws, h, y, s, scratch)
			check := func(what string, got []float32, stride int, want []float64, w int, tol float64) {
				t.Helper()
				for i, wv := range want {
					g := float64(got[i/w*stride+i%w])
					if !(math.Abs(g-wv) <= tol*(1+math.Abs(wv))) {
						t.Fatalf("T=%d dqk=%d dv=%d: %s[%d] = %v, want %v", T, dqk, dv, what, i, g, wv)
					}
				}
			}
			check("y", y, s, wy, dv, 1e-5)
			dq, dk, dvv := make([]float32, T*s), make([]float32, T*s), make([]float32, T*s)
			for i := range dk {
				dk[i], dvv[i] = 1, 2 // acc adds to these
			}
			Backward(ws, h, strided(dy, dv, s, 0), s, dq, s, dk, s, dvv, s, true, scratch)
			for i := range wdk {
				wdk[i]++
			}
			for i := range wdv {
				wdv[i] += 2
			}
			check("dq", dq, s, wdq, dqk, 1e-4)
			check("dk (acc)", dk, s, wdk, dqk, 1e-4)
			check("dv (acc)", dvv, s, wdv, dv, 1e-4)
			Backward(ws, h, strided(dy, dv, s, 0), s, dq, s, dk, s, dvv, s, false, scratch)
			for i := range wdk {
				wdk[i]--
			}
			for i := range wdv {
				wdv[i] -= 2
			}
			check("dk", dk, s, wdk, dqk, 1e-4)
			check("dv", dvv, s, wdv, dv, 1e-4)
		}
	}
}

// TestPeakedNoSubnormals: with scores tens of units apart (a trained
// model's sharp heads), whose exact probabilities span the subnormal
// range, the strips of probabilities and of their gradients left in
// scratch, the output and every gradient hold no subnormal (each would
// cost a microcode assist on x86), and the results still match the
// definition.
func TestPeakedNoSubnormals(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	ws := kernels.NewWorkspace()
	const T, d = Strip + 40, 16
	q, k, v, dy := randn(r, T*d), randn(r, T*d), randn(r, T*d), randn(r, T*d)
	for i := range q {
		q[i] *= 30 // scores of spread ~30: exact probabilities far below 2^-126
		dy[i] *= 1e-6
	}
	scale := 1 / math.Sqrt(float64(d))
	wy, wdq, wdk, wdv := naive(q, k, v, dy, T, d, d, scale)
	// The precondition: some exact probability is subnormal.
	tiny := 0
	for i := range T {
		s := make([]float64, i+1)
		mx, sum := math.Inf(-1), 0.0
		for j := range s {
			for x := range d {
				s[j] += float64(q[i*d+x]) * float64(k[j*d+x]) * scale
			}
			mx = max(mx, s[j])
		}
		for j := range s {
			sum += math.Exp(s[j] - mx)
		}
		for j := range s {
			if p := math.Exp(s[j]-mx) / sum; p > 0 && p < 0x1p-126 {
				tiny++
			}
		}
	}
	if tiny < 100 {
		t.Fatalf("only %d exact probabilities are subnormal: make the scores sharper", tiny)
	}
	h := Head{Q: q, K: k, V: v, QS: d, KS: d, VS: d, T: T, DQK: d, DV: d, Scale: float32(scale)}
	scratch := make([]float32, Scratch(T))
	y, dq, dk, dv := make([]float32, T*d), make([]float32, T*d), make([]float32, T*d), make([]float32, T*d)
	noSubnormal := func(what string, x []float32) {
		t.Helper()
		for i, v := range x {
			if v != 0 && math.Abs(float64(v)) < 0x1p-126 {
				t.Fatalf("%s[%d] = %g is subnormal", what, i, v)
			}
		}
	}
	Forward(ws, h, y, d, scratch)
	noSubnormal("forward scratch (last strip's probabilities)", scratch)
	Backward(ws, h, dy, d, dq, d, dk, d, dv, d, false, scratch)
	noSubnormal("backward scratch (first strip's probabilities and their gradients)", scratch)
	for _, c := range []struct {
		what string
		got  []float32
		want []float64
		tol  float64
	}{{"y", y, wy, 1e-3}, {"dq", dq, wdq, 1e-3}, {"dk", dk, wdk, 1e-3}, {"dv", dv, wdv, 1e-3}} {
		noSubnormal(c.what, c.got)
		for i, w := range c.want {
			if g := float64(c.got[i]); !(math.Abs(g-w) <= c.tol*(1e-6+math.Abs(w))) {
				t.Fatalf("%s[%d] = %v, want %v", c.what, i, g, w)
			}
		}
	}
}
