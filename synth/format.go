package synth

import (
	"strconv"
	"strings"
)

// Format is how a solution's text is written. Verify reads every format.
type Format int

const (
	// Plain writes the steps alone: " 50-25=25, 25*7=175".
	Plain Format = iota
	// Worked writes after each step the numbers left to use, in brackets,
	// as a scratchpad: " 50-25=25 [3 7 25], 25*7=175 [3 175]". The
	// verifier checks that a note is a bracketed list of numbers but
	// judges only the steps: the steps are the solution, the note an aid
	// to the writer.
	Worked
)

// String names the format as the command line does.
func (f Format) String() string {
	if f == Worked {
		return "worked"
	}
	return "plain"
}

// Solution writes steps of p in format f, with a newline: for Plain,
// FormatSolution. A Worked note is written while the steps are valid.
func (f Format) Solution(p Problem, steps []Step) string {
	return f.steps(p, steps) + "\n"
}

// Prefix is the text a model continues after steps of p have been
// written in format f: the prompt, and the steps with a comma after the
// last (see the package-level Prefix).
func (f Format) Prefix(p Problem, steps []Step) string {
	if len(steps) == 0 {
		return p.Prompt()
	}
	return p.Prompt() + f.steps(p, steps) + ","
}

// steps writes steps, each after a space, separated by commas.
func (f Format) steps(p Problem, steps []Step) string {
	var b strings.Builder
	pool := p.Numbers
	for i, s := range steps {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte(' ')
		b.WriteString(s.String())
		if f != Worked || pool == nil {
			continue
		}
		var rej *Rejection
		if pool, rej = next(pool, i, s); rej != nil {
			pool = nil // no note from a bad step on
			continue
		}
		b.WriteString(" [")
		for k, n := range pool {
			if k > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(strconv.Itoa(n))
		}
		b.WriteByte(']')
	}
	return b.String()
}

// cutNote splits a step's text from its Worked note, if any: it returns
// the step and whether the note (if present) is well formed, a
// bracketed list of numbers at the end.
func cutNote(f string) (string, bool) {
	i := strings.IndexByte(f, '[')
	if i < 0 {
		return f, !strings.Contains(f, "]")
	}
	note, ok := strings.CutSuffix(strings.TrimSpace(f[i+1:]), "]")
	if !ok || strings.ContainsAny(note, "[]") {
		return f, false
	}
	for _, n := range strings.Fields(note) {
		if _, ok := number(n); !ok {
			return f, false
		}
	}
	return f[:i], true
}
