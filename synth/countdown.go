package synth

import (
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// Difficulty is a problem's size: Numbers given numbers (3 to 6), each in
// 1..Max (2 to 1000).
type Difficulty struct {
	Numbers int `json:"numbers"`
	Max     int `json:"max"`
}

// DefaultDifficulty is four numbers up to 100, as TinyZero's Countdown
// tasks of 3 to 4 numbers.
var DefaultDifficulty = Difficulty{Numbers: 4, Max: 100}

// Validate says what is wrong with d.
func (d Difficulty) Validate() error {
	if d.Numbers < 3 || d.Numbers > 6 || d.Max < 2 || d.Max > 1000 {
		return fmt.Errorf("synth: %d numbers up to %d (3 to 6 numbers, up to 2..1000)", d.Numbers, d.Max)
	}
	return nil
}

// Limits of what a problem or a solution may hold.
const (
	MaxValue    = 1_000_000 // the largest target and intermediate result
	MaxSolution = 512       // bytes of a solution's text
)

// Problem is a Countdown problem: reach Target from Numbers.
type Problem struct {
	Numbers []int `json:"numbers"`
	Target  int   `json:"target"`
}

// Op is an arithmetic operation of a step.
type Op byte

// The operations, as they are written.
const (
	Add Op = '+'
	Sub Op = '-'
	Mul Op = '*'
	Div Op = '/'
)

// Step is one line of a solution: A Op B = C.
type Step struct {
	A, B int
	Op   Op
	C    int
}

// String writes the step as a solution line holds it: "50-25=25".
func (s Step) String() string { return fmt.Sprintf("%d%c%d=%d", s.A, s.Op, s.B, s.C) }

// apply is a op b under the rules (positive integers, exact division, at
// most MaxValue), or an error that says which rule fails.
func apply(a int, op Op, b int) (int, error) {
	switch op {
	case Add:
		if a+b > MaxValue {
			return 0, fmt.Errorf("%d+%d exceeds %d", a, b, MaxValue)
		}
		return a + b, nil
	case Sub:
		if a <= b {
			return 0, fmt.Errorf("%d-%d is not positive", a, b)
		}
		return a - b, nil
	case Mul:
		hi, lo := bits.Mul64(uint64(a), uint64(b))
		if hi != 0 || lo > MaxValue {
			return 0, fmt.Errorf("%d*%d exceeds %d", a, b, MaxValue)
		}
		return int(lo), nil
	case Div:
		if b == 0 || a%b != 0 {
			return 0, fmt.Errorf("%d/%d is not exact", a, b)
		}
		return a / b, nil
	}
	return 0, fmt.Errorf("unknown operation %q", op)
}

// Generate returns problem index of the stream seed at difficulty d, and
// a solution of it: the numbers are drawn, then combined at random by
// valid steps until one is left, which is the target, so every problem
// has a solution that uses all its numbers. The target is at least 10
// and not one of the numbers. It fails only on an invalid difficulty.
func Generate(seed uint64, index int, d Difficulty) (Problem, []Step, error) {
	if err := d.Validate(); err != nil {
		return Problem{}, nil, err
	}
	r := rand.New(rand.NewPCG(seed, uint64(index)))
	for {
		nums := make([]int, d.Numbers)
		for i := range nums {
			nums[i] = 1 + r.IntN(d.Max)
		}
		pool := slices.Clone(nums)
		var steps []Step
		for len(pool) > 1 {
			i := r.IntN(len(pool))
			j := r.IntN(len(pool) - 1)
			if j >= i {
				j++
			}
			a, b := pool[i], pool[j]
			if a < b {
				a, b = b, a
			}
			var ok []Op
			for _, op := range []Op{Add, Sub, Mul, Div} {
				if _, err := apply(a, op, b); err == nil && !(op == Div && b == 1) && !(op == Mul && b == 1) {
					ok = append(ok, op)
				}
			}
			if len(ok) == 0 {
				break
			}
			op := ok[r.IntN(len(ok))]
			c, _ := apply(a, op, b)
			steps = append(steps, Step{A: a, B: b, Op: op, C: c})
			pool = removeTwo(pool, i, j)
			pool = append(pool, c)
		}
		if len(pool) != 1 || pool[0] < 10 || slices.Contains(nums, pool[0]) {
			continue
		}
		return Problem{Numbers: nums, Target: pool[0]}, steps, nil
	}
}

// removeTwo removes the values at indices i and j (distinct) of s.
func removeTwo(s []int, i, j int) []int {
	if i < j {
		i, j = j, i
	}
	s = slices.Delete(s, i, i+1)
	return slices.Delete(s, j, j+1)
}

// Prompt is the text a solution follows: "3 7 25 50 -> 325:".
func (p Problem) Prompt() string {
	var b strings.Builder
	for i, n := range p.Numbers {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.Itoa(n))
	}
	fmt.Fprintf(&b, " -> %d:", p.Target)
	return b.String()
}

// FormatSolution writes steps as a solution's text: " 50-25=25, 25*7=175"
// (each step after a space, separated by commas), and a newline: the
// Plain format.
func FormatSolution(steps []Step) string { return Plain.Solution(Problem{}, steps) }

// ParseProblem reads a prompt as Prompt writes it, with the solution
// after it if any (returned as is). It fails on anything else.
func ParseProblem(line string) (Problem, string, error) {
	head, rest, ok := strings.Cut(line, ":")
	if !ok {
		return Problem{}, "", errors.New("synth: no ':' after the problem")
	}
	left, right, ok := strings.Cut(head, "->")
	if !ok {
		return Problem{}, "", errors.New("synth: no '->' before the target")
	}
	var p Problem
	for _, f := range strings.Fields(left) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > MaxValue {
			return Problem{}, "", fmt.Errorf("synth: number %.20q is not an integer in 1..%d", f, MaxValue)
		}
		p.Numbers = append(p.Numbers, n)
	}
	t, err := strconv.Atoi(strings.TrimSpace(right))
	if err != nil || t < 1 || t > MaxValue {
		return Problem{}, "", fmt.Errorf("synth: target %.20q is not an integer in 1..%d", strings.TrimSpace(right), MaxValue)
	}
	p.Target = t
	if len(p.Numbers) < 2 || len(p.Numbers) > 6 {
		return Problem{}, "", fmt.Errorf("synth: %d numbers (2 to 6)", len(p.Numbers))
	}
	return p, rest, nil
}
