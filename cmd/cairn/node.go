package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/bits"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"path/filepath"

	"github.com/cairnlabs/cairn/checkpoint"
	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/dp"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/metrics"
	"github.com/cairnlabs/cairn/node"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/tokenizer"
	"github.com/cairnlabs/cairn/verify"
)

// runSpec is a DiLoCo run as given on a command line: its configuration
// flags and the text it trains on (--data).
type runSpec struct {
	cfg     diloco.RunConfig
	timeout time.Duration
	robust  robustFlags
	dp      dpFlags
	data    *string
	tok     tokenFlags
	arch    archFlags
}

// tokenFlags choose a run's BPE tokenizer.
type tokenFlags struct{ file, pattern *string }

func bindTokenizer(fs *flag.FlagSet) tokenFlags {
	return tokenFlags{
		file:    fs.String("tokenizer", "", "train on the token ids of this BPE tokenizer (a tiktoken rank file from 'cairn tokenizer train'; every node of the run must be given the same one, and the saved model carries it); default: bytes"),
		pattern: fs.String("pattern", "gpt2", "with --tokenizer: its pre-tokenisation pattern (gpt2 or cl100k)"),
	}
}

// load reads the tokenizer, if one was given (nil otherwise).
func (t tokenFlags) load() (*tokenizer.Tokenizer, error) {
	if *t.file == "" {
		return nil, nil
	}
	return loadTokenizer(*t.file, *t.pattern)
}

// dpFlags are a run's differential-privacy flags.
type dpFlags struct{ eps, clip, delta float64 }

// robustFlags are the aggregation rule's flags, with verify's defaults
// shown.
type robustFlags struct{ clip, trim float64 }

// bindRun binds the run flags, with defaults from cfg, to a new runSpec.
func bindRun(fs *flag.FlagSet, cfg diloco.RunConfig) *runSpec {
	r := &runSpec{cfg: cfg}
	runFlags(fs, &r.cfg, &r.timeout)
	d := verify.DefaultAggregateOptions()
	fs.Float64Var(&r.robust.clip, "clip", d.ClipMultiple, "clip each contribution to this multiple of the round's median norm")
	fs.Float64Var(&r.robust.trim, "trim", d.Trim, "fraction of contributions dropped at each end of every coordinate before averaging (0: none)")
	fs.Float64Var(&r.dp.eps, "dp-epsilon", 0, "differential privacy for contributors: the run's total ε budget (0: none); every contribution is clipped to --dp-clip and Gaussian noise sized for the budget over --rounds is added to their sum, in place of the robust rule")
	fs.Float64Var(&r.dp.clip, "dp-clip", 1, "with --dp-epsilon: the L2 bound on each contribution")
	fs.Float64Var(&r.dp.delta, "dp-delta", 1e-5, "with --dp-epsilon: δ")
	r.data = fs.String("data", "", "the run's text (default: the embedded tiny shakespeare)")
	r.tok = bindTokenizer(fs)
	r.arch = bindArch(fs)
	return r
}

// load reads the run's text and completes and validates the
// configuration; problems are bad input.
func (r *runSpec) load() ([]byte, error) {
	text, err := corpus.Load(*r.data)
	if err != nil {
		return nil, badInput("%v", err)
	}
	// Defaults stay zero in the config, so it encodes as a run's that
	// never set them.
	d := verify.DefaultAggregateOptions()
	r.cfg.Robust.ClipMultiple, r.cfg.Robust.Trim = 0, 0
	if r.robust.clip != d.ClipMultiple {
		r.cfg.Robust.ClipMultiple = r.robust.clip
	}
	switch {
	case r.robust.trim == 0:
		r.cfg.Robust.Trim = -1
	case r.robust.trim != d.Trim:
		r.cfg.Robust.Trim = r.robust.trim
	}
	if r.dp.eps < 0 || math.IsNaN(r.dp.eps) {
		return nil, badInput("--dp-epsilon must not be negative, got %g", r.dp.eps)
	}
	if r.dp.eps > 0 {
		z, err := dp.NoiseFor(r.dp.eps, r.dp.delta, 1, r.cfg.Rounds)
		if err != nil {
			return nil, badInput("--dp-epsilon: %v", err)
		}
		r.cfg.DP = &diloco.DP{Clip: r.dp.clip, Noise: z, Delta: r.dp.delta, Budget: r.dp.eps}
	}
	if err := r.arch.apply(&r.cfg.Model); err != nil {
		return nil, err
	}
	tok, err := r.tok.load()
	if err != nil {
		return nil, err
	}
	if tok != nil {
		r.cfg.SetTokenizer(tok)
	}
	if err := finishRunConfig(&r.cfg, r.timeout, text); err != nil {
		return nil, err
	}
	return text, nil
}

