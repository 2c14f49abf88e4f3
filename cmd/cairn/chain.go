package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairnlabs/cairn/chain"
	"github.com/cairnlabs/cairn/experiment"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/node"
	"github.com/cairnlabs/cairn/p2p"
)

const chainUsage = "usage: cairn chain init|start|bench|faults|verify (run 'cairn chain SUBCOMMAND -h')"

// runChain runs the ledger as a CometBFT network: its configuration, a
// validator, a load benchmark and the fault drill.
func runChain(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return badInput(chainUsage)
	}
	switch args[0] {
	case "init":
		return chainInit(args[1:], stdout, stderr)
	case "start":
		return chainStart(args[1:], stdout, stderr)
	case "bench":
		return chainBench(args[1:], stdout, stderr)
	case "faults":
		return chainFaults(args[1:], stdout, stderr)
	case "verify":
		return chainVerify(args[1:], stdout, stderr)
	}
	return badInput("%s (unknown %q)", chainUsage, args[0])
}

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	*l = append(*l, s)
	return nil
}

func chainInit(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("chain init", stderr)
	n := fs.Int("validators", 4, "validators in the network")
	out := fs.String("out", "cairn-chain", "directory for the validators' homes (must not hold a network already)")
	chainID := fs.String("chain-id", "cairn-chain", "the chain's ID (every ledger signature covers it)")
	organiser := fs.String("organiser", "", "data directory of the organiser's node (its identity is created there if absent) whose key signs round results and settlements (default OUT/organiser)")
	var authorities listFlag
	fs.Var(&authorities, "authority", "another identity that may sign round results and settlements: `PEERID` (repeatable)")
	basePort := fs.Int("base-port", 26656, "validator i listens for peers on BASE+2i and serves RPC on BASE+2i+1")
	blockTime := fs.Duration("timeout-commit", 300*time.Millisecond, "pause after each block (sets the block time with the consensus rounds)")
	empty := fs.Duration("empty-blocks", 10*time.Second, "interval of blocks without transactions (0: none)")
	window := fs.Duration("commit-window", 0, "run the chain's rounds without an aggregator (member rounds, for 'cairn node member'): each round takes commitments for this long in block time, then its workers vote on the result (0: rounds closed by the organiser)")
	memberChecks := fs.Bool("member-checks", false, "with --commit-window: the members also validate, each recomputing a sample of every round's contributions, and a majority of their verdicts settles the round (paying and slashing); without it member rounds are paid unchecked")
	committee := fs.Int("check-committee", 0, "with --member-checks: only this many of each round's members, picked by the hash of the block that closed it, recompute and send verdicts, and a majority of them settles the round (0: every member)")
	benchAccts := fs.Int("bench-accounts", 0, "fund this many well-known accounts for 'cairn chain bench' (their keys are public: for test networks only)")
	params, accts := bindGenesisFlags(fs, "in the genesis")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *n < 1 || *n > chain.MaxValidators {
		return badInput("--validators %d: want 1..%d", *n, chain.MaxValidators)
	}
	if *benchAccts < 0 || *benchAccts > chain.MaxBenchAccounts {
		return badInput("--bench-accounts %d: want 0..%d", *benchAccts, chain.MaxBenchAccounts)
	}
	if *window < 0 || *window > 0 && (*empty <= 0 || *empty > *window) {
		return badInput("--commit-window %s: want a positive window with --empty-blocks between 0 and it (members wait for block time to pass their window)", *window)
	}
	if *memberChecks && *window == 0 {
		return badInput("--member-checks needs member rounds (--commit-window)")
	}
	if *committee < 0 || *committee > ledger.MaxCheckCommittee || *committee > 0 && !*memberChecks {
		return badInput("--check-committee %d: want 0..%d, with --member-checks", *committee, ledger.MaxCheckCommittee)
	}
	if *empty == 0 {
		*empty = -1
	}
	if *organiser == "" {
		*organiser = filepath.Join(*out, "organiser")
	}
	if _, err := os.Stat(filepath.Join(*out, chain.NetworkFile)); err == nil {
		return badInput("%s already holds a network (%s): choose a new directory", *out, chain.NetworkFile)
	}
	var others []ledger.PubKey
	for _, a := range authorities {
		k, err := p2p.ParseAccount(a)
		if err != nil {
			return badInput("--authority: %v", err)
		}
		others = append(others, k)
	}
	key, err := p2p.LoadIdentity(*organiser)
	if err != nil {
		return badInput("--organiser: %v", err)
	}
	lk, err := p2p.LedgerKey(key)
	if err != nil {
		return badInput("--organiser: %v", err)
	}
	auth := append([]ledger.PubKey{ledger.KeyOf(lk)}, others...)
	list := accts.list()
	for i := range *benchAccts {
		k := ledger.KeyOf(chain.BenchKey(i))
		if a, ok := accts.byKey[k]; ok {
			a.Balance += chain.BenchFunds
		} else {
			list = append(list, ledger.GenesisAccount{Key: k, Balance: chain.BenchFunds})
		}
	}
	g, err := node.ChainGenesis(*chainID, auth, list, *params)
	if err != nil {
		return badInput("%v", err)
	}
	g.CommitWindow = int64(*window)
	g.MemberChecks = *memberChecks
	g.CheckCommittee = uint32(*committee)
	net, err := chain.Init(chain.InitOptions{Validators: *n, Out: *out, Genesis: *g, BasePort: *basePort,
		TimeoutCommit: *blockTime, EmptyBlocksInterval: *empty})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "chain %s: %d validators in %s; organiser %s (its data directory %s)\n", net.ChainID, len(net.Validators), *out, p2p.PeerIDOf(auth[0]), *organiser)
	for _, v := range net.Validators {
		fmt.Fprintf(stdout, "  cairn chain start --home %s    # RPC %s\n", v.Home, v.RPC)
	}
	if *window > 0 {
		fmt.Fprintf(stdout, "member rounds: each member runs 'cairn node member --chain-home HOME --peer ...' with the same run flags\n")
	} else {
		fmt.Fprintf(stdout, "then: cairn node aggregate --data-dir %s --ledger %s\n", *organiser, net.Validators[0].RPC)
	}
	return nil
}

