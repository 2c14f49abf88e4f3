package synth

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestGenerate(t *testing.T) {
	for _, d := range []Difficulty{{3, 10}, DefaultDifficulty, {6, 100}, {5, 1000}} {
		seen := map[string]bool{}
		for i := range 300 {
			p, steps, err := Generate(7, i, d)
			if err != nil {
				t.Fatal(err)
			}
			q, steps2, _ := Generate(7, i, d)
			if q.Prompt() != p.Prompt() || FormatSolution(steps) != FormatSolution(steps2) {
				t.Fatalf("%+v index %d: not deterministic", d, i)
			}
			if len(p.Numbers) != d.Numbers || p.Target < 10 || p.Target > MaxValue {
				t.Fatalf("%+v: problem %+v", d, p)
			}
			for _, n := range p.Numbers {
				if n < 1 || n > d.Max || n == p.Target {
					t.Fatalf("%+v: problem %+v", d, p)
				}
			}
			if _, err := Verify(p, FormatSolution(steps)); err != nil || len(steps) != d.Numbers-1 {
				t.Fatalf("%+v: the generator's own solution %q of %s: %v", d, FormatSolution(steps), p.Prompt(), err)
			}
			seen[p.Prompt()] = true
		}
		if len(seen) < 290 {
			t.Errorf("%+v: only %d distinct problems of 300", d, len(seen))
		}
	}
	if _, _, err := Generate(1, 0, Difficulty{Numbers: 7, Max: 100}); err == nil {
		t.Error("7 numbers accepted")
	}
}

// TestVerifierRejectsCorruptions is the verifier's target: over 2,000
// generated problems, every correct solution is accepted and every
// corruption is rejected for its fault: a wrong result, a wrong target,
// a number used twice or not given, a broken rule, malformed text.
func TestVerifierRejectsCorruptions(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	malformed := []string{"", "\n", "50-25", "50-25=", "=25", "a+b=c", "5 0-25=25", "50--25=25", "50+25=75=75",
		"50 % 25 = 2", "9999999+1=10000000", "-5+3=-2", "50-25=25;", strings.Repeat("1+1=2, ", 100),
		"50-25=25 [3 7", "50-25=25 [3 x]", "50-25=25 3]", "50-25=25 [3]]", "50-25=25 [3] 4", "50-25=25 [[3]"}
	counts := map[Fault]int{}
	for i := range 2000 {
		d := Difficulty{Numbers: 3 + i%4, Max: []int{10, 100, 1000}[i%3]}
		p, steps, err := Generate(uint64(i), i, d)
		if err != nil {
			t.Fatal(err)
		}
		good := FormatSolution(steps)
		if _, err := Verify(p, good); err != nil {
			t.Fatalf("%s%s rejected: %v", p.Prompt(), good, err)
		}
		// The Worked format, and its notes, are read; the notes are not judged.
		if worked := Worked.Solution(p, steps); !strings.Contains(worked, "]") {
			t.Fatalf("%s%q: no notes", p.Prompt(), worked)
		} else if got, err := Verify(p, worked); err != nil || FormatSolution(got) != good {
			t.Fatalf("%s%s rejected or misread: %v", p.Prompt(), worked, err)
		} else if _, err := Verify(p, strings.ReplaceAll(worked, "[", "[999 ")); err != nil {
			t.Fatalf("%s%s: a wrong note rejected: %v", p.Prompt(), worked, err)
		}
		// Spaces and newlines between steps are fine.
		if _, err := Verify(p, strings.ReplaceAll(good, ", ", "\n  ")); err != nil {
			t.Fatalf("%s with newlines rejected: %v", good, err)
		}
		expect := func(what string, f Fault, text string, q Problem) {
			t.Helper()
			_, err := Verify(q, text)
			var rej *Rejection
			if !errors.As(err, &rej) || rej.Fault != f {
				t.Fatalf("%s: %s%q: %v, want %v", what, q.Prompt(), text, err, f)
			}
			counts[f]++
		}
		// Wrong arithmetic: the last step's result off by 1..9.
		bad := append([]Step(nil), steps...)
		bad[len(bad)-1].C += 1 + r.IntN(9)
		expect("wrong result", WrongArithmetic, FormatSolution(bad), p)
		expect("wrong result, worked", WrongArithmetic, Worked.Solution(p, bad), p)
		// Wrong target: the same steps for another target.
		q := p
		q.Target++
		expect("wrong target", WrongTarget, good, q)
		// A number used twice: the first step again.
		expect("reused", Unavailable, FormatSolution(append([]Step{steps[0]}, steps...)), p)
		expect("reused, worked", Unavailable, Worked.Solution(p, append([]Step{steps[0]}, steps...)), p)
		// A number not given.
		bad = append([]Step(nil), steps...)
		bad[0].A = p.Target + 1 + r.IntN(1000)
		for slices.Contains(p.Numbers, bad[0].A) {
			bad[0].A++
		}
		expect("not given", Unavailable, FormatSolution(bad), p)
		// A broken rule: subtraction to a non-positive result.
		bad = append([]Step(nil), steps...)
		bad[0] = Step{A: bad[0].B, B: bad[0].A, Op: Sub, C: 0}
		if bad[0].A <= bad[0].B {
			expect("non-positive", InvalidStep, FormatSolution(bad), p)
		}
		// Malformed text.
		expect("malformed", Malformed, malformed[i%len(malformed)], p)
	}
	for f := Malformed; f <= WrongTarget; f++ {
		if counts[f] == 0 {
			t.Errorf("no corruption rejected as %v", f)
		}
	}
}

