package main

import (
	"strings"
	"testing"
)

// The synthetic experiment refuses bad flags with one line and exit 2,
// before any training.
func TestSyntheticExperimentBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"experiment", "synthetic", "--arms", "search,greedy"}, "--arms: unknown arm \"greedy\""},
		{[]string{"experiment", "synthetic", "--arms", ""}, "--arms: unknown arm \"\""},
		{[]string{"experiment", "synthetic", "--arms", "search,search"}, "given twice"},
		{[]string{"experiment", "synthetic", "--arms", "search,best-of-n,search"}, "given twice"},
		{[]string{"experiment", "synthetic", "--tune-steps", "0"}, "--tune-steps"},
	} {
		code, o, e := runCLI(c.args...)
		if code != 2 || strings.Count(e, "\n") != 1 || !strings.Contains(e, c.want) || o != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and one line containing %q", c.args, code, o, e, c.want)
		}
	}
}