func chainStart(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("chain start", stderr)
	home := fs.String("home", "", "the validator's home directory (from 'cairn chain init')")
	rpc := fs.String("rpc", "", "RPC listen address host:port (default: the home's config.toml)")
	verbose := fs.Bool("v", false, "CometBFT's info-level log")
	httpAddr := fs.String("http", "", "serve the live view of the chain's ledger (accounts, stakes, rewards, slashing; read-only) on this host:port")
	httpPublic := fs.Bool("http-public", false, "let --http bind to an address other than loopback")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *home == "" {
		return badInput("--home is required")
	}
	n, err := chain.Start(*home, chain.NodeOptions{RPC: *rpc, Log: stderr, Verbose: *verbose})
	if err != nil {
		return badInput("%v", err)
	}
	fmt.Fprintf(stdout, "validator %s: RPC %s, at height %d\n", *home, n.RPC(), n.Height())
	hub, stopWeb, err := startWeb(stdout, *httpAddr, *httpPublic, filepath.Base(*home), 0)
	if err != nil {
		n.Stop()
		return err
	}
	defer stopWeb()
	hub.SetLedgerSource(validatorLedger{n}, p2p.AccountOf)
	hub.ListAccounts(p2p.PeerIDOf)
	ctx, cancel := signalContext()
	defer cancel()
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintf(stdout, "stopping at height %d\n", n.Height())
			return n.Stop()
		case <-tick.C:
			fmt.Fprintf(stdout, "height %d\n", n.Height())
		}
	}
}