// runFlags binds the flags of a DiLoCo run's configuration to c.
func runFlags(fs *flag.FlagSet, c *diloco.RunConfig, timeout *time.Duration) {
	fs.IntVar(&c.Model.NEmbd, "d", c.Model.NEmbd, "model width")
	fs.IntVar(&c.Model.NLayer, "layers", c.Model.NLayer, "transformer blocks")
	fs.IntVar(&c.Model.NHead, "heads", c.Model.NHead, "attention heads")
	fs.IntVar(&c.Model.BlockSize, "ctx", c.Model.BlockSize, "context length (block size)")
	fs.IntVar(&c.Batch, "batch", c.Batch, "sequences per inner step, per worker")
	fs.IntVar(&c.InnerSteps, "inner-steps", c.InnerSteps, "inner steps per round (H)")
	fs.IntVar(&c.Rounds, "rounds", c.Rounds, "rounds")
	fs.Float64Var(&c.InnerLR, "lr", c.InnerLR, "inner AdamW peak learning rate")
	fs.Float64Var(&c.InnerMinLR, "min-lr", c.InnerMinLR, "inner learning rate at the end of the cosine decay")
	fs.IntVar(&c.Warmup, "warmup", c.Warmup, "inner warm-up steps")
	fs.Float64Var(&c.OuterLR, "outer-lr", c.OuterLR, "outer Nesterov learning rate")
	fs.Float64Var(&c.Momentum, "outer-momentum", c.Momentum, "outer Nesterov momentum")
	fs.Var(codecFlag{&c.Codec}, "codec", "update compression: int8 (with error feedback), fp32, or topk[:K/CHUNK[:BITS]] (the K largest of every CHUNK values at 1 or 2 bits, with error feedback; topk = 64/4096:2)")
	fs.Var(codecFlag{&c.DownCodec}, "update-codec", "codec of the published updates (default: --codec); a sparse run wants a denser topk than its workers', e.g. topk:256/4096")
	fs.Float64Var(&c.FeedbackDecay, "feedback-decay", c.FeedbackDecay, "with a topk codec: the workers' error-feedback decay beta (SparseLoCo 0.95; 0 means 1)")
	fs.IntVar(&c.OverlapSteps, "overlap-steps", c.OverlapSteps, "overlap each round's communication with the next round's first N inner steps, trained from the last weights less the worker's own contribution (0: no overlap)")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of the initial weights and of data assignment")
	fs.DurationVar(timeout, "round-timeout", time.Duration(c.RoundTimeout), "how long a round waits for contributions")
	fs.IntVar(&c.Quorum, "quorum", c.Quorum, "fewest contributions a round may close with")
}

// finishRunConfig applies the timeout and the text and validates.
func finishRunConfig(c *diloco.RunConfig, timeout time.Duration, text []byte) error {
	c.RoundTimeout, c.DataHash = diloco.Duration(timeout), node.DataHash(text)
	if err := c.Validate(); err != nil {
		return badInput("%v", err)
	}
	train, val := corpus.Split(text, 0.9)
	if len(train) < c.Model.BlockSize+1 || len(val) < c.Model.BlockSize+1 {
		return badInput("data has %d bytes: too short for the context of %d (the first 90%% trains, the last 10%% validates)", len(text), c.Model.BlockSize)
	}
	return nil
}

