package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/cairnlabs/cairn/experiment"
	"github.com/cairnlabs/cairn/kernels"
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
	fs.IntVar(&d.TuneSteps, "tune-steps", d.TuneSteps, "fine-tuning steps an iteration")
	fs.IntVar(&d.Test, "test", d.Test, "held-out problems, solved greedily")
	fs.IntVar(&d.FinalTest, "final-test", d.FinalTest, "more held-out problems on which the arms' last models are compared problem by problem at the end (0: none)")
	fs.Float64Var(&d.LR, "lr", d.LR, "peak learning rate of the seed model")
	fs.Float64Var(&d.TuneLR, "tune-lr", d.TuneLR, "learning rate of each iteration's fine-tuning")
	fs.BoolVar(&d.TuneDecay, "tune-decay", d.TuneDecay, "decay each iteration's learning rate to a tenth of --tune-lr (cosine); --tune-decay=false keeps it constant")
	fs.Float64Var(&d.Temperature, "temperature", d.Temperature, "sampling temperature of generation")
	fs.Uint64Var(&d.Seed, "seed", d.Seed, "seed of the problems, the model and the sampling")
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
	d.Pool = kernels.NewPool(*threads)
	defer d.Pool.Close()
	d.Log = func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }
	rep, err := experiment.Synthetic(d)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\niteration\tsearch: solved\tsearch: held-out greedy, pass@8\tbest-of-n: solved\tbest-of-n: held-out greedy, pass@8\n")
	fmt.Fprintf(tw, "0 (seed)\t\t%.1f%%, %.1f%%\t\t%.1f%%, %.1f%%\n", 100*rep.SeedRate, 100*rep.SeedPassAt8, 100*rep.SeedRate, 100*rep.SeedPassAt8)
	var rows [2]int64
	for i := range rep.Search {
		s, b := rep.Search[i], rep.Sampled[i]
		fmt.Fprintf(tw, "%d\t%d/%d\t%.1f%%, %.1f%%\t%d/%d\t%.1f%%, %.1f%%\n", s.Iteration, s.Solved, d.Problems, 100*s.SolveRate, 100*s.PassAt8,
			b.Solved, d.Problems, 100*b.SolveRate, 100*b.PassAt8)
		rows[0] += s.Rows
		rows[1] += b.Rows
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	s, b := rep.Search[len(rep.Search)-1], rep.Sampled[len(rep.Sampled)-1]
	fmt.Fprintf(stdout, "\nover the seed model (target +20 points): tree search %+.1f greedy, %+.1f pass@8 in %d model rows; best-of-n %+.1f greedy, %+.1f pass@8 in %d model rows\n",
		100*(s.SolveRate-rep.SeedRate), 100*(s.PassAt8-rep.SeedPassAt8), rows[0], 100*(b.SolveRate-rep.SeedRate), 100*(b.PassAt8-rep.SeedPassAt8), rows[1])
	if f := rep.Final; f != nil {
		pct := func(k int) float64 { return 100 * float64(k) / float64(f.Problems) }
		fmt.Fprintf(stdout, "final test, %d more held-out problems: seed model %.1f%% greedy, %.1f%% pass@8; tree search %.1f%%, %.1f%%; best-of-n %.1f%%, %.1f%%\n",
			f.Problems, pct(f.Greedy[0]), pct(f.PassAt8[0]), pct(f.Greedy[1]), pct(f.PassAt8[1]), pct(f.Greedy[2]), pct(f.PassAt8[2]))
		gd, gse := experiment.PairedDifference(f.GreedyOnlySearch, f.GreedyOnlySampled, f.Problems)
		pd, pse := experiment.PairedDifference(f.PassOnlySearch, f.PassOnlySampled, f.Problems)
		fmt.Fprintf(stdout, "tree search minus best-of-n, paired: greedy %+.1f ± %.1f points (%d solved by the search's model only, %d by best-of-n's only), pass@8 %+.1f ± %.1f (%d, %d)\n",
			100*gd, 100*gse, f.GreedyOnlySearch, f.GreedyOnlySampled, 100*pd, 100*pse, f.PassOnlySearch, f.PassOnlySampled)
	}
	return nil
}
