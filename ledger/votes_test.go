package ledger_test

import (
	"crypto/ed25519"
	"fmt"
	"slices"
	"testing"

	"github.com/cairnlabs/cairn/ledger"
)

// Votes by hash: a majority voting for a result's hash closes the round
// only once the result itself has been sent; a member may send the
// result it voted for by hash (counted once), but no other second vote;
// votes by hash are refused outside member rounds, from non-members, for
// other rounds, and while the window is open; a late one is recorded.
func TestVotesByHash(t *testing.T) {
	org, A, B, C := keyFrom("org"), keyFrom("A"), keyFrom("B"), keyFrom("C")
	g := genesisFor(org, 3, A, B, C)
	g.CommitWindow = 60e9 // blocks are 1 s apart
	c := newChain(t, g, org)
	submit := refusedBy(t, c)
	pa, pb, pc := pledge{A, commitBody("A", 0, 10)}, pledge{B, commitBody("B", 0, 20)}, pledge{C, commitBody("C", 0, 30)}
	c.block(c.tx(A, pa.c), c.tx(B, pb.c))
	res := &ledger.ResultTx{Round: 0, ModelHash: hashOf("θ1"), Accepted: sortedContribs(pa, pb, pc)}
	h := ledger.ResultHash(res)
	submit(c.tx(A, &ledger.VoteTx{Round: 0, Result: h}), "commit window is open")
	c.block(c.tx(C, pc.c)) // every expected worker committed: the window closes
	submit(c.tx(org, &ledger.VoteTx{Round: 0, Result: h}), "did not commit in round 0")
	submit(c.tx(A, &ledger.VoteTx{Round: 1, Result: h}), "open round is 0")
	c.block(c.tx(B, &ledger.VoteTx{Round: 0, Result: h}))
	submit(c.tx(B, &ledger.VoteTx{Round: 0, Result: h}), "already voted on round 0")
	other := *res
	other.ModelHash = hashOf("θ1 otherwise")
	submit(c.tx(B, &other), "already voted on round 0")
	c.block(c.tx(B, res)) // B sends the result it voted for: one vote still
	info, _ := c.l.Round(0)
	if info.Status != "open" || len(info.Posted) != 1 || info.Posted[0] != h || len(info.Votes) != 1 {
		t.Fatalf("round 0 after B's vote and result: status %s, posted %v, votes %d", info.Status, info.Posted, len(info.Votes))
	}
	submit(c.tx(B, res), "already voted on round 0")
	c.block(c.tx(C, &ledger.VoteTx{Round: 0, Result: h})) // two of three, the result sent: closed
	info, _ = c.l.Round(0)
	if info.Status == "open" || info.Result == nil || ledger.ResultHash(&ledger.ResultTx{Round: 0, ModelHash: info.Result.ModelHash,
		Accepted: info.Result.Accepted, Rejected: info.Result.Rejected}) != h {
		t.Fatalf("round 0 after two votes for the sent result: %+v", info)
	}
	// A's late vote, for another result, is recorded and named.
	c.block(c.tx(A, &ledger.VoteTx{Round: 0, Result: hashOf("another")}))
	info, _ = c.l.Round(0)
	agree := map[ledger.PubKey]bool{}
	for _, v := range info.Votes {
		agree[v.Member] = v.Agrees
	}
	if len(agree) != 3 || agree[ledger.KeyOf(A)] || !agree[ledger.KeyOf(B)] || !agree[ledger.KeyOf(C)] {
		t.Fatalf("votes on round 0: %+v", info.Votes)
	}

	// A majority by hash waits for the result itself.
	c.block(c.tx(A, commitBody("A", 1, 10)), c.tx(B, commitBody("B", 1, 10)), c.tx(C, commitBody("C", 1, 10)))
	res1 := &ledger.ResultTx{Round: 1, ModelHash: hashOf("θ2"), Accepted: sortedContribs(pledge{A, commitBody("A", 1, 10)}, pledge{B, commitBody("B", 1, 10)}, pledge{C, commitBody("C", 1, 10)})}
	h1 := ledger.ResultHash(res1)
	c.block(c.tx(A, &ledger.VoteTx{Round: 1, Result: h1}), c.tx(B, &ledger.VoteTx{Round: 1, Result: h1}), c.tx(C, &ledger.VoteTx{Round: 1, Result: h1}))
	if info, _ := c.l.Round(1); info.Status != "open" || len(info.Posted) != 0 {
		t.Fatalf("round 1 with every vote by hash and no result: %s, posted %v", info.Status, info.Posted)
	}
	c.block(c.tx(C, res1))
	if info, _ := c.l.Round(1); info.Status == "open" || info.Result == nil {
		t.Fatalf("round 1 once its result was sent: %+v", info)
	}

	// Outside member rounds a vote by hash is refused.
	g2 := genesisFor(org, 1, A)
	c2 := newChain(t, g2, org)
	refusedBy(t, c2)(c2.tx(A, &ledger.VoteTx{Round: 0, Result: h}), "member rounds")
}