// loadInit reads the initial weights of a run from a model file, which
// must be of the run's model shape.
func loadInit(path string, c gpt.Config) ([]float32, error) {
	if path == "" {
		return nil, nil
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, checkpoint.ModelFile)
	}
	ck, err := checkpoint.LoadModel(path)
	if err != nil {
		return nil, badInput("%v", err)
	}
	if ck.Config != c {
		return nil, badInput("%s holds a model of another shape than the run's (%s, want %s)", path, ck.Config.JSON(), c.JSON())
	}
	return ck.Params, nil
}

func runNode(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return badInput("usage: cairn node aggregate|work|member|bootstrap|id|job|generate [flags]")
	}
	switch args[0] {
	case "aggregate":
		return runAggregate(args[1:], stdout, stderr)
	case "work":
		return runWork(args[1:], stdout, stderr)
	case "member":
		return runMember(args[1:], stdout, stderr)
	case "bootstrap":
		return runBootstrap(args[1:], stdout, stderr)
	case "id":
		return runNodeID(args[1:], stdout, stderr)
	case "job":
		return runJob(args[1:], stdout, stderr)
	case "generate":
		return runGenerate(args[1:], stdout, stderr)
	}
	return badInput("usage: cairn node aggregate|work|member|bootstrap|id|job|generate [flags]")
}

