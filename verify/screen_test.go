package verify

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// screenRound is four honest contributions (similar norms, held-out gains
// around 0.05 nats) and one more from "x", built by bad.
func screenRound(bad func(honest []float32) Contribution) []Contribution {
	r := rand.New(rand.NewPCG(11, 12))
	_, deltas := honestRound(r, 4, 4096)
	var cs []Contribution
	for i, d := range deltas {
		cs = append(cs, Contribution{Worker: string(rune('a' + i)), Payload: Digest{byte(i + 1)}, Delta: d,
			Measured: true, LossBefore: 2.5, LossAfter: 2.5 - 0.05 - 0.005*float64(i)})
	}
	c := bad(deltas[0])
	c.Worker = "x"
	return append(cs, c)
}

// TestScreenFlags: each kind of bad contribution gets its flag and a score
// of at least 1, while the honest ones stay below 1.
func TestScreenFlags(t *testing.T) {
	prior := map[Digest]Origin{{0xee}: {Worker: "old", Round: 2}}
	honestGain := func(d []float32) Contribution {
		return Contribution{Payload: Digest{0x99}, Delta: d, Measured: true, LossBefore: 2.5, LossAfter: 2.45}
	}
	for _, tc := range []struct {
		name string
		bad  func(h []float32) Contribution
		want Flag
	}{
		{"honest", func(h []float32) Contribution { return honestGain(scaled(h, 1.1)) }, 0},
		{"x50", func(h []float32) Contribution { return honestGain(scaled(h, 50)) }, NormHigh},
		{"x2.5", func(h []float32) Contribution { return honestGain(scaled(h, 2.5)) }, NormHigh},
		{"zeros", func(h []float32) Contribution {
			c := honestGain(make([]float32, len(h)))
			c.LossAfter = c.LossBefore
			return c
		}, NormLow | LossWorse},
		{"lazy", func(h []float32) Contribution { // a fifth of the work: a third of the norm, a fraction of the gain
			c := honestGain(scaled(h, 0.3))
			c.LossAfter = 2.49
			return c
		}, NormLow},
		{"negated", func(h []float32) Contribution {
			c := honestGain(scaled(h, -1))
			c.LossAfter = 2.56
			return c
		}, LossWorse | Dissimilar},
		{"noise", func(h []float32) Contribution { // the honest norm, a random direction
			c := honestGain(gaussian(rand.New(rand.NewPCG(1, 1)), len(h), 1.4e-3))
			c.LossAfter = 2.49
			return c
		}, Dissimilar},
		{"nan loss", func(h []float32) Contribution {
			c := honestGain(h)
			c.LossAfter = math.NaN()
			return c
		}, LossWorse},
		{"inf", func(h []float32) Contribution {
			c := honestGain(scaled(h, 1))
			c.Delta[7] = float32(math.Inf(1))
			return c
		}, NonFinite},
		{"old payload", func(h []float32) Contribution {
			c := honestGain(scaled(h, 1))
			c.Payload = Digest{0xee}
			return c
		}, Duplicate},
	} {
		cs := screenRound(tc.bad)
		sc, err := Screen(3, cs, prior, DefaultScreenOptions())
		if err != nil {
			t.Fatal(err)
		}
		x := sc[4]
		if x.Flags != tc.want {
			t.Errorf("%s: flags %q, want %q (%+v)", tc.name, x.Flags, tc.want, x)
		}
		if (x.Score >= 1) != (tc.want != 0) {
			t.Errorf("%s: score %v", tc.name, x.Score)
		}
		for _, h := range sc[:4] {
			if h.Flags != 0 || h.Score >= 1 {
				t.Errorf("%s: honest %s flagged %q, score %v", tc.name, h.Worker, h.Flags, h.Score)
			}
		}
		if tc.want&Duplicate != 0 && x.DuplicateOf != (Origin{Worker: "old", Round: 2}) {
			t.Errorf("%s: duplicate of %+v", tc.name, x.DuplicateOf)
		}
		if tc.want&(NonFinite|Duplicate) != 0 && x.Score != MaxScore {
			t.Errorf("%s: a certain finding scores %v", tc.name, x.Score)
		}
		if x.Flags&(NonFinite) == 0 && x.Norm > 0 && (x.Peers != 4 || sc[0].Peers != 4) {
			t.Errorf("%s: compared with %d and %d peers", tc.name, x.Peers, sc[0].Peers)
		}
	}
}

