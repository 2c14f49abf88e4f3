package node

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// A contribution is given up only when its publisher was a peer and has
// gone, nobody holds any of it, every other contribution is in, and that
// has held for the grace period.
func TestOrphanWatch(t *testing.T) {
	a, b, c := peer.ID("A"), peer.ID("B"), peer.ID("C")
	t0 := time.Unix(1000, 0)
	type st struct {
		pub           peer.ID
		held, holders int
	}
	states := map[int]st{0: {a, 0, 0}, 1: {b, 0, 0}, 2: {c, 0, 0}}
	state := func(i int) (peer.ID, int, int) { s := states[i]; return s.pub, s.held, s.holders }
	w := newOrphanWatch(map[peer.ID]bool{a: true, b: true}, 5*time.Second) // C was never a peer
	pending := []bool{true, true, false}

	// A has gone, B is still a peer: B's contribution is coming, so no
	// clock runs.
	if got := w.lost(t0, pending, state, []peer.ID{b}); got != nil {
		t.Fatalf("with B's contribution coming: %v", got)
	}
	pending[1] = false // B's is in
	if got := w.lost(t0.Add(time.Second), pending, state, []peer.ID{b}); got != nil {
		t.Fatalf("at the start of A's grace: %v", got)
	}
	// Someone says it holds a piece of A's: the clock starts again.
	states[0] = st{a, 0, 1}
	if got := w.lost(t0.Add(4*time.Second), pending, state, []peer.ID{b}); got != nil {
		t.Fatalf("with a holder of A's: %v", got)
	}
	states[0] = st{a, 0, 0}
	if got := w.lost(t0.Add(5*time.Second), pending, state, []peer.ID{b}); got != nil {
		t.Fatalf("A's clock restarted at 5 s: %v", got)
	}
	if got := w.lost(t0.Add(9*time.Second), pending, state, []peer.ID{b}); got != nil {
		t.Fatalf("4 s into A's grace: %v", got)
	}
	if got := w.lost(t0.Add(10*time.Second), pending, state, []peer.ID{b}); len(got) != 1 || got[0] != 0 {
		t.Fatalf("5 s into A's grace: %v, want A's given up", got)
	}
	// A publisher that was never a peer is waited for (another node may
	// hold its bytes), and so is one that is still a peer.
	pending = []bool{false, false, true}
	for s := range 20 {
		if got := w.lost(t0.Add(time.Duration(s)*time.Second), pending, state, nil); got != nil {
			t.Fatalf("C, never a peer, given up: %v", got)
		}
	}
	pending = []bool{false, true, false}
	for s := range 20 {
		if got := w.lost(t0.Add(time.Duration(s)*time.Second), pending, state, []peer.ID{b}); got != nil {
			t.Fatalf("B, still a peer, given up: %v", got)
		}
	}
}
