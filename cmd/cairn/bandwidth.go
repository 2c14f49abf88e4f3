package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/experiment"
)

// bandwidthArms are the default settings of 'cairn experiment bandwidth':
// DiLoCo with int8 and Nesterov, and SparseLoCo (top-k with decayed error
// feedback, plain SGD at outer lr 1) at two densities, each publishing a
// top-k update four times as dense as a worker's contribution.
func bandwidthArms(run diloco.RunConfig) []experiment.BandwidthArm {
	return []experiment.BandwidthArm{
		{Name: "DiLoCo int8", Codec: compress.Int8, OuterLR: run.OuterLR, Momentum: run.Momentum},
		sparseArm("topk:64/4096:2", "topk:256/4096:2"),
		sparseArm("topk:256/4096:2", "topk:1024/4096:2"),
	}
}

// sparseArm is SparseLoCo with contributions in up and updates in down:
// error feedback decayed by 0.95, outer SGD at lr 1.
func sparseArm(up, down compress.Codec) experiment.BandwidthArm {
	k, chunk, _, _ := up.Sparse()
	kind := ""
	if up.Masked() {
		kind = " mask"
	}
	return experiment.BandwidthArm{Name: fmt.Sprintf("SparseLoCo%s %.3g%%", kind, 100*float64(k)/float64(chunk)),
		Codec: up, DownCodec: down, FeedbackDecay: 0.95, OuterLR: 1}
}

// sparseArmsFlag is --sparse: a comma-separated list of UP@DOWN codec
// pairs (DOWN defaults to UP), each a SparseLoCo arm.
type sparseArmsFlag struct{ arms *[]experiment.BandwidthArm }

func (f sparseArmsFlag) String() string {
	if f.arms == nil {
		return ""
	}
	var s []string
	for _, a := range *f.arms {
		s = append(s, string(a.Codec)+"@"+string(a.DownCodec))
	}
	return strings.Join(s, ",")
}

func (f sparseArmsFlag) Set(v string) error {
	*f.arms = []experiment.BandwidthArm{}
	if v == "none" {
		return nil
	}
	for _, pair := range strings.Split(v, ",") {
		upS, downS, ok := strings.Cut(pair, "@")
		if !ok {
			downS = upS
		}
		up, err := compress.ParseCodec(upS)
		if err != nil {
			return err
		}
		down, err := compress.ParseCodec(downS)
		if err != nil {
			return err
		}
		for _, c := range []compress.Codec{up, down} {
			if _, _, _, sparse := c.Sparse(); !sparse {
				return fmt.Errorf("%s is not a sparse (topk or mask) codec", c)
			}
		}
		*f.arms = append(*f.arms, sparseArm(up, down))
	}
	return nil
}

