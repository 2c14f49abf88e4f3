package diloco

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/verify"
)

// TestCohortRound: a cohort's members cannot contribute alone; the round
// waits for the cohort's sum, past its deadline until CohortWait; the sum
// is one contribution, with its members and their tokens, aggregated with
// the others; a member polling after the sum is told to wait.
func TestCohortRound(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	n, tps := cfg.Model.NumParams(), cfg.TokensPerStep()
	a, _ := NewAggregator(cfg)
	a.CohortWait = 5 * time.Second
	if err := a.Expect("cohort-0", []string{"b", "c"}, at(0)); err == nil || !strings.Contains(err.Error(), "waiting") {
		t.Fatalf("a cohort before the round opens: %v", err)
	}
	openRound(t, a, 0, "a", "b", "c", "d")
	members := []string{"b", "c", "d"}
	if err := a.Expect("cohort-0", members, at(0)); err != nil {
		t.Fatal(err)
	}
	if err := a.Submit("b", 0, a.Hash(), tps, encode(t, cfg.Codec, constDelta(n, 0.01)), at(1)); err == nil || !strings.Contains(err.Error(), "through its secure-aggregation cohort cohort-0") {
		t.Fatalf("a member alone: %v", err)
	}
	if err := a.Submit("a", 0, a.Hash(), tps, encode(t, cfg.Codec, constDelta(n, 0.01)), at(1)); err != nil {
		t.Fatal(err)
	}
	if ev := mustTick(t, a, at(2)); ev.Closed != nil {
		t.Fatal("closed without the pending cohort")
	}
	if ev := mustTick(t, a, at(14)); ev.Closed != nil {
		t.Fatal("closed past the deadline but within CohortWait")
	}
	mean := encode(t, compress.FP32, constDelta(n, 0.02))
	for _, bad := range []struct {
		name    string
		tokens  int
		payload []byte
		want    string
	}{
		{"cohort-9", 3 * tps, mean, "no pending cohort"},
		{"cohort-0", 4 * cfg.TokensPerRound(), mean, "claims"},
		{"cohort-0", 3 * tps, encode(t, compress.Int8, constDelta(n, 0.02)), "want fp32"},
		{"cohort-0", 3 * tps, encode(t, compress.FP32, constDelta(n, 1e9)), "past the run's bound"},
	} {
		if err := a.SubmitCohort(bad.name, 0, a.Hash(), 3, bad.tokens, bad.payload); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s, %d tokens: %v, want %q", bad.name, bad.tokens, err, bad.want)
		}
	}
	if err := a.SubmitCohort("cohort-0", 0, a.Hash(), 3, 3*tps, mean); err != nil {
		t.Fatal(err)
	}
	if r := a.Poll("c", 0, a.Hash(), at(14)); r.Action != Wait {
		t.Fatalf("a member after its cohort's sum: %v", r.Action)
	}
	for _, m := range members {
		if p := a.peers[m]; !p.proven || p.probation {
			t.Fatalf("member %s after its cohort's sum: %+v (want proven, as any worker that contributed)", m, *p)
		}
	}
	ev := mustTick(t, a, at(14))
	if ev.Closed == nil {
		t.Fatal("the round did not close with the cohort's sum in")
	}
	r := ev.Closed
	if len(r.Accepted) != 2 || r.Accepted[1].Worker != "cohort-0" || strings.Join(r.Accepted[1].Members, ",") != "b,c,d" ||
		r.Accepted[1].Tokens != 3*tps || r.Tokens != 4*tps || len(r.Missing) != 0 {
		t.Fatalf("result: accepted %+v, missing %v", r.Accepted, r.Missing)
	}
}

