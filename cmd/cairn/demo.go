package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairnlabs/cairn/chain"
	"github.com/cairnlabs/cairn/checkpoint"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/experiment"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/metrics"
	"github.com/cairnlabs/cairn/node"
	"github.com/cairnlabs/cairn/p2p"
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
	link := bindLink(fs, "each worker's link", 0, 0)
	metricsAddr := fs.String("metrics", "", "serve the aggregator's Prometheus metrics on this host:port")
	dataDir := fs.String("data-dir", "", "keep the nodes' keys, the run's state and its ledger here (default: a temporary directory, removed at the end); a directory that holds a demo resumes it, given the same flags")
	adversaries := fs.Bool("adversaries", false, "add one misbehaving worker of each kind ("+strings.Join(experiment.AdversaryKinds(), ", ")+
		") and let the aggregator validate: it recomputes a sample of contributions (p = 10% and the most suspicious), and each cheat caught is slashed")
	chainN := fs.Int("chain", 0, "run the ledger on a CometBFT network of this many validators on loopback, started by the demo (0: the embedded single-node chain)")
	verbose := fs.Bool("v", false, "log every node's events")
	decentral := fs.Bool("decentralised", false, "run without an aggregator: every worker is a member that aggregates each round itself; rounds, commitments and votes on a CometBFT chain (--chain validators, default one per worker up to 4), contributions spread peer to peer")
	httpAddr := fs.String("http", "127.0.0.1:0", "serve the live view (loss chart, workers, ledger; read-only) on this host:port (\"\": none)")
	httpPublic := fs.Bool("http-public", false, "let --http bind to an address other than loopback")
	httpLinger := fs.Duration("http-linger", 0, "keep the live view up this long after the run (until interrupted)")
	checks := fs.Bool("member-checks", false, "with --decentralised: every member also validates, recomputing a sample of each round's contributions (p = 10% and the most suspicious), and a majority of their verdicts settles the round, paying and slashing (on with --adversaries)")
	checkP := fs.Float64("check-p", 0.1, "with --member-checks: the probability that each contribution is drawn for recomputation (besides the most suspicious)")
	committee := fs.Int("check-committee", 0, "with --member-checks: only this many of each round's members, picked by the hash of the block that closed it, recompute its contributions, and a majority of them settles it (0: every member)")
	window := fs.Duration("commit-window", 0, "with --decentralised: how long at most a round takes commitments, in block time, from its first; it closes earlier once every member of the round before has committed (default: the run's --round-timeout)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if err := link.check(); err != nil {
		return err
	}
	if *workers < 1 {
		return badInput("--workers must be at least 1, got %d", *workers)
	}
	if *chainN < 0 || *chainN > chain.MaxValidators {
		return badInput("--chain %d: want 0..%d validators", *chainN, chain.MaxValidators)
	}
	text, err := run.load()
	if err != nil {
		return err
	}
	cfg := run.cfg
	if tok := cfg.Tok; tok != nil {
		fmt.Fprintf(stdout, "tokenizer: %d tokens (%s), id %.16s…; every node trains on its token ids\n", tok.Vocab(), tok.Pattern(), tok.ID())
	}
	if *decentral {
		if link.bytesPerSec() > 0 || *link.rtt > 0 || *link.loss > 0 || *metricsAddr != "" || *dataDir != "" {
			return badInput("--decentralised does not take link limits, --metrics or --data-dir yet")
		}
		if *window < 0 {
			return badInput("--commit-window must be positive, got %s", *window)
		}
		if !(*checkP >= 0 && *checkP <= 1) {
			return badInput("--check-p %v: want a probability in [0, 1]", *checkP)
		}
		if *committee < 0 || *committee > ledger.MaxCheckCommittee || *committee > 0 && !*checks && !*adversaries {
			return badInput("--check-committee %d: want 0..%d, with --member-checks", *committee, ledger.MaxCheckCommittee)
		}
		if *window == 0 {
			*window = time.Duration(cfg.RoundTimeout)
		}
		return runMembersDemo(stdout, stderr, membersDemo{cfg: cfg, text: text, members: *workers, validators: *chainN, window: *window,
			checks: *checks || *adversaries, checkP: *checkP, committee: *committee, adversaries: *adversaries, out: *out, verbose: *verbose}, viewFlags{*httpAddr, *httpPublic, *httpLinger})
	}
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
	if *adversaries {
		fmt.Fprintf(stdout, "with adversaries: one of each kind (%s) as workers %d-%d; the aggregator validates, recomputing 10%% of the contributions and the most suspicious, and slashes those that fail\n",
			strings.Join(experiment.AdversaryKinds(), ", "), *workers, *workers+len(experiment.AdversaryKinds())-1)
	}
	hub, stopWeb, err := startWeb(stdout, *httpAddr, *httpPublic, "demo", cfg.Rounds)
	if err != nil {
		return err
	}
	defer stopWeb()
	p := newProgress(stderr, cfg.Rounds, "diloco")
	if p.bar == nil {
		p.out = stdout
	}
	start := time.Now()
	ctx, cancel := signalContext()
	defer cancel()
	if *chainN > 0 {
		fmt.Fprintf(stdout, "ledger: a CometBFT network of %d validators on loopback (in this process); the aggregator records on the first, workers send their transactions to the validators in turn\n", *chainN)
	}
	lo := node.LocalOptions{Config: cfg, Text: text, Workers: *workers, EvalBatches: 20, Log: log, Metrics: reg, DataDir: *dataDir, ChainValidators: *chainN,
		LinkBytesPerSec: link.bytesPerSec(), LinkRTT: *link.rtt, LinkLoss: *link.loss,
		OnRound: func(r node.RoundInfo) {
			hub.AddRound(webRound(r, cfg, *workers))
			status := fmt.Sprintf("val loss %.4f, workers %d, aggregator traffic %s", r.ValLoss, len(r.Contributors), human(r.Sent+r.Recv))
			if cfg.DP != nil && r.Result != nil {
				status += fmt.Sprintf(", privacy spent ε %.2f of %g (δ %g)", r.Result.Epsilon, cfg.DP.Budget, cfg.DP.Delta)
			}
			p.log("round %d/%d: %s (%s)", r.Round+1, cfg.Rounds, status, time.Since(start).Round(time.Second))
			if p.bar != nil {
				p.update(r.Round+1, status)
			}
		}}
	lo.OnAggregator = func(a *node.Aggregator) { hub.SetLedgerSource(a.LedgerHost(), p2p.AccountOf) }
	var cast *experiment.Cast
	if *adversaries {
		if cast, err = demoAdversaries(&lo, *workers, p); err != nil {
			return err
		}
	}
	res, err := node.RunLocal(ctx, lo)
	p.finish()
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stdout, "stopped")
			return nil
		}
		return err
	}
	webLedger(hub, res.Ledger)
	for i, st := range res.PerWorker {
		if i < len(res.Ledger.Accounts) && !st.Start.IsZero() {
			hub.SetComputeShare(res.Ledger.Accounts[i].ID, st.Compute.Seconds()/time.Since(st.Start).Seconds())
		}
	}
	hub.Finish()
	vl, err := valLoss(cfg, text, res.Weights)
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
	if err := saveAndSample(stdout, cfg, res.Weights, *out); err != nil {
		return err
	}
	if !printLedger(stdout, res.Ledger, *dataDir, *workers) {
		return failedCheck{"the run's ledger does not check out (see above)"}
	}
	if cast != nil {
		printCaught(stdout, cast, res, *workers)
	}
	lingerWeb(ctx, stdout, *httpAddr, *httpLinger)
	return nil
}