// runBandwidthExperiment compares the traffic and loss of per-step data
// parallelism, DiLoCo int8 and sparse codecs at equal tokens over
// throttled links.
func runBandwidthExperiment(args []string, stdout, stderr io.Writer) error {
	defaults := diloco.DefaultConfig()
	defaults.Rounds = 100
	fs := newFlags("experiment bandwidth", stderr)
	run := bindRun(fs, defaults)
	workers := fs.Int("workers", 4, "workers (k)")
	threads := fs.Int("threads", 0, "threads for the data-parallel arm (default: all cores)")
	link := bindLink(fs, "each worker's link", 10, 100*time.Millisecond)
	noDDP := fs.Bool("no-ddp", false, "leave out the data-parallel arm")
	noInt8 := fs.Bool("no-int8", false, "leave out the DiLoCo int8 arm")
	var sparse []experiment.BandwidthArm
	sparseLR := fs.Float64("sparse-outer-lr", 1, "the sparse arms' outer learning rate (SparseLoCo's 1)")
	sparseMomentum := fs.Float64("sparse-momentum", 0, "the sparse arms' outer Nesterov momentum (SparseLoCo's 0: the error feedback stands in for it)")
	fs.Var(sparseArmsFlag{&sparse}, "sparse", "SparseLoCo arms in place of the default two: comma-separated UP@DOWN codec pairs, e.g. topk:128/4096:2@topk:256/4096:2 or mask:1024/4096:2, or none")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *workers < 1 {
		return badInput("--workers must be at least 1, got %d", *workers)
	}
	if err := link.check(); err != nil {
		return err
	}
	// --feedback-decay is the sparse arms' (SparseLoCo's 0.95 unless
	// given), not the base run's, whose codec is int8.
	decay, setDecay := run.cfg.FeedbackDecay, false
	fs.Visit(func(f *flag.Flag) { setDecay = setDecay || f.Name == "feedback-decay" })
	if !(*sparseLR > 0) || !(*sparseMomentum >= 0 && *sparseMomentum < 1) {
		return badInput("--sparse-outer-lr must be positive and --sparse-momentum in [0, 1), got %g and %g", *sparseLR, *sparseMomentum)
	}
	if setDecay && !(decay > 0 && decay <= 1) {
		return badInput("--feedback-decay must be in (0, 1], got %g", decay)
	}
	run.cfg.FeedbackDecay = 0
	text, err := run.load()
	if err != nil {
		return err
	}
	cfg := run.cfg
	arms := bandwidthArms(cfg)
	if sparse != nil {
		arms = append(arms[:1], sparse...)
	}
	for i := range arms {
		if _, _, _, ok := arms[i].Codec.Sparse(); ok {
			if setDecay {
				arms[i].FeedbackDecay = decay
				arms[i].Name += fmt.Sprintf(" β=%g", decay)
			}
			if *sparseLR != 1 || *sparseMomentum != 0 {
				arms[i].OuterLR, arms[i].Momentum = *sparseLR, *sparseMomentum
				arms[i].Name += fmt.Sprintf(" lr %g μ %g", *sparseLR, *sparseMomentum)
			}
		}
	}
	if *noInt8 {
		arms = arms[1:]
	}
	if len(arms) == 0 && *noDDP {
		return badInput("nothing to run: --no-int8 and --no-ddp with no --sparse arm")
	}
	if cfg.Overlapped() {
		for i := range arms {
			arms[i].Name += fmt.Sprintf(" + overlap %d", cfg.OverlapSteps)
		}
	}
	fmt.Fprintf(stdout, "equal tokens: %d rounds × H=%d × %d workers × batch %d × ctx %d; model %d params; worker links %g Mbit/s, RTT %v, packet loss %g%%\n",
		cfg.Rounds, cfg.InnerSteps, *workers, cfg.Batch, cfg.Model.BlockSize, cfg.Model.NumParams(), *link.mbps, *link.rtt, 100**link.loss)
	p := newProgress(stderr, len(arms)+1, "experiment")
	if p.bar == nil {
		p.out = io.Discard
	}
	ctx, cancel := signalContext()
	defer cancel()
	rows, err := experiment.Bandwidth(ctx, experiment.BandwidthOptions{Config: cfg, Arms: arms, Workers: *workers, Text: text, Threads: *threads,
		LinkBytesPerSec: link.bytesPerSec(), LinkRTT: *link.rtt, LinkLoss: *link.loss, DDP: !*noDDP,
		Progress: func(arm string, done, total int) { p.update(done, fmt.Sprintf("%s %d/%d", arm, done, total)) }})
	p.finish()
	if err != nil {
		return err
	}
	var ddp *experiment.BandwidthRow
	if !*noDDP {
		ddp = &rows[len(rows)-1]
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "method\tval loss\tvs DDP\tbytes up\tbytes down\tDDP/bytes\twall\tcompute\tnote")
	for _, r := range rows {
		gap, ratio := "", ""
		if ddp != nil {
			gap = fmt.Sprintf("%+.4f", r.ValLoss-ddp.ValLoss)
			ratio = fmt.Sprintf("%.0fx", float64(ddp.Up+ddp.Down)/float64(r.Up+r.Down))
		}
		fmt.Fprintf(tw, "%s\t%.4f\t%s\t%s\t%s\t%s\t%s\t%.1f%%\t%s\n", r.Name, r.ValLoss, gap, human(r.Up), human(r.Down), ratio,
			r.Wall.Round(time.Second), 100*r.Compute, r.Note)
	}
	tw.Flush()
	if cfg.Overlapped() {
		fmt.Fprintf(stdout, "every DiLoCo arm with overlap: a worker starts each round at once from the last weights less its own contribution, and takes the round's weights by inner step %d\n", cfg.OverlapSteps)
	} else {
		fmt.Fprintln(stdout, "every DiLoCo arm without overlap (--overlap-steps N: workers train the next round's first N steps while they communicate)")
	}
	return nil
}
