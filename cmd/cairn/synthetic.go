package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/cairnlabs/cairn/checkpoint"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/experiment"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/synth"
)

// runSyntheticExperiment is 'cairn experiment synthetic': a model
// improving itself on verified Countdown solutions found by tree search,
// against best-of-n sampling at equal generation compute.
func runSyntheticExperiment(args []string, stdout, stderr io.Writer) error {
	d := experiment.DefaultSyntheticOptions()
	fs := newFlags("experiment synthetic", stderr)
	fs.IntVar(&d.Difficulty.Numbers, "numbers", d.Difficulty.Numbers, "given numbers a problem (3 to 6)")
	fs.IntVar(&d.Difficulty.Max, "max", d.Difficulty.Max, "largest given number (2 to 1000)")
	fs.IntVar(&d.SeedProblems, "seed-problems", d.SeedProblems, "problems with the generator's solutions the seed model trains on")
	fs.IntVar(&d.SeedSteps, "seed-steps", d.SeedSteps, "training steps of the seed model")
	fs.IntVar(&d.Iterations, "iterations", d.Iterations, "rounds of generate, verify, train")
	fs.IntVar(&d.Problems, "problems", d.Problems, "new problems an iteration")
	fs.IntVar(&d.Budget, "budget", d.Budget, "model rows (tokens run) a problem may take to generate, for either arm")
	fs.IntVar(&d.Expand, "expand", d.Expand, "tree search: next steps sampled an expansion")
	fs.BoolVar(&d.Legal, "legal", d.Legal, "tree search: expand a node over every step the rules allow, the model's probabilities of writing them its priors (AlphaZero's expansion); --legal=false expands over the first steps of --expand samples")
	uniform := fs.Bool("uniform-priors", false, "with --legal: give every legal step the same prior (an ablation: the search led by the rules alone, charged the model's rows)")
	fs.IntVar(&d.TuneSteps, "tune-steps", d.TuneSteps, "fine-tuning steps an iteration")
	fs.IntVar(&d.Test, "test", d.Test, "held-out problems, solved greedily")
	fs.IntVar(&d.FinalTest, "final-test", d.FinalTest, "more held-out problems on which the arms' last models are compared problem by problem at the end (0: none)")
	fs.Float64Var(&d.LR, "lr", d.LR, "peak learning rate of the seed model")
	fs.Float64Var(&d.TuneLR, "tune-lr", d.TuneLR, "learning rate of each iteration's fine-tuning")
	fs.BoolVar(&d.TuneDecay, "tune-decay", d.TuneDecay, "decay each iteration's learning rate to a tenth of --tune-lr (cosine); --tune-decay=false keeps it constant")
	fs.Float64Var(&d.Temperature, "temperature", d.Temperature, "sampling temperature of generation")
	fs.Uint64Var(&d.Seed, "seed", d.Seed, "seed of the problems, the model and the sampling")
	format := fs.String("format", "plain", "how solutions are written: plain (\" 50-25=25, 25*7=175\") or worked (each step followed by the numbers left, \" 50-25=25 [3 7 25], 25*7=175 [3 175]\")")
	arms := fs.String("arms", "search,best-of-n", "the arms to run, comma-separated: search (tree search) and best-of-n; one alone takes half the time and is not compared")
	out := fs.String("out", "", "directory to save the seed model and each arm's last model in (seed/, search/, best-of-n/), for 'cairn sample' or another look")
	compare := fs.String("compare", "", "directory saved by --out (the arms may be run apart, with --arms, into the same directory): run only the final comparison of its seed/, search/ and best-of-n/ models, with the run's --seed, --numbers, --max and --final-test")
	threads := fs.Int("threads", 0, "threads (default: all cores)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if err := d.Difficulty.Validate(); err != nil {
		return badInput("%v", err)
	}
	if d.SeedProblems < 1 || d.SeedSteps < 1 || d.Iterations < 1 || d.Problems < 1 || d.Budget < 1 || d.Expand < 1 || d.TuneSteps < 1 || d.Test < 1 || d.FinalTest < 0 || !(d.LR > 0) || !(d.TuneLR > 0) || d.Temperature < 0 {
		return badInput("--seed-problems, --seed-steps, --iterations, --problems, --budget, --expand, --tune-steps and --test at least 1, --final-test not negative, --lr and --tune-lr positive, --temperature not negative")
	}
	switch *format {
	case "plain":
		d.Format = synth.Plain
	case "worked":
		d.Format = synth.Worked
	default:
		return badInput("--format: unknown format %q (want plain or worked)", *format)
	}
	d.Arms = nil
	for _, a := range strings.Split(*arms, ",") {
		switch a = strings.TrimSpace(a); a {
		case "search":
			d.Arms = append(d.Arms, experiment.ArmSearch)
		case "best-of-n":
			d.Arms = append(d.Arms, experiment.ArmSampled)
		default:
			return badInput("--arms: unknown arm %q (want search, best-of-n or both, comma-separated)", a)
		}
		if slices.Index(d.Arms, d.Arms[len(d.Arms)-1]) < len(d.Arms)-1 {
			return badInput("--arms: %s given twice", a)
		}
	}
	if *uniform && !d.Legal {
		return badInput("--uniform-priors goes with --legal")
	}
	d.UniformPriors = *uniform
	if *out != "" && *compare != "" {
		return badInput("--out and --compare do not go together: --compare runs no training")
	}
	if *out != "" {
		if err := os.MkdirAll(*out, 0o755); err != nil { // before the run, not after it
			return badInput("--out: %v", err)
		}
	}
	d.Pool = kernels.NewPool(*threads)
	defer d.Pool.Close()
	if *compare != "" {
		return compareSynthetic(*compare, d, stdout)
	}
	d.Log = func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }
	rep, err := experiment.Synthetic(d)
	if err != nil {
		return err
	}
	printSyntheticReport(stdout, d, rep)
	if *out == "" {
		return nil
	}
	seedHash := diloco.HashWeights(0, rep.Models[0].Params).String()
	for i, name := range []string{"seed", "search", "best-of-n"} {
		m := rep.Models[i]
		if m == nil {
			continue
		}
		dir := filepath.Join(*out, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		meta := syntheticMeta(d)
		meta["model"] = name
		meta["seed-model"] = seedHash
		if name == "search" {
			meta["expansion"] = map[bool]string{false: "sampled steps", true: "legal steps"}[d.Legal]
			if d.UniformPriors {
				meta["expansion"] += ", uniform priors"
			}
		}
		if err := checkpoint.SaveModel(filepath.Join(dir, checkpoint.ModelFile), m.Config, m.Params, meta); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s model saved in %s\n", name, dir)
	}
	return nil
}

