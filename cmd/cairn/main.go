// Command cairn is one binary for community-trained language models: train
// a GPT on this machine, sample from it, benchmark the engine, and check it
// against PyTorch.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// usageError marks bad input: it is reported in one line with exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func badInput(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// failedCheck marks a check that ran and failed (exit status 1).
type failedCheck struct{ msg string }

func (e failedCheck) Error() string { return e.msg }

type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"demo", "DiLoCo on loopback: an aggregator and 4 workers train the default model on the embedded corpus", runDemo},
		{"node", "run a real node: 'node aggregate' or 'node work --join MULTIADDR'", runNode},
		{"experiment", "measured comparisons: 'experiment diloco' (DiLoCo against data-parallel at equal tokens), 'experiment adversaries' (cheating workers caught and slashed), 'experiment synthetic' (self-training on verified Countdown solutions: tree search against best-of-n), ...", runExperiment},
		{"train", "train a model (embedded tiny shakespeare by default)", runTrain},
		{"sample", "generate text from a checkpoint", runSample},
		{"bench", "measure training throughput (flags of the PyTorch anchor)", runBench},
		{"parity", "check the engine against a PyTorch fixture directory", runParity},
		{"chain", "the ledger on CometBFT: 'chain init' a network, 'chain start --home DIR' a validator, 'chain bench', 'chain faults'", runChain},
		{"fingerprint", "prove a model is ours: 'fingerprint embed --ckpt IN --out DIR [--ledger HOST:PORT --data-dir DIR]', 'fingerprint commit' a set on the ledger, 'fingerprint verify --ckpt SUSPECT --fingerprints FILE' (exit 0 it is, 1 it is not)", runFingerprint},
		{"serve", "OpenAI-compatible completions from a model: 'serve --ckpt FILE --keys KEYS.json' (API keys charge ledger accounts; watermarked; signed receipts)", runServe},
		{"tokenizer", "byte-level BPE: 'tokenizer train --data FILE --vocab N --out FILE', 'tokenizer encode --tokenizer FILE FILE' (tiktoken rank files or Hugging Face tokenizer.json)", runTokenizer},
		{"watermark", "'watermark detect --key K FILE': is a text watermarked with key K (exit 0 yes, 1 no)", runWatermark},
		{"ledger", "inspect a node's contribution ledger: 'ledger balances|history|verify --data-dir DIR'", runLedger},
		{"data", "crowdsourced records: 'data collect' runs a collector, 'data submit --to ADDR --file F --licence L --consent' signs and sends a record, 'data export --out F' writes the accepted records as a corpus with its manifest, 'data trace' names the records a worker trained on in a round", runData},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: cairn COMMAND [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nrun 'cairn COMMAND -h' for a command's flags")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line and returns the exit status: 0 on success,
// 1 when a check fails or work fails, 2 on bad input.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(args[1:], stdout, stderr)
		var ue usageError
		var fc failedCheck
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &ue):
			fmt.Fprintf(stderr, "cairn %s: %v\n", c.name, err)
			return 2
		case errors.As(err, &fc):
			fmt.Fprintf(stderr, "cairn %s: %v\n", c.name, err)
			return 1
		default:
			fmt.Fprintf(stderr, "cairn %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "cairn: unknown command %q (run 'cairn help')\n", args[0])
	return 2
}

// helpOut is where each flag set prints its -h text.
var helpOut = map[*flag.FlagSet]io.Writer{}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("cairn "+name, flag.ContinueOnError)
	fs.Usage = func() {}     // -h is answered by parseFlags
	fs.SetOutput(io.Discard) // errors are reported once, by run
	helpOut[fs] = stderr
	return fs
}

// parseFlags parses args, turning flag errors into bad input; stray
// positional arguments are rejected unless allowed.
func parseFlags(fs *flag.FlagSet, args []string, positional int) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			w := helpOut[fs]
			fmt.Fprintf(w, "usage of %s:\n", fs.Name())
			fs.SetOutput(w)
			fs.PrintDefaults()
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > positional {
		return badInput("unexpected argument %q", fs.Arg(positional))
	}
	return nil
}
