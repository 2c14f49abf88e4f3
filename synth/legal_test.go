package synth

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
)

func TestLegalSteps(t *testing.T) {
	for _, c := range []struct {
		pool []int
		want string
	}{
		{[]int{6, 3}, "6+3=9 6-3=3 6*3=18 6/3=2"},
		{[]int{3, 6}, "6+3=9 6-3=3 6*3=18 6/3=2"},
		{[]int{4, 4}, "4+4=8 4*4=16 4/4=1"},                             // 4-4 is not positive
		{[]int{5, 1, 5}, "5+1=6 5-1=4 5*1=5 5/1=5 5+5=10 5*5=25 5/5=1"}, // 5 with 1 once
		{[]int{7, 2}, "7+2=9 7-2=5 7*2=14"},                             // 7/2 is not exact
		{[]int{1000000, 2}, "1000000-2=999998 1000000/2=500000"},        // the rest exceed MaxValue
		{[]int{9}, ""},
	} {
		var got []string
		for _, s := range LegalSteps(c.pool) {
			got = append(got, s.String())
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("LegalSteps(%v) = %q, want %q", c.pool, strings.Join(got, " "), c.want)
		}
	}
}

// scoringPolicy is randomPolicy that also scores texts: by favour, a
// function of the text (nil: every text alike), at a row a byte.
type scoringPolicy struct {
	randomPolicy
	favour func(prefix, text string) float64
	calls  *int
}

func (sp scoringPolicy) Score(prefix string, texts []string) ([]float64, int, error) {
	*sp.calls++
	cost := len(prefix)
	out := make([]float64, len(texts))
	for i, t := range texts {
		if sp.favour != nil {
			out[i] = sp.favour(prefix, t)
		}
		cost += len(t) - 1
	}
	return out, cost, nil
}

// TestSearchLegal: over legal steps the tree search solves every problem
// given the budget to look everywhere, each solution verifying; led by a
// policy that favours a known solution's steps it expands exactly the
// nodes on that solution's path; it refuses a policy that cannot score.
func TestSearchLegal(t *testing.T) {
	calls := 0
	for i := range 40 {
		p, sol, _ := Generate(13, i, Difficulty{Numbers: 4, Max: 10})
		r, err := MCTS(p, scoringPolicy{randomPolicy{rand.New(rand.NewPCG(1, uint64(i)))}, nil, &calls}, SearchOptions{Budget: 1 << 30, Legal: true})
		if err != nil {
			t.Fatal(err)
		}
		if r.Steps == nil {
			t.Fatalf("%s: no solution over every legal step, though %s is one", p.Prompt(), FormatSolution(sol))
		}
		if err := Check(p, r.Steps); err != nil {
			t.Fatalf("%s: the search returned %s: %v", p.Prompt(), FormatSolution(r.Steps), err)
		}

		// A policy that favours sol's steps, each after the one before.
		favour := func(prefix, text string) float64 {
			_, rest, _ := ParseProblem(prefix)
			k := strings.Count(rest, "=")
			if k < len(sol) && strings.TrimSpace(text) == sol[k].String() {
				return 0
			}
			return -8
		}
		calls = 0
		r, err = MCTS(p, scoringPolicy{randomPolicy{rand.New(rand.NewPCG(1, uint64(i)))}, favour, &calls}, SearchOptions{Budget: 1 << 30, Legal: true})
		if err != nil {
			t.Fatal(err)
		}
		if r.Steps == nil || Check(p, r.Steps) != nil || len(r.Steps) > len(sol) {
			t.Fatalf("%s: led along %s, the search returned %q", p.Prompt(), FormatSolution(sol), FormatSolution(r.Steps))
		}
		if calls != len(r.Steps) || r.Simulations != calls || !slices.Equal(r.Steps[:len(r.Steps)-1], sol[:len(r.Steps)-1]) {
			t.Fatalf("%s: led along %s, the search scored %d times in %d simulations for %s", p.Prompt(), FormatSolution(sol), calls, r.Simulations, FormatSolution(r.Steps))
		}
		if r.Cost <= 0 {
			t.Fatalf("%s: a search that scored reported %d rows", p.Prompt(), r.Cost)
		}
	}
	// Equal priors: the search still solves every problem given the
	// budget, charged as a model's scoring would be.
	for i := range 20 {
		p, _, _ := Generate(13, i, Difficulty{Numbers: 4, Max: 10})
		r, err := MCTS(p, Uniform{randomPolicy{rand.New(rand.NewPCG(1, uint64(i)))}}, SearchOptions{Budget: 1 << 30, Legal: true})
		if err != nil || r.Steps == nil || Check(p, r.Steps) != nil || r.Cost < len(p.Prompt()) {
			t.Fatalf("%s: with equal priors %q in %d rows, %v", p.Prompt(), FormatSolution(r.Steps), r.Cost, err)
		}
	}
	if lp, cost, err := (Uniform{}).Score("1 2 -> 3:", []string{" 2+1=3", " 2"}); err != nil || cost != 9+5+1 || len(lp) != 2 || lp[0] != 0 || lp[1] != 0 {
		t.Fatalf("Uniform.Score: %v, %d rows, %v", lp, cost, err)
	}
	p, _, _ := Generate(13, 0, DefaultDifficulty)
	if _, err := MCTS(p, randomPolicy{rand.New(rand.NewPCG(1, 1))}, SearchOptions{Budget: 100, Legal: true}); err == nil || !strings.Contains(err.Error(), "scores") {
		t.Fatalf("a policy that cannot score: %v", err)
	}
}

// TestModelScore: ModelPolicy.Score gives each text the log probability
// a byte-by-byte run of the model gives it, at the rows it says.
func TestModelScore(t *testing.T) {
	pool := kernels.NewPool(1)
	t.Cleanup(pool.Close)
	m, err := gpt.New(gpt.DefaultConfig(32, 1, 2, 64), pool)
	if err != nil {
		t.Fatal(err)
	}
	gpt.InitParams(m.Config, m.Params, 5)
	pol := NewModelPolicy(m, 1, 1)
	prefix := "3 7 5 9 -> 42:"
	texts := []string{" 9*5=45", " 7-3=4", " 9+3=12", " 5"}
	logp, cost, err := pol.Score(prefix, texts)
	if err != nil {
		t.Fatal(err)
	}
	want := len(prefix)
	for i, text := range texts {
		want += len(text) - 1
		g := m.NewGenerator()
		if err := g.Start(corpus.Bytes([]byte(prefix))); err != nil {
			t.Fatal(err)
		}
		var lp float64
		for k := range len(text) {
			lp += gpt.LogProb(g.Logits(), int(text[k]), 1)
			if err := g.Append(int32(text[k])); err != nil {
				t.Fatal(err)
			}
		}
		if math.Abs(lp-logp[i]) > 1e-4 || !(logp[i] < 0) {
			t.Errorf("%q: scored %.6f, a run of the model gives %.6f", text, logp[i], lp)
		}
	}
	if cost != want {
		t.Errorf("cost %d rows, want %d", cost, want)
	}
	if _, _, err := pol.Score(prefix, []string{" 1", ""}); err == nil {
		t.Error("an empty text was scored")
	}
}