// printSyntheticReport prints the experiment's curves, its gains over the
// seed model and, with both arms, their paired comparison.
func printSyntheticReport(stdout io.Writer, d experiment.SyntheticOptions, rep *experiment.SyntheticReport) {
	type arm struct {
		name  string
		curve []experiment.SyntheticArm
	}
	var ran []arm
	for _, a := range []arm{{"tree search", rep.Search}, {"best-of-n", rep.Sampled}} {
		if len(a.curve) > 0 {
			ran = append(ran, a)
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "\niteration")
	for _, a := range ran {
		fmt.Fprintf(tw, "\t%s: solved\t%s: held-out greedy, pass@8", a.name, a.name)
	}
	fmt.Fprint(tw, "\n0 (seed)")
	for range ran {
		fmt.Fprintf(tw, "\t\t%.1f%%, %.1f%%", 100*rep.SeedRate, 100*rep.SeedPassAt8)
	}
	fmt.Fprintln(tw)
	for i := range d.Iterations {
		fmt.Fprintf(tw, "%d", i+1)
		for _, a := range ran {
			s := a.curve[i]
			fmt.Fprintf(tw, "\t%d/%d\t%.1f%%, %.1f%%", s.Solved, d.Problems, 100*s.SolveRate, 100*s.PassAt8)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	var gains []string
	for _, a := range ran {
		var rows int64
		for _, s := range a.curve {
			rows += s.Rows
		}
		s := a.curve[len(a.curve)-1]
		gains = append(gains, fmt.Sprintf("%s %+.1f greedy, %+.1f pass@8 in %d model rows", a.name, 100*(s.SolveRate-rep.SeedRate), 100*(s.PassAt8-rep.SeedPassAt8), rows))
	}
	fmt.Fprintf(stdout, "\nover the seed model (target +20 points): %s\n", strings.Join(gains, "; "))
	if rep.Final != nil {
		printSyntheticFinal(stdout, rep.Final)
	}
}

// printSyntheticFinal prints the final test: each model's rates and
// failures by fault and, with both arms, their paired comparison.
func printSyntheticFinal(stdout io.Writer, f *experiment.SyntheticFinal) {
	type arm struct {
		name  string
		final int // index in the final comparison
	}
	var ran []arm
	for _, a := range []arm{{"tree search", 1}, {"best-of-n", 2}} {
		if f.Greedy[a.final] >= 0 {
			ran = append(ran, a)
		}
	}
	pct := func(k int) float64 { return 100 * float64(k) / float64(f.Problems) }
	line := fmt.Sprintf("final test, %d more held-out problems: seed model %.1f%% greedy, %.1f%% pass@8", f.Problems, pct(f.Greedy[0]), pct(f.PassAt8[0]))
	for _, a := range ran {
		line += fmt.Sprintf("; %s %.1f%%, %.1f%%", a.name, pct(f.Greedy[a.final]), pct(f.PassAt8[a.final]))
	}
	fmt.Fprintln(stdout, line)
	faults := func(i int) string {
		var parts []string
		for k := synth.Malformed; k <= synth.WrongTarget; k++ {
			parts = append(parts, fmt.Sprintf("%s %d", k, f.GreedyFaults[i][k]))
		}
		return strings.Join(parts, ", ")
	}
	line = "greedy failures on the final test, by the verifier's fault: seed model " + faults(0)
	for _, a := range ran {
		line += "; " + a.name + " " + faults(a.final)
	}
	fmt.Fprintln(stdout, line)
	failed := func(i int) int { return f.Problems - f.Greedy[i] }
	line = fmt.Sprintf("of them, written into a dead end (a valid step after which the target is out of reach, a wrong plan): seed model %d of %d", f.GreedyDeadEnds[0], failed(0))
	for _, a := range ran {
		line += fmt.Sprintf("; %s %d of %d", a.name, f.GreedyDeadEnds[a.final], failed(a.final))
	}
	fmt.Fprintln(stdout, line)
	if len(ran) < 2 {
		return
	}
	gd, gse := experiment.PairedDifference(f.GreedyOnlySearch, f.GreedyOnlySampled, f.Problems)
	pd, pse := experiment.PairedDifference(f.PassOnlySearch, f.PassOnlySampled, f.Problems)
	fmt.Fprintf(stdout, "tree search minus best-of-n, paired: greedy %+.1f ± %.1f points (%d solved by the search's model only, %d by best-of-n's only), pass@8 %+.1f ± %.1f (%d, %d)\n",
		100*gd, 100*gse, f.GreedyOnlySearch, f.GreedyOnlySampled, 100*pd, 100*pse, f.PassOnlySearch, f.PassOnlySampled)
}

// syntheticMeta is what a saved model of the experiment records of the
// run, for --compare to check.
func syntheticMeta(d experiment.SyntheticOptions) map[string]string {
	return map[string]string{"experiment": "synthetic", "seed": fmt.Sprint(d.Seed), "numbers": fmt.Sprint(d.Difficulty.Numbers),
		"max": fmt.Sprint(d.Difficulty.Max), "format": d.Format.String()}
}

// compareSynthetic is --compare: the final comparison of the models saved
// in dir, which must come from one run (the same seed model, the same
// seed, difficulty and format as d).
func compareSynthetic(dir string, d experiment.SyntheticOptions, stdout io.Writer) error {
	if d.FinalTest < 1 {
		return badInput("--compare: --final-test must be at least 1")
	}
	var models [3]*gpt.Model
	var seedHash string
	want := syntheticMeta(d)
	for i, name := range []string{"seed", "search", "best-of-n"} {
		path := filepath.Join(dir, name, checkpoint.ModelFile)
		if _, err := os.Stat(path); i > 0 && errors.Is(err, os.ErrNotExist) {
			continue // that arm was not run
		}
		ck, err := checkpoint.LoadModel(path)
		if err != nil {
			return badInput("--compare: %v", err)
		}
		for k, v := range want {
			if ck.Metadata[k] != v {
				return badInput("--compare: %s has %s %q, not this run's %q", path, k, ck.Metadata[k], v)
			}
		}
		if ck.Metadata["model"] != name {
			return badInput("--compare: %s is the %q model, not %q", path, ck.Metadata["model"], name)
		}
		if i == 0 {
			seedHash = diloco.HashWeights(0, ck.Params).String()
		}
		if ck.Metadata["seed-model"] != seedHash {
			return badInput("--compare: %s did not start from the seed model beside it", path)
		}
		if models[i], err = gpt.New(ck.Config, d.Pool); err != nil {
			return badInput("--compare: %s: %v", path, err)
		}
		copy(models[i].Params, ck.Params)
	}
	if models[1] == nil && models[2] == nil {
		return badInput("--compare: no search/ or best-of-n/ model in %s", dir)
	}
	f, err := experiment.SyntheticCompare(d, models)
	if err != nil {
		return err
	}
	printSyntheticFinal(stdout, f)
	return nil
}