func logger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// signalContext ends on SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func serveMetrics(addr string, reg *metrics.Registry, log *slog.Logger) (func(), error) {
	if addr == "" {
		return func() {}, nil
	}
	srv, at, err := metrics.Serve(addr, reg)
	if err != nil {
		return nil, badInput("%v", err)
	}
	log.Info("metrics", "url", "http://"+at+"/metrics")
	return func() { srv.Close() }, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func runAggregate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("node aggregate", stderr)
	run := bindRun(fs, diloco.DefaultConfig())
	dir := fs.String("data-dir", "cairn-aggregator", "identity key, run state and final model (a directory with state resumes its run)")
	listen := fs.String("listen", "/ip4/0.0.0.0/tcp/4001,/ip4/0.0.0.0/udp/4001/quic-v1", "comma-separated multiaddrs to listen on")
	evalBatches := fs.Int("eval-batches", 20, "validation batches after each round (0: the whole split)")
	threads := fs.Int("threads", 0, "threads for evaluation (default: all cores)")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics on this host:port")
	initPath := fs.String("init", "", "start a new run from this model file (default: the seed's initialisation)")
	verbose := fs.Bool("v", false, "debug logging")
	params, accts := bindGenesisFlags(fs, "at the ledger's creation")
	ledgerAt := fs.String("ledger", "embedded", "the run's ledger: 'embedded' (a chain in --data-dir) or the RPC address host:port of a validator of a CometBFT network of the ledger ('cairn chain start'; this node must be one of its authorities)")
	httpAddr := fs.String("http", "", "serve the live view (loss chart, workers, ledger; read-only) on this host:port")
	httpPublic := fs.Bool("http-public", false, "let --http bind to an address other than loopback")
	httpLinger := fs.Duration("http-linger", 0, "keep the live view up this long after the run (until interrupted)")
	validate := fs.Bool("validate", false, "validate the rounds: recompute a sample of contributions (and every suspicious one) from the states their workers reveal, and slash those that fail")
	privateTol := fs.Float64("private-tolerance", -1, "take contributions trained on private data ('cairn node work --private-data'): nobody can recompute them, so one that worsens the held-out loss by more than this many nats is failed and its worker slashed (implies --validate; negative: take none)")
	secaggMin := fs.Int("secagg", 0, "with --private-tolerance: private workers contribute only through secure-aggregation cohorts of at least this many (the aggregator sees only each cohort's sum; fewer private workers sit the round out); 0: each private contribution is sent in the clear and judged alone")
	secaggBits := fs.Int("secagg-bits", 16, "with --secagg: bits per fixed-point value (8 to 32)")
	startWith := fs.Int("start-with", 0, "hold a new run's first round until this many workers are present (at most --start-wait; 0: the quorum suffices)")
	startWait := fs.Duration("start-wait", time.Minute, "with --start-with: how long the first round waits for them before opening with the quorum")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *startWith < 0 || *startWait <= 0 {
		return badInput("--start-with must not be negative and --start-wait must be positive, got %d and %v", *startWith, *startWait)
	}
	chainRPC, err := ledgerFlag(*ledgerAt)
	if err != nil {
		return err
	}
	if *privateTol >= 0 {
		run.cfg.Private = &diloco.Private{Tolerance: *privateTol}
		if *secaggMin > 0 {
			run.cfg.Private.SecAgg = run.cfg.DefaultSecAgg()
			run.cfg.Private.SecAgg.MinCohort, run.cfg.Private.SecAgg.Bits = *secaggMin, *secaggBits
		}
	} else if math.IsNaN(*privateTol) {
		return badInput("--private-tolerance must be a number")
	}
	if *secaggMin != 0 && run.cfg.Private == nil {
		return badInput("--secagg needs --private-tolerance: secure aggregation is for private contributions")
	}
	text, err := run.load()
	if err != nil {
		return err
	}
	cfg := run.cfg
	var validation *node.ValidationOptions
	if *validate || cfg.Private != nil {
		validation = &node.ValidationOptions{Threads: 1}
	}
	init, err := loadInit(*initPath, cfg.Model)
	if err != nil {
		return err
	}
	log := logger(stderr, *verbose)
	reg := metrics.NewRegistry()
	stop, err := serveMetrics(*metricsAddr, reg, log)
	if err != nil {
		return err
	}
	defer stop()
	hub, stopWeb, err := startWeb(stdout, *httpAddr, *httpPublic, *dir, cfg.Rounds)
	if err != nil {
		return err
	}
	defer stopWeb()
	a, err := node.StartAggregator(node.AggregatorOptions{DataDir: *dir, Listen: splitList(*listen), Config: cfg, Init: init, Text: text,
		EvalBatches: *evalBatches, Threads: *threads, Metrics: reg, Log: log, Ledger: params, Accounts: accts.list(), ChainRPC: chainRPC, Validation: validation,
		StartWith: *startWith, StartWait: *startWait,
		OnRound: func(r node.RoundInfo) { hub.AddRound(webRound(r, cfg, max(len(r.Contributors), 1))) }})
	if err != nil {
		return badInput("%v", err)
	}
	defer a.Close()
	hub.SetLedgerSource(a.LedgerHost(), p2p.AccountOf)
	if info := a.Ledger(); info.MinStake > 0 && len(accts.byKey) == 0 {
		fmt.Fprintf(stdout, "only identities with a stake of %d take part: fund them with --stake PEERID=AMOUNT when the ledger is created, or run with --min-stake 0 for an open run\n", info.MinStake)
	}
	fmt.Fprintln(stdout, "workers join with one of:")
	for _, addr := range a.Addrs() {
		fmt.Fprintf(stdout, "  cairn node work --join %s\n", addr)
	}
	ctx, cancel := signalContext()
	defer cancel()
	if err := a.Run(ctx); err != nil {
		if ctx.Err() != nil {
			log.Info("stopped; the run resumes from " + *dir)
			return nil
		}
		return err
	}
	hub.Finish()
	lingerWeb(ctx, stdout, *httpAddr, *httpLinger)
	return nil
}

