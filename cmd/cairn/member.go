package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cairnlabs/cairn/chain"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/experiment"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/node"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/swarmnet"
	"github.com/cairnlabs/cairn/web"
)

// runMember is 'cairn node member': a node of a run without an
// aggregator.
func runMember(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("node member", stderr)
	run := bindRun(fs, diloco.DefaultConfig())
	dir := fs.String("data-dir", "cairn-member", "the node's identity (node.key, created if absent)")
	home := fs.String("chain-home", "", "a validator's home from 'cairn chain init --commit-window', run in this process; the node sends its transactions to it")
	ledgerAt := fs.String("ledger", "", "instead of --chain-home: the RPC address host:port of a validator of the run's chain")
	listen := fs.String("listen", "/ip4/0.0.0.0/tcp/0,/ip4/0.0.0.0/udp/0/quic-v1", "comma-separated multiaddrs to listen on (other members fetch contributions here)")
	var peers, boot listFlag
	fs.Var(&peers, "peer", "another member's full multiaddr /ip4/.../tcp/.../p2p/ID (repeatable)")
	fs.Var(&boot, "bootstrap", "a public node's full multiaddr to join the run's DHT through (repeatable); the other members are then found without --peer, behind NAT too")
	reach := fs.String("reachability", "auto", "whether others can dial this node: auto (AutoNAT finds out), public, or private (behind NAT: reached through a relay, then a hole punch)")
	noRelay := fs.Bool("no-relay-service", false, "when public, do not relay for members behind NAT")
	await := fs.Duration("await-peers", 0, "before the first round, wait up to this long until this node is in touch with every member staked at genesis (0: start at once)")
	view := viewFlags{}
	fs.StringVar(&view.addr, "http", "", "serve the live view of the run as this member sees it (rounds, members, the chain's ledger; read-only) on this host:port")
	fs.BoolVar(&view.public, "http-public", false, "let --http bind to an address other than loopback")
	portMap := fs.Bool("port-map", false, "ask the home router for a port mapping (UPnP/NAT-PMP)")
	fetch := fs.Duration("fetch-timeout", time.Minute, "how long to wait for a round's contributions once its commit window has passed; one not fetched by then is rejected as unavailable")
	orphan := fs.Duration("orphan-grace", 10*time.Second, "give up a contribution whose publisher was a peer and has gone, of which no peer holds any piece, this long after every other contribution is in (rather than at --fetch-timeout)")
	threads := fs.Int("threads", 0, "threads (default: all cores)")
	linger := fs.Duration("linger", 30*time.Second, "with --chain-home: how long at most the validator keeps running after the run, until every member of the last round has voted")
	verbose := fs.Bool("v", false, "debug logging")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if (*home == "") == (*ledgerAt == "") {
		return badInput("give exactly one of --chain-home DIR and --ledger HOST:PORT")
	}
	if *orphan <= 0 {
		return badInput("--orphan-grace must be positive, got %s", *orphan)
	}
	if *fetch <= 0 {
		return badInput("--fetch-timeout must be positive, got %s", *fetch)
	}
	infos, err := parseAddrs("--peer", peers)
	if err != nil {
		return err
	}
	boots, err := parseAddrs("--bootstrap", boot)
	if err != nil {
		return err
	}
	text, err := run.load()
	if err != nil {
		return err
	}
	key, lock, err := ownIdentity(*dir)
	if err != nil {
		return err
	}
	defer lock.Close()
	log := logger(stderr, *verbose)
	rpc := *ledgerAt
	if *home != "" {
		v, err := chain.Start(*home, chain.NodeOptions{})
		if err != nil {
			return badInput("--chain-home: %v", err)
		}
		defer v.Stop()
		rpc = v.RPC()
	}
	c, err := chain.Dial(rpc)
	if err != nil {
		return badInput("%v", err)
	}
	ctx, cancel := signalContext()
	defer cancel()
	ready, cancelReady := context.WithTimeout(ctx, time.Minute)
	err = c.WaitReady(ready)
	cancelReady()
	if err != nil {
		return fmt.Errorf("the validator at %s: %v", rpc, err)
	}
	h, err := p2p.NewReachableHost(key, p2p.Reach{Listen: splitList(*listen), Reachability: *reach, Relays: boots,
		NoRelayService: *noRelay, PortMap: *portMap, Log: log})
	if err != nil {
		return badInput("%v", err)
	}
	defer h.Close()
	p2p.LogReachability(ctx, h, log)
	var find node.Finder
	if len(boots) > 0 {
		g, err := c.Genesis(ctx)
		if err != nil {
			return fmt.Errorf("the validator at %s: %v", rpc, err)
		}
		d, err := p2p.NewDiscovery(h, p2p.DiscoveryOptions{Namespace: g.ChainID, Bootstrap: boots, Log: log})
		if err != nil {
			return err
		}
		defer d.Close()
		find = d
	}
	pool := kernels.NewPool(*threads)
	defer pool.Close()
	log.Info("member started", "id", h.ID(), "addrs", p2p.Addrs(h), "ledger", rpc)
	cfg := run.cfg
	trainPart, _ := corpus.Split(text, 0.9)
	hub, stopWeb, err := startWeb(stdout, view.addr, view.public, "member "+h.ID().String(), cfg.Rounds)
	if err != nil {
		return err
	}
	defer stopWeb()
	hub.SetLedgerSource(rpcLedger{c}, p2p.AccountOf)
	ddpRound := experiment.DDPBytes(cfg, 1) // per worker, over the run
	var xfer swarmnet.Transfers
	final, err := node.RunMember(ctx, node.MemberOptions{Run: cfg, Train: trainPart, Key: key, Host: h, Peers: infos, RPC: rpc, Pool: pool,
		Fetch: *fetch, Orphan: *orphan, Log: log, Find: find, AwaitPeers: *await, OnRound: func(r node.MemberRound) {
			xfer = r.Transfers
			hub.AddRound(web.Round{Round: r.Round + 1, TrainLoss: float64(r.Loss), Tokens: int64(r.Tokens), TookMs: r.Took.Milliseconds(),
				BytesSent: r.Transfers.DirectBytes + r.Transfers.RelayedBytes, DDPBytes: int64(ddpRound / uint64(max(cfg.Rounds, 1)) * uint64(r.Round+1)),
				Accepted: r.Workers, Weights: r.Hash.String()})
			log.Info("round closed", "round", r.Round, "weights", r.Hash.String(), "commits", r.Commits, "aggregated", r.Accepted, "agreed", r.Agreed,
				"reachability", p2p.Reachability(h), "pieces_direct", r.Transfers.Direct, "pieces_relayed", r.Transfers.Relayed)
			fmt.Fprintf(stdout, "round %d/%d: weights %s, %d contributions committed, %d aggregated, train loss %.4f, %s\n",
				r.Round+1, cfg.Rounds, r.Hash, r.Commits, r.Accepted, r.Loss, r.Took.Round(time.Millisecond))
		}})
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stdout, "stopped")
			return nil
		}
		return err
	}
	fmt.Fprintf(stdout, "run finished: weights %s\n", final)
	fmt.Fprintf(stdout, "pieces received: %d direct (%d bytes), %d relayed (%d bytes); this node is %s\n",
		xfer.Direct, xfer.DirectBytes, xfer.Relayed, xfer.RelayedBytes, p2p.Reachability(h))
	if *home != "" {
		// Other members may still need this validator (a chain of four
		// stops at two) to see the last round close: stay until every
		// member of the last round has voted, and a little longer.
		log.Info("waiting for the other members to finish", "at_most", *linger)
		lctx, cancel := context.WithTimeout(ctx, *linger)
		defer cancel()
		node.AwaitVotes(lctx, c, uint64(cfg.Rounds-1), 200*time.Millisecond)
		sleepOrDone(lctx, 2*time.Second)
	}
	return nil
}

