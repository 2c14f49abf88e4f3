package synth

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Policy is a model that writes solutions, as the search sees it. Both
// methods return the text sampled and the model's work in token rows (the
// prompt's rows and one a sampled token), so that searches are compared
// at equal compute. The Policy draws its own randomness (seeded by its
// maker), so a search is a function of the problem, the options and the
// Policy's seed.
type Policy interface {
	// Propose samples k continuations of prefix, each one step: up to and
	// including the first ',' or newline, or at most maxStep bytes.
	Propose(prefix string, k int) (texts []string, cost int, err error)
	// Complete samples one continuation of prefix up to and including a
	// newline, or at most MaxSolution bytes.
	Complete(prefix string) (text string, cost int, err error)
}

// maxStep bounds a proposed step's text.
const maxStep = 24

// SearchOptions set a search.
type SearchOptions struct {
	// Budget is the model work (token rows) a problem may take.
	Budget int
	// Expand is how many steps a node's expansion samples (AlphaZero's
	// priors come from one network call; here from k samples: the prior
	// of a step is the share of the valid samples that proposed it).
	Expand int
	// CInit and CBase are PUCT's exploration constants (1.25 and 19652,
	// AlphaZero's, when zero).
	CInit, CBase float64
}

// SearchResult is a search's outcome: a verified solution (nil when none
// was found within the budget), the work spent and the simulations run.
type SearchResult struct {
	Steps       []Step
	Cost        int
	Simulations int
}

// Prefix is the text a model continues after steps have been written:
// the prompt, and each step after a space, separated by commas, with a
// comma after the last.
func Prefix(p Problem, steps []Step) string {
	s := strings.TrimSuffix(FormatSolution(steps), "\n")
	if len(steps) == 0 {
		return p.Prompt()
	}
	return p.Prompt() + s + ","
}

// Pool is what is left to use after steps: the numbers not used up and
// the results not used since, or the rejection of the first bad step.
func Pool(p Problem, steps []Step) ([]int, error) {
	pool := slices.Clone(p.Numbers)
	for k, s := range steps {
		var err *Rejection
		if pool, err = next(pool, k, s); err != nil {
			return nil, err
		}
	}
	return pool, nil
}

// next applies step s (the k-th, for messages) to pool.
func next(pool []int, k int, s Step) ([]int, *Rejection) {
	i := slices.Index(pool, s.A)
	if i < 0 {
		return nil, reject(Unavailable, "step %d (%s) uses %d, which is not given or is used up", k+1, s, s.A)
	}
	pool = slices.Delete(slices.Clone(pool), i, i+1)
	j := slices.Index(pool, s.B)
	if j < 0 {
		return nil, reject(Unavailable, "step %d (%s) uses %d, which is not given or is used up", k+1, s, s.B)
	}
	pool = slices.Delete(pool, j, j+1)
	c, err := apply(s.A, s.Op, s.B)
	if err != nil {
		return nil, reject(InvalidStep, "step %d (%s): %v", k+1, s, err)
	}
	if c != s.C {
		return nil, reject(WrongArithmetic, "step %d: %d%c%d is %d, not %d", k+1, s.A, s.Op, s.B, c, s.C)
	}
	return append(pool, c), nil
}

// BestOfN samples whole solutions from the prompt until one verifies or
// the budget is spent.
func BestOfN(p Problem, pol Policy, budget int) (SearchResult, error) {
	var res SearchResult
	for res.Cost < budget {
		text, cost, err := pol.Complete(p.Prompt())
		if err != nil {
			return res, err
		}
		res.Cost += cost
		res.Simulations++
		if cost <= 0 {
			return res, errors.New("synth: the policy reported no work for a sample")
		}
		if steps, err := Verify(p, text); err == nil {
			res.Steps = steps
			return res, nil
		}
	}
	return res, nil
}

// node is a state of the search: the steps written so far.
type node struct {
	steps    []Step
	pool     []int
	children []*child
	expanded bool
	dead     bool // no valid step follows: value 0
	n        int
	w        float64
}

type child struct {
	step  Step
	prior float64
	n     *node
}