func runWork(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("node work", stderr)
	join := fs.String("join", "", "the aggregator's multiaddr, e.g. /ip4/1.2.3.4/tcp/4001/p2p/12D3KooW...")
	ledgerAt := fs.String("ledger", "embedded", "where this worker reaches the run's ledger: 'embedded' (through the aggregator) or the RPC address host:port of any validator of the run's CometBFT chain")
	dir := fs.String("data-dir", "cairn-worker", "identity key")
	listen := fs.String("listen", "/ip4/0.0.0.0/tcp/0,/ip4/0.0.0.0/udp/0/quic-v1", "comma-separated multiaddrs to listen on (peers fetch weights here)")
	data := fs.String("data", "", "the run's text (default: the embedded tiny shakespeare)")
	privatePath := fs.String("private-data", "", "train on this text, which only this node holds, instead of the run's data (the run must take private contributions; they are judged by their effect on the held-out loss, and the text never leaves this machine)")
	threads := fs.Int("threads", 0, "threads (default: all cores)")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics on this host:port")
	link := bindLink(fs, "this node's streams", 0, 0)
	kernel := kernelFlag(fs)
	asJSON := fs.Bool("json", false, "end with the worker's stats as one line of JSON instead of the summary line")
	tokf := bindTokenizer(fs)
	verbose := fs.Bool("v", false, "debug logging")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *join == "" {
		return badInput("--join MULTIADDR is required")
	}
	if err := selectKernel(*kernel); err != nil {
		return err
	}
	if err := link.check(); err != nil {
		return err
	}
	text, err := corpus.Load(*data)
	if err != nil {
		return badInput("%v", err)
	}
	var private []byte
	if *privatePath != "" {
		if private, err = corpus.Load(*privatePath); err != nil {
			return badInput("--private-data: %v", err)
		}
	}
	tok, err := tokf.load()
	if err != nil {
		return err
	}
	log := logger(stderr, *verbose)
	reg := metrics.NewRegistry()
	stop, err := serveMetrics(*metricsAddr, reg, log)
	if err != nil {
		return err
	}
	defer stop()
	chainRPC, err := ledgerFlag(*ledgerAt)
	if err != nil {
		return err
	}
	w, err := node.StartWorker(node.WorkerOptions{ChainRPC: chainRPC, DataDir: *dir, Listen: splitList(*listen), Join: *join, Text: text, Tokenizer: tok, PrivateData: private,
		Threads: *threads, LinkBytesPerSec: link.bytesPerSec(), LinkRTT: *link.rtt, LinkLoss: *link.loss, Metrics: reg, Log: log})
	if err != nil {
		return badInput("%v", err)
	}
	defer w.Close()
	log.Info("worker started", "id", w.ID(), "addrs", w.Addrs(), "kernel", verify.CurrentPath())
	ctx, cancel := signalContext()
	defer cancel()
	how := "run finished"
	if err := w.Run(ctx); err != nil {
		if ctx.Err() == nil {
			return err
		}
		how = "stopped"
	}
	st := w.Stats()
	if *asJSON {
		return json.NewEncoder(stdout).Encode(st)
	}
	fmt.Fprintf(stdout, "%s: %d contributions accepted, %d refused, compute %.1f%% of %s; balance %d units, stake %d\n",
		how, st.Rounds, st.Refused, 100*st.Compute.Seconds()/time.Since(st.Start).Seconds(), time.Since(st.Start).Round(time.Second), st.Balance, st.Stake)
	return nil
}

// bindGenesisFlags binds --stake, --fund, --min-stake and --emission,
// the rules and accounts of a ledger's genesis; when says when they apply.
func bindGenesisFlags(fs *flag.FlagSet, when string) (*node.LedgerParams, *genesisAccounts) {
	params := node.DefaultLedgerParams()
	accts := &genesisAccounts{byKey: map[ledger.PubKey]*ledger.GenesisAccount{}}
	fs.Var(accountFlag{accts, true}, "stake", "bond AMOUNT units as PEERID's stake "+when+": `PEERID=AMOUNT` (repeatable)")
	fs.Var(accountFlag{accts, false}, "fund", "give PEERID a balance of AMOUNT units "+when+" (it bonds the minimum stake by itself when it joins): `PEERID=AMOUNT` (repeatable)")
	fs.Uint64Var(&params.MinStake, "min-stake", params.MinStake, "stake an identity needs to take part; 0 for an open run")
	fs.Uint64Var(&params.EmissionPerRound, "emission", params.EmissionPerRound, "units paid per round, split among its contributions pro rata to tokens")
	return &params, accts
}

