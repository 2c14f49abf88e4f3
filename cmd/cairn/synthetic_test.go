package main

import (
	"os"
	"path/filepath"
	"testing"
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
		{[]string{"experiment", "synthetic", "--out", file}, "--out: "},
	} {
		wantBadInput(t, c.want, c.args...)
	}
}
