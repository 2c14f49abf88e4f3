package node

import (
	"fmt"
	"sync"
	"time"

	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/wire"
)

// Bounds on what one peer's streams may cost a node.
const (
	// controlTimeout bounds a request's control messages, and the wait
	// of a poll held open for news (pollHold) before it answers.
	controlTimeout = pollHold + 30*time.Second
	// A blob transfer must make progress: no read or write may wait more
	// than stall, and the whole transfer may take base plus its size at
	// minRate. A peer that trickles or stalls costs seconds, not minutes.
	serveStall   = 30 * time.Second
	serveBase    = 60 * time.Second
	serveMinRate = 64 << 10 // bytes/s, for the aggregator and for serving peers
	// Fetching the weights from a peer (not the aggregator, the last
	// resort) expects a peer-to-peer link: a peer that cannot keep up is
	// left for the next.
	peerFetchStall   = 5 * time.Second
	peerFetchBase    = 5 * time.Second
	peerFetchMinRate = 1 << 20 // bytes/s
	// The aggregator, the last resort, is given time.
	aggFetchStall   = 30 * time.Second
	aggFetchBase    = 60 * time.Second
	aggFetchMinRate = 64 << 10
)

// progressStream is a stream whose reads and writes must make progress:
// before each, the deadline is set to the earlier of stall from now and
// the transfer's hard deadline, which allow moves for a transfer of a
// known size.
type progressStream struct {
	wire.Stream
	ns    wire.NetStream
	stall time.Duration
	hard  time.Time
}

func newProgress(s wire.Stream, ns wire.NetStream, stall time.Duration, hard time.Time) *progressStream {
	ns.SetDeadline(hard)
	return &progressStream{Stream: s, ns: ns, stall: stall, hard: hard}
}

// allow gives a transfer of n bytes from now base plus n at minRate.
func (p *progressStream) allow(n int64, base time.Duration, minRate float64) {
	p.hard = time.Now().Add(base + time.Duration(float64(n)/minRate*float64(time.Second)))
}

func (p *progressStream) deadline() {
	d := time.Now().Add(p.stall)
	if p.hard.Before(d) {
		d = p.hard
	}
	p.ns.SetDeadline(d)
}

func (p *progressStream) Read(b []byte) (int, error) {
	p.deadline()
	return p.Stream.Read(b)
}

func (p *progressStream) Write(b []byte) (int, error) {
	p.deadline()
	return p.Stream.Write(b)
}

// serveLimit bounds the downloads of full weights a node serves: at most
// perPeer per peer for one set of weights (a retry after a failure), at
// most concurrent at a time, and at most maxPeers distinct peers
// remembered per set of weights (so memory stays bounded under a flood of
// identities).
type serveLimit struct {
	perPeer, concurrent, maxPeers int

	mu     sync.Mutex
	hash   diloco.Hash
	count  map[string]int
	active int
}

func newServeLimit(perPeer, concurrent int) *serveLimit {
	return &serveLimit{perPeer: perPeer, concurrent: concurrent, maxPeers: 4096, count: map[string]int{}}
}

// acquire admits one download of the weights with hash by peer, or says
// why not; release must be called when the download ends.
func (l *serveLimit) acquire(peer string, hash diloco.Hash) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if hash != l.hash {
		l.hash = hash
		clear(l.count)
	}
	switch {
	case l.count[peer] >= l.perPeer:
		return nil, fmt.Errorf("these weights were already served to this peer %d times", l.count[peer])
	case l.active >= l.concurrent:
		return nil, fmt.Errorf("busy serving the weights to %d peers; try another peer or later", l.active)
	case l.count[peer] == 0 && len(l.count) >= l.maxPeers:
		return nil, fmt.Errorf("these weights were served to %d peers already; try another peer", len(l.count))
	}
	l.count[peer]++
	l.active++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.active--
			l.mu.Unlock()
		})
	}, nil
}