// TestCohortExcused: a cohort that never delivers is dropped CohortWait
// past the deadline (or at once by Excuse): the round closes with the
// others, the members are neither missing nor on probation, and may not
// contribute alone; refusals of Expect say why.
func TestCohortExcused(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	n, tps := cfg.Model.NumParams(), cfg.TokensPerStep()
	for _, excuse := range []bool{false, true} {
		a, _ := NewAggregator(cfg)
		a.CohortWait = 5 * time.Second
		openRound(t, a, 0, "a", "b", "c", "x")
		for _, bad := range []struct {
			name    string
			members []string
			want    string
		}{
			{"a", []string{"b", "c"}, "in use"},
			{"k", []string{"b"}, "at least 2"},
			{"k", []string{"c", "b"}, "sorted"},
			{"k", []string{"b", "z"}, "z cannot join"},
		} {
			if err := a.Expect(bad.name, bad.members, at(0)); err == nil || !strings.Contains(err.Error(), bad.want) {
				t.Errorf("Expect(%s, %v): %v, want %q", bad.name, bad.members, err, bad.want)
			}
		}
		if err := a.Expect("k", []string{"b", "c"}, at(0)); err != nil {
			t.Fatal(err)
		}
		if err := a.Expect("k2", []string{"c", "x"}, at(0)); err == nil || !strings.Contains(err.Error(), "c cannot join") {
			t.Fatalf("a member in two cohorts: %v", err)
		}
		for i, id := range []string{"a", "x"} {
			if err := a.Submit(id, 0, a.Hash(), tps, encode(t, cfg.Codec, constDelta(n, 0.01+0.002*float32(i))), at(1)); err != nil {
				t.Fatal(err)
			}
		}
		var ev Event
		if excuse {
			a.Excuse("k")
			if err := a.Submit("b", 0, a.Hash(), tps, encode(t, cfg.Codec, constDelta(n, 0.03)), at(2)); err == nil || !strings.Contains(err.Error(), "was refused") {
				t.Fatalf("an excused member alone: %v", err)
			}
			ev = mustTick(t, a, at(2))
		} else {
			if ev = mustTick(t, a, at(14.9)); ev.Closed != nil {
				t.Fatal("closed within CohortWait")
			}
			ev = mustTick(t, a, at(15))
		}
		if ev.Closed == nil || len(ev.Closed.Missing) != 0 {
			t.Fatalf("excuse %v: closed %+v", excuse, ev.Closed)
		}
		for _, c := range ev.Closed.Accepted {
			if c.Members != nil {
				t.Fatalf("excuse %v: the dropped cohort was aggregated", excuse)
			}
		}
	}
}

// TestCohortScreenedByTolerance: in a run with a private rule, a cohort
// whose measured held-out loss is worse than the tolerance is excluded
// (a worker's own contribution as bad is not: screening judges it
// against the round's median, the validator by the rule).
func TestCohortScreenedByTolerance(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	cfg.Private = &Private{Tolerance: 0.01}
	n, tps := cfg.Model.NumParams(), cfg.TokensPerStep()
	a, _ := NewAggregator(cfg)
	a.HeldOutWait = time.Second
	openRound(t, a, 0, "a", "b", "c")
	if err := a.Expect("k", []string{"b", "c"}, at(0)); err != nil {
		t.Fatal(err)
	}
	pa, mean := encode(t, cfg.Codec, constDelta(n, 0.01)), encode(t, compress.FP32, constDelta(n, 0.02))
	if err := a.Submit("a", 0, a.Hash(), tps, pa, at(1)); err != nil {
		t.Fatal(err)
	}
	if err := a.SubmitCohort("k", 0, a.Hash(), 2, 2*tps, mean); err != nil {
		t.Fatal(err)
	}
	if err := a.SetHeldOut("a", 0, verify.PayloadDigest(pa), 3, 3.05); err != nil {
		t.Fatal(err)
	}
	if err := a.SetHeldOut("k", 0, verify.PayloadDigest(mean), 3, 3.02); err != nil {
		t.Fatal(err)
	}
	ev := mustTick(t, a, at(1))
	if ev.Closed == nil || len(ev.Closed.Excluded) != 1 || ev.Closed.Excluded[0].Worker != "k" ||
		!strings.Contains(ev.Closed.Excluded[0].Reason, "worsens the held-out loss by 0.0200 nats") || len(ev.Closed.Accepted) != 1 {
		t.Fatalf("closed %+v", ev.Closed)
	}
}

// TestSitOut: a participant that sits the round out is not waited for and
// not put on probation; it may not contribute to the round.
func TestSitOut(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	n, tps := cfg.Model.NumParams(), cfg.TokensPerStep()
	a, _ := NewAggregator(cfg)
	openRound(t, a, 0, "a", "p")
	a.SitOut("p")
	if err := a.Submit("p", 0, a.Hash(), tps, encode(t, cfg.Codec, constDelta(n, 0.02)), at(1)); err == nil {
		t.Fatal("a worker that sat out contributed")
	}
	if err := a.Submit("a", 0, a.Hash(), tps, encode(t, cfg.Codec, constDelta(n, 0.01)), at(1)); err != nil {
		t.Fatal(err)
	}
	ev := mustTick(t, a, at(1))
	if ev.Closed == nil || len(ev.Closed.Missing) != 0 {
		t.Fatalf("closed %+v", ev.Closed)
	}
}

