package synth

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// randomPolicy writes random steps over the numbers left, a fifth of them
// with a wrong result: a model that has learnt the format and little else.
// Its work is a row per byte of prompt and of text.
type randomPolicy struct{ r *rand.Rand }

func (rp randomPolicy) state(prefix string) (Problem, []int, bool) {
	p, rest, err := ParseProblem(prefix)
	if err != nil {
		return p, nil, false
	}
	var steps []Step
	if strings.TrimSpace(rest) != "" {
		s, rej := ParseSteps(rest)
		if rej != nil {
			return p, nil, false
		}
		steps = s
	}
	pool, err := Pool(p, steps)
	return p, pool, err == nil
}

func (rp randomPolicy) step(pool []int) (Step, []int) {
	i := rp.r.IntN(len(pool))
	j := rp.r.IntN(len(pool) - 1)
	if j >= i {
		j++
	}
	a, b := pool[i], pool[j]
	op := []Op{Add, Sub, Mul, Div}[rp.r.IntN(4)]
	c, err := apply(a, op, b)
	if err != nil || rp.r.IntN(5) == 0 {
		c = a + b + 1
	}
	return Step{A: a, B: b, Op: op, C: c}, append(removeTwo(append([]int(nil), pool...), i, j), c)
}

func (rp randomPolicy) Complete(prefix string, k int) ([]string, int, error) {
	cost := len(prefix)
	var out []string
	for range k {
		_, pool, ok := rp.state(prefix)
		var b strings.Builder
		for ok && len(pool) >= 2 {
			var s Step
			s, pool = rp.step(pool)
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(" " + s.String())
		}
		b.WriteByte('\n')
		out = append(out, b.String())
		cost += b.Len()
	}
	return out, cost, nil
}

// TestSearchAgainstBestOfN: with the same random policy and the same
// budget, the tree search (which prunes wrong steps as soon as they are
// written and retries from the valid prefix) solves more problems than
// sampling whole solutions; every solution either returns verifies; a
// search is a function of the policy's seed.
func TestSearchAgainstBestOfN(t *testing.T) {
	const budget = 3000
	var mcts, bon int
	for i := range 100 {
		p, _, _ := Generate(11, i, DefaultDifficulty)
		rm, err := MCTS(p, randomPolicy{rand.New(rand.NewPCG(1, uint64(i)))}, SearchOptions{Budget: budget, Expand: 8})
		if err != nil {
			t.Fatal(err)
		}
		rb, err := BestOfN(p, randomPolicy{rand.New(rand.NewPCG(1, uint64(i)))}, SearchOptions{Budget: budget, Expand: 8})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range []SearchResult{rm, rb} {
			if r.Steps != nil {
				if err := Check(p, r.Steps); err != nil {
					t.Fatalf("%s: a search returned %s: %v", p.Prompt(), FormatSolution(r.Steps), err)
				}
			}
			if r.Steps == nil && r.Cost < budget && r.Simulations == 0 {
				t.Fatalf("%s: gave up at %d of %d without trying", p.Prompt(), r.Cost, budget)
			}
		}
		if rm.Steps != nil {
			mcts++
		}
		if rb.Steps != nil {
			bon++
		} else if rb.Cost < budget {
			t.Fatalf("%s: best-of-n gave up at %d of %d", p.Prompt(), rb.Cost, budget)
		}
		again, _ := MCTS(p, randomPolicy{rand.New(rand.NewPCG(1, uint64(i)))}, SearchOptions{Budget: budget, Expand: 8})
		if again.Cost != rm.Cost || FormatSolution(again.Steps) != FormatSolution(rm.Steps) {
			t.Fatalf("%s: the search is not a function of the policy's seed", p.Prompt())
		}
	}
	t.Logf("solved at %d rows a problem: tree search %d/100, best-of-n %d/100", budget, mcts, bon)
	if mcts <= bon {
		t.Errorf("tree search solved %d, best-of-n %d: the search should prune wrong steps", mcts, bon)
	}
}

func TestPrefixAndPool(t *testing.T) {
	p := Problem{Numbers: []int{3, 7, 25, 50}, Target: 325}
	steps := []Step{{50, 25, Sub, 25}, {25, 7, Mul, 175}}
	if got := Prefix(p, steps); got != "3 7 25 50 -> 325: 50-25=25, 25*7=175," {
		t.Fatalf("prefix %q", got)
	}
	if got := Prefix(p, nil); got != "3 7 25 50 -> 325:" {
		t.Fatalf("prefix %q", got)
	}
	pool, err := Pool(p, steps)
	if err != nil || len(pool) != 2 || pool[0] != 3 || pool[1] != 175 {
		t.Fatalf("pool %v %v", pool, err)
	}
	if _, err := Pool(p, []Step{{50, 50, Sub, 0}}); err == nil {
		t.Fatal("50 used twice")
	}
}

func TestWorkedFormat(t *testing.T) {
	p := Problem{Numbers: []int{3, 7, 25, 50}, Target: 178}
	steps := []Step{{50, 25, Sub, 25}, {25, 7, Mul, 175}, {175, 3, Add, 178}}
	if got := Worked.Solution(p, steps); got != " 50-25=25 [3 7 25], 25*7=175 [3 175], 175+3=178 [178]\n" {
		t.Fatalf("worked solution %q", got)
	}
	if got := Worked.Prefix(p, steps[:2]); got != "3 7 25 50 -> 178: 50-25=25 [3 7 25], 25*7=175 [3 175]," {
		t.Fatalf("worked prefix %q", got)
	}
	if got, want := Plain.Prefix(p, steps[:2]), Prefix(p, steps[:2]); got != want {
		t.Fatalf("plain prefix %q, want %q", got, want)
	}
	// A bad step ends the notes: there is no pool to write after it.
	bad := []Step{{50, 25, Sub, 24}, {24, 7, Mul, 168}}
	if got := Worked.Solution(p, bad); got != " 50-25=24, 24*7=168\n" {
		t.Fatalf("worked solution of bad steps %q", got)
	}
}

// recordingPolicy remembers the prefixes it is asked to continue.
type recordingPolicy struct {
	randomPolicy
	prefixes *[]string
}

func (rp recordingPolicy) Complete(prefix string, k int) ([]string, int, error) {
	*rp.prefixes = append(*rp.prefixes, prefix)
	return rp.randomPolicy.Complete(prefix, k)
}

// TestSearchWorked: the tree search in the Worked format shows the policy
// its steps with their notes, and what it returns verifies.
func TestSearchWorked(t *testing.T) {
	var prefixes []string
	solved := 0
	for i := range 20 {
		p, _, _ := Generate(11, i, DefaultDifficulty)
		pol := recordingPolicy{randomPolicy{rand.New(rand.NewPCG(1, uint64(i)))}, &prefixes}
		r, err := MCTS(p, pol, SearchOptions{Budget: 3000, Expand: 8, Format: Worked})
		if err != nil {
			t.Fatal(err)
		}
		if r.Steps != nil {
			solved++
			if err := Check(p, r.Steps); err != nil {
				t.Fatalf("%s: %v", p.Prompt(), err)
			}
		}
	}
	deep := 0
	for _, pre := range prefixes {
		if strings.Contains(pre, "=") {
			deep++
			if strings.Count(pre, "[") != strings.Count(pre, "=") || !strings.HasSuffix(pre, "],") {
				t.Fatalf("a prefix without its notes: %q", pre)
			}
		}
	}
	if solved == 0 || deep == 0 {
		t.Fatalf("solved %d of 20, %d prefixes after a step: the search did not run", solved, deep)
	}
}
