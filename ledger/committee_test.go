package ledger_test

import (
	"bytes"
	"crypto/ed25519"
	"slices"
	"testing"

	"github.com/cairnlabs/cairn/ledger"
)

// A run with a check committee: the block that closes a round fixes its
// beacon, which picks CheckCommittee of its members; only they may send
// verdicts on it, and more than half of them (not of all members)
// agreeing settles it.
func TestCheckCommittee(t *testing.T) {
	org := keyFrom("org")
	keys := []ed25519.PrivateKey{keyFrom("A"), keyFrom("B"), keyFrom("C"), keyFrom("D"), keyFrom("E")}
	g := genesisFor(org, len(keys), keys...)
	g.CommitWindow = 2.5e9 // blocks are 1 s apart
	g.MemberChecks = true
	g.CheckCommittee = 3
	c := newChain(t, g, org)
	submit := refusedBy(t, c)
	var ps []pledge
	var txs [][]byte
	for i, k := range keys {
		p := pledge{k, commitBody(string(rune('A'+i)), 0, 10*uint64(i+1))}
		ps = append(ps, p)
		txs = append(txs, c.tx(k, p.c))
	}
	c.block(txs...)
	res := &ledger.ResultTx{Round: 0, ModelHash: hashOf("θ1"), Accepted: sortedContribs(ps...)}
	c.block(c.tx(keys[0], res), c.tx(keys[1], res), c.tx(keys[2], res))
	info, err := c.l.Round(0)
	if err != nil {
		t.Fatal(err)
	}
	if info.Status != "closed" || info.Beacon == nil || *info.Beacon == (ledger.Hash{}) || len(info.Committee) != 3 {
		t.Fatalf("round 0 closed: status %s, beacon %v, committee %v", info.Status, info.Beacon, info.Committee)
	}
	if want := ledger.Committee(&g, info.Result, *info.Beacon); !slices.Equal(want, info.Committee) {
		t.Fatalf("the committee queried %v, recomputed %v", info.Committee, want)
	}
	// The beacon decides: other beacons pick other committees, each of
	// three distinct members of the round, sorted.
	seen := map[string]bool{}
	for i := range 20 {
		cm := ledger.Committee(&g, info.Result, hashOf(string(rune('a'+i))))
		if len(cm) != 3 || !slices.IsSortedFunc(cm, func(a, b ledger.PubKey) int { return bytes.Compare(a[:], b[:]) }) || len(slices.Compact(slices.Clone(cm))) != 3 {
			t.Fatalf("committee %v: want 3 distinct members, sorted", cm)
		}
		for _, m := range cm {
			if !slices.ContainsFunc(info.Result.Accepted, func(a ledger.Contribution) bool { return a.Worker == m }) {
				t.Fatalf("committee member %s did not commit in round 0", m)
			}
		}
		seen[string(cm[0][:])+string(cm[1][:])+string(cm[2][:])] = true
	}
	if len(seen) < 3 {
		t.Fatalf("20 beacons picked %d distinct committees", len(seen))
	}

	on := map[ledger.PubKey]bool{}
	for _, m := range info.Committee {
		on[m] = true
	}
	var inside, outside []ed25519.PrivateKey
	for _, k := range keys {
		if on[ledger.KeyOf(k)] {
			inside = append(inside, k)
		} else {
			outside = append(outside, k)
		}
	}
	failed := ledger.KeyOf(outside[0])
	verdicts := failing(res, failed)
	for _, k := range outside {
		submit(c.tx(k, verdicts), "is not on round 0's check committee")
	}
	c.block(c.tx(inside[0], verdicts))
	if info, _ := c.l.Round(0); info.Status != "closed" {
		t.Fatalf("round 0 after one of three committee verdicts: %s", info.Status)
	}
	c.block(c.tx(inside[1], verdicts)) // two of three: settled
	info, _ = c.l.Round(0)
	if info.Status != "settled" {
		t.Fatalf("round 0 after two of three committee verdicts: %s", info.Status)
	}
	for _, v := range info.Verdicts {
		if (v.Worker == failed) != (v.Outcome == ledger.Failed) || (v.Worker == failed) != (v.Reward == 0) {
			t.Fatalf("verdict %+v: want only %s failed and unpaid", v, failed)
		}
	}
	// The third member's late verdict is recorded; others' still refused.
	c.block(c.tx(inside[2], verdicts))
	if info, _ := c.l.Round(0); len(info.Checks) != 3 || !info.Checks[0].Agrees {
		t.Fatalf("checks of round 0: %+v", info.Checks)
	}
	submit(c.tx(outside[1], verdicts), "is not on round 0's check committee")
}

// A committee no smaller than the round is the whole round.
func TestCheckCommitteeWholeRound(t *testing.T) {
	org, A, B := keyFrom("org"), keyFrom("A"), keyFrom("B")
	g := genesisFor(org, 2, A, B)
	g.CommitWindow, g.MemberChecks, g.CheckCommittee = 1e9, true, 5
	rec := &ledger.RoundRecord{Round: 4, Accepted: []ledger.Contribution{{Worker: ledger.KeyOf(A)}},
		Rejected: []ledger.Rejection{{Worker: ledger.KeyOf(B)}}}
	cm := ledger.Committee(&g, rec, hashOf("beacon"))
	if len(cm) != 2 || !slices.Contains(cm, ledger.KeyOf(A)) || !slices.Contains(cm, ledger.KeyOf(B)) {
		t.Fatalf("committee %v: want both members", cm)
	}
	g.CheckCommittee = 0
	if cm := ledger.Committee(&g, rec, ledger.Hash{}); len(cm) != 2 {
		t.Fatalf("without a committee: %v, want every member", cm)
	}
}

// The committee size is encoded after the member checks flag, only when
// positive, and only with member checks.
func TestGenesisCheckCommittee(t *testing.T) {
	org := keyFrom("org")
	g := genesisFor(org, 1, keyFrom("A"))
	g.CommitWindow = 5e9
	g.CheckCommittee = 3
	if err := g.Validate(); err == nil {
		t.Fatal("a committee without member checks validated")
	}
	g.MemberChecks = true
	g.CheckCommittee = ledger.MaxCheckCommittee + 1
	if err := g.Validate(); err == nil {
		t.Fatal("an oversized committee validated")
	}
	g.CheckCommittee = 0
	plain := g.Encode()
	g.CheckCommittee = 3
	enc := g.Encode()
	if len(enc) != len(plain)+4 {
		t.Fatalf("encoding grew by %d bytes, want 4", len(enc)-len(plain))
	}
	back, err := ledger.DecodeGenesis(enc)
	if err != nil || back.CheckCommittee != 3 || back.Hash() != g.Hash() {
		t.Fatalf("decoded %+v, %v", back, err)
	}
	zero := append(plain[:len(plain):len(plain)], 0, 0, 0, 0)
	if _, err := ledger.DecodeGenesis(zero); err == nil {
		t.Fatal("a committee of 0 decoded")
	}
}
