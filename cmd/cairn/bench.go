package main

import (
	"fmt"
	"io"
	"runtime"

	"github.com/cairnlabs/cairn/bench"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/kernels"
)

func runBench(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", stderr)
	c := bench.Config{}
	fs.IntVar(&c.D, "d", 128, "model width")
	fs.IntVar(&c.Layers, "layers", 4, "transformer blocks")
	fs.IntVar(&c.Heads, "heads", 4, "attention heads")
	fs.IntVar(&c.Ctx, "ctx", 128, "context length")
	fs.IntVar(&c.Batch, "batch", 16, "sequences per step")
	fs.IntVar(&c.Steps, "steps", 50, "timed steps (after 5 warm-up steps)")
	fs.IntVar(&c.Threads, "threads", 2, "threads")
	text := fs.String("text", "", "text file (default: the embedded tiny shakespeare)")
	kernel := kernelFlag(fs)
	profile := fs.Bool("profile", false, "after the throughput run, profile the same steps: time and GFLOP/s per kind of operation against this machine's SGEMM peak")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if c.Threads < 1 {
		return badInput("--threads must be positive, got %d", c.Threads)
	}
	if err := selectKernel(*kernel); err != nil {
		return err
	}
	data, err := corpus.Load(*text)
	if err != nil {
		return badInput("%v", err)
	}
	if runtime.GOMAXPROCS(0) < c.Threads {
		runtime.GOMAXPROCS(c.Threads)
	}
	pool := kernels.NewPool(c.Threads)
	defer pool.Close()
	p := newProgress(stderr, c.Steps+bench.Warmup, "bench")
	if p.bar == nil {
		p.out = io.Discard
	}
	res, err := bench.Run(c, data, pool, func(step int, loss float32) {
		p.update(step+1, fmt.Sprintf("loss %.3f", loss))
	})
	p.finish()
	if err != nil {
		return badInput("%v", err)
	}
	fmt.Fprintf(stdout, "cairn %s threads=%d params=%d d=%d L=%d ctx=%d batch=%d kernel=%s peak_rss_mb=%.0f\n",
		runtime.Version(), c.Threads, res.Params, c.D, c.Layers, c.Ctx, c.Batch, kernels.Impl(), peakRSSMB())
	if *profile {
		c.Profile = true
		prof, err := bench.Run(c, data, pool, nil)
		if err != nil {
			return err
		}
		printProfile(stdout, prof, c.Steps, bench.SgemmPeak(pool, 1024, 5))
	}
	fmt.Fprintf(stdout, "tokens/s=%.0f GFLOP/s=%.2f loss %.3f -> %.3f\n", res.TokensPerS, res.GFLOPs, res.FirstLoss, res.LastLoss)
	return nil
}

// printProfile prints where a training step's time goes, per kind of
// operation, against the machine's SGEMM rate.
func printProfile(w io.Writer, r bench.Result, steps int, peak float64) {
	step := r.Seconds / float64(steps)
	what := "SGEMM 1024³ on this pool"
	if kernels.Impl() == kernels.AMX {
		what = "a 1024³ product on this pool (bfloat16 on AMX)"
	}
	fmt.Fprintf(w, "profile of %d training steps (%.2f ms each with timing on); %s: %.1f GFLOP/s\n", steps, 1e3*step, what, peak)
	fmt.Fprintf(w, "%-28s %-14s %6s %9s %7s %9s %8s\n", "op", "shape", "calls", "ms/step", "share", "GFLOP/s", "of peak")
	var timed float64
	for _, op := range r.Ops {
		timed += op.Seconds
		rate, ofPeak := "", ""
		if g := op.GFLOPs(); g > 0 {
			rate, ofPeak = fmt.Sprintf("%.1f", g), fmt.Sprintf("%.0f%%", 100*g/peak)
		}
		fmt.Fprintf(w, "%-28s %-14s %6d %9.3f %6.1f%% %9s %8s\n", op.Name, op.Shape, op.Calls/steps,
			1e3*op.Seconds/float64(steps), 100*op.Seconds/r.Seconds, rate, ofPeak)
	}
	other := r.Seconds - timed
	fmt.Fprintf(w, "%-28s %-14s %6s %9.3f %6.1f%%\n", "(outside the ops: batches, loop)", "", "", 1e3*other/float64(steps), 100*other/r.Seconds)
}
