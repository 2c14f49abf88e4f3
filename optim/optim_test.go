package optim

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/cairnlabs/cairn/kernels"
)

// reference is torch.optim.AdamW's update in float64.
func reference(p, g, m, v []float64, step int, lr, b1, b2, eps, wd float64, decay []bool) {
	bc1 := 1 - math.Pow(b1, float64(step))
	bc2 := 1 - math.Pow(b2, float64(step))
	for i := range p {
		if decay[i] {
			p[i] *= 1 - lr*wd
		}
		m[i] = b1*m[i] + (1-b1)*g[i]
		v[i] = b2*v[i] + (1-b2)*g[i]*g[i]
		p[i] -= lr / bc1 * m[i] / (math.Sqrt(v[i])/math.Sqrt(bc2) + eps)
	}
}

func TestAdamWMatchesReference(t *testing.T) {
	pool := kernels.NewPool(2)
	defer pool.Close()
	r := rand.New(rand.NewPCG(1, 2))
	groups := []Group{{0, 100, true}, {100, 40000, false}, {40100, 7, true}}
	n := 40107
	o, err := NewAdamW(n, groups, 0.9, 0.95, 1e-8, 0.1, pool)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]float32, n)
	pr, mr, vr, decay := make([]float64, n), make([]float64, n), make([]float64, n), make([]bool, n)
	for i := range p {
		p[i] = float32(r.NormFloat64())
		pr[i] = float64(p[i])
		decay[i] = i < 100 || i >= 40100
	}
	for step := 1; step <= 3; step++ {
		g := make([]float32, n)
		gr := make([]float64, n)
		for i := range g {
			g[i] = float32(r.NormFloat64() * 0.01)
			gr[i] = float64(g[i])
		}
		o.Update(p, g, 1e-3)
		reference(pr, gr, mr, vr, step, 1e-3, 0.9, 0.95, 1e-8, 0.1, decay)
	}
	if o.Step != 3 {
		t.Fatalf("step %d, want 3", o.Step)
	}
	for i := range p {
		if math.Abs(float64(p[i])-pr[i]) > 1e-6*(1+math.Abs(pr[i])) {
			t.Fatalf("param %d: %v, reference %v", i, p[i], pr[i])
		}
	}
}

func TestNewAdamWRejectsBadGroups(t *testing.T) {
	if _, err := NewAdamW(10, []Group{{0, 4, true}, {5, 5, true}}, 0.9, 0.9, 1e-8, 0, nil); err == nil {
		t.Fatal("accepted a gap between groups")
	}
	if _, err := NewAdamW(10, []Group{{0, 4, true}}, 0.9, 0.9, 1e-8, 0, nil); err == nil {
		t.Fatal("accepted groups that do not cover the parameters")
	}
}

func TestClipGradNorm(t *testing.T) {
	pool := kernels.NewPool(3)
	defer pool.Close()
	o, _ := NewAdamW(50000, []Group{{0, 50000, true}}, 0.9, 0.9, 1e-8, 0, pool)
	g := make([]float32, 50000)
	var want float64
	for i := range g {
		g[i] = float32(i%7) - 3
		want += float64(g[i]) * float64(g[i])
	}
	want = math.Sqrt(want)
	if n := o.ClipGradNorm(g, 0); math.Abs(n-want) > 1e-9*want {
		t.Fatalf("norm %v, want %v", n, want)
	}
	if n := o.ClipGradNorm(g, 1); math.Abs(n-want) > 1e-9*want {
		t.Fatalf("norm before clipping %v, want %v", n, want)
	}
	if n := o.GradNorm(g); math.Abs(n-1) > 1e-5 {
		t.Fatalf("norm after clipping to 1: %v", n)
	}
	if n := o.ClipGradNorm(g, 10); math.Abs(n-1) > 1e-5 || math.Abs(o.GradNorm(g)-1) > 1e-5 {
		t.Fatalf("clipping below the limit changed the gradients: %v", n)
	}
}

func TestSchedule(t *testing.T) {
	s := Schedule{LR: 1e-3, MinLR: 1e-4, Warmup: 100, DecaySteps: 2000}
	cases := []struct {
		it   int
		want float64
	}{
		{0, 1e-3 / 101}, {99, 1e-3 * 100 / 101}, {100, 1e-3}, {1050, 5.5e-4}, {2000, 1e-4}, {5000, 1e-4},
	}
	for _, c := range cases {
		if got := s.At(c.it); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("At(%d) = %v, want %v", c.it, got, c.want)
		}
	}
	if got := (Schedule{LR: 1e-3, Warmup: 0}).At(500); got != 1e-3 {
		t.Errorf("no decay: At(500) = %v", got)
	}
}
