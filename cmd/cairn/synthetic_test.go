package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/checkpoint"
)

// The synthetic experiment refuses bad flags with one line and exit 2,
// before any training.
func TestSyntheticExperimentBadInput(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"experiment", "synthetic", "--arms", "search,greedy"}, "--arms: unknown arm \"greedy\""},
		{[]string{"experiment", "synthetic", "--arms", ""}, "--arms: unknown arm \"\""},
		{[]string{"experiment", "synthetic", "--arms", "search,search"}, "given twice"},
		{[]string{"experiment", "synthetic", "--arms", "search,best-of-n,search"}, "given twice"},
		{[]string{"experiment", "synthetic", "--tune-steps", "0"}, "--tune-steps"},
		{[]string{"experiment", "synthetic", "--format", "scratch"}, "--format: unknown format \"scratch\""},
		{[]string{"experiment", "synthetic", "--legal=false", "--uniform-priors"}, "--uniform-priors goes with --legal"},
		{[]string{"experiment", "synthetic", "--out", file}, "--out: "},
		{[]string{"experiment", "synthetic", "--out", file, "--compare", file}, "--out and --compare do not go together"},
	} {
		wantBadInput(t, c.want, c.args...)
	}
}

// TestSyntheticArmsApartCompared: the two arms run apart into one
// directory, then --compare runs the final test on their saved models:
// each model solves what it solved at the end of its own run, and the
// arms are compared. Models from another run are refused.
func TestSyntheticArmsApartCompared(t *testing.T) {
	dir := t.TempDir()
	tiny := []string{"experiment", "synthetic", "--numbers", "3", "--seed-problems", "100", "--seed-steps", "20", "--iterations", "1",
		"--problems", "3", "--budget", "200", "--tune-steps", "3", "--test", "4", "--final-test", "8", "--threads", "1", "--out", dir}
	finalLine := func(out string) string {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "final test, ") {
				return l
			}
		}
		t.Fatalf("no final test in %q", out)
		return ""
	}
	var lines []string
	for _, arm := range []string{"search", "best-of-n"} {
		code, o, e := runCLI(append(tiny, "--arms", arm)...)
		if code != 0 {
			t.Fatalf("--arms %s: exit %d: %s", arm, code, e)
		}
		lines = append(lines, finalLine(o))
	}
	code, o, e := runCLI("experiment", "synthetic", "--numbers", "3", "--final-test", "8", "--threads", "1", "--compare", dir)
	if code != 0 {
		t.Fatalf("--compare: exit %d: %s", code, e)
	}
	// "final test, 8 more held-out problems: seed model a, b; tree search c, d; best-of-n e, f"
	got := finalLine(o)
	search, sampled := lines[0], lines[1]
	if want := search + strings.TrimPrefix(sampled, strings.Split(sampled, "; ")[0]); got != want {
		t.Fatalf("compared: %q\nthe runs apart: %q and %q", got, search, sampled)
	}
	if !strings.Contains(o, "tree search minus best-of-n, paired") {
		t.Fatalf("no paired comparison in %q", o)
	}
	wantBadInput(t, `has seed "1", not this run's "2"`, "experiment", "synthetic", "--numbers", "3", "--seed", "2", "--compare", dir)
	wantBadInput(t, `has numbers "3", not this run's "4"`, "experiment", "synthetic", "--compare", dir)
	wantBadInput(t, "no such file", "experiment", "synthetic", "--compare", filepath.Join(dir, "nothing"))
	// Arms that did not start from the seed model beside them are refused.
	seed := filepath.Join(dir, "seed", checkpoint.ModelFile)
	ck, err := checkpoint.LoadModel(seed)
	if err != nil {
		t.Fatal(err)
	}
	ck.Params[0] += 0.5
	if err := checkpoint.SaveModel(seed, ck.Config, ck.Params, ck.Metadata); err != nil {
		t.Fatal(err)
	}
	wantBadInput(t, "did not start from the seed model beside it", "experiment", "synthetic", "--numbers", "3", "--final-test", "8", "--compare", dir)
}
