package ledger_test

import (
	"bytes"
	"crypto/ed25519"
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
	submit(c.tx(A, verdicts(0, ledger.PubKey{}, "")), "already sent its verdicts on round 0")
	submit(c.tx(org, verdicts(0, ledger.PubKey{}, "")), "did not commit in round 0")
	// A late check on the round settled last is recorded, and disagrees.
	c.block(c.tx(A, verdicts(1, ledger.PubKey{}, "")))
	if info, _ := c.l.Round(1); len(info.Checks) != 1 || info.Checks[0].Agrees {
		t.Fatalf("a late check of round 1: %+v", info.Checks)
	}
	submit(c.tx(A, verdicts(1, ledger.PubKey{}, "")), "already sent its verdicts on round 1")
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

// A worker slashed below the minimum stake cannot commit, so the next
// window does not wait for it: it closes as soon as the others committed.
func TestSlashedWorkerNotExpected(t *testing.T) {
	c, g, A, B, C, res := slashFixture(t, 10e9)
	submit := refusedBy(t, c)
	s := failing(res, ledger.KeyOf(B))
	c.block(c.tx(A, s), c.tx(C, s))
	if info, _ := c.l.Round(0); info.Status != "settled" {
		t.Fatalf("round 0: %+v", info)
	}
	submit(c.tx(B, commitBody("B", 1, 10)), "stake 50 is below the minimum 60")
	c.block(c.tx(A, commitBody("A", 1, 10)), c.tx(C, commitBody("C", 1, 10)))
	info, _ := c.l.Round(1)
	if info.Window == nil || info.Window.Expected != 2 || !info.Window.Closed(&g, 0) {
		t.Fatalf("round 1's window after the others committed: %+v", info.Window)
	}
}

// A worker slashed below the minimum stake while a window that expects it
// is open (its last round settled after the next one's first commit) no
// longer holds that window open: it closes once the others committed.
func TestSlashedWorkerDroppedFromOpenWindow(t *testing.T) {
	c, g, A, B, C, res := slashFixture(t, 60e9)
	c.block(c.tx(A, commitBody("A", 1, 10))) // round 1's window opens expecting A, B and C
	if info, _ := c.l.Round(1); info.Window == nil || info.Window.Expected != 3 {
		t.Fatalf("round 1's window: %+v", info.Window)
	}
	s := failing(res, ledger.KeyOf(B))
	c.block(c.tx(A, s), c.tx(C, s)) // B slashed to 50: it can no longer commit
	info, _ := c.l.Round(1)
	if info.Window.Expected != 2 || info.Window.Closed(&g, 0) {
		t.Fatalf("round 1's window after B's slash: %+v", info.Window)
	}
	refusedBy(t, c)(c.tx(B, commitBody("B", 1, 10)), "stake 50 is below the minimum 60")
	// B bonds back above the minimum and commits: its commit is taken but
	// not counted among those the window waits for, which it no longer
	// does; C's commit closes it.
	c.block(c.tx(B, &ledger.RegisterTx{Amount: 10}))
	c.block(c.tx(B, commitBody("B", 1, 10)))
	if info, _ := c.l.Round(1); info.Window.Commits != 2 || info.Window.Returning != 1 || info.Window.Closed(&g, 0) {
		t.Fatalf("round 1's window with A and B, bonded back, committed: %+v", info.Window)
	}
	c.block(c.tx(C, commitBody("C", 1, 10)))
	if info, _ := c.l.Round(1); !info.Window.Closed(&g, 0) {
		t.Fatalf("round 1's window with A, B and C committed: %+v", info.Window)
	}
}

// After a void round (a result that accepts nothing), the next window
// waits for the void round's committers, closing as soon as they have
// committed, instead of expecting nobody.
func TestWindowAfterVoidRound(t *testing.T) {
	org, A, B := keyFrom("org"), keyFrom("A"), keyFrom("B")
	g := genesisFor(org, 2, A, B)
	g.CommitWindow = 10e9 // blocks are 1 s apart
	c := newChain(t, g, org)
	a0, b0 := commitBody("A", 0, 10), commitBody("B", 0, 10)
	c.block(c.tx(A, a0), c.tx(B, b0))
	void := &ledger.ResultTx{Round: 0, ModelHash: hashOf("θ0 again"), Accepted: []ledger.Contribution{},
		Rejected: []ledger.Rejection{{Worker: ledger.KeyOf(A), Reason: "refused"}, {Worker: ledger.KeyOf(B), Reason: "refused"}}}
	if bytes.Compare(void.Rejected[0].Worker[:], void.Rejected[1].Worker[:]) > 0 {
		void.Rejected[0], void.Rejected[1] = void.Rejected[1], void.Rejected[0]
	}
	c.block(c.tx(A, void), c.tx(B, void))
	if info, _ := c.l.Round(0); info.Result == nil || len(info.Result.Accepted) != 0 {
		t.Fatalf("the void round: %+v", info)
	}
	c.block(c.tx(A, commitBody("A", 1, 10)))
	if info, _ := c.l.Round(1); info.Window == nil || info.Window.Expected != 2 || info.Window.Closed(&g, 0) {
		t.Fatalf("round 1's window after one of two committers: %+v", info.Window)
	}
	c.block(c.tx(B, commitBody("B", 1, 10)))
	if info, _ := c.l.Round(1); !info.Window.Closed(&g, 0) {
		t.Fatalf("round 1's window with both committed: %+v", info.Window)
	}
}

// slashFixture is a member-checks chain of A, B and C (stake 100, minimum
// 60, so a slash of half leaves one below it) with a commit window of
// window ns, whose round 0 all three committed to and A and C closed.
func slashFixture(t *testing.T, window int64) (c *chain, g ledger.Genesis, A, B, C ed25519.PrivateKey, res *ledger.ResultTx) {
	org := keyFrom("org")
	A, B, C = keyFrom("A"), keyFrom("B"), keyFrom("C")
	g = genesisFor(org, 3, A, B, C)
	g.CommitWindow = window // blocks are 1 s apart
	g.MemberChecks = true
	g.MinStake = 60
	c = newChain(t, g, org)
	a0, b0, c0 := commitBody("A", 0, 10), commitBody("B", 0, 10), commitBody("C", 0, 10)
	c.block(c.tx(A, a0), c.tx(B, b0), c.tx(C, c0))
	res = &ledger.ResultTx{Round: 0, ModelHash: hashOf("θ1"), Accepted: sortedContribs(pledge{A, a0}, pledge{B, b0}, pledge{C, c0})}
	c.block(c.tx(A, res), c.tx(C, res))
	return c, g, A, B, C, res
}

// failing is verdicts on res: failed for the worker failed, passed for
// every other accepted contribution.
func failing(res *ledger.ResultTx, failed ledger.PubKey) *ledger.SettleTx {
	s := &ledger.SettleTx{Round: res.Round}
	for _, a := range res.Accepted {
		v := ledger.Verdict{Worker: a.Worker, Outcome: ledger.Passed}
		if a.Worker == failed {
			v = ledger.Verdict{Worker: a.Worker, Outcome: ledger.Failed, Reason: "payload-mismatch", Evidence: []byte{1}}
		}
		s.Verdicts = append(s.Verdicts, v)
	}
	return s
}
