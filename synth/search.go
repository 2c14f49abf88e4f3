package synth

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Policy is a model that writes solutions, as the search sees it.
// Complete samples k continuations of prefix, each up to and including a
// newline (or at most MaxSolution bytes), and returns them with the
// model's work in token rows (the prefix's rows, shared by the k, and one
// a sampled token), so that searches are compared at equal compute. The
// Policy draws its own randomness (seeded by its maker), so a search is a
// function of the problem, the options and the Policy's seed.
type Policy interface {
	Complete(prefix string, k int) (texts []string, cost int, err error)
}

// SearchOptions set a search.
type SearchOptions struct {
	// Budget is the model work (token rows) a problem may take.
	Budget int
	// Expand is how many completions a call samples: a node's expansion
	// in the tree search (AlphaZero's priors come from one network call;
	// here from k samples: the prior of a step is the share of the valid
	// samples that begin with it), a batch in best-of-n.
	Expand int
	// CInit and CBase are PUCT's exploration constants (1.25 and 19652,
	// AlphaZero's, when zero).
	CInit, CBase float64
	// Widen is progressive widening: a node visited n times is expanded
	// again (more samples from it, new children) while it has had fewer
	// than Widen·√n expansions (1 when zero; negative: never again).
	Widen float64
	// Format is how the tree search writes the steps of a node for the
	// policy to continue (Plain when zero).
	Format Format
	// Legal makes the tree search expand a node as AlphaZero does: its
	// children are every step the rules allow, their priors the policy's
	// probabilities of writing each (the Policy must be a Scorer), so the
	// search can take a step the policy would rarely sample. Expand and
	// Widen are then unused.
	Legal bool
}

// SearchResult is a search's outcome: a verified solution (nil when none
// was found within the budget), the work spent and the simulations run.
type SearchResult struct {
	Steps       []Step
	Cost        int
	Simulations int
}

// Prefix is the text a model continues after steps have been written
// (Plain): the prompt, and each step after a space, separated by commas,
// with a comma after the last.
func Prefix(p Problem, steps []Step) string { return Plain.Prefix(p, steps) }

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

// BestOfN samples whole solutions from the prompt, o.Expand at a time,
// until one verifies or o.Budget is spent.
func BestOfN(p Problem, pol Policy, o SearchOptions) (SearchResult, error) {
	if o.Expand < 1 || o.Budget < 1 {
		return SearchResult{}, fmt.Errorf("synth: best-of-n of %d samples a call within %d rows", o.Expand, o.Budget)
	}
	var res SearchResult
	for res.Cost < o.Budget {
		texts, cost, err := pol.Complete(p.Prompt(), o.Expand)
		if err != nil {
			return res, err
		}
		if cost <= 0 {
			return res, errors.New("synth: the policy reported no work for its samples")
		}
		res.Cost += cost
		res.Simulations++
		for _, text := range texts {
			if steps, err := Verify(p, text); err == nil {
				res.Steps = steps
				return res, nil
			}
		}
	}
	return res, nil
}

// node is a state of the search: the steps written so far.
type node struct {
	steps      []Step
	pool       []int
	children   []*child
	expanded   bool
	dead       bool // no valid step follows: value 0
	n          int
	w          float64
	expansions int // calls of the policy here
	valid      int // valid samples over them
}

type child struct {
	step  Step
	prior float64
	count int // samples that began with step
	n     *node
}

