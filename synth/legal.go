package synth

import (
	"errors"
	"math"
	"slices"
	"strings"
)

// Scorer is a Policy that can also score given continuations: the log
// probability of each text after prefix, and the model's work in rows (the
// prefix's once, then one a scored byte after the first). The tree search
// with legal steps (SearchOptions.Legal) needs one.
type Scorer interface {
	Policy
	Score(prefix string, texts []string) (logp []float64, cost int, err error)
}

// LegalSteps are the steps the rules allow from pool: each pair of
// numbers, the larger first (as the generator writes them), each
// operation whose result is a positive integer within MaxValue (division
// only when exact), each distinct step once, in a fixed order.
func LegalSteps(pool []int) []Step {
	var out []Step
	seen := map[Step]bool{}
	for i := range pool {
		for j := i + 1; j < len(pool); j++ {
			a, b := pool[i], pool[j]
			if a < b {
				a, b = b, a
			}
			for _, op := range []Op{Add, Sub, Mul, Div} {
				c, err := apply(a, op, b)
				if err != nil {
					continue
				}
				s := Step{A: a, B: b, Op: op, C: c}
				if !seen[s] {
					seen[s] = true
					out = append(out, s)
				}
			}
		}
	}
	return out
}

// stepText is how s reads after the steps written have been written in f:
// " 50-25=25" (Plain), with its note in Worked.
func stepText(f Format, p Problem, written []Step, s Step) string {
	prev := ""
	if len(written) > 0 {
		prev = f.steps(p, written) + ","
	}
	return strings.TrimPrefix(f.steps(p, append(slices.Clone(written), s)), prev)
}

// expandLegal expands nd as AlphaZero does: its children are every legal
// step from its numbers (the rules), their priors the policy's
// probabilities of writing each, normalised over them. A step that
// reaches the target is a solution, returned at once. Otherwise the
// node's value is the prior-weighted closeness of its children's results
// to the target (the model's expectation of how near its next step
// comes), and a child with one number left, not the target, is dead.
func expandLegal(p Problem, sc Scorer, nd *node, o SearchOptions) (solved []Step, value float64, cost int, err error) {
	steps := LegalSteps(nd.pool)
	nd.expanded = true
	if len(steps) == 0 {
		nd.dead = true
		return nil, 0, 0, nil
	}
	texts := make([]string, len(steps))
	for i, s := range steps {
		texts[i] = stepText(o.Format, p, nd.steps, s)
	}
	logp, cost, err := sc.Score(o.Format.Prefix(p, nd.steps), texts)
	if err != nil {
		return nil, 0, cost, err
	}
	if len(logp) != len(steps) {
		return nil, 0, cost, errors.New("synth: the policy scored another number of texts than it was given")
	}
	nd.expansions++
	top := math.Inf(-1)
	for _, l := range logp {
		top = max(top, l)
	}
	var z float64
	prior := make([]float64, len(steps))
	for i, l := range logp {
		prior[i] = math.Exp(l - top)
		z += prior[i]
	}
	for i, s := range steps {
		all := append(slices.Clone(nd.steps), s)
		if s.C == p.Target {
			return all, 1, cost, nil
		}
		pool, _ := next(nd.pool, len(nd.steps), s)
		pr := prior[i] / z
		if math.IsNaN(pr) {
			pr = 1 / float64(len(steps))
		}
		value += pr * 0.9 * near(p, s.C)
		ch := &child{step: s, prior: pr, n: &node{steps: all, pool: pool}}
		if len(pool) < 2 {
			ch.n.dead, ch.n.expanded = true, true
		}
		nd.children = append(nd.children, ch)
	}
	if !slices.ContainsFunc(nd.children, func(c *child) bool { return !c.n.dead }) {
		nd.dead = true
	}
	return nil, value, cost, nil
}

// Uniform is a Scorer that scores every text alike, charging the rows a
// model's Score would take (the prefix's, then a row a byte of each text
// but its last), and samples with Policy: the tree search over legal
// steps with it is led by the rules and its value alone, an ablation that
// shows what the model's priors add.
type Uniform struct{ Policy }

// Score gives every text log probability 0 (equal priors).
func (u Uniform) Score(prefix string, texts []string) ([]float64, int, error) {
	cost := len(prefix)
	for _, t := range texts {
		if t == "" {
			return nil, cost, errors.New("synth: scoring an empty text")
		}
		cost += len(t) - 1
	}
	return make([]float64, len(texts)), cost, nil
}