func TestSolve(t *testing.T) {
	for i := range 200 {
		p, _, _ := Generate(3, i, Difficulty{Numbers: 3 + i%4, Max: 100})
		steps, ok := Solve(p)
		if !ok {
			t.Fatalf("%s: no solution found, though the generator made one", p.Prompt())
		}
		if err := Check(p, steps); err != nil {
			t.Fatalf("%s: the solver's %s: %v", p.Prompt(), FormatSolution(steps), err)
		}
	}
	if _, ok := Solve(Problem{Numbers: []int{1, 1, 1}, Target: 100}); ok {
		t.Error("1 1 1 -> 100 solved")
	}
	if steps, ok := Solve(Problem{Numbers: []int{3, 7, 25, 50}, Target: 325}); !ok || Check(Problem{Numbers: []int{3, 7, 25, 50}, Target: 325}, steps) != nil {
		t.Errorf("3 7 25 50 -> 325: %v %v", steps, ok)
	}
}

func TestParseProblem(t *testing.T) {
	p, _, _ := Generate(9, 1, DefaultDifficulty)
	q, rest, err := ParseProblem(p.Prompt() + " 1+1=2\n")
	if err != nil || q.Prompt() != p.Prompt() || rest != " 1+1=2\n" {
		t.Fatalf("%q: %+v %q %v", p.Prompt(), q, rest, err)
	}
	for _, bad := range []string{"", "1 2 3", "1 2 3 -> 6", "1 2 x -> 6:", "1 2 3 -> 0:", "1 -> 6:", "1 2 3 4 5 6 7 -> 6:", "1 2 3 -> 99999999:"} {
		if _, _, err := ParseProblem(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzVerify: any text against a problem is accepted or rejected with a
// fault and a reason, never a panic; an accepted solution's steps check,
// and their formatting in either format verifies again.
func FuzzVerify(f *testing.F) {
	p, steps, _ := Generate(1, 1, DefaultDifficulty)
	f.Add(p.Prompt(), FormatSolution(steps))
	f.Add(p.Prompt(), " 1+1=2")
	f.Add("3 7 25 50 -> 325:", " 50-25=25, 25*7=175, 175+3=178")
	f.Add("1 1 -> 2:", "1+1=2\n")
	f.Add(p.Prompt(), Worked.Solution(p, steps))
	f.Add("3 7 25 50 -> 325:", " 50*7=350 [3 25 350], 350-25=325 [3 325]")
	f.Fuzz(func(t *testing.T, prompt, text string) {
		p, _, err := ParseProblem(prompt)
		if err != nil {
			return
		}
		steps, err := Verify(p, text)
		if err != nil {
			var rej *Rejection
			if !errors.As(err, &rej) || rej.Fault < Malformed || rej.Fault > WrongTarget || rej.Reason == "" {
				t.Fatalf("%q: error %v is not a rejection with a reason", text, err)
			}
			return
		}
		if steps[len(steps)-1].C != p.Target {
			t.Fatalf("%q accepted without reaching %d", text, p.Target)
		}
		for _, f := range []Format{Plain, Worked} {
			if _, err := Verify(p, f.Solution(p, steps)); err != nil {
				t.Fatalf("%q accepted, its %s formatting %q not: %v", text, f, f.Solution(p, steps), err)
			}
		}
	})
}

func ExampleVerify() {
	p := Problem{Numbers: []int{3, 7, 25, 50}, Target: 325}
	_, err := Verify(p, " 50-25=25, 25*7=175, 175+3=178")
	fmt.Println(err)
	_, err = Verify(p, " 50+25=75, 75-3=72")
	fmt.Println(err)
	steps, err := Verify(p, " 50*7=350, 350-25=325")
	fmt.Println(len(steps), err)
	// Output:
	// synth: wrong target: the steps reach 178, not the target 325
	// synth: wrong target: the steps reach 72, not the target 325
	// 2 <nil>
}

func TestDeadEnd(t *testing.T) {
	p := Problem{Numbers: []int{3, 7, 25, 50}, Target: 325}
	for _, c := range []struct {
		text string
		want int
	}{
		{" 50*7=350, 350-25=325", -1},           // solved
		{" 50*7=350, 350-25=300", -1},           // a slip while a solution was possible
		{" 50*7=350, 350+25=375, 375-3=325", 1}, // 375 and 3 cannot make 325
		{" 3+7=10, 10*25=250, 250+50=325", 0},   // 10, 25 and 50 cannot make 325
		{" 3*7=21, 50-21=29, 29*25=325", 0},     // nor can 21, 25 and 50
		{" 99+1=100", -1},                       // not valid: nothing to judge
	} {
		steps, rej := ParseSteps(c.text)
		if rej != nil {
			t.Fatal(rej)
		}
		if got := DeadEnd(p, steps); got != c.want {
			t.Errorf("%s: dead end at %d, want %d", c.text, got, c.want)
		}
	}
}
