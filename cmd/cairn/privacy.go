package main

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/experiment"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/train"
)

// runPrivacyExperiment is 'cairn experiment privacy': the memorisation
// audit with and without differential privacy.
func runPrivacyExperiment(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("experiment privacy", stderr)
	ckpt := fs.String("ckpt", "", "the trained model the contributors fine-tune (default: train one with the nanoGPT recipe for --base-steps)")
	baseSteps := fs.Int("base-steps", 1000, "without --ckpt: training steps of the base model")
	contribs := fs.Int("contributors", 8, "contributors, each fine-tuning on its own private share of the text")
	rounds := fs.Int("rounds", 10, "rounds")
	inner := fs.Int("inner-steps", 50, "inner steps a round")
	lr := fs.Float64("lr", 3e-4, "inner AdamW learning rate")
	repeats := fs.Int("repeats", 20, "copies of the canary in the first contributor's text")
	clip := fs.Float64("clip", 0, "with DP: L2 bound on each contribution (0: the median norm of the first round's contributions without DP)")
	epsList := fs.String("epsilon", "8", "comma-separated total ε of the DP arms")
	delta := fs.Float64("delta", 1e-5, "δ of the DP arms")
	seed := fs.Uint64("seed", 1, "seed of the canaries and the noise")
	threads := fs.Int("threads", 0, "threads (default: all cores)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	var eps []float64
	for _, f := range strings.Split(*epsList, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || !(v > 0) || math.IsInf(v, 0) {
			return badInput("--epsilon: %q is not a positive number", f)
		}
		eps = append(eps, v)
	}
	if *contribs < 3 || *rounds < 1 || *inner < 1 || !(*lr > 0) || *repeats < 1 || *clip < 0 || !(*delta > 0 && *delta < 1) || *baseSteps < 1 {
		return badInput("--contributors at least 3, --rounds, --inner-steps, --repeats and --base-steps at least 1, --lr positive, --clip not negative, --delta in (0, 1)")
	}
	text := corpus.TinyShakespeare()
	var base *gpt.Model
	var pool *kernels.Pool
	if *ckpt != "" {
		m, p, err := loadModel(*ckpt, *threads)
		if err != nil {
			return err
		}
		base, pool = m, p
	} else {
		pool = kernels.NewPool(*threads)
		o := train.NanoGPTCPU()
		o.Steps, o.DecaySteps = *baseSteps, *baseSteps
		tr, val := corpus.Split(text, 0.9)
		t, err := train.New(o, tr, val, pool)
		if err != nil {
			pool.Close()
			return err
		}
		fmt.Fprintf(stdout, "training the base model: %d steps of the nanoGPT recipe\n", *baseSteps)
		for range *baseSteps {
			if _, err := t.TrainStep(); err != nil {
				pool.Close()
				return err
			}
		}
		base = t.Model
	}
	defer pool.Close()
	rep, err := experiment.Privacy(experiment.PrivacyOptions{Base: base, Text: text, Contribs: *contribs, Rounds: *rounds, Inner: *inner, LR: *lr,
		Repeats: *repeats, Clip: *clip, Epsilons: eps, Delta: *delta, Seed: *seed, Pool: pool,
		Log: func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\ncanary %q planted %d times in contributor 1's text; control: the mean over %d canaries never planted; exposure in bits of log2(10^6) = %.1f\n", rep.Canary, *repeats, len(rep.Controls), math.Log2(1e6))
	tw := tabwriter.NewWriter(stdout, 2, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "arm\tε (δ)\tnoise z\tclip\tval loss\tvs no DP\tcanary exposure\tcontrol exposure")
	fmt.Fprintf(tw, "base model\t\t\t\t%.4f\t\t%.1f\t%.1f\n", rep.BaseLoss, rep.BaseCanary, rep.BaseControl)
	noDP := rep.Arms[0].ValLoss
	for _, a := range rep.Arms {
		e, z, c := "-", "-", "-"
		if a.Epsilon > 0 {
			e, z, c = fmt.Sprintf("%g (%g)", a.Epsilon, *delta), fmt.Sprintf("%.3f", a.Noise), fmt.Sprintf("%.3g", a.Clip)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.4f\t%+.4f\t%.1f\t%.1f\n", a.Name, e, z, c, a.ValLoss, a.ValLoss-noDP, a.CanaryExposure, a.ControlExposure)
	}
	return tw.Flush()
}