// TestScreenCopyInRound: two workers sending the same payload in a round
// are both flagged, each naming the other, whichever copied.
func TestScreenCopyInRound(t *testing.T) {
	cs := screenRound(func(h []float32) Contribution {
		return Contribution{Payload: Digest{2}, Delta: h, Measured: true, LossBefore: 2.5, LossAfter: 2.45}
	})
	sc, err := Screen(3, cs, nil, DefaultScreenOptions())
	if err != nil {
		t.Fatal(err)
	}
	if sc[1].Flags != Duplicate || sc[1].DuplicateOf.Worker != "x" || sc[4].Flags != Duplicate || sc[4].DuplicateOf.Worker != "b" {
		t.Fatalf("b: %+v, x: %+v", sc[1], sc[4])
	}
	for _, i := range []int{0, 2, 3} {
		if sc[i].Flags != 0 {
			t.Fatalf("%s flagged %q", sc[i].Worker, sc[i].Flags)
		}
	}
}

// TestScreenNoLoss: without held-out losses only norms, values and
// duplicates count, and a round whose median is zero flags every non-zero
// norm.
func TestScreenNoLoss(t *testing.T) {
	cs := screenRound(func(h []float32) Contribution { return Contribution{Payload: Digest{9}, Delta: scaled(h, 0.9)} })
	for i := range cs {
		cs[i].Measured = false
	}
	sc, err := Screen(0, cs, nil, DefaultScreenOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sc {
		// Signal plus as much noise: cosine about 1/2 with each other.
		if s.Flags != 0 || s.Gain != 0 || s.Score >= 1 || math.Abs(s.Similarity-0.5) > 0.05 {
			t.Fatalf("%+v", s)
		}
	}
	zeros := []Contribution{
		{Worker: "a", Payload: Digest{1}, Delta: []float32{0, 0}}, {Worker: "b", Payload: Digest{2}, Delta: []float32{0, 0}},
		{Worker: "c", Payload: Digest{3}, Delta: []float32{1, 0}},
	}
	sc, _ = Screen(0, zeros, nil, DefaultScreenOptions())
	if sc[0].Flags != 0 || sc[0].NormRatio != 1 || sc[2].Flags != NormHigh || sc[2].Score != MaxScore {
		t.Fatalf("zero median: %+v", sc)
	}
}

func TestScreenRefusals(t *testing.T) {
	cs := screenRound(func(h []float32) Contribution { return Contribution{Delta: h} })
	cs[4].Worker = "a"
	if _, err := Screen(0, cs, nil, DefaultScreenOptions()); err == nil || !strings.Contains(err.Error(), `"a" appears twice`) {
		t.Errorf("repeated worker: %v", err)
	}
	good := DefaultScreenOptions()
	for _, mut := range []func(*ScreenOptions){
		func(o *ScreenOptions) { o.MaxNormRatio = 1 }, func(o *ScreenOptions) { o.MaxNormRatio = math.Inf(1) },
		func(o *ScreenOptions) { o.MinNormRatio = 0 }, func(o *ScreenOptions) { o.MinNormRatio = 1 },
		func(o *ScreenOptions) { o.LossFloor = 0 }, func(o *ScreenOptions) { o.LossFloor = math.NaN() },
		func(o *ScreenOptions) { o.SimilarityDrop = 0 }, func(o *ScreenOptions) { o.SimilarityDrop = 1.5 },
		func(o *ScreenOptions) { o.MinSimilarity = 0 }, func(o *ScreenOptions) { o.MinSimilarity = 1 },
	} {
		o := good
		mut(&o)
		if _, err := Screen(0, cs[:4], nil, o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}

func TestFlagString(t *testing.T) {
	if s := (NormLow | Duplicate | LossWorse).String(); s != "norm-low,duplicate,loss-worse" {
		t.Fatal(s)
	}
	if Flag(0).String() != "" {
		t.Fatal("no flags should print empty")
	}
}
