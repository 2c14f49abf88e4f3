package ledger_test

import (
	"testing"

	"github.com/cairnlabs/cairn/ledger"
)

// A run with member checks: a closed round waits for its members'
// verdicts; more than half agreeing on the outcomes settles it (the
// failed worker slashed and unpaid), whatever their reasons say; a
// dissenting check is named; only members send checks, once each, for
// the oldest unsettled round, covering every accepted contribution; a
// round whose members never agree is settled unchecked when the round
// SettlementLag after it closes.
func TestMemberChecks(t *testing.T) {
	org, A, B, C := keyFrom("org"), keyFrom("A"), keyFrom("B"), keyFrom("C")
	g := genesisFor(org, 3, A, B, C)
	g.CommitWindow = 2.5e9 // blocks are 1 s apart
	g.MemberChecks = true
	g.MinStake = 50 // B still commits once slashed
	c := newChain(t, g, org)
	submit := refusedBy(t, c)
	pl := map[ledger.PubKey]pledge{}
	closeRound := func(r uint64) []ledger.Contribution {
		t.Helper()
		var ps []pledge
		var txs [][]byte
		for i, k := range [][]byte{A, B, C} {
			p := pledge{k, commitBody(string(rune('A'+i)), r, 10*uint64(i+1))}
			ps = append(ps, p)
			pl[ledger.KeyOf(k)] = p
			txs = append(txs, c.tx(k, p.c))
		}
		c.block(txs...) // the window closes early: every expected worker committed
		res := &ledger.ResultTx{Round: r, ModelHash: hashOf(string(rune('0' + r))), Accepted: sortedContribs(ps...)}
		c.block(c.tx(A, res), c.tx(B, res))
		return res.Accepted
	}
	acc := closeRound(0)
	if info, _ := c.l.Round(0); info.Status != "closed" || len(info.Verdicts) != 0 {
		t.Fatalf("round 0 after its result, before checks: %+v", info)
	}
	verdicts := func(r uint64, failed ledger.PubKey, reason string) *ledger.SettleTx {
		s := &ledger.SettleTx{Round: r}
		for _, a := range acc {
			v := ledger.Verdict{Worker: a.Worker, Outcome: ledger.Passed}
			if a.Worker == failed {
				v = ledger.Verdict{Worker: a.Worker, Outcome: ledger.Failed, Reason: reason, Evidence: []byte(reason)}
			}
			s.Verdicts = append(s.Verdicts, v)
		}
		return s
	}
	bk := ledger.KeyOf(B)
	byA, byC := verdicts(0, bk, "distance 0.31"), verdicts(0, bk, "distance 0.32")
	allPass := verdicts(0, ledger.PubKey{}, "")
	submit(c.tx(org, byA), "did not commit in round 0")
	submit(c.tx(A, &ledger.SettleTx{Round: 1}), "did not commit in round 1")
	submit(c.tx(A, &ledger.SettleTx{Round: 0, Verdicts: byA.Verdicts[:2]}), "no verdict for the accepted contribution")
	c.block(c.tx(A, byA))
	submit(c.tx(A, byC), "already sent its verdicts on round 0")
	c.block(c.tx(B, allPass)) // B says it passed: one vote each
	if info, _ := c.l.Round(0); info.Status != "closed" || len(info.Checks) != 2 {
		t.Fatalf("round 0 after two disagreeing checks: %+v", info)
	}
	c.block(c.tx(C, byC)) // C agrees with A on the outcomes: settled
	info, err := c.l.Round(0)
	if err != nil {
		t.Fatal(err)
	}
	if info.Status != "settled" || len(info.Verdicts) != 3 {
		t.Fatalf("round 0 after a majority of checks: %+v", info)
	}
	for _, v := range info.Verdicts {
		switch {
		case v.Worker == bk && (v.Outcome != ledger.Failed || v.Reward != 0 || v.Slashed != 50 || v.Reason != "distance 0.32"):
			t.Fatalf("B's verdict %+v: want failed with the deciding vote's reason, unpaid, half its stake slashed", v)
		case v.Worker != bk && (v.Outcome != ledger.Passed || v.Reward == 0):
			t.Fatalf("verdict %+v: want passed and paid", v)
		}
	}
	agrees := map[ledger.PubKey]bool{}
	for _, v := range info.Checks {
		agrees[v.Member] = v.Agrees
	}
	if len(agrees) != 3 || !agrees[ledger.KeyOf(A)] || agrees[bk] || !agrees[ledger.KeyOf(C)] {
		t.Fatalf("checks %+v: want A and C agreeing, B named", info.Checks)
	}
	if b, _ := c.l.Account(bk); b.Stake != 50 {
		t.Fatalf("B's stake %d after the slash, want 50", b.Stake)
	}
	// Round 1: nobody sends verdicts; it is settled unchecked when
	// round 2 closes (SettlementLag 1), and then no check is taken.
	acc = closeRound(1)
	submit(c.tx(A, verdicts(2, ledger.PubKey{}, "")), "did not commit in round 2")
	closeRound(2)
	info, _ = c.l.Round(1)
	if info.Status != "settled" || len(info.Verdicts) != 3 {
		t.Fatalf("round 1 once round 2 closed: %+v", info)
	}
	for _, v := range info.Verdicts {
		if v.Outcome != ledger.Unchecked || v.Reward == 0 || v.Reason != "no majority of the members' verdicts before round 2 closed" {
			t.Fatalf("overdue verdict %+v", v)
		}
	}
	submit(c.tx(A, verdicts(1, ledger.PubKey{}, "")), "round 1 is already settled")
	if info, _ := c.l.Round(2); info.Status != "closed" {
		t.Fatalf("round 2: %+v", info)
	}
}

// The member checks flag is part of the genesis encoding only when set,
// and only with a commit window.
func TestGenesisMemberChecks(t *testing.T) {
	org := keyFrom("org")
	g := genesisFor(org, 1, keyFrom("A"))
	g.MemberChecks = true
	if err := g.Validate(); err == nil {
		t.Fatal("member checks without a commit window validated")
	}
	g.CommitWindow = 5e9
	g.MemberChecks = false
	plain := g.Encode()
	g.MemberChecks = true
	enc := g.Encode()
	if len(enc) != len(plain)+1 {
		t.Fatalf("encoding grew by %d bytes, want 1", len(enc)-len(plain))
	}
	back, err := ledger.DecodeGenesis(enc)
	if err != nil || !back.MemberChecks {
		t.Fatalf("decoded %+v, %v", back, err)
	}
	bad := append(plain[:len(plain):len(plain)], 2)
	if _, err := ledger.DecodeGenesis(bad); err == nil {
		t.Fatal("a member checks flag of 2 decoded")
	}
}