// MCTS searches for a solution of p as AlphaZero does (PUCT selection,
// expansion by the Policy, backup), with the verifier in place of a game's
// rules. A node is the steps written so far. Expanding it samples o.Expand
// completions from it: one that verifies is a solution, returned at once;
// the others' first steps, where valid, become its children, priors their
// share of the valid samples (a wrong step, which a whole sample reveals
// only at its end, is pruned at once), each child visited once with the
// value of its sample, how near its valid steps came to the target
// (closeness); the node's value is the best of them. Selection descends
// to where samples came nearest, so later samples start from longer valid
// prefixes, sharing their rows; progressive widening (Widen) samples
// again from a node as its visits grow, so the first steps are not only
// those of its first samples. With o.Legal a node is expanded over its
// legal steps instead (see SearchOptions.Legal), and the policy must be
// a Scorer. It returns when a solution is found, the budget is spent, or
// every branch is dead; it fails on a budget below 1, on Expand below 1
// without Legal, on Legal with a policy that cannot score, and on the
// policy's errors.
func MCTS(p Problem, pol Policy, o SearchOptions) (SearchResult, error) {
	sc, scores := pol.(Scorer)
	switch {
	case o.Legal && !scores:
		return SearchResult{}, errors.New("synth: a search over legal steps needs a policy that scores texts")
	case o.Budget < 1 || (o.Expand < 1 && !o.Legal):
		return SearchResult{}, fmt.Errorf("synth: a search of %d samples an expansion within %d rows", o.Expand, o.Budget)
	}
	if o.CInit == 0 {
		o.CInit = 1.25
	}
	if o.CBase == 0 {
		o.CBase = 19652
	}
	if o.Widen == 0 {
		o.Widen = 1
	}
	root := &node{pool: slices.Clone(p.Numbers)}
	var res SearchResult
	for res.Cost < o.Budget && !root.dead {
		res.Simulations++
		path := []*node{root}
		nd := root
		for nd.expanded && !nd.dead && len(nd.children) > 0 && (o.Legal || float64(nd.expansions) >= o.Widen*math.Sqrt(float64(nd.n))) {
			nd = selectChild(nd, o).n
			path = append(path, nd)
		}
		var v float64
		if !nd.dead {
			var solved []Step
			var value float64
			var cost int
			var err error
			if o.Legal {
				solved, value, cost, err = expandLegal(p, sc, nd, o)
			} else {
				solved, value, cost, err = expand(p, pol, nd, o)
			}
			res.Cost += cost
			if err != nil {
				return res, err
			}
			if solved != nil {
				res.Steps = solved
				return res, nil
			}
			v = value
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
func closeness(p Problem, nd *node, steps []Step) float64 {
	pool, best := nd.pool, 0.0
	for k, s := range steps {
		var r *Rejection
		if pool, r = next(pool, len(nd.steps)+k, s); r != nil {
			break
		}
		best = max(best, near(p, s.C))
	}
	return 0.9 * best
}

// near is how near a result r comes to p's target: 1 − |r−T|/T, at
// least 0.
func near(p Problem, r int) float64 {
	return 1 - math.Min(1, math.Abs(float64(r-p.Target))/float64(p.Target))
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

// expand samples o.Expand completions at nd (see MCTS): it returns a solution
// if one verifies, else the node's value, the best closeness of the
// samples. A node with one number left is dead; one whose samples hold no
// valid first step stays a leaf, to be expanded again when the search
// comes back.
func expand(p Problem, pol Policy, nd *node, o SearchOptions) (solved []Step, value float64, cost int, err error) {
	if len(nd.pool) < 2 {
		nd.dead, nd.expanded = true, true
		return nil, 0, 0, nil
	}
	texts, cost, err := pol.Complete(o.Format.Prefix(p, nd.steps), o.Expand)
	if err != nil {
		return nil, 0, cost, err
	}
	nd.expansions++
	byStep := map[Step]*child{}
	for _, ch := range nd.children {
		byStep[ch.step] = ch
	}
	for _, t := range texts {
		steps, rej := ParseSteps(t)
		if rej != nil {
			continue
		}
		first := steps[0]
		pool, r := next(nd.pool, len(nd.steps), first)
		if r != nil {
			continue
		}
		all := append(slices.Clone(nd.steps), steps...)
		if Check(p, all) == nil {
			return all, 1, cost, nil
		}
		v := closeness(p, nd, steps)
		value = max(value, v)
		ch := byStep[first]
		if ch == nil {
			ch = &child{step: first, n: &node{steps: append(slices.Clone(nd.steps), first), pool: pool}}
			byStep[first] = ch
			nd.children = append(nd.children, ch)
		}
		ch.n.n++
		ch.n.w += v
		ch.count++
		nd.valid++
	}
	if nd.valid == 0 {
		return nil, 0, cost, nil
	}
	nd.expanded = true
	for _, ch := range nd.children {
		ch.prior = float64(ch.count) / float64(nd.valid)
	}
	return nil, value, cost, nil
}
