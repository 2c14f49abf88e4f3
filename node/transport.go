package node

import (
	"context"

	"github.com/cairnlabs/cairn/wire"
)

// Transport is what the nodes need from the network: verified identities,
// dialing by address, and request streams per protocol. p2p.Transport
// provides it over go-libp2p (TCP and QUIC, encrypted), which is what the
// commands, the demo and the integration tests use.
type Transport interface {
	// ID is this node's identity, as peers see it.
	ID() string
	// Addrs are the full addresses peers dial this node at.
	Addrs() []string
	// Connect dials a full address and returns the identity behind it.
	Connect(ctx context.Context, addr string) (string, error)
	// Open starts a stream for a protocol to a connected peer.
	Open(ctx context.Context, peer, proto string) (wire.NetStream, error)
	// Handle serves a protocol; from is the remote's verified identity.
	Handle(proto string, serve func(s wire.NetStream, from string))
	// OnDisconnect registers f to run when the last connection to a peer
	// closes.
	OnDisconnect(f func(peer string))
	// AddrsOf lists the full addresses known for a peer.
	AddrsOf(peer string) []string
	// Peers counts connected peers.
	Peers() int
	Close() error
}