// A round of 1,000 members closes on one result sent in full and votes by
// hash: the chain carries each contribution once in the round's result
// rather than once per vote.
func TestThousandMemberRound(t *testing.T) {
	const n = 1000
	org := keyFrom("org")
	keys := make([]ed25519.PrivateKey, n)
	for i := range keys {
		keys[i] = keyFrom(fmt.Sprint("member", i))
	}
	slices.SortFunc(keys, func(a, b ed25519.PrivateKey) int {
		ka, kb := ledger.KeyOf(a), ledger.KeyOf(b)
		return slices.Compare(ka[:], kb[:])
	})
	g := genesisFor(org, n, keys...)
	g.CommitWindow = 60e9
	c := newChain(t, g, org)
	var txs [][]byte
	var ps []pledge
	for i, k := range keys {
		p := pledge{k, commitBody(fmt.Sprint(i), 0, 10)}
		ps = append(ps, p)
		txs = append(txs, c.tx(k, p.c))
	}
	c.block(txs...)
	res := &ledger.ResultTx{Round: 0, ModelHash: hashOf("θ1"), Accepted: sortedContribs(ps...)}
	full := c.tx(keys[0], res)
	votes := [][]byte{full}
	for _, k := range keys[1 : n/2+1] {
		votes = append(votes, c.tx(k, &ledger.VoteTx{Round: 0, Result: ledger.ResultHash(res)}))
	}
	c.block(votes...)
	info, err := c.l.Round(0)
	if err != nil || info.Status != "settled" || len(info.Result.Accepted) != n || len(info.Votes) != n/2+1 {
		t.Fatalf("the 1,000-member round after %d votes: %s, %v", len(votes), info.Status, err)
	}
	bytes := 0
	for _, v := range votes[1:] {
		bytes += len(v)
	}
	t.Logf("%d members: the result %d bytes, a vote by hash %d bytes; votes in full would take %.1f MB, by hash %.2f MB",
		n, len(full), len(votes[1]), float64(len(full))*float64(n/2+1)/1e6, float64(len(full)+bytes)/1e6)
	if len(votes[1]) > 200 || len(full) < 72*n {
		t.Fatalf("a vote by hash of %d bytes, a result of %d", len(votes[1]), len(full))
	}
}

// The posting order of a round ranks each member once, differs from round
// to round, and ranks a non-member -1.
func TestPostingRank(t *testing.T) {
	var members []ledger.PubKey
	for i := range 6 {
		members = append(members, ledger.KeyOf(keyFrom(fmt.Sprint("m", i))))
	}
	firsts := map[ledger.PubKey]bool{}
	for r := range uint64(20) {
		seen := map[int]bool{}
		for _, m := range members {
			k := ledger.PostingRank(r, members, m)
			if k < 0 || k >= len(members) || seen[k] {
				t.Fatalf("round %d: rank %d for %s (ranks so far %v)", r, k, m, seen)
			}
			seen[k] = true
			if k == 0 {
				firsts[m] = true
			}
		}
		if k := ledger.PostingRank(r, members, ledger.PubKey{9}); k != -1 {
			t.Fatalf("a non-member ranked %d", k)
		}
	}
	if len(firsts) < 3 {
		t.Fatalf("over 20 rounds only %d of 6 members came first", len(firsts))
	}
}
