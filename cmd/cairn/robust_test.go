package main

import (
	"flag"
	"io"
	"testing"

	"github.com/cairnlabs/cairn/diloco"
)

// TestRobustFlags: the aggregation rule's flags keep a run's config at its
// zero (default) Robust unless they change it; --trim 0 turns trimming off.
func TestRobustFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want diloco.Robust
	}{
		{nil, diloco.Robust{}},
		{[]string{"--clip", "2", "--trim", "0.2"}, diloco.Robust{}},
		{[]string{"--clip", "3"}, diloco.Robust{ClipMultiple: 3}},
		{[]string{"--trim", "0"}, diloco.Robust{Trim: -1}},
		{[]string{"--trim", "0.3"}, diloco.Robust{Trim: 0.3}},
	} {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		r := bindRun(fs, diloco.DefaultConfig())
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		if _, err := r.load(); err != nil {
			t.Fatal(err)
		}
		if r.cfg.Robust != c.want {
			t.Errorf("%v: %+v, want %+v", c.args, r.cfg.Robust, c.want)
		}
	}
}
