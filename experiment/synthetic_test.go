package experiment

import (
	"testing"

	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/synth"
)

// TestSyntheticRuns: a tiny run of the experiment (with a decaying
// fine-tuning rate) goes through every stage and reports rates in [0, 1], the rows each arm spent within its
// budget, and as many iterations as asked for each arm.
func TestSyntheticRuns(t *testing.T) {
	o := DefaultSyntheticOptions()
	o.Model = gpt.DefaultConfig(32, 2, 2, 128)
	o.Difficulty = synth.Difficulty{Numbers: 3, Max: 10}
	o.SeedProblems, o.SeedSteps, o.Iterations, o.Problems, o.Budget, o.TuneSteps, o.Test = 200, 30, 2, 4, 300, 5, 6
	o.TuneDecay = true
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
	o.Problems = 0
	if _, err := Synthetic(o); err == nil {
		t.Fatal("no problems accepted")
	}
}