// TestDPWithCohort: with differential privacy a cohort's sum of three
// inputs counts as three contributions: the round's weights match, to
// float32 rounding of the mean, those of the same three inputs sent one
// by one (same noise seed), and a cohort's sum beyond three clips is
// clipped to three clips as a whole.
func TestDPWithCohort(t *testing.T) {
	cfg := tinyCfg(compress.FP32)
	cfg.DP = &DP{Clip: 1, Noise: 0.5, Delta: 1e-5, Budget: 1e6}
	cfg.Private = &Private{Tolerance: 1, SecAgg: &SecAgg{MinCohort: 3, Bits: 16, Clip: 0.05}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n, tps := cfg.Model.NumParams(), cfg.TokensPerStep()
	inputs := [][]float32{constDelta(n, 1e-4), constDelta(n, 2e-4), constDelta(n, -1.5e-4)}
	mean := make([]float32, n)
	for i := range mean {
		mean[i] = float32((float64(inputs[0][i]) + float64(inputs[1][i]) + float64(inputs[2][i])) / 3)
	}
	pub := constDelta(n, 3e-4)
	run := func(cohort bool, scale float32) ([]float32, *RoundResult) {
		a, _ := NewAggregator(cfg)
		a.NoiseSeed = [32]byte{7}
		openRound(t, a, 0, "a", "b", "c", "p")
		if err := a.Submit("p", 0, a.Hash(), tps, encode(t, compress.FP32, pub), at(1)); err != nil {
			t.Fatal(err)
		}
		if cohort {
			if err := a.Expect("k", []string{"a", "b", "c"}, at(0)); err != nil {
				t.Fatal(err)
			}
			m := slices.Clone(mean)
			for i := range m {
				m[i] *= scale
			}
			if err := a.SubmitCohort("k", 0, a.Hash(), 3, 3*tps, encode(t, compress.FP32, m)); err != nil {
				t.Fatal(err)
			}
		} else {
			for i, id := range []string{"a", "b", "c"} {
				if err := a.Submit(id, 0, a.Hash(), tps, encode(t, compress.FP32, inputs[i]), at(1)); err != nil {
					t.Fatal(err)
				}
			}
		}
		ev := mustTick(t, a, at(1))
		if ev.Closed == nil {
			t.Fatal("the round did not close")
		}
		return slices.Clone(a.Weights()), ev.Closed
	}
	one, _ := run(false, 1)
	together, res := run(true, 1)
	for i := range one {
		if d := math.Abs(float64(one[i] - together[i])); d > 1e-6 {
			t.Fatalf("weight %d: %v one by one, %v through the cohort", i, one[i], together[i])
		}
	}
	if len(res.Clip.Scales) != 2 || res.Clip.Scales[0] != 1 {
		t.Fatalf("clipping %+v", res.Clip)
	}
	big := float32(3 * 1.5 / verify.Norm(mean) / 3) // the mean scaled so that the sum's norm is 1.5 clips of each of 3
	_, res = run(true, big)
	if s := res.Clip.Scales[0]; math.Abs(s-1/1.5) > 1e-6 || math.Abs(res.Clip.Norms[0]-4.5) > 1e-4 {
		t.Fatalf("a cohort's sum of norm 4.5 for 3 clips of 1: scaled by %v (norm %v), want 2/3", s, res.Clip.Norms[0])
	}
}

// TestAssignment: the windows Assignment names are the ones the worker
// trains on, byte for byte; a tokenizer run is refused.
func TestAssignment(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	text := corpus.TinyShakespeare()[:20000]
	train, _ := corpus.Split(text, 0.9)
	pool := kernels.NewPool(1)
	defer pool.Close()
	w, err := NewWorker("alice", cfg, train, pool)
	if err != nil {
		t.Fatal(err)
	}
	theta := InitialWeights(cfg)
	if err := w.SetWeights(0, theta, HashWeights(0, theta)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Train(context.Background(), cfg.InnerSteps, nil); err != nil {
		t.Fatal(err)
	}
	steps, err := Assignment(cfg, len(train), "alice", 0, cfg.InnerSteps)
	if err != nil || len(steps) != cfg.InnerSteps {
		t.Fatal(err)
	}
	inputs, _ := w.inner.LastBatch()
	T := cfg.Model.BlockSize
	for b, s := range steps[cfg.InnerSteps-1] {
		for j := range T {
			if inputs[b*T+j] != int32(train[s+j]) {
				t.Fatalf("window %d of the last step: byte %d differs from the training data at %d", b, j, s+j)
			}
		}
	}
	other, _ := Assignment(cfg, len(train), "bob", 0, 1)
	if slices.Equal(other[0], steps[0]) {
		t.Fatal("two workers assigned the same windows")
	}
	cfg.Tokenizer = "x"
	if _, err := Assignment(cfg, len(train), "alice", 0, 1); err == nil {
		t.Fatal("a tokenizer run traced in bytes")
	}
}
