package node

import (
	"sync"
	"time"
)

// peerRate is a token bucket per peer: each peer may make rate requests
// per second on average and burst at once after an idle spell. It tracks
// at most max peers: a new peer beyond that first drops every bucket that
// has refilled (an idle peer's bucket is the same as a fresh one), and if
// none has, the bucket used least recently. Eviction can only hand a peer
// a full bucket early, so the bound costs no honest peer anything, and
// memory stays fixed however many identities a flood uses. It reads no
// clock of its own. It is safe for concurrent use.
type peerRate struct {
	mu    sync.Mutex
	rate  float64 // tokens per second
	burst float64
	max   int
	peers map[string]*tokenBucket
}

type tokenBucket struct {
	tokens float64
	at     time.Time // when tokens was computed
}

func newPeerRate(rate float64, burst, maxPeers int) *peerRate {
	return &peerRate{rate: rate, burst: float64(max(burst, 1)), max: max(maxPeers, 1), peers: map[string]*tokenBucket{}}
}

// allow takes a token from peer's bucket at time now, reporting whether
// there was one.
func (r *peerRate) allow(peer string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.peers[peer]
	if b == nil {
		if len(r.peers) >= r.max {
			r.evict(now)
		}
		b = &tokenBucket{tokens: r.burst, at: now}
		r.peers[peer] = b
	}
	b.tokens = r.level(b, now)
	if now.After(b.at) {
		b.at = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// level is b's tokens at now (a clock that goes back adds none).
func (r *peerRate) level(b *tokenBucket, now time.Time) float64 {
	if dt := now.Sub(b.at).Seconds(); dt > 0 {
		return min(r.burst, b.tokens+dt*r.rate)
	}
	return b.tokens
}

// evict makes room for one peer.
func (r *peerRate) evict(now time.Time) {
	var oldest string
	var oldestAt time.Time
	for p, b := range r.peers {
		if r.level(b, now) >= r.burst {
			delete(r.peers, p)
			continue
		}
		if oldest == "" || b.at.Before(oldestAt) {
			oldest, oldestAt = p, b.at
		}
	}
	if len(r.peers) >= r.max {
		delete(r.peers, oldest)
	}
}

// tracked is the number of peers with a bucket.
func (r *peerRate) tracked() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.peers)
}
