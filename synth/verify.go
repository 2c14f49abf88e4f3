package synth

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Fault is why a solution is rejected.
type Fault int

// The faults, from the first the verifier meets.
const (
	Malformed       Fault = 1 + iota // not steps of the form "a+b=c", too long, or none
	Unavailable                      // a step uses a number that is not given or is used up
	InvalidStep                      // a step breaks a rule: a result not a positive integer, or too large
	WrongArithmetic                  // a step's stated result is not its operation's
	WrongTarget                      // the last step does not reach the target
)

var faultNames = [...]string{"", "malformed", "unavailable number", "invalid step", "wrong arithmetic", "wrong target"}

func (f Fault) String() string {
	if f < Malformed || f > WrongTarget {
		return fmt.Sprintf("fault(%d)", int(f))
	}
	return faultNames[f]
}

// Rejection is a solution's rejection: its fault, and where and why in
// words.
type Rejection struct {
	Fault  Fault
	Reason string
}

func (r *Rejection) Error() string { return "synth: " + r.Fault.String() + ": " + r.Reason }

func reject(f Fault, format string, args ...any) *Rejection {
	return &Rejection{Fault: f, Reason: fmt.Sprintf(format, args...)}
}

// ParseSteps reads a solution's text: steps "a op b = c" separated by
// commas or newlines, spaces anywhere, each with a Worked note ("[3 7
// 25]") after it or not, at most MaxSolution bytes. It
// rejects anything else as Malformed.
func ParseSteps(text string) ([]Step, *Rejection) {
	if len(text) > MaxSolution {
		return nil, reject(Malformed, "a solution of %d bytes, more than %d", len(text), MaxSolution)
	}
	fields := strings.FieldsFunc(text, func(r rune) bool { return r == ',' || r == '\n' })
	var steps []Step
	for k, f := range fields {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		s, ok := parseStep(f)
		if !ok {
			return nil, reject(Malformed, "step %d %.40q is not of the form a+b=c", k+1, f)
		}
		steps = append(steps, s)
	}
	if len(steps) == 0 {
		return nil, reject(Malformed, "no steps")
	}
	return steps, nil
}

// parseStep reads "a op b = c", spaces allowed around each part, with
// a Worked note after it or not.
func parseStep(f string) (Step, bool) {
	f, ok := cutNote(f)
	if !ok {
		return Step{}, false
	}
	lhs, rhs, ok := strings.Cut(f, "=")
	if !ok {
		return Step{}, false
	}
	i := strings.IndexAny(lhs, "+-*/")
	if i < 0 {
		return Step{}, false
	}
	a, okA := number(lhs[:i])
	b, okB := number(lhs[i+1:])
	c, okC := number(rhs)
	if !okA || !okB || !okC {
		return Step{}, false
	}
	return Step{A: a, B: b, Op: Op(lhs[i]), C: c}, true
}

// number reads a decimal integer in 0..MaxValue with spaces around it.
func number(s string) (int, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 7 {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n <= MaxValue
}

// Verify checks a solution's text against p: every step's numbers
// available (given, or results of earlier steps, each used once), every
// step valid under the rules and its stated result right, and the last
// result the target. It returns the steps, or a *Rejection that says which
// rule failed and where.
func Verify(p Problem, text string) ([]Step, error) {
	steps, rej := ParseSteps(text)
	if rej != nil {
		return nil, rej
	}
	if err := Check(p, steps); err != nil {
		return nil, err
	}
	return steps, nil
}

// Check is Verify on parsed steps.
func Check(p Problem, steps []Step) error {
	if len(steps) == 0 {
		return reject(Malformed, "no steps")
	}
	if len(steps) > len(p.Numbers)-1 {
		// Each step consumes two numbers and yields one.
		return reject(Unavailable, "%d steps from %d numbers: a step must reuse a number", len(steps), len(p.Numbers))
	}
	pool := slices.Clone(p.Numbers)
	for k, st := range steps {
		var rej *Rejection
		if pool, rej = next(pool, k, st); rej != nil {
			return rej
		}
	}
	if last := steps[len(steps)-1].C; last != p.Target {
		return reject(WrongTarget, "the steps reach %d, not the target %d", last, p.Target)
	}
	return nil
}
