package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/cairnlabs/cairn/metrics"
	"github.com/cairnlabs/cairn/node"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/store"
	"github.com/cairnlabs/cairn/synth"
)

// runJob is 'cairn node job': a generation job's coordinator.
func runJob(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("node job", stderr)
	dir := fs.String("data-dir", "cairn-job", "identity key, the job's samples and its chain (a directory with state resumes it)")
	listen := fs.String("listen", "/ip4/0.0.0.0/tcp/4021,/ip4/0.0.0.0/udp/4021/quic-v1", "comma-separated multiaddrs to listen on")
	d := synth.DefaultDifficulty
	fs.IntVar(&d.Numbers, "numbers", d.Numbers, "Countdown problems of this many numbers (3 to 6)")
	fs.IntVar(&d.Max, "max", d.Max, "largest given number (2 to 1000)")
	seed := fs.Uint64("seed", 1, "the job's problems' seed")
	perBatch := fs.Int("per-batch", 8, "problems a batch (1 to 64)")
	reward := fs.Uint64("reward", 100, "units paid for each verified sample")
	params, accts := bindGenesisFlags(fs, "at the chain's creation")
	out := fs.String("out", "", "on stop, write the verified samples as a training text here (and OUT.manifest.json: each sample's hash and worker)")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics on this host:port")
	verbose := fs.Bool("v", false, "debug logging")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if err := d.Validate(); err != nil {
		return badInput("%v", err)
	}
	if *perBatch < 1 || *perBatch > 64 || *reward == 0 {
		return badInput("--per-batch 1 to 64, --reward positive")
	}
	log := logger(stderr, *verbose)
	reg := metrics.NewRegistry()
	stop, err := serveMetrics(*metricsAddr, reg, log)
	if err != nil {
		return err
	}
	defer stop()
	j, err := node.StartJob(node.JobOptions{DataDir: *dir, Listen: splitList(*listen), Difficulty: d, Seed: *seed, PerBatch: *perBatch, Reward: *reward,
		Ledger: params, Accounts: accts.list(), Metrics: reg, Log: log})
	if err != nil {
		return badInput("%v", err)
	}
	defer j.Close()
	fmt.Fprintln(stdout, "workers join with one of:")
	for _, a := range j.Addrs() {
		fmt.Fprintf(stdout, "  cairn node generate --join %s\n", a)
	}
	ctx, cancel := signalContext()
	defer cancel()
	<-ctx.Done()
	st := j.Stats()
	fmt.Fprintf(stdout, "stopped: %d samples held; %d verified and %d wrong since the start\n", st.Held, st.Verified, st.Wrong)
	if *out == "" {
		return nil
	}
	return exportSamples(j.Samples(), *out, stdout)
}

// exportSamples writes a job's verified samples as training text (a line
// each: the prompt and its solution) and a manifest.
func exportSamples(s *store.SampleStore, out string, stdout io.Writer) error {
	type entry struct {
		Number  uint64 `json:"number"`
		Hash    string `json:"hash"`
		Worker  string `json:"worker"`
		Verdict string `json:"verdict"` // verified (in the text) or wrong (slashed, left out)
	}
	var text []byte
	var man []entry
	verified := 0
	err := s.Each(func(x store.Sample) error {
		h := x.Hash()
		e := entry{Number: x.N, Hash: hex.EncodeToString(h[:]), Worker: p2p.PeerIDOf(x.Worker), Verdict: "verified"}
		if x.Wrong {
			e.Verdict = "wrong"
		} else {
			text = append(text, x.Prompt+x.Solution...)
			verified++
		}
		man = append(man, e)
		return nil
	})
	if err != nil {
		return err
	}
	mj, err := json.MarshalIndent(man, "", " ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(out, text); err != nil {
		return err
	}
	if err := writeFileAtomic(out+".manifest.json", mj); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d verified samples: %s (and %s.manifest.json, with the %d wrong ones' verdicts)\n", verified, out, out, len(man)-verified)
	return nil
}

// runGenerate is 'cairn node generate': a generation job's worker.
func runGenerate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("node generate", stderr)
	join := fs.String("join", "", "the job's multiaddr")
	dir := fs.String("data-dir", "cairn-generator", "identity key (it needs a stake on the job's chain)")
	ckpt := fs.String("ckpt", "", "solve with this model by tree search (default: exhaustive search, no model)")
	budget := fs.Int("budget", 2000, "with --ckpt: model rows a problem")
	legal := fs.Bool("legal", true, "with --ckpt: the tree search expands over every legal step, the model's probabilities its priors; --legal=false over the first steps of sampled completions")
	batches := fs.Int("batches", 10, "batches to solve")
	first := fs.Uint64("first-batch", 0, "the first batch's number")
	threads := fs.Int("threads", 0, "threads (default: all cores)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *join == "" || *batches < 1 || *budget < 1 {
		return badInput("--join is required, --batches and --budget at least 1")
	}
	solve := func(p synth.Problem) ([]synth.Step, bool) { return synth.Solve(p) }
	if *ckpt != "" {
		m, pool, err := loadModel(*ckpt, *threads)
		if err != nil {
			return err
		}
		defer pool.Close()
		pol := synth.NewModelPolicy(m, 1, uint64(time.Now().UnixNano()))
		solve = func(p synth.Problem) ([]synth.Step, bool) {
			r, err := synth.MCTS(p, pol, synth.SearchOptions{Budget: *budget, Expand: 8, Legal: *legal})
			return r.Steps, err == nil && r.Steps != nil
		}
	}
	key, err := p2p.LoadIdentity(*dir)
	if err != nil {
		return err
	}
	tr, err := p2p.NewTransport(key, []string{"/ip4/0.0.0.0/tcp/0"})
	if err != nil {
		return err
	}
	defer tr.Close()
	ctx, cancel := signalContext()
	defer cancel()
	dctx, dcancel := context.WithTimeout(ctx, time.Minute)
	c, err := node.DialJob(dctx, tr, *join)
	dcancel()
	if err != nil {
		return err
	}
	var verified, wrong int
	var reward uint64
	for b := *first; b < *first+uint64(*batches); b++ {
		rep, err := c.Batch(ctx, b)
		if err != nil {
			return err
		}
		reward = rep.Reward
		sols := make([]string, len(rep.Problems))
		for k, p := range rep.Problems {
			if steps, ok := solve(p); ok {
				sols[k] = synth.FormatSolution(steps)
			}
		}
		v, err := c.Submit(ctx, b, sols)
		if err != nil {
			return err
		}
		verified, wrong = verified+v.Verified, wrong+v.Wrong
		fmt.Fprintf(stdout, "batch %d: %d verified, %d wrong, %d unanswered, %d seen before\n", b, v.Verified, v.Wrong, v.Unanswered, v.Seen)
	}
	fmt.Fprintf(stdout, "%d samples verified (%d units each), %d wrong, as %s\n", verified, reward, wrong, tr.ID())
	return nil
}
