package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/parity"
)

func runParity(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("parity", stderr)
	threads := fs.Int("threads", 0, "threads (default: all cores)")
	if err := parseFlags(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return badInput("usage: cairn parity DIR (a directory with model.safetensors and case.safetensors)")
	}
	pool := kernels.NewPool(*threads)
	defer pool.Close()
	rep, err := parity.Run(fs.Arg(0), pool)
	if err != nil {
		return badInput("%v", err)
	}
	c := rep.Config
	fmt.Fprintf(stdout, "fixture %s: d %d, %d layers, %d heads, ctx %d, batch %d×%d; kernel %s\n",
		fs.Arg(0), c.NEmbd, c.NLayer, c.NHead, c.BlockSize, rep.B, rep.T, kernels.Impl())
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "check\tmax abs err\trel err\ttolerance\t")
	failed := 0
	for _, ch := range rep.Checks {
		verdict := "ok"
		if ch.Info {
			verdict = "info"
		} else if !ch.OK() {
			verdict = "FAIL"
			failed++
		}
		fmt.Fprintf(tw, "%s\t%.3g\t%.3g\t%.0e\t%s %s\n", ch.Name, ch.MaxAbs, ch.Rel, ch.Tol, verdict, ch.Detail)
	}
	tw.Flush()
	if failed > 0 {
		return failedCheck{fmt.Sprintf("%d of %d checks past tolerance", failed, len(rep.Checks))}
	}
	fmt.Fprintf(stdout, "parity holds: %d checks\n", len(rep.Checks))
	return nil
}
