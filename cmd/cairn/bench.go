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
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if c.Threads < 1 {
		return badInput("--threads must be positive, got %d", c.Threads)
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
	fmt.Fprintf(stdout, "tokens/s=%.0f GFLOP/s=%.2f loss %.3f -> %.3f\n", res.TokensPerS, res.GFLOPs, res.FirstLoss, res.LastLoss)
	return nil
}
