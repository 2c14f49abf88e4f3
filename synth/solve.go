package synth

import (
	"slices"
	"strconv"
	"strings"
)

// Solve finds a solution of p by exhaustive search (every pair of
// available numbers, every valid operation, depth first, the states
// already found dead remembered), or reports that there is none. It
// returns the first solution it meets in a fixed order, so the answer is
// a function of p.
func Solve(p Problem) ([]Step, bool) {
	if slices.Contains(p.Numbers, p.Target) {
		return nil, false // a solution has at least one step
	}
	dead := map[string]bool{}
	var path []Step
	var dfs func(pool []int) bool
	dfs = func(pool []int) bool {
		key := poolKey(pool)
		if dead[key] {
			return false
		}
		for i := range pool {
			for j := range pool {
				if i == j {
					continue
				}
				a, b := pool[i], pool[j]
				for _, op := range []Op{Add, Sub, Mul, Div} {
					if (op == Add || op == Mul) && i > j {
						continue // commutative: one order is enough
					}
					c, err := apply(a, op, b)
					if err != nil {
						continue
					}
					path = append(path, Step{A: a, B: b, Op: op, C: c})
					if c == p.Target {
						return true
					}
					next := append(removeTwo(slices.Clone(pool), i, j), c)
					if len(next) > 1 && dfs(next) {
						return true
					}
					path = path[:len(path)-1]
				}
			}
		}
		dead[key] = true
		return false
	}
	if dfs(slices.Clone(p.Numbers)) {
		return path, true
	}
	return nil, false
}

// poolKey names a multiset of numbers.
func poolKey(pool []int) string {
	s := slices.Clone(pool)
	slices.Sort(s)
	var b strings.Builder
	for _, n := range s {
		b.WriteString(strconv.Itoa(n))
		b.WriteByte(' ')
	}
	return b.String()
}

// DeadEnd is where steps (read as far as they are valid) left the target
// out of reach: the index of the first valid step after which no
// solution can follow (its result not the target, and Solve finding none
// from what is left), or -1 when every valid step kept a solution
// possible. It tells a solver that planned wrong from one that planned
// right and then slipped.
func DeadEnd(p Problem, steps []Step) int {
	pool := slices.Clone(p.Numbers)
	for k, s := range steps {
		var rej *Rejection
		if pool, rej = next(pool, k, s); rej != nil {
			return -1
		}
		if s.C == p.Target {
			return -1
		}
		if _, ok := Solve(Problem{Numbers: pool, Target: p.Target}); !ok {
			return k
		}
	}
	return -1
}
