package diloco_test

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/dp"
	"github.com/cairnlabs/cairn/verify"
)

// TestDPConfig: a run whose rounds would spend more than its ε budget is
// refused at the start, with the figures; so are malformed settings.
func TestDPConfig(t *testing.T) {
	cfg := fastCfg()
	cfg.Rounds = 10
	cfg.DP = &diloco.DP{Clip: 1, Noise: 1, Delta: 1e-5, Budget: 8}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "past the run's budget of 8") || !strings.Contains(err.Error(), "10 rounds") {
		t.Fatalf("10 rounds at z 1 within ε 8: %v", err)
	}
	z, err := dp.NoiseFor(8, 1e-5, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DP.Noise = z
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the noise sized for the budget: %v", err)
	}
	for _, bad := range []diloco.DP{{Clip: 0, Noise: 1, Delta: 1e-5, Budget: 8}, {Clip: 1, Noise: 1, Delta: 1, Budget: 8}, {Clip: 1, Noise: -1, Delta: 1e-5, Budget: 8}, {Clip: math.Inf(1), Noise: z, Delta: 1e-5, Budget: 8}} {
		cfg.DP = &bad
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "differential privacy") {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

// TestDPRound: with DP a round clips every contribution to the bound and
// adds noise of z·clip to their sum, drawn from the aggregator's seed:
// the update is the clipped mean plus noise of the right size, the same
// seed gives the same weights, a contribution blown up fifteenfold
// moves the noiseless aggregate by at most 2·clip/k, and the round reports
// the ε the run has spent. Without a seed the round is refused.
func TestDPRound(t *testing.T) {
	s, _ := robustScenario(t)
	cfg := s.cfg
	clip := 0.5 * medianNorm(t, s)
	cfg.DP = &diloco.DP{Clip: clip, Noise: 2, Delta: 1e-5, Budget: 1000}
	s2 := *s
	s2.cfg = cfg
	run := func(seed byte, subs []sub) (*diloco.RoundResult, []float32) {
		a := s2.restored(t)
		a.NoiseSeed = [32]byte{seed}
		res, u, refused := closeRound(t, a, subs, nil)
		if len(refused) > 0 {
			t.Fatalf("refused: %v", refused)
		}
		return res, u
	}
	honest := s.honestSubs(5)
	res, u := run(1, honest)
	want, _ := dp.Spent(2, 1, s.round+1, 1e-5)
	if res.Epsilon != want || res.Clip.Bound != clip {
		t.Fatalf("ε %v (want %v), bound %v (want %v)", res.Epsilon, want, res.Clip.Bound, clip)
	}
	for i, n := range res.Clip.Norms {
		if math.Abs(res.Clip.Scales[i]-math.Min(1, clip/n)) > 1e-12 {
			t.Fatalf("contribution %d of norm %v scaled by %v", i, n, res.Clip.Scales[i])
		}
	}
	// u = lr·(1+μ)·(clipped mean + noise/k) on a first outer step.
	n := len(u)
	mean := make([]float64, n)
	d := make([]float32, n)
	for i, c := range honest {
		if err := compress.Decode(c.payload, d); err != nil {
			t.Fatal(err)
		}
		for j, v := range d {
			mean[j] += float64(v) * res.Clip.Scales[i] / 5
		}
	}
	f := cfg.OuterLR * (1 + cfg.Momentum)
	var ss float64
	for j := range u {
		r := float64(u[j]) - f*mean[j]
		ss += r * r
	}
	got, expect := math.Sqrt(ss/float64(n)), f*2*clip/5
	if math.Abs(got-expect) > 0.1*expect {
		t.Fatalf("noise in the update %.4g per value, want %.4g", got, expect)
	}
	_, again := run(1, honest)
	if verify.Distance(again, u) != 0 {
		t.Fatal("the same seed gave other weights")
	}
	_, other := run(2, honest)
	if verify.Distance(other, u) == 0 {
		t.Fatal("another seed gave the same weights")
	}
	// One contribution blown up: the aggregate moves by at most 2·clip/k.
	blown := append([]sub(nil), honest...)
	p := make([]float32, n)
	compress.Decode(blown[4].payload, p)
	for j := range p {
		p[j] *= 15
	}
	enc := compress.NewEncoder(cfg.Codec, n)
	payload, err := enc.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	blown[4] = sub{blown[4].id, payload, blown[4].tokens}
	_, ub := run(1, blown)
	var diff float64
	for j := range u {
		x := float64(ub[j] - u[j])
		diff += x * x
	}
	if math.Sqrt(diff) > f*2*clip/5*1.05+1e-3 {
		t.Fatalf("a contribution ×15 moved the update by %.4g, the bound is %.4g", math.Sqrt(diff), f*2*clip/5)
	}
	// Noise far beyond what a round could move a weight by is the point,
	// not an absurd aggregate: the round closes.
	loud := cfg
	loud.DP = &diloco.DP{Clip: clip, Noise: 500, Delta: 1e-5, Budget: 1000}
	s3 := *s
	s3.cfg = loud
	la := s3.restored(t)
	la.NoiseSeed = [32]byte{3}
	if res, _, refused := closeRound(t, la, honest, nil); len(refused) > 0 || res == nil {
		t.Fatalf("a loud DP round: %v", refused)
	}
	// No seed: the round cannot close.
	a := s2.restored(t)
	round, h := a.Round(), a.Hash()
	for _, c := range honest {
		a.Poll(c.id, round, h, rt0)
	}
	a.Tick(rt0)
	for _, c := range honest {
		a.Submit(c.id, round, h, c.tokens, c.payload, rt0)
	}
	if _, err := a.Tick(a.Deadline()); err == nil || !strings.Contains(err.Error(), "noise seed") {
		t.Fatalf("a DP round without a seed: %v", err)
	}
}

func medianNorm(t *testing.T, s *scenario) float64 {
	var norms []float64
	d := make([]float32, len(s.theta))
	for _, p := range s.payload[:5] {
		if err := compress.Decode(p, d); err != nil {
			t.Fatal(err)
		}
		norms = append(norms, verify.Norm(d))
	}
	slices.Sort(norms)
	return norms[2]
}

// TestPrivateConfig: a run that takes private contributions names a
// finite, non-negative held-out tolerance, and says so in its JSON.
func TestPrivateConfig(t *testing.T) {
	cfg := fastCfg()
	cfg.Private = &diloco.Private{Tolerance: 0.05}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tol := range []float64{-0.01, math.NaN(), math.Inf(1), 11} {
		cfg.Private = &diloco.Private{Tolerance: tol}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "private contributions") {
			t.Errorf("tolerance %g: %v", tol, err)
		}
	}
}
