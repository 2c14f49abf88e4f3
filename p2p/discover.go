package p2p

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// DHTPrefix is the protocol prefix of Cairn's Kademlia DHT: its own
// network of DHT servers, not IPFS's.
const DHTPrefix = "/cairn"

// Discovery finds the other nodes of a run through a Kademlia DHT: each
// node provides the run's namespace (with its current addresses, relayed
// ones when it is behind NAT) and looks up the other providers. Public
// nodes serve the DHT; nodes behind NAT are its clients.
type Discovery struct {
	h    host.Host
	d    *dht.IpfsDHT
	rd   *drouting.RoutingDiscovery
	ns   string
	boot []peer.AddrInfo
	log  *slog.Logger

	mu   sync.Mutex
	seen map[peer.ID]bool
	wake chan struct{} // Forget asks Run to look again at once
}

// DiscoveryOptions configure a Discovery.
type DiscoveryOptions struct {
	// Namespace names the run (its chain ID, say): nodes of one run find
	// each other under it.
	Namespace string
	// Bootstrap are the nodes to join the DHT through.
	Bootstrap []peer.AddrInfo
	// Server makes the node a DHT server whatever AutoNAT says (a
	// bootstrap node, or a network on private addresses); by default
	// public nodes serve and the others are clients.
	Server bool
	Log    *slog.Logger
}

// NewDiscovery joins the DHT. It fails when the DHT cannot start;
// unreachable bootstrap peers are only logged (Run keeps trying).
func NewDiscovery(h host.Host, o DiscoveryOptions) (*Discovery, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	mode := dht.ModeAuto
	if o.Server {
		mode = dht.ModeServer
	}
	d, err := dht.New(h, dht.ProtocolPrefix(DHTPrefix), dht.Mode(mode), dht.DisableValues(),
		dht.BootstrapPeers(o.Bootstrap...), dht.RoutingTableRefreshPeriod(time.Minute))
	if err != nil {
		return nil, fmt.Errorf("start the DHT: %v", err)
	}
	return &Discovery{h: h, d: d, rd: drouting.NewRoutingDiscovery(d), ns: "cairn/" + o.Namespace, boot: o.Bootstrap, log: o.Log,
		seen: map[peer.ID]bool{}, wake: make(chan struct{}, 1)}, nil
}

// Close stops the DHT.
func (d *Discovery) Close() error { return d.d.Close() }

// Run announces this node and reports every other node found under the
// namespace to found (once each, until Forget), until ctx ends. It looks
// often while the node knows fewer than want peers, then every minute;
// it announces again when the node's addresses change (a relay slot
// reserved, a port mapped).
func (d *Discovery) Run(ctx context.Context, want int, found func(peer.AddrInfo)) {
	for _, b := range d.boot {
		if err := Connect(ctx, d.h, b, 10*time.Second); err != nil {
			d.log.Warn("bootstrap peer not reached", "peer", b.ID, "err", err)
		}
	}
	if err := d.d.Bootstrap(ctx); err != nil {
		d.log.Debug("discovery: DHT bootstrap", "err", err)
	}
	sub, err := d.h.EventBus().Subscribe(new(event.EvtLocalAddressesUpdated))
	if err != nil {
		d.log.Warn("discovery: no address events", "err", err)
	}
	announce := make(chan struct{}, 1)
	announce <- struct{}{}
	if sub != nil {
		defer sub.Close()
		go func() {
			for {
				select {
				case <-sub.Out():
					select {
					case announce <- struct{}{}:
					default:
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() {
		next := time.Now()
		for {
			select {
			case <-announce:
			case <-time.After(time.Until(next)):
			case <-ctx.Done():
				return
			}
			// A provider record carries the addresses of the moment: a
			// fresh one replaces it when they change.
			actx, cancel := context.WithTimeout(ctx, 30*time.Second)
			ttl, err := d.rd.Advertise(actx, d.ns)
			cancel()
			if err != nil {
				d.log.Debug("discovery: announce", "err", err)
				next = time.Now().Add(2 * time.Second)
				continue
			}
			d.log.Debug("discovery: announced", "ns", d.ns, "addrs", d.h.Addrs())
			next = time.Now().Add(min(ttl/2, 10*time.Minute))
		}
	}()
	for {
		d.mu.Lock()
		n := len(d.seen)
		d.mu.Unlock()
		// A lookup runs until it has asked the closest servers; while
		// members are missing, ask again soon rather than wait long.
		look := 20 * time.Second
		if n < want {
			look = 5 * time.Second
		}
		fctx, cancel := context.WithTimeout(ctx, look)
		ch, err := d.rd.FindPeers(fctx, d.ns)
		if err == nil {
			for info := range ch {
				if info.ID == d.h.ID() {
					continue
				}
				d.mu.Lock()
				old := d.seen[info.ID]
				d.seen[info.ID] = true
				d.mu.Unlock()
				if !old {
					found(d.resolve(ctx, info))
				}
			}
		} else {
			d.log.Debug("discovery: find peers", "err", err)
		}
		cancel()
		d.mu.Lock()
		n = len(d.seen)
		d.mu.Unlock()
		wait := time.Minute
		if n < want {
			wait = 2 * time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		case <-d.wake:
			// A found node was not reached: its addresses may change
			// (a relay slot reserved); look for it again shortly.
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
		}
	}
}

// Serve keeps the node in the DHT without announcing anything, for a
// bootstrap node: it connects to the bootstrap peers, fills its routing
// table, and answers other nodes until ctx ends.
func (d *Discovery) Serve(ctx context.Context) {
	for _, b := range d.boot {
		if err := Connect(ctx, d.h, b, 10*time.Second); err != nil {
			d.log.Warn("bootstrap peer not reached", "peer", b.ID, "err", err)
		}
	}
	if err := d.d.Bootstrap(ctx); err != nil {
		d.log.Debug("discovery: DHT bootstrap", "err", err)
	}
	<-ctx.Done()
}

// RoutingTableSize is the number of DHT servers the node knows.
func (d *Discovery) RoutingTableSize() int { return d.d.RoutingTable().Size() }

// Forget lets Run report p again when it is found next (after a failed
// connection, say).
func (d *Discovery) Forget(p peer.ID) {
	d.mu.Lock()
	delete(d.seen, p)
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// resolve asks the DHT for a provider's current addresses when those it
// came with cannot be dialled from outside its own network (a node behind
// NAT announced before it had a relay slot): the DHT servers it is
// connected to know its relayed addresses.
func (d *Discovery) resolve(ctx context.Context, info peer.AddrInfo) peer.AddrInfo {
	if slices.ContainsFunc(info.Addrs, dialable) {
		return info
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if got, err := d.d.FindPeer(fctx, info.ID); err == nil && slices.ContainsFunc(got.Addrs, dialable) {
		return got
	}
	return info
}

// dialable reports whether a is an address that can be reached across
// the internet: public, or through a relay.
func dialable(a ma.Multiaddr) bool {
	if _, err := a.ValueForProtocol(ma.P_CIRCUIT); err == nil {
		return true
	}
	return manet.IsPublicAddr(a)
}