// printLedger reports the run's chain: each worker's reward (the honest
// ones first, then any adversaries), the totals, and the verdict of
// `cairn ledger verify` on the file. It reports whether the ledger is
// intact and its supply adds up.
func printLedger(w io.Writer, l node.LocalLedger, dataDir string, honest int) bool {
	fmt.Fprintf(w, "\nledger %s: %d rounds settled; each worker started with its stake bonded and a balance of 0\n", l.ChainID, l.Totals.NextSettle)
	for i, a := range l.Accounts {
		who := fmt.Sprintf("worker %d", i)
		if i >= honest {
			who = fmt.Sprintf("adversary %s", experiment.AdversaryKinds()[(i-honest)%len(experiment.AdversaryKinds())])
		}
		fmt.Fprintf(w, "  %s (%s): reward %d units over %d rounds; balance %d, stake %d\n", who, a.ID, a.Reward, a.Rounds, a.Account.Balance, a.Account.Stake)
	}
	fmt.Fprintf(w, "minted %d, burned %d, supply %d\n", l.Totals.Minted, l.Totals.Burned, l.Totals.Supply)
	if l.Invariants != nil {
		fmt.Fprintf(w, "ledger invariants violated: %v\n", l.Invariants)
	}
	line, ok := verifyLine(l.Report, l.Verified)
	if l.Validators > 0 {
		line, ok = fmt.Sprintf("chain intact: %d validators hold the same block hash and app hash at every height (%d blocks, %d transactions); state root %s",
			l.Validators, l.Report.Tip.Height, l.Report.Txs, l.Report.Tip.AppHash), l.Verified == nil
		if l.Verified != nil {
			line = fmt.Sprintf("the validators disagree: %v", l.Verified)
		}
	}
	fmt.Fprintln(w, line)
	if dataDir != "" && l.Validators == 0 {
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

// demoAdversaries adds one adversary of each kind to the demo's run (after
// its honest workers; worker 0 posts its contributions for the copier),
// makes the aggregator validate, and prints a line as each one's first
// failed verdict is settled.
func demoAdversaries(lo *node.LocalOptions, honest int, p *progress) (*experiment.Cast, error) {
	cast, err := experiment.NewCast(lo.Config, experiment.AdversaryKinds(), lo.Config.Seed+uint64(honest))
	if err != nil {
		return nil, err
	}
	lo.Behaviours = cast.Behaviours(honest)
	lo.Workers = len(lo.Behaviours)
	lo.Validation = &node.ValidationOptions{}
	know, settled := cast.Watch(func(a experiment.AdversaryReport) {
		p.log("caught: the %s adversary (%s) failed verification of its round %d (%d rounds after its first cheat): %s; slashed %d units",
			a.Kind, shortPeer(a.Worker), a.Caught, a.Delay(), a.Reason, a.Slashed)
	})
	lo.OnSettle = settled
	lo.OnStart = func(_ string, ids []string) error {
		know(ids[honest:])
		return nil
	}
	return cast, nil
}

// printCaught sums up what became of the demo's adversaries.
func printCaught(w io.Writer, cast *experiment.Cast, res node.LocalResult, honest int) {
	var ids []string
	for _, a := range res.Ledger.Accounts[honest:] {
		ids = append(ids, a.ID)
	}
	reps := cast.Reports(ids, res.Ledger)
	caught := 0
	fmt.Fprintf(w, "\nadversaries (the validator checked %d contributions, %d failed, in %s):\n", res.Validator.Checked, res.Validator.Failed, res.Validator.Busy.Round(time.Millisecond))
	for _, a := range reps {
		status := "not caught"
		if a.Caught >= 0 {
			caught++
			status = fmt.Sprintf("caught at round %d (%d after its first cheat), slashed %d units, paid %d after", a.Caught, a.Delay(), a.Slashed, a.PaidAfter)
		}
		fmt.Fprintf(w, "  %-8s (%s): first cheat round %s; %s; paid %d in all\n", a.Kind, shortPeer(a.Worker), roundOrDash(a.FirstCheat), status, a.Reward)
	}
	fmt.Fprintf(w, "caught %d/%d adversaries\n", caught, len(reps))
}

// valLoss is the loss of weights over the whole validation split of text.
func valLoss(cfg diloco.RunConfig, text []byte, weights []float32) (float64, error) {
	pool := kernels.NewPool(0)
	defer pool.Close()
	m, err := gpt.New(cfg.Model, pool)
	if err != nil {
		return 0, err
	}
	copy(m.Params, weights)
	_, val := corpus.Split(text, 0.9)
	n := cfg.Batch * cfg.Model.BlockSize
	return train.EvaluateTokens(m, cfg.Encode(val), cfg.Batch, 0, make([]int32, n), make([]int32, n))
}

// saveAndSample saves the final model under out and prints a sample of it.
func saveAndSample(stdout io.Writer, cfg diloco.RunConfig, weights []float32, out string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	path := filepath.Join(out, checkpoint.ModelFile)
	var meta map[string]string
	if cfg.Tok != nil {
		meta = cfg.Tok.Metadata() // the model carries its tokenizer
	}
	if err := checkpoint.SaveModel(path, cfg.Model, weights, meta); err != nil {
		return err
	}
	pool := kernels.NewPool(0)
	defer pool.Close()
	m, err := gpt.New(cfg.Model, pool)
	if err != nil {
		return err
	}
	copy(m.Params, weights)
	fmt.Fprintf(stdout, "model saved to %s\n\nsample:\n", path)
	g := m.NewGenerator()
	prompt := cfg.Encode([]byte("ROMEO:"))
	if err := g.Start(prompt); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(1, 0))
	buf := []byte("ROMEO:")
	for i := 0; i < 300; i++ {
		tok := gpt.Sample(g.Logits(), gpt.Sampling{Temperature: 0.8, TopK: 40}, r)
		if cfg.Tok != nil {
			b, _ := cfg.Tok.Token(int(tok))
			buf = append(buf, b...)
		} else {
			buf = append(buf, byte(tok))
		}
		g.Append(tok)
	}
	fmt.Fprintf(stdout, "%s\n", buf)
	return nil
}