func chainBench(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("chain bench", stderr)
	var rpcs listFlag
	fs.Var(&rpcs, "rpc", "a validator's RPC address `host:port` (repeatable: senders spread over them; the first reports blocks)")
	rate := fs.Float64("rate", 600, "transactions per second to submit")
	dur := fs.Duration("duration", 20*time.Second, "how long to submit")
	accounts := fs.Int("accounts", 64, "funded bench accounts (as given to chain init --bench-accounts)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if len(rpcs) == 0 {
		return badInput("--rpc is required")
	}
	if *rate <= 0 || *rate > 100000 || *dur <= 0 || *dur > time.Hour {
		return badInput("--rate must be in (0, 100000] and --duration in (0, 1h]")
	}
	clients, err := dialAll(rpcs)
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	fmt.Fprintf(stdout, "submitting %.0f transfers/s for %v to %s\n", *rate, *dur, strings.Join(rpcs, ", "))
	rep, err := chain.Bench(ctx, chain.BenchOptions{Clients: clients, Rate: *rate, Duration: *dur, Accounts: *accounts,
		Progress: func(sent, committed int, height int64) {
			fmt.Fprintf(stderr, "\rsent %d, committed %d, height %d   ", sent, committed, height)
		}})
	fmt.Fprintln(stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sent %d, refused %d, committed %d, failed in block %d, missing %d\n", rep.Sent, rep.Refused, rep.Committed, rep.Failed, rep.Missing)
	if len(rep.MissingTxs) > 0 {
		fmt.Fprintf(stdout, "missing, for example: %v\n", rep.MissingTxs)
	}
	if rep.FirstErr != "" {
		fmt.Fprintf(stdout, "first refusal: %s\n", rep.FirstErr)
	}
	fmt.Fprintf(stdout, "committed %.0f tx/s over %v; %d blocks, block time p50 %v, max %v; latency broadcast to commit p50 %v, p99 %v, max %v\n",
		rep.TPS, rep.Span.Round(time.Millisecond), rep.Blocks, rep.BlockTimeP50.Round(time.Millisecond), rep.BlockMax.Round(time.Millisecond),
		rep.LatencyP50.Round(time.Millisecond), rep.LatencyP99.Round(time.Millisecond), rep.LatencyMax.Round(time.Millisecond))
	return nil
}

func chainFaults(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("chain faults", stderr)
	dir := fs.String("dir", "", "directory for the network and the validators' logs (default: a new temporary directory, removed unless a check fails)")
	basePort := fs.Int("base-port", 46656, "validator i listens on BASE+2i (peers) and BASE+2i+1 (RPC)")
	load := fs.Float64("load", 20, "transfers per second submitted throughout")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	keep := *dir != ""
	if !keep {
		if *dir, err = os.MkdirTemp("", "cairn-chain-faults-"); err != nil {
			return err
		}
	}
	ctx, cancel := signalContext()
	defer cancel()
	fmt.Fprintf(stdout, "fault drill: 4 validators as processes in %s, %g transfers/s throughout\n", *dir, *load)
	rep, err := experiment.ChainFaults(ctx, experiment.ChainFaultsOptions{Binary: bin, Dir: *dir, BasePort: *basePort, Load: *load, Log: stdout})
	if err != nil {
		return fmt.Errorf("%v (the network and its logs: %s)", err, *dir)
	}
	failed := 0
	for _, c := range rep.Checks {
		if !c.OK {
			failed++
		}
	}
	if failed > 0 {
		return failedCheck{fmt.Sprintf("%d of %d checks failed (the network and its logs: %s)", failed, len(rep.Checks), *dir)}
	}
	fmt.Fprintf(stdout, "all %d checks hold\n", len(rep.Checks))
	if !keep {
		os.RemoveAll(*dir)
	}
	return nil
}

// chainVerify checks that validators agree on every block and app hash.
func chainVerify(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("chain verify", stderr)
	var rpcs listFlag
	fs.Var(&rpcs, "rpc", "a validator's RPC address `host:port` (repeatable: give every validator to compare)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if len(rpcs) == 0 {
		return badInput("--rpc is required")
	}
	clients, err := dialAll(rpcs)
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	a, err := chain.Compare(ctx, clients)
	if err != nil {
		return failedCheck{err.Error()}
	}
	fmt.Fprintf(stdout, "chain intact: %d validators hold the same block hash and app hash at all %d heights (%d transactions)\n", len(clients), a.Heights, a.Txs)
	return nil
}

// dialAll returns a client per RPC address; a bad address is bad input.
func dialAll(rpcs []string) ([]*chain.Client, error) {
	var clients []*chain.Client
	for _, r := range rpcs {
		c, err := chain.Dial(r)
		if err != nil {
			return nil, badInput("%v", err)
		}
		clients = append(clients, c)
	}
	return clients, nil
}

// validatorLedger reads a validator's ledger for the live view.
type validatorLedger struct{ n *chain.Node }

func (v validatorLedger) read(f func(*ledger.Ledger) error) error {
	err := errors.New("the validator has no ledger yet")
	v.n.App().Ledger(func(l *ledger.Ledger) {
		if l != nil {
			err = f(l)
		}
	})
	return err
}

func (v validatorLedger) Totals() (t ledger.Totals, err error) {
	err = v.read(func(l *ledger.Ledger) error { t, err = l.Totals(); return err })
	return t, err
}

func (v validatorLedger) Round(r uint64) (info ledger.RoundInfo, err error) {
	err = v.read(func(l *ledger.Ledger) error { info, err = l.Round(r); return err })
	return info, err
}

func (v validatorLedger) AccountOf(k ledger.PubKey) (a ledger.Account, err error) {
	err = v.read(func(l *ledger.Ledger) error { a, err = l.Account(k); return err })
	return a, err
}

func (v validatorLedger) Accounts() (as []ledger.Account, err error) {
	err = v.read(func(l *ledger.Ledger) error { as, err = l.Accounts(); return err })
	return as, err
}
