package watermark

import (
	"math"
	"math/rand/v2"
	"testing"
)

func schemes(t *testing.T) []*Scheme {
	t.Helper()
	var out []*Scheme
	for _, c := range []struct {
		sd  Seeding
		ctx int
	}{{LeftHash, 1}, {LeftHash, 0}, {SelfHash, 0}} {
		s, err := New([]byte("test key"), 256, 0, 0, c.sd, c.ctx)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func randomTokens(r *rand.Rand, n int) []int32 {
	ts := make([]int32, n)
	for i := range ts {
		ts[i] = int32(r.IntN(256))
	}
	return ts
}

// The green share of the vocabulary is γ on average over contexts.
func TestGreenShareIsGamma(t *testing.T) {
	for _, s := range schemes(t) {
		r := rand.New(rand.NewPCG(1, 2))
		green, total := 0, 0
		for range 2000 {
			prev := randomTokens(r, s.Context)
			for v := range 256 {
				if s.Green(prev, int32(v)) {
					green++
				}
				total++
			}
		}
		share := float64(green) / float64(total)
		// 512,000 Bernoulli(0.25) draws (correlated within a context
		// only through the self-hash minimum): well within 0.01.
		if math.Abs(share-s.Gamma) > 0.01 {
			t.Errorf("%v: green share %.4f, want %.2f", s.Seeding, share, s.Gamma)
		}
	}
}

// Text that knows nothing of the key scores like the null hypothesis:
// z about N(0, 1), nothing near the detection threshold.
func TestUnmarkedTextIsNotDetected(t *testing.T) {
	for _, s := range schemes(t) {
		r := rand.New(rand.NewPCG(3, 4))
		var sum, sumSq float64
		const n = 1000
		for range n {
			res := s.Detect(randomTokens(r, 200))
			if res.Watermarked {
				t.Fatalf("%v: random text detected, z %.2f", s.Seeding, res.Z)
			}
			sum += res.Z
			sumSq += res.Z * res.Z
		}
		mean, sd := sum/n, math.Sqrt(sumSq/n-(sum/n)*(sum/n))
		if math.Abs(mean) > 0.15 || sd < 0.85 || sd > 1.15 {
			t.Errorf("%v: z mean %.3f sd %.3f, want about 0 and 1", s.Seeding, mean, sd)
		}
	}
}

// sample draws n tokens from uniform logits biased by s (a model that
// knows nothing, the hardest case for detection is a confident model).
func sample(s *Scheme, r *rand.Rand, prompt []int32, n int) []int32 {
	ts := append([]int32(nil), prompt...)
	logits := make([]float32, s.Vocab)
	for range n {
		clear(logits)
		s.Bias(ts, logits)
		var z float64
		p := make([]float64, len(logits))
		for i, l := range logits {
			p[i] = math.Exp(float64(l))
			z += p[i]
		}
		u, acc := r.Float64()*z, 0.0
		tok := len(p) - 1
		for i := range p {
			if acc += p[i]; u < acc {
				tok = i
				break
			}
		}
		ts = append(ts, int32(tok))
	}
	return ts
}

func TestWatermarkedTextIsDetectedOnlyWithItsKey(t *testing.T) {
	for _, s := range schemes(t) {
		r := rand.New(rand.NewPCG(5, 6))
		other, err := New([]byte("another key"), 256, 0, 0, s.Seeding, 0)
		if err != nil {
			t.Fatal(err)
		}
		for range 20 {
			ts := sample(s, r, randomTokens(r, s.Context), 200)
			res := s.Detect(ts)
			// Uniform logits + δ=2 make a token green with probability
			// γe^δ/(γe^δ+1-γ) ≈ 0.71: z about 15 on 200 tokens.
			if !res.Watermarked || res.Z < 8 || res.P > 1e-10 {
				t.Fatalf("%v: watermarked text scored %+v", s.Seeding, res)
			}
			if o := other.Detect(ts); o.Watermarked {
				t.Fatalf("%v: detected with the wrong key: %+v", s.Seeding, o)
			}
		}
	}
}

func TestBiasTouchesOnlyGreenTokens(t *testing.T) {
	for _, s := range schemes(t) {
		prev := []int32{10, 20, 30, 40, 50}
		logits := make([]float32, 256)
		s.Bias(prev, logits)
		for v, l := range logits {
			want := float32(0)
			if s.Green(prev, int32(v)) {
				want = float32(s.Delta)
			}
			if l != want {
				t.Fatalf("%v: token %d logit %g, want %g", s.Seeding, v, l, want)
			}
		}
		// Too short a context: nothing changes.
		clear(logits)
		s.Bias(nil, logits)
		for _, l := range logits {
			if l != 0 {
				t.Fatal("biased without context")
			}
		}
	}
}

func TestRepeatsCountOnce(t *testing.T) {
	s := schemes(t)[0]
	res := s.Detect([]int32{1, 2, 1, 2, 1, 2, 1, 2})
	if res.Scored != 2 {
		t.Fatalf("scored %d pairs of an alternating text, want 2", res.Scored)
	}
	if r := s.Detect([]int32{7}); r.Scored != 0 || r.Z != 0 || r.P != 1 {
		t.Fatalf("one token: %+v", r)
	}
	if r := s.Detect([]int32{1, 300, -1, 2}); r.Scored != 0 {
		t.Fatalf("tokens outside the vocabulary scored: %+v", r)
	}
	if r := s.Detect([]int32{1, 300, 2}); r.Scored != 0 {
		t.Fatalf("tokens outside the vocabulary scored: %+v", r)
	}
}

func TestNewRefusesBadParameters(t *testing.T) {
	for _, tc := range []struct {
		key   string
		vocab int
		gamma float64
		delta float64
		sd    Seeding
		ctx   int
	}{
		{"", 256, 0, 0, LeftHash, 0},
		{"k", 1, 0, 0, LeftHash, 0},
		{"k", 256, 1, 0, LeftHash, 0},
		{"k", 256, -0.5, 0, LeftHash, 0},
		{"k", 256, 0, -1, LeftHash, 0},
		{"k", 256, 0, math.Inf(1), LeftHash, 0},
		{"k", 256, 0, 0, LeftHash, 17},
		{"k", 256, 0, 0, SelfHash, 17},
	} {
		if _, err := New([]byte(tc.key), tc.vocab, tc.gamma, tc.delta, tc.sd, tc.ctx); err == nil {
			t.Errorf("New(%+v) accepted", tc)
		}
	}
	if _, err := ParseSeeding("middle"); err == nil {
		t.Error("unknown seeding accepted")
	}
}

// Text where every other token is forced (entropy 0) and the others free:
// the forced tokens dilute the plain score, DetectSelected scores only
// the free ones and rises clearly above it; on unmarked text it stays
// null.
func TestDetectSelectedSkipsCertainTokens(t *testing.T) {
	for _, s := range schemes(t) {
		r := rand.New(rand.NewPCG(9, 10))
		var zPlain, zSel float64
		const runs = 20
		for range runs {
			ts := randomTokens(r, s.Context)
			h := make([]float64, len(ts))
			for i := range 120 {
				if i%2 == 0 { // forced: the bias cannot move it
					ts = append(ts, int32(r.IntN(256)))
					h = append(h, 0)
					continue
				}
				ts = sample(s, r, ts, 1)
				h = append(h, math.Log(256))
			}
			plain := s.Detect(ts)
			sel, err := s.DetectSelected(ts, h, 1)
			if err != nil {
				t.Fatal(err)
			}
			if sel.Scored > 60 || sel.Scored >= plain.Scored {
				t.Fatalf("%v: selected %d of %d scored tokens, want at most the 60 free ones", s.Seeding, sel.Scored, plain.Scored)
			}
			zPlain += plain.Z / runs
			zSel += sel.Z / runs
			// Unmarked text with the same entropies stays null.
			un := randomTokens(r, len(ts))
			if res, _ := s.DetectSelected(un, h, 1); res.Z > 4 {
				t.Fatalf("%v: unmarked text scored %+v", s.Seeding, res)
			}
		}
		if zSel < zPlain+1.5 {
			t.Errorf("%v: mean z selected %.2f, plain %.2f: selection does not help", s.Seeding, zSel, zPlain)
		}
		all, err := s.DetectSelected([]int32{1, 2, 3, 4, 5, 6, 7}, []float64{0, 1, 1, 1, 1, 1, 1}, 0)
		if err != nil || all != s.Detect([]int32{1, 2, 3, 4, 5, 6, 7}) {
			t.Errorf("%v: threshold 0 gives %+v, %v; Detect %+v", s.Seeding, all, err, s.Detect([]int32{1, 2, 3, 4, 5, 6, 7}))
		}
	}
	s := schemes(t)[0]
	for _, c := range []struct {
		h   []float64
		min float64
	}{{[]float64{1}, 0}, {[]float64{1, 1}, math.NaN()}, {[]float64{1, 1}, -1}, {[]float64{1, 1}, math.Inf(1)}} {
		if _, err := s.DetectSelected([]int32{1, 2}, c.h, c.min); err == nil {
			t.Errorf("DetectSelected(%v, %g) accepted", c.h, c.min)
		}
	}
}
