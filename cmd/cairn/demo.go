package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/cairnlabs/cairn/checkpoint"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/experiment"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/metrics"
	"github.com/cairnlabs/cairn/node"
	"github.com/cairnlabs/cairn/train"
)

// runDemo is the main job on embedded defaults: an aggregator and N
// workers in this process, each its own libp2p node on loopback, train the
// default model on the embedded corpus with DiLoCo.
func runDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	run := bindRun(fs, diloco.DefaultConfig())
	workers := fs.Int("workers", 4, "workers")
	out := fs.String("out", filepath.Join("out", "demo"), "where the final model is saved")
	linkMbps := fs.Float64("link-mbps", 0, "throttle each worker's link to this many Mbit/s each way (0: unlimited)")
	metricsAddr := fs.String("metrics", "", "serve the aggregator's Prometheus metrics on this host:port")
	dataDir := fs.String("data-dir", "", "keep the nodes' keys, the run's state and its ledger here (default: a temporary directory, removed at the end); a directory that holds a demo resumes it, given the same flags")
	verbose := fs.Bool("v", false, "log every node's events")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *workers < 1 {
		return badInput("--workers must be at least 1, got %d", *workers)
	}
	text, err := run.load()
	if err != nil {
		return err
	}
	cfg := run.cfg
	var log = logger(io.Discard, false)
	if *verbose {
		log = logger(stderr, true)
	}
	reg := metrics.NewRegistry()
	stop, err := serveMetrics(*metricsAddr, reg, logger(stderr, false))
	if err != nil {
		return err
	}
	defer stop()
	fmt.Fprintf(stdout, "DiLoCo demo: %d workers on loopback libp2p, %d rounds of H=%d inner steps, %s updates; model %d params (d %d, %d layers, ctx %d), batch %d per worker\n",
		*workers, cfg.Rounds, cfg.InnerSteps, cfg.Codec, cfg.Model.NumParams(), cfg.Model.NEmbd, cfg.Model.NLayer, cfg.Model.BlockSize, cfg.Batch)
	p := newProgress(stderr, cfg.Rounds, "diloco")
	if p.bar == nil {
		p.out = stdout
	}
	start := time.Now()
	ctx, cancel := signalContext()
	defer cancel()
	res, err := node.RunLocal(ctx, node.LocalOptions{Config: cfg, Text: text, Workers: *workers, EvalBatches: 20, Log: log, Metrics: reg, DataDir: *dataDir,
		LinkBytesPerSec: *linkMbps * 1e6 / 8,
		OnRound: func(r node.RoundInfo) {
			status := fmt.Sprintf("val loss %.4f, workers %d, aggregator traffic %s", r.ValLoss, len(r.Contributors), human(r.Sent+r.Recv))
			p.log("round %d/%d: %s (%s)", r.Round+1, cfg.Rounds, status, time.Since(start).Round(time.Second))
			if p.bar != nil {
				p.update(r.Round+1, status)
			}
		}})
	p.finish()
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stdout, "stopped")
			return nil
		}
		return err
	}
	pool := kernels.NewPool(0)
	defer pool.Close()
	m, err := gpt.New(cfg.Model, pool)
	if err != nil {
		return err
	}
	copy(m.Params, res.Weights)
	_, val := corpus.Split(text, 0.9)
	n := cfg.Batch * cfg.Model.BlockSize
	vl, err := train.Evaluate(m, val, cfg.Batch, 0, make([]int32, n), make([]int32, n))
	if err != nil {
		return err
	}
	ddp := experiment.DDPBytes(cfg, *workers)
	fmt.Fprintf(stdout, "\nvalidation loss %.4f (whole validation split) after %d rounds\n", vl, res.Rounds)
	fmt.Fprintf(stdout, "wall time %s; workers computed %.1f%% of their time\n", res.Wall.Round(time.Millisecond), 100*res.Utilisation())
	if *verbose {
		for i, st := range res.PerWorker {
			fmt.Fprintf(stdout, "  worker %d: computed %s, %d contributions, %d refused, %d reconnects; read its balance as %d\n", i, st.Compute.Round(time.Millisecond), st.Rounds, st.Refused, st.Reconnects, st.Balance)
		}
	}
	fmt.Fprintf(stdout, "bytes communicated %s (all nodes, both ways); per-step data-parallel training would have sent %s for the same tokens (%.0fx more)\n",
		human(res.BytesSent), human(ddp), float64(ddp)/float64(res.BytesSent))
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	path := filepath.Join(*out, checkpoint.ModelFile)
	if err := checkpoint.SaveModel(path, cfg.Model, res.Weights, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "model saved to %s\n\nsample:\n", path)
	g := m.NewGenerator()
	prompt := []int32{'R', 'O', 'M', 'E', 'O', ':'}
	if err := g.Start(prompt); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(1, 0))
	buf := []byte("ROMEO:")
	for i := 0; i < 300; i++ {
		tok := gpt.Sample(g.Logits(), gpt.Sampling{Temperature: 0.8, TopK: 40}, r)
		buf = append(buf, byte(tok))
		g.Append(tok)
	}
	fmt.Fprintf(stdout, "%s\n", buf)
	if !printLedger(stdout, res.Ledger, *dataDir) {
		return failedCheck{"the run's ledger does not check out (see above)"}
	}
	return nil
}

// printLedger reports the run's chain: each worker's reward, the totals,
// and the verdict of `cairn ledger verify` on the file. It reports
// whether the ledger is intact and its supply adds up.
func printLedger(w io.Writer, l node.LocalLedger, dataDir string) bool {
	fmt.Fprintf(w, "\nledger %s: %d rounds settled; each worker started with its stake bonded and a balance of 0\n", l.ChainID, l.Totals.NextSettle)
	for i, a := range l.Accounts {
		fmt.Fprintf(w, "  worker %d (%s): reward %d units over %d rounds; balance %d, stake %d\n", i, a.ID, a.Reward, a.Rounds, a.Account.Balance, a.Account.Stake)
	}
	fmt.Fprintf(w, "minted %d, burned %d, supply %d\n", l.Totals.Minted, l.Totals.Burned, l.Totals.Supply)
	if l.Invariants != nil {
		fmt.Fprintf(w, "ledger invariants violated: %v\n", l.Invariants)
	}
	line, ok := verifyLine(l.Report, l.Verified)
	fmt.Fprintln(w, line)
	if dataDir != "" {
		fmt.Fprintf(w, "inspect it with: cairn ledger balances --data-dir %s\n", dataDir)
	}
	return ok && l.Invariants == nil
}

// human formats a byte count.
func human(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}
