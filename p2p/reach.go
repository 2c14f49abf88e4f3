package p2p

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	ma "github.com/multiformats/go-multiaddr"
)

// Reach configures how a host is reached from behind NAT: AutoNAT finds
// out whether the host can be dialled; a host that can offers circuit
// relay v2 to others and answers their AutoNAT probes; a host that cannot
// reserves a slot on a relay, announces the relayed address, and upgrades
// relayed connections to direct ones by hole punching (DCUtR).
type Reach struct {
	// Listen are the multiaddrs to listen on (default DefaultListen).
	Listen []string
	// Reachability is "auto" (AutoNAT decides; the default), "public" or
	// "private" (a person who knows says so).
	Reachability string
	// Relays are peers to ask for a relay slot first when the host is
	// private (bootstrap peers, typically); other connected peers that
	// offer relaying are tried too.
	Relays []peer.AddrInfo
	// NoRelayService turns off relaying for others when public.
	NoRelayService bool
	// PortMap asks the home router for a port mapping (UPnP, NAT-PMP).
	PortMap bool
	// Log, if set, is told the outcome of each hole punch (DCUtR): which
	// peer, whether a direct connection came of it, how long it took and
	// why it failed, so a node that stays relayed can tell why.
	Log *slog.Logger
}

// punchLog logs hole punches.
type punchLog struct{ log *slog.Logger }

func (p punchLog) Trace(e *holepunch.Event) {
	switch ev := e.Evt.(type) {
	case *holepunch.EndHolePunchEvt:
		if ev.Success {
			p.log.Info("hole punch succeeded", "peer", e.Remote, "took", ev.EllapsedTime)
		} else {
			p.log.Info("hole punch failed", "peer", e.Remote, "took", ev.EllapsedTime, "err", ev.Error)
		}
	case *holepunch.ProtocolErrorEvt:
		p.log.Info("hole punch failed", "peer", e.Remote, "err", ev.Error)
	case *holepunch.StartHolePunchEvt:
		p.log.Debug("hole punch started", "peer", e.Remote, "rtt", ev.RTT, "addrs", ev.RemoteAddrs)
	}
}

// RelayLimit bounds what one relayed connection through this node may
// carry: enough for a few rounds' contributions of a small model while a
// hole punch is tried, not an open-ended bandwidth gift to strangers.
var RelayLimit = relayv2.RelayLimit{Duration: 10 * time.Minute, Data: 64 << 20}

// NewReachableHost starts a libp2p host as NewHost does, with NAT
// traversal as r says. It fails on an unknown Reachability or when the
// host cannot listen.
func NewReachableHost(key crypto.PrivKey, r Reach) (host.Host, error) {
	listen := r.Listen
	if len(listen) == 0 {
		listen = DefaultListen
	}
	var src relaySource
	var punch []holepunch.Option
	if r.Log != nil {
		punch = append(punch, holepunch.WithTracer(punchLog{r.Log}))
	}
	res := relayv2.DefaultResources()
	lim := RelayLimit
	res.Limit = &lim
	opts := []libp2p.Option{
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(listen...),
		libp2p.DefaultTransports,
		libp2p.DefaultSecurity,
		libp2p.DefaultMuxers,
		libp2p.EnableNATService(),
		libp2p.EnableHolePunching(punch...),
		libp2p.EnableAutoRelayWithPeerSource(src.peers,
			autorelay.WithBootDelay(0), autorelay.WithMinCandidates(1), autorelay.WithNumRelays(2),
			autorelay.WithMinInterval(5*time.Second), autorelay.WithBackoff(30*time.Second)),
	}
	if !r.NoRelayService {
		opts = append(opts, libp2p.EnableRelayService(relayv2.WithResources(res)))
	}
	if r.PortMap {
		opts = append(opts, libp2p.NATPortMap())
	}
	switch r.Reachability {
	case "", "auto":
	case "public":
		opts = append(opts, libp2p.ForceReachabilityPublic())
	case "private":
		opts = append(opts, libp2p.ForceReachabilityPrivate())
	default:
		return nil, fmt.Errorf("reachability %q: want auto, public or private", r.Reachability)
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("start libp2p host on %v: %v", listen, err)
	}
	src.set(h, r.Relays)
	return h, nil
}

// relaySource gives AutoRelay its candidates: the configured relays,
// then every connected peer (AutoRelay keeps those that do relay).
type relaySource struct {
	mu     sync.Mutex
	h      host.Host
	relays []peer.AddrInfo
}

func (s *relaySource) set(h host.Host, relays []peer.AddrInfo) {
	s.mu.Lock()
	s.h, s.relays = h, relays
	s.mu.Unlock()
}

func (s *relaySource) peers(ctx context.Context, num int) <-chan peer.AddrInfo {
	out := make(chan peer.AddrInfo, num)
	defer close(out)
	s.mu.Lock()
	h, relays := s.h, s.relays
	s.mu.Unlock()
	if h == nil {
		return out
	}
	seen := map[peer.ID]bool{h.ID(): true}
	add := func(info peer.AddrInfo) bool {
		if seen[info.ID] || len(out) == num {
			return len(out) < num
		}
		seen[info.ID] = true
		out <- info
		return len(out) < num
	}
	for _, info := range relays {
		if !add(info) {
			return out
		}
	}
	for _, p := range h.Network().Peers() {
		if !add(peer.AddrInfo{ID: p, Addrs: h.Peerstore().Addrs(p)}) {
			return out
		}
	}
	return out
}

// Relayed reports whether c runs through a relay rather than directly.
func Relayed(c network.Conn) bool {
	if c.Stat().Limited {
		return true
	}
	_, err := c.RemoteMultiaddr().ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// Reachability returns what the host has learnt of its own reachability
// ("public", "private" or "unknown").
func Reachability(h host.Host) string {
	type reach interface{ Reachability() network.Reachability }
	if r, ok := h.(reach); ok {
		switch r.Reachability() {
		case network.ReachabilityPublic:
			return "public"
		case network.ReachabilityPrivate:
			return "private"
		}
	}
	return "unknown"
}

// LogReachability logs what the host learns of its reachability and its
// addresses (relayed ones appear once a relay slot is reserved) until ctx
// ends.
func LogReachability(ctx context.Context, h host.Host, log *slog.Logger) {
	sub, err := h.EventBus().Subscribe([]any{new(event.EvtLocalReachabilityChanged), new(event.EvtLocalAddressesUpdated)})
	if err != nil {
		log.Warn("no reachability events", "err", err)
		return
	}
	go func() {
		defer sub.Close()
		for {
			select {
			case e := <-sub.Out():
				switch e := e.(type) {
				case event.EvtLocalReachabilityChanged:
					log.Info("reachability", "now", strings.ToLower(e.Reachability.String()))
				case event.EvtLocalAddressesUpdated:
					log.Info("addresses", "addrs", h.Addrs())
				}
			case <-ctx.Done():
				return
			}
		}
	}()
}
