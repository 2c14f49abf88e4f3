package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/cairnlabs/cairn/p2p"
)

// runBootstrap is 'cairn node bootstrap': a public node that trains
// nothing and helps the others find and reach each other: it serves the
// run's DHT, answers AutoNAT probes, and relays for nodes behind NAT until
// their hole punch succeeds.
func runBootstrap(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("node bootstrap", stderr)
	dir := fs.String("data-dir", "cairn-bootstrap", "the node's identity (node.key, created if absent): its peer ID is part of the address others give as --bootstrap")
	listen := fs.String("listen", "/ip4/0.0.0.0/tcp/4001,/ip4/0.0.0.0/udp/4001/quic-v1", "comma-separated multiaddrs to listen on")
	var boot listFlag
	fs.Var(&boot, "bootstrap", "another bootstrap node's full multiaddr (repeatable)")
	reach := fs.String("reachability", "auto", "auto (AutoNAT finds out) or public")
	every := fs.Duration("report", time.Minute, "how often to print the peers and relayed circuits")
	verbose := fs.Bool("v", false, "debug logging")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *reach == "private" {
		return badInput("--reachability private: a bootstrap node must be reachable")
	}
	if *every <= 0 {
		return badInput("--report must be positive, got %s", *every)
	}
	boots, err := parseAddrs("--bootstrap", boot)
	if err != nil {
		return err
	}
	key, lock, err := ownIdentity(*dir)
	if err != nil {
		return err
	}
	defer lock.Close()
	log := logger(stderr, *verbose)
	h, err := p2p.NewReachableHost(key, p2p.Reach{Listen: splitList(*listen), Reachability: *reach})
	if err != nil {
		return badInput("%v", err)
	}
	defer h.Close()
	d, err := p2p.NewDiscovery(h, p2p.DiscoveryOptions{Bootstrap: boots, Server: *reach == "public", Log: log})
	if err != nil {
		return err
	}
	defer d.Close()
	ctx, cancel := signalContext()
	defer cancel()
	p2p.LogReachability(ctx, h, log)
	fmt.Fprintf(stdout, "bootstrap node %s listening on %s\n", h.ID(), strings.Join(p2p.Addrs(h), " "))
	go d.Serve(ctx)
	t := time.NewTicker(*every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(stdout, "stopped")
			return nil
		case <-t.C:
			log.Info("bootstrap", "reachability", p2p.Reachability(h), "peers", len(h.Network().Peers()), "dht_servers", d.RoutingTableSize())
		}
	}
}

// ownIdentity loads (creating if absent) the node identity in dir and
// locks dir for this process: two nodes must not share an identity.
func ownIdentity(dir string) (crypto.PrivKey, io.Closer, error) {
	key, err := p2p.LoadIdentity(dir)
	if err != nil {
		return nil, nil, badInput("--data-dir: %v", err)
	}
	lock, err := p2p.LockDir(dir)
	if err != nil {
		return nil, nil, badInput("%v", err)
	}
	return key, lock, nil
}
