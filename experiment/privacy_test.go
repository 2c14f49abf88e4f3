package experiment

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/dp"
	"github.com/cairnlabs/cairn/gpt"
)

// TestDigitScores: the batched scores of all 10^6 digit strings agree with
// scoring a few of them one by one, and Exposure ranks as the Secret
// Sharer defines it.
func TestDigitScores(t *testing.T) {
	m := untrainedModel(t, gpt.DefaultConfig(32, 1, 2, 24), 5)
	prefix := []byte("\nmy PIN is ")
	scores, err := DigitScores(m, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(scores) != 1000000 {
		t.Fatalf("%d scores", len(scores))
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for _, cand := range []int{0, 999999, rng.IntN(1000000), rng.IntN(1000000)} {
		T := len(prefix) + CanaryDigits
		in := make([]int32, T)
		for i, c := range prefix {
			in[i] = int32(c)
		}
		writeDigits(in[len(prefix):], cand, CanaryDigits)
		if _, err := m.Forward(in, nil, 1, T); err != nil {
			t.Fatal(err)
		}
		logits, V := m.Logits(), m.Config.VocabSize
		var want float64
		for d := range CanaryDigits {
			pos := len(prefix) - 1 + d
			want += gpt.LogProb(logits[pos*V:(pos+1)*V], int(in[pos+1]), 1)
		}
		if math.Abs(float64(scores[cand])-want) > 1e-4*math.Abs(want) {
			t.Fatalf("candidate %06d: batched score %v, one by one %v", cand, scores[cand], want)
		}
	}
	s := []float32{-1, -5, -1, -0.5}
	if e := Exposure(s, 3); e != 2 { // the likeliest of 4: rank 1
		t.Fatalf("exposure of the likeliest %v, want 2", e)
	}
	if e := Exposure(s, 0); e != 2-math.Log2(3) { // tied with one, behind one: rank 3
		t.Fatalf("exposure with a tie %v", e)
	}
	if _, err := DigitScores(m, make([]byte, 20)); err == nil {
		t.Fatal("a prefix beyond the context was scored")
	}
}

// TestPrivacyExperiment: a small run has a no-DP arm and a DP arm whose
// noise the accountant sized; secure aggregation sums the contributions.
func TestPrivacyExperiment(t *testing.T) {
	m := untrainedModel(t, gpt.DefaultConfig(32, 1, 2, 24), 3)
	var lines []string
	rep, err := Privacy(PrivacyOptions{Base: m, Text: corpus.TinyShakespeare()[:80000], Contribs: 3, Rounds: 2, Inner: 3, Repeats: 5,
		Epsilons: []float64{8}, Seed: 2, Pool: m.Pool(), Log: func(f string, a ...any) { lines = append(lines, f) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Arms) != 2 || rep.Arms[0].Epsilon != 0 || rep.Arms[1].Epsilon != 8 || !(rep.Arms[1].Noise > 0) || !(rep.Arms[1].Clip > 0) {
		t.Fatalf("%+v", rep.Arms)
	}
	if len(rep.Controls) != Controls || len(rep.Canary) != 6 || slices.Contains(rep.Controls, rep.Canary) {
		t.Fatalf("canary %q controls %q", rep.Canary, rep.Controls)
	}
	for _, a := range rep.Arms {
		if math.IsNaN(a.ValLoss) || a.CanaryExposure < 0 || a.CanaryExposure > math.Log2(1e6) {
			t.Fatalf("%+v", a)
		}
	}
	// Two rounds spending ε 8 need more noise than one round would.
	z1, _ := dp.NoiseFor(8, 1e-5, 1, 1)
	if z2 := rep.Arms[1].Noise; !(z2 > z1) {
		t.Fatalf("noise for 2 rounds %v, for 1 %v", z2, z1)
	}
	if !strings.Contains(strings.Join(lines, "|"), "round") {
		t.Fatal("no progress logged")
	}
}

// TestSecureSum: the experiment's secure aggregation returns the sum of
// the contributions to fixed-point precision.
func TestSecureSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	deltas := make([][]float32, 4)
	want := make([]float64, 300)
	for k := range deltas {
		deltas[k] = make([]float32, 300)
		for i := range deltas[k] {
			deltas[k][i] = float32(rng.NormFloat64() * 0.01)
			want[i] += float64(deltas[k][i])
		}
	}
	got, err := secureSum(deltas, []uint64{1, 2, 3, 4}, 0.05, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if math.Abs(float64(got[i])-want[i]) > 1e-7 {
			t.Fatalf("value %d: %v, want %v", i, got[i], want[i])
		}
	}
}
