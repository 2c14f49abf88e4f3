package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/experiment"
	"github.com/cairnlabs/cairn/verify"
)

// runAdversaries is `cairn experiment adversaries`: the trust experiment
// (experiment.Adversaries) with its table and the last line.
func runAdversaries(args []string, stdout, stderr io.Writer) error {
	defaults := diloco.DefaultConfig()
	defaults.Rounds = 100
	fs := newFlags("experiment adversaries", stderr)
	run := bindRun(fs, defaults)
	honest := fs.Int("honest", 4, "honest workers")
	kinds := fs.String("adversaries", strings.Join(experiment.AdversaryKinds(), ","), "comma-separated adversaries, one worker each: "+strings.Join(experiment.AdversaryKinds(), ", "))
	p := fs.Float64("p", verify.DefaultSampleOptions().P, "probability with which the validator recomputes each contribution (it adds the most suspicious by screening)")
	noValidation := fs.Bool("no-validation", false, "run without the validator (every round settled unchecked: a baseline where nothing is caught)")
	slow := fs.Bool("slow", true, "slow one honest worker of the adversarial run to a third of its peers' speed and report the rounds it contributed to (not with --mixed-paths)")
	mixed := fs.Bool("mixed-paths", false, "run honest workers 1.. as worker processes of this binary on the kernel paths of --paths in turn (worker 0 and the adversaries stay in this process), so that the validator recomputes across paths")
	paths := fs.String("paths", strings.Join(exactPaths(), ","), "kernel paths of the worker processes with --mixed-paths (any of "+strings.Join(kernelPaths(), ", ")+")")
	threads := fs.Int("threads", 0, "threads for the final evaluation (default: all cores)")
	verbose := fs.Bool("v", false, "log every node's events (and the worker processes')")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *honest < 1 {
		return badInput("--honest must be at least 1, got %d", *honest)
	}
	if !(*p > 0 && *p <= 1) {
		return badInput("--p must be in (0, 1], got %g", *p)
	}
	if *threads < 0 {
		return badInput("--threads must not be negative, got %d", *threads)
	}
	ks := splitList(*kinds)
	for _, k := range ks {
		if !slices.Contains(experiment.AdversaryKinds(), k) {
			return badInput("--adversaries: unknown adversary %q (have %s)", k, strings.Join(experiment.AdversaryKinds(), ", "))
		}
	}
	if ks == nil {
		ks = []string{}
	}
	var procs *experiment.Processes
	if *mixed {
		if *honest < 2 {
			return badInput("--mixed-paths runs honest workers 1.. as processes: --honest must be at least 2, got %d", *honest)
		}
		ps := splitList(*paths)
		if len(ps) == 0 {
			return badInput("--paths names no kernel path")
		}
		for _, k := range ps {
			if !slices.Contains(kernelPaths(), k) {
				return badInput("--paths: kernel path %q is not available on this CPU (it has %s)", k, strings.Join(kernelPaths(), ", "))
			}
		}
		bin, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding this binary for the worker processes: %v", err)
		}
		procs = &experiment.Processes{Binary: bin, Paths: ps}
		if *verbose {
			procs.Stderr = stderr
		}
	}
	text, err := run.load()
	if err != nil {
		return err
	}
	cfg := run.cfg
	check := fmt.Sprintf("the validator recomputes each contribution with p = %g plus the most suspicious", *p)
	if *noValidation {
		check = "no validator (every round settled unchecked)"
	}
	fmt.Fprintf(stdout, "trust experiment: %d honest workers, then the same with %d adversaries (%s); %d rounds of H=%d, model %d params, batch %d per worker; staked ledger; %s; kernel path %s\n",
		*honest, len(ks), strings.Join(ks, ", "), cfg.Rounds, cfg.InnerSteps, cfg.Model.NumParams(), cfg.Batch, check, verify.CurrentPath())
	if procs != nil {
		fmt.Fprintf(stdout, "mixed kernel paths: worker 0 in this process on %s, workers 1-%d as processes on %s\n",
			verify.CurrentPath(), *honest-1, strings.Join(procs.WorkerPaths(*honest), ", "))
	}
	bar := newProgress(stderr, 2*cfg.Rounds, "experiment")
	if bar.bar == nil {
		bar.out = io.Discard
	}
	log := logger(io.Discard, false)
	if *verbose {
		log = logger(stderr, true)
	}
	ctx, cancel := signalContext()
	defer cancel()
	res, err := experiment.Adversaries(ctx, experiment.AdversaryOptions{Config: cfg, Text: text, Honest: *honest, Kinds: ks, P: *p,
		NoValidation: *noValidation, Slow: *slow, Processes: procs, Threads: *threads, Log: log,
		Progress: func(arm string, done, total int) {
			step := done
			if arm == experiment.ArmAdversarial {
				step += total
			}
			bar.update(step, fmt.Sprintf("%s run, round %d/%d", arm, done, total))
		},
		OnCaught: func(a experiment.AdversaryReport) {
			if bar.bar != nil {
				_ = bar.bar.Clear()
			}
			fmt.Fprintf(stdout, "caught %s (%s) at round %d, %d after its first cheat: %s\n", a.Kind, shortPeer(a.Worker), a.Caught, a.Delay(), a.Reason)
		}})
	bar.finish()
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stdout, "stopped")
			return nil
		}
		return err
	}
	printAdversaries(stdout, res)
	return nil
}

