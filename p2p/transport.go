package p2p

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/cairnlabs/cairn/wire"
)

// Transport is a libp2p host seen as request streams between verified
// identities (peer IDs as strings). It satisfies node.Transport.
type Transport struct {
	h host.Host
}

// NewTransport starts a host with the given identity on the given
// multiaddrs (see NewHost).
func NewTransport(key crypto.PrivKey, listen []string) (*Transport, error) {
	h, err := NewHost(key, listen)
	if err != nil {
		return nil, err
	}
	return &Transport{h: h}, nil
}

// Host is the underlying libp2p host.
func (t *Transport) Host() host.Host { return t.h }

// ID is this node's peer ID.
func (t *Transport) ID() string { return t.h.ID().String() }

// Addrs are this node's full multiaddrs.
func (t *Transport) Addrs() []string { return Addrs(t.h) }

// Connect dials a full multiaddr and returns the peer's ID.
func (t *Transport) Connect(ctx context.Context, addr string) (string, error) {
	info, err := ParseAddr(addr)
	if err != nil {
		return "", err
	}
	if err := Connect(ctx, t.h, info, 10*time.Second); err != nil {
		return "", err
	}
	return info.ID.String(), nil
}

// Open starts a stream for proto to a peer.
func (t *Transport) Open(ctx context.Context, to, proto string) (wire.NetStream, error) {
	id, err := peer.Decode(to)
	if err != nil {
		return nil, err
	}
	return t.h.NewStream(ctx, id, protocol.ID(proto))
}

// Handle serves proto; from is the remote's verified peer ID.
func (t *Transport) Handle(proto string, serve func(s wire.NetStream, from string)) {
	t.h.SetStreamHandler(protocol.ID(proto), func(s network.Stream) {
		serve(s, s.Conn().RemotePeer().String())
	})
}

// OnDisconnect calls f when the last connection to a peer closes.
func (t *Transport) OnDisconnect(f func(peer string)) {
	t.h.Network().Notify(&network.NotifyBundle{DisconnectedF: func(n network.Network, c network.Conn) {
		if len(n.ConnsToPeer(c.RemotePeer())) == 0 {
			f(c.RemotePeer().String())
		}
	}})
}

// AddrsOf lists the full multiaddrs known for a peer.
func (t *Transport) AddrsOf(p string) []string {
	id, err := peer.Decode(p)
	if err != nil {
		return nil
	}
	info := peer.AddrInfo{ID: id, Addrs: t.h.Peerstore().Addrs(id)}
	addrs, _ := peer.AddrInfoToP2pAddrs(&info)
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

// Peers counts connected peers.
func (t *Transport) Peers() int { return len(t.h.Network().Peers()) }

// Close stops the host.
func (t *Transport) Close() error { return t.h.Close() }

// TransportOn serves an existing host (one made by NewReachableHost, say)
// as a Transport; closing the Transport closes the host.
func TransportOn(h host.Host) *Transport { return &Transport{h: h} }