// MCTS searches for a solution of p as AlphaZero does (PUCT selection,
// expansion by the Policy, backup), with the verifier in place of a game's
// rules: a node is the steps written so far; its children are the valid
// steps among Expand samples of the next step (invalid ones, which a
// whole sample would only reveal at its end, are pruned at once), with
// priors their share of the samples; a leaf's value is 1 when a rollout
// (the Policy completing the solution) verifies, and otherwise how near
// the rollout's valid steps came to the target (closeness). It
// returns as soon as a step or a rollout reaches the target, or when the
// budget is spent.
func MCTS(p Problem, pol Policy, o SearchOptions) (SearchResult, error) {
	if o.Expand < 1 || o.Budget < 1 {
		return SearchResult{}, fmt.Errorf("synth: a search of %d samples an expansion within %d rows", o.Expand, o.Budget)
	}
	if o.CInit == 0 {
		o.CInit = 1.25
	}
	if o.CBase == 0 {
		o.CBase = 19652
	}
	root := &node{pool: slices.Clone(p.Numbers)}
	var res SearchResult
	for res.Cost < o.Budget && !root.dead {
		res.Simulations++
		path := []*node{root}
		nd := root
		for nd.expanded && !nd.dead && len(nd.children) > 0 {
			c := selectChild(nd, o)
			nd = c.n
			path = append(path, nd)
		}
		var v float64
		switch {
		case nd.dead:
		case !nd.expanded:
			solved, cost, err := expand(p, pol, nd, o.Expand)
			res.Cost += cost
			if err != nil {
				return res, err
			}
			if solved != nil {
				res.Steps = solved
				return res, nil
			}
			if nd.dead || !nd.expanded {
				break
			}
			text, cost, err := pol.Complete(Prefix(p, nd.steps))
			res.Cost += cost
			if err != nil {
				return res, err
			}
			full := strings.TrimSuffix(FormatSolution(nd.steps), "\n") + "," + text
			if len(nd.steps) == 0 {
				full = text
			}
			if steps, err := Verify(p, full); err == nil {
				res.Steps = steps
				return res, nil
			}
			v = closeness(p, nd, text)
		}
		for _, x := range path {
			x.n++
			x.w += v
		}
		// A node whose every child is dead is dead: the search never
		// selects it again, and stops when the root is.
		for i := len(path) - 1; i >= 0; i-- {
			x := path[i]
			if !x.dead && x.expanded && !slices.ContainsFunc(x.children, func(c *child) bool { return !c.n.dead }) {
				x.dead = true
			}
		}
	}
	return res, nil
}

// closeness is the value of a rollout that failed: how near the valid
// steps it wrote after nd came to the target, the best of 1 − |r−T|/T
// over their results r, scaled to [0, 0.9] so that a solution (1) is
// worth more than any miss.
func closeness(p Problem, nd *node, text string) float64 {
	steps, rej := ParseSteps(text)
	if rej != nil {
		return 0
	}
	pool, best := nd.pool, 0.0
	for k, s := range steps {
		var r *Rejection
		if pool, r = next(pool, len(nd.steps)+k, s); r != nil {
			break
		}
		best = max(best, 1-math.Min(1, math.Abs(float64(s.C-p.Target))/float64(p.Target)))
	}
	return 0.9 * best
}

// selectChild is PUCT's choice: argmax Q + C·P·√N/(1+n), C =
// ln((1+N+CBase)/CBase) + CInit, Q = 0 for an unvisited child, the first
// of equals.
func selectChild(nd *node, o SearchOptions) *child {
	c := math.Log((1+float64(nd.n)+o.CBase)/o.CBase) + o.CInit
	sq := math.Sqrt(float64(nd.n))
	var best *child
	bestScore := math.Inf(-1)
	for _, ch := range nd.children {
		if ch.n.dead {
			continue // nothing to find there
		}
		q := 0.0
		if ch.n.n > 0 {
			q = ch.n.w / float64(ch.n.n)
		}
		if s := q + c*ch.prior*sq/(1+float64(ch.n.n)); s > bestScore {
			best, bestScore = ch, s
		}
	}
	return best
}

// expand samples k next steps at nd and makes the valid ones its
// children, priors their share of the valid samples. A step that reaches
// the target is a solution, returned at once; a node with one number left
// is dead; one whose samples held no valid step stays a leaf, to be
// expanded again when the search comes back.
func expand(p Problem, pol Policy, nd *node, k int) ([]Step, int, error) {
	nd.expanded = true
	if len(nd.pool) < 2 {
		nd.dead = true
		return nil, 0, nil
	}
	texts, cost, err := pol.Propose(Prefix(p, nd.steps), k)
	if err != nil {
		return nil, cost, err
	}
	counts := map[Step]int{}
	var order []Step
	valid := 0
	for _, t := range texts {
		s, ok := parseStep(strings.TrimSpace(strings.TrimRight(t, ",\n")))
		if !ok {
			continue
		}
		pool, rej := next(nd.pool, len(nd.steps), s)
		if rej != nil {
			continue
		}
		steps := append(slices.Clone(nd.steps), s)
		if s.C == p.Target {
			return steps, cost, nil
		}
		if counts[s] == 0 {
			order = append(order, s)
			nd.children = append(nd.children, &child{step: s, n: &node{steps: steps, pool: pool}})
		}
		counts[s]++
		valid++
	}
	if valid == 0 {
		nd.expanded = false // the policy may do better when asked again
		return nil, cost, nil
	}
	for i, s := range order {
		nd.children[i].prior = float64(counts[s]) / float64(valid)
	}
	return nil, cost, nil
}