// printAdversaries prints the experiment's tables and its last line.
func printAdversaries(w io.Writer, res *experiment.AdversaryResult) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "adversary\tworker\tfirst cheat\tcaught at\tdelay\tslashed\treward\tpaid after detection\treason")
	for _, a := range res.Adversaries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", a.Kind, shortPeer(a.Worker), roundOrDash(a.FirstCheat), roundOrDash(a.Caught),
			roundOrDash(a.Delay()), a.Slashed, a.Reward, a.PaidAfter, a.Reason)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "run\tval loss\trounds\taccepted\twall\tworker compute\tchecked\tfailed\trecomputing\tscreening\toverhead\thonest slashed\trounds conserved\tminted\tburned")
	for _, a := range []experiment.ArmReport{res.HonestArm, res.AdversarialArm} {
		fmt.Fprintf(tw, "%s\t%.4f\t%d\t%d\t%s\t%s\t%d\t%d\t%s\t%s\t%.1f%%\t%d\t%d/%d\t%d\t%d\n", a.Name, a.ValLoss, a.Rounds, a.Accepted,
			roundDur(a.Wall), roundDur(a.Compute), a.Validator.Checked, a.Validator.Failed, roundDur(a.Validator.Busy), roundDur(a.Validator.Screening),
			a.Overhead(), len(a.HonestSlashed), a.Conserved, a.Rounds, a.Minted, a.Burned)
	}
	tw.Flush()
	for _, a := range []experiment.ArmReport{res.HonestArm, res.AdversarialArm} {
		for _, f := range a.HonestFailures {
			fmt.Fprintf(w, "%s run: an honest worker failed verification: %s\n", a.Name, f)
		}
		if a.LedgerErr != nil {
			fmt.Fprintf(w, "%s run: the ledger does not check out: %v\n", a.Name, a.LedgerErr)
		}
	}
	fmt.Fprintf(w, "the honest workers' commits declare the kernel paths %s\n", strings.Join(res.AdversarialArm.Kernels, ", "))
	if !res.Validated {
		fmt.Fprintln(w, "no validator ran: nothing could be caught")
	}
	if s := res.Slow; s != nil {
		fmt.Fprintf(w, "slow worker %s, at %.2f of its honest peers' speed: contributed in %d of %d rounds (%.1f%%; target >= 90%%)\n",
			shortPeer(s.Worker), s.Speed, s.Contributed, s.Rounds, 100*s.Share())
	}
	fmt.Fprintln(w, "verification overhead: the validator's recomputations and the screening's held-out losses over the workers' compute, in the adversarial run")
	fmt.Fprintln(w, res.Summary())
}

// roundDur rounds a duration for a table: to 10 ms under a minute, else
// to the second.
func roundDur(d time.Duration) time.Duration {
	if d < time.Minute {
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(time.Second)
}

func roundOrDash(r int) string {
	if r < 0 {
		return "-"
	}
	return fmt.Sprint(r)
}

// shortPeer is the end of a peer ID, as the nodes' logs show it.
func shortPeer(id string) string {
	if len(id) > 8 {
		return "…" + id[len(id)-8:]
	}
	return id
}
