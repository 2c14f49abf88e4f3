package node

import (
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// orphanWatch decides when a member stops waiting for contributions that
// nobody can send it any more: one whose publisher was once among the
// member's peers (seen) and no longer is, of which the member holds
// no piece and no peer says it holds any, once every other contribution
// is in, for grace without a change. In a full mesh nobody else holds it
// either, so every member gives it up alike (the same rejection as at the
// fetch timeout); a publisher that was never a peer (a sparse graph) is
// waited for until the timeout, since another node may hold its bytes.
type orphanWatch struct {
	start map[peer.ID]bool
	since map[int]time.Time
	grace time.Duration
}

func newOrphanWatch(seen map[peer.ID]bool, grace time.Duration) *orphanWatch {
	return &orphanWatch{start: seen, since: map[int]time.Time{}, grace: grace}
}

// lost returns the pending contributions to give up at now: of each
// pending i, state says its publisher, the pieces held and the peers
// holding some; peers are the member's peers now.
func (w *orphanWatch) lost(now time.Time, pending []bool, state func(i int) (pub peer.ID, held, holders int), peers []peer.ID) []int {
	var orphans []int
	for i, p := range pending {
		if !p {
			continue
		}
		pub, held, holders := state(i)
		if !w.start[pub] || slices.Contains(peers, pub) || held > 0 || holders > 0 {
			// A contribution still coming: the clocks start once every
			// other is in.
			clear(w.since)
			return nil
		}
		orphans = append(orphans, i)
	}
	var out []int
	for _, i := range orphans {
		if _, ok := w.since[i]; !ok {
			w.since[i] = now
		}
		if now.Sub(w.since[i]) >= w.grace {
			out = append(out, i)
			delete(w.since, i)
		}
	}
	return out
}

// notePeers adds the member's peers now to those it has been in touch
// with: a publisher among them that has gone by a fetch, its contribution
// held by nobody, has left with it (orphanWatch).
func (m *member) notePeers() {
	if m.seen == nil {
		m.seen = map[peer.ID]bool{}
	}
	for _, p := range m.sw.Peers() {
		m.seen[p] = true
	}
}