// genesisAccounts are the accounts --stake and --fund give the ledger at
// its creation.
type genesisAccounts struct {
	byKey map[ledger.PubKey]*ledger.GenesisAccount
}

func (g *genesisAccounts) list() []ledger.GenesisAccount {
	var out []ledger.GenesisAccount
	for _, a := range g.byKey {
		out = append(out, *a)
	}
	return out
}

// accountFlag reads PEERID=AMOUNT into a stake or a balance.
type accountFlag struct {
	accts *genesisAccounts
	stake bool
}

func (f accountFlag) String() string { return "" }

func (f accountFlag) Set(s string) error {
	id, amount, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("want PEERID=AMOUNT, got %q", s)
	}
	k, err := p2p.ParseAccount(id)
	if err != nil {
		return err
	}
	n, err := strconv.ParseUint(amount, 10, 64)
	if err != nil {
		return fmt.Errorf("amount %q is not a whole number of units", amount)
	}
	a := f.accts.byKey[k]
	if a == nil {
		a = &ledger.GenesisAccount{Key: k}
		f.accts.byKey[k] = a
	}
	to := &a.Balance
	if f.stake {
		to = &a.Stake
	}
	sum, carry := bits.Add64(*to, n, 0)
	if carry != 0 {
		return fmt.Errorf("%s: amounts add up to more than 2^64-1", id)
	}
	*to = sum
	return nil
}

// ledgerFlag reads --ledger: "embedded" (or empty) gives "", anything
// else must be a validator's RPC address.
func ledgerFlag(v string) (string, error) {
	if v == "" || v == "embedded" {
		return "", nil
	}
	addr := strings.TrimPrefix(strings.TrimPrefix(strings.TrimPrefix(v, "http://"), "tcp://"), "https://")
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", badInput("--ledger %q: want 'embedded' or a validator's RPC address host:port", v)
	}
	return v, nil
}

// linkSpec are the flags of an emulated link: --link-mbps, --link-rtt and
// --link-loss.
type linkSpec struct {
	mbps, loss *float64
	rtt        *time.Duration
}

// bindLink registers the link flags on fs; who names the link in their
// help ("each worker's link", say), and mbps and rtt are the defaults.
func bindLink(fs *flag.FlagSet, who string, mbps float64, rtt time.Duration) linkSpec {
	return linkSpec{
		mbps: fs.Float64("link-mbps", mbps, "throttle "+who+" to this many Mbit/s each way (0: unlimited)"),
		rtt:  fs.Duration("link-rtt", rtt, "add this round-trip time to every request on "+who+" (e.g. 100ms)"),
		loss: fs.Float64("link-loss", 0, "drop this share of the packets on "+who+" (e.g. 0.01): each piece of a transfer that loses one stalls for a retransmission timeout, max(2·RTT, 200ms)"),
	}
}

// check refuses negative rates and times and a loss outside [0, 1).
func (l linkSpec) check() error {
	if *l.mbps < 0 || *l.rtt < 0 || !(*l.loss >= 0 && *l.loss < 1) {
		return badInput("--link-mbps and --link-rtt must not be negative, and --link-loss must be in [0, 1)")
	}
	return nil
}

// bytesPerSec is the link's rate in bytes per second (0: unlimited).
func (l linkSpec) bytesPerSec() float64 { return *l.mbps * 1e6 / 8 }

// codecFlag is a codec flag, stored as ParseCodec writes it canonically.
type codecFlag struct{ c *compress.Codec }

func (f codecFlag) String() string {
	if f.c == nil {
		return ""
	}
	return string(*f.c)
}

func (f codecFlag) Set(s string) error {
	cd, err := compress.ParseCodec(s)
	if err != nil {
		return err
	}
	*f.c = cd
	return nil
}