// parseAddrs parses full multiaddrs given to flag.
func parseAddrs(flag string, addrs []string) ([]peer.AddrInfo, error) {
	var infos []peer.AddrInfo
	for _, a := range addrs {
		info, err := p2p.ParseAddr(a)
		if err != nil {
			return nil, badInput("%s: %v", flag, err)
		}
		infos = append(infos, info)
	}
	return infos, nil
}

func sleepOrDone(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// runNodeID is 'cairn node id': the peer ID of a data directory's
// identity, created if absent, for genesis stakes and --peer addresses.
func runNodeID(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("node id", stderr)
	dir := fs.String("data-dir", "", "the node's data directory (required)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *dir == "" {
		return badInput("--data-dir is required")
	}
	key, err := p2p.LoadIdentity(*dir)
	if err != nil {
		return badInput("%v", err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, id)
	return nil
}

// rpcLedger reads a chain's ledger through a validator's RPC, for the live
// view.
type rpcLedger struct{ c *chain.Client }

func (l rpcLedger) query(path string, data []byte, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := l.c.Query(ctx, path, data)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func (l rpcLedger) Totals() (t ledger.Totals, err error) { return t, l.query("totals", nil, &t) }

func (l rpcLedger) Round(r uint64) (info ledger.RoundInfo, err error) {
	return info, l.query("round", binary.BigEndian.AppendUint64(nil, r), &info)
}

func (l rpcLedger) AccountOf(k ledger.PubKey) (a ledger.Account, err error) {
	return a, l.query("account", k[:], &a)
}
