package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/experiment"
)

// runEfficiencyExperiment is 'cairn experiment efficiency': the dense GPT,
// the dense Llama block, a mixture of experts and latent attention at
// equal training FLOPs.
func runEfficiencyExperiment(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("experiment efficiency", stderr)
	steps := fs.Int("steps", 2000, "the dense GPT's training steps (the nanoGPT CPU recipe's); the others train for the same FLOPs")
	data := fs.String("data", "", "the text (default: the embedded tiny shakespeare); the first 90% trains, the rest validates")
	threads := fs.Int("threads", 0, "threads (default: all cores)")
	tok := bindTokenizer(fs)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *steps < 1 {
		return badInput("--steps must be positive, got %d", *steps)
	}
	text, err := corpus.Load(*data)
	if err != nil {
		return badInput("%v", err)
	}
	tk, err := tok.load()
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	p := newProgress(stderr, *steps, "efficiency")
	last := ""
	rows, err := experiment.Efficiency(ctx, experiment.EfficiencyOptions{Text: text, Tokenizer: tk, Steps: *steps, Threads: *threads,
		Progress: func(name string, step, n int) {
			if name != last {
				last = name
				p.log("training %s (%d steps)", name, n)
			}
			if p.bar != nil && step%20 == 0 {
				p.update(min(step, *steps), name)
			}
		}})
	p.finish()
	if err != nil {
		return err
	}
	vocab := "bytes"
	if tk != nil {
		vocab = fmt.Sprintf("a BPE vocabulary of %d", tk.Vocab())
	}
	fmt.Fprintf(stdout, "\nequal training FLOPs (the dense GPT's %d steps), same data stream, %s; d128, 4 layers, 4 heads, ctx 64, batch 12\n", *steps, vocab)
	w := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "model\tparams\tMFLOPs/token\tsteps\tval loss\tbits/byte\ttokens/s\tKV cache B/token")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%d\t%.2f\t%d\t%.4f\t%.4f\t%.0f\t%d\n", r.Name, r.Params, r.FLOPsPerToken/1e6, r.Steps, r.ValLoss, r.BitsPerByte, r.TokensPerSec, r.KVBytes)
	}
	return w.Flush()
}
