package experiment

import (
	"math"
	"testing"

	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/synth"
)

// TestSyntheticRuns: a tiny run of the experiment (with a decaying
// fine-tuning rate) goes through every stage and reports rates in [0, 1], the rows each arm spent within its
// budget, and as many iterations as asked for each arm; best-of-n run
// alone gives the same curve.
func TestSyntheticRuns(t *testing.T) {
	o := DefaultSyntheticOptions()
	o.Model = gpt.DefaultConfig(32, 2, 2, 128)
	o.Difficulty = synth.Difficulty{Numbers: 3, Max: 10}
	o.SeedProblems, o.SeedSteps, o.Iterations, o.Problems, o.Budget, o.TuneSteps, o.Test = 200, 30, 2, 4, 300, 5, 6
	o.FinalTest = 10
	o.Pool = kernels.NewPool(1)
	defer o.Pool.Close()
	rep, err := Synthetic(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Search) != 2 || len(rep.Sampled) != 2 || rep.SeedRate < 0 || rep.SeedRate > 1 {
		t.Fatalf("report %+v", rep)
	}
	for _, arms := range [][]SyntheticArm{rep.Search, rep.Sampled} {
		for _, a := range arms {
			if a.Solved < 0 || a.Solved > o.Problems || a.Rows <= 0 || a.Rows > int64(o.Problems*(o.Budget+2*o.Model.BlockSize*o.Expand)) ||
				a.SolveRate < 0 || a.SolveRate > 1 || a.PassAt8 < 0 || a.PassAt8 > 1 {
				t.Fatalf("arm %+v", a)
			}
		}
	}
	if rep.Models[0] == nil || rep.Models[1] == nil || rep.Models[2] == nil || rep.Models[1] == rep.Models[2] {
		t.Fatalf("models %v", rep.Models)
	}
	f := rep.Final
	if f == nil || f.Problems != o.FinalTest {
		t.Fatalf("final comparison %+v", f)
	}
	for i := range 3 {
		if f.Greedy[i] < 0 || f.Greedy[i] > f.Problems || f.PassAt8[i] < 0 || f.PassAt8[i] > f.Problems {
			t.Fatalf("final comparison %+v", f)
		}
		// Every greedy failure has its one fault.
		failed := 0
		for _, n := range f.GreedyFaults[i] {
			failed += n
		}
		if f.GreedyFaults[i][0] != 0 || f.Greedy[i]+failed != f.Problems || f.GreedyDeadEnds[i] < 0 || f.GreedyDeadEnds[i] > failed {
			t.Fatalf("model %d: %d solved and failures by fault %v of %d problems", i, f.Greedy[i], f.GreedyFaults[i], f.Problems)
		}
	}
	// The final test can be run again on the saved models, with the same
	// outcome to the count.
	if again, err := SyntheticCompare(o, rep.Models); err != nil || *again != *f {
		t.Fatalf("the final test again: %+v, %v; in the run %+v", again, err, f)
	}
	if _, err := SyntheticCompare(o, [3]*gpt.Model{nil, rep.Models[1], nil}); err == nil {
		t.Fatal("a comparison without the seed model accepted")
	}
	// The problems one arm's model alone solves account for the whole
	// difference between their counts.
	if f.GreedyOnlySearch-f.GreedyOnlySampled != f.Greedy[1]-f.Greedy[2] || f.PassOnlySearch-f.PassOnlySampled != f.PassAt8[1]-f.PassAt8[2] {
		t.Fatalf("paired counts disagree with the totals: %+v", f)
	}
	// Best-of-n alone (the arm that runs second) runs exactly as it does
	// after the tree search, and is not compared.
	for _, arm := range []string{ArmSampled} {
		one := o
		one.Arms = []string{arm}
		r1, err := Synthetic(one)
		if err != nil {
			t.Fatal(err)
		}
		got, want, other, idx := r1.Search, rep.Search, r1.Sampled, 1
		if arm == ArmSampled {
			got, want, other, idx = r1.Sampled, rep.Sampled, r1.Search, 2
		}
		if len(other) != 0 || len(got) != len(want) || r1.Models[idx] == nil || r1.Models[3-idx] != nil {
			t.Fatalf("arm %s alone: curves %+v and %+v", arm, got, other)
		}
		for i := range got {
			if got[i].Solved != want[i].Solved || got[i].Rows != want[i].Rows || got[i].SolveRate != want[i].SolveRate || got[i].PassAt8 != want[i].PassAt8 {
				t.Fatalf("arm %s alone, iteration %d: %+v, beside the other %+v", arm, i+1, got[i], want[i])
			}
		}
		g := r1.Final
		if g.Greedy[idx] != f.Greedy[idx] || g.Greedy[3-idx] != -1 || g.PassAt8[3-idx] != -1 || g.GreedyFaults[3-idx] != [6]int{} || g.GreedyOnlySearch+g.GreedyOnlySampled+g.PassOnlySearch+g.PassOnlySampled != 0 {
			t.Fatalf("arm %s alone: final %+v, beside the other %+v", arm, g, f)
		}
	}
	// The tree search over sampled steps runs, within its budget, and
	// searches otherwise than over legal steps (the default).
	if !o.Legal {
		t.Fatal("the default tree search is not over legal steps")
	}
	legal := o
	legal.Arms, legal.Legal, legal.FinalTest = []string{ArmSearch}, false, 0
	r2, err := Synthetic(legal)
	if err != nil {
		t.Fatal(err)
	}
	same := true
	for i, a := range r2.Search {
		if a.Solved < 0 || a.Solved > o.Problems || a.Rows <= 0 || a.Rows > int64(o.Problems*(o.Budget+2*o.Model.BlockSize*o.Expand)) {
			t.Fatalf("sampled steps: arm %+v", a)
		}
		same = same && a.Rows == rep.Search[i].Rows
	}
	if len(r2.Search) != o.Iterations || len(r2.Sampled) != 0 || same {
		t.Fatalf("sampled steps: curve %+v, over legal steps %+v", r2.Search, rep.Search)
	}
	for _, arms := range [][]string{{}, {"greedy"}, {ArmSearch, ArmSearch}} {
		bad := o
		bad.Arms = arms
		if _, err := Synthetic(bad); err == nil {
			t.Fatalf("arms %q accepted", arms)
		}
	}
	bad := o
	bad.Legal, bad.UniformPriors = false, true
	if _, err := Synthetic(bad); err == nil {
		t.Fatal("uniform priors without legal steps accepted")
	}
	o.Problems = 0
	if _, err := Synthetic(o); err == nil {
		t.Fatal("no problems accepted")
	}
	o.Problems, o.FinalTest = 4, -1
	if _, err := Synthetic(o); err == nil {
		t.Fatal("a negative final test accepted")
	}
}

// TestPairedDifference: the difference of two models' rates on the same
// problems and its standard error, against values worked by hand.
func TestPairedDifference(t *testing.T) {
	for _, c := range []struct {
		a, b, n  int
		diff, se float64
	}{
		{0, 0, 100, 0, 0},
		{30, 10, 100, 0.2, math.Sqrt((0.4 - 0.04) / 100)},
		{10, 30, 100, -0.2, math.Sqrt((0.4 - 0.04) / 100)},
		{50, 0, 50, 1, 0},
		{3, 3, 0, 0, 0},
	} {
		d, se := PairedDifference(c.a, c.b, c.n)
		if math.Abs(d-c.diff) > 1e-12 || math.Abs(se-c.se) > 1e-12 {
			t.Errorf("PairedDifference(%d, %d, %d) = %v ± %v, want %v ± %v", c.a, c.b, c.n, d, se, c.diff, c.se)
		}
	}
}
