package ledger_test

import (
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/ledger"
)

// A run with member rounds: commits open the window, members vote once it
// has passed, a majority closes and settles the round, a late dissenting
// vote is recorded and named, and nobody else signs results or
// settlements.
func TestMemberRounds(t *testing.T) {
	org, A, B, C, D, E := keyFrom("org"), keyFrom("A"), keyFrom("B"), keyFrom("C"), keyFrom("D"), keyFrom("E")
	g := genesisFor(org, 4, A, B, C, E, D) // D holds no stake
	g.CommitWindow = 2.5e9                 // blocks are 1 s apart
	c := newChain(t, g, org)
	submit := refusedBy(t, c)
	a0, b0, c0 := commitBody("A", 0, 10), commitBody("B", 0, 30), commitBody("C", 0, 20)
	c.block(c.tx(A, a0)) // t=1: the window opens, until 3.5
	c.block(c.tx(B, b0)) // t=2
	res := &ledger.ResultTx{Round: 0, ModelHash: hashOf("θ1"), Accepted: sortedContribs(pledge{A, a0}, pledge{B, b0}, pledge{C, c0})}
	c.block(c.tx(C, c0)) // t=3
	submit(c.tx(A, res), "commit window is open")
	c.block() // t=4: the window has passed
	submit(c.tx(D, commitBody("D", 0, 10)), "not-staked")
	submit(c.tx(C, commitBody("C", 0, 10)), "already committed")
	short := &ledger.ResultTx{Round: 0, ModelHash: hashOf("θ1"), Accepted: sortedContribs(pledge{A, a0}, pledge{B, b0})}
	submit(c.tx(A, short), "covers 2 contributions; round 0 has 3 commits")
	submit(c.tx(org, res), "did not commit in round 0")
	submit(c.tx(org, &ledger.SettleTx{Round: 0}), "settles each round when it closes")
	c.block(c.tx(A, res))
	submit(c.tx(A, res), "already voted")
	if info, _ := c.l.Round(0); info.Status != "open" || len(info.Votes) != 1 || info.Window == nil || info.Window.Commits != 3 {
		t.Fatalf("after one vote of three: %+v", info)
	}
	c.block(c.tx(B, res)) // two of three: closed and settled
	info, err := c.l.Round(0)
	if err != nil {
		t.Fatal(err)
	}
	if info.Status != "settled" || info.Result == nil || info.Result.ModelHash != hashOf("θ1") || len(info.Verdicts) != 3 {
		t.Fatalf("round 0 after a majority: %+v", info)
	}
	paid := map[ledger.PubKey]uint64{}
	for _, v := range info.Verdicts {
		paid[v.Worker] = v.Reward
	}
	if paid[ledger.KeyOf(A)] != 167 || paid[ledger.KeyOf(B)] != 500 || paid[ledger.KeyOf(C)] != 333 {
		t.Fatalf("rewards %v, want 1000 split 10:30:20 (167, 500, 333)", paid)
	}
	// C computed something else: its late vote is recorded and named.
	other := *res
	other.ModelHash = hashOf("θ1 by C")
	c.block(c.tx(C, &other))
	info, _ = c.l.Round(0)
	agrees := map[ledger.PubKey]bool{}
	for _, v := range info.Votes {
		agrees[v.Member] = v.Agrees
	}
	if len(agrees) != 3 || !agrees[ledger.KeyOf(A)] || !agrees[ledger.KeyOf(B)] || agrees[ledger.KeyOf(C)] {
		t.Fatalf("votes %+v: want A and B agreeing, C named", info.Votes)
	}
	submit(c.tx(C, &other), "already voted")
	// Round 1: its window closes as soon as A, B and C, round 0's
	// members, have committed; a newcomer after that is refused.
	a1, b1, c1 := commitBody("A", 1, 10), commitBody("B", 1, 10), commitBody("C", 1, 10)
	c.block(c.tx(A, a1), c.tx(B, b1))
	res1 := &ledger.ResultTx{Round: 1, ModelHash: hashOf("θ2"), Accepted: sortedContribs(pledge{A, a1}, pledge{B, b1}, pledge{C, c1})}
	submit(c.tx(A, res1), "or until 1 more expected workers commit")
	c.block(c.tx(C, c1))
	if info, _ := c.l.Round(1); info.Window == nil || info.Window.Expected != 3 || info.Window.Returning != 3 || !info.Window.Closed(&g, 0) {
		t.Fatalf("round 1's window: %+v", info.Window)
	}
	submit(c.tx(E, commitBody("E", 1, 10)), "closed early")
	c.block(c.tx(A, res1), c.tx(B, res1))
	if info, _ := c.l.Round(1); info.Status != "settled" {
		t.Fatalf("round 1 after an early window and two votes: %+v", info)
	}
}

// The commit window is part of the genesis encoding only when set.
func TestGenesisCommitWindow(t *testing.T) {
	org := keyFrom("org")
	g := genesisFor(org, 1, keyFrom("A"))
	plain := g.Encode()
	g.CommitWindow = 5e9
	enc := g.Encode()
	if len(enc) != len(plain)+8 {
		t.Fatalf("encoding grew by %d bytes, want 8", len(enc)-len(plain))
	}
	back, err := ledger.DecodeGenesis(enc)
	if err != nil || back.CommitWindow != 5e9 || !back.MemberRounds() {
		t.Fatalf("decoded %+v, %v", back, err)
	}
	bad := append(plain[:len(plain):len(plain)], 0, 0, 0, 0, 0, 0, 0, 0)
	if _, err := ledger.DecodeGenesis(bad); err == nil || !strings.Contains(err.Error(), "commit window 0") {
		t.Fatalf("a zero window encoded: %v", err)
	}
}

// A worker a round does not expect joins it: the window then waits for
// its commit instead of closing when the expected ones have committed. A
// join is refused outside member rounds' open round, without stake, twice,
// for a worker already expected, after the window closed, and after a
// join not followed by a commit.
func TestMemberJoin(t *testing.T) {
	org, A, B, E, C, D := keyFrom("org"), keyFrom("A"), keyFrom("B"), keyFrom("E"), keyFrom("C"), keyFrom("D")
	g := genesisFor(org, 4, A, B, E, C, D) // D holds no stake
	g.CommitWindow = 2.5e9                 // blocks are 1 s apart
	c := newChain(t, g, org)
	submit := refusedBy(t, c)
	vote := func(r uint64, h string, cs ...pledge) *ledger.ResultTx {
		return &ledger.ResultTx{Round: r, ModelHash: hashOf(h), Accepted: sortedContribs(cs...)}
	}
	// Round 0: A and B commit, E and C (staked at genesis, expected) do
	// not; the window runs to its end.
	a0, b0 := commitBody("A", 0, 10), commitBody("B", 0, 10)
	submit(c.tx(E, &ledger.JoinTx{Round: 0}), "already waits for")
	c.block(c.tx(A, a0), c.tx(B, b0)) // t=1: open until 3.5
	c.block()
	c.block()
	c.block() // t=4: passed
	r0 := vote(0, "θ1", pledge{A, a0}, pledge{B, b0})
	c.block(c.tx(A, r0), c.tx(B, r0))
	if info, _ := c.l.Round(0); info.Status != "settled" {
		t.Fatalf("round 0: %+v", info)
	}
	// Round 1 expects A and B. E joins before the window opens.
	submit(c.tx(E, &ledger.JoinTx{Round: 3}), "the open round is 1")
	submit(c.tx(E, &ledger.JoinTx{Round: 2}), "while round 1's commit window is open")
	submit(c.tx(D, &ledger.JoinTx{Round: 1}), "not-staked")
	submit(c.tx(A, &ledger.JoinTx{Round: 1}), "already waits for")
	c.block(c.tx(E, &ledger.JoinTx{Round: 1}))
	submit(c.tx(E, &ledger.JoinTx{Round: 1}), "already joined")
	a1, b1, e1 := commitBody("A", 1, 10), commitBody("B", 1, 10), commitBody("E", 1, 10)
	c.block(c.tx(A, a1), c.tx(B, b1))
	if info, _ := c.l.Round(1); info.Window == nil || info.Window.Expected != 3 || info.Window.Returning != 2 || info.Window.Closed(&g, 0) {
		t.Fatalf("round 1's window with E joined: %+v", info.Window)
	}
	// C joins the open window too, then E commits; C has not.
	c.block(c.tx(C, &ledger.JoinTx{Round: 1}), c.tx(E, e1))
	if info, _ := c.l.Round(1); info.Window.Expected != 4 || info.Window.Returning != 3 {
		t.Fatalf("round 1's window after C joined and E committed: %+v", info.Window)
	}
	submit(c.tx(A, &ledger.JoinTx{Round: 2}), "while round 1's commit window is open")
	c.block()
	c.block() // the window passes without C
	submit(c.tx(A, &ledger.JoinTx{Round: 2}), "committed to round 1")
	submit(c.tx(D, &ledger.JoinTx{Round: 1}), "not-staked")
	r1 := vote(1, "θ2", pledge{A, a1}, pledge{B, b1}, pledge{E, e1})
	c.block(c.tx(A, r1), c.tx(B, r1), c.tx(E, r1))
	if info, _ := c.l.Round(1); info.Status != "settled" || len(info.Result.Accepted) != 3 {
		t.Fatalf("round 1: %+v", info)
	}
	// Round 2: C joined round 1 and never committed: it may not join again.
	submit(c.tx(C, &ledger.JoinTx{Round: 2}), "joined round 1 and did not commit there")
	// A worker that missed round 2's window (F, staked after it opened)
	// joins round 3 before round 2 closes: round 3 waits for it.
	a2, b2, e2 := commitBody("A", 2, 10), commitBody("B", 2, 10), commitBody("E", 2, 10)
	c.block(c.tx(A, a2), c.tx(B, b2), c.tx(E, e2)) // the window closes early
	if info, _ := c.l.Round(2); !info.Window.Closed(&g, 0) {
		t.Fatalf("round 2's window: %+v", info.Window)
	}
	F := keyFrom("F")
	c.block(c.tx(A, &ledger.TransferTx{To: ledger.KeyOf(F), Amount: 500}))
	c.block(c.tx(F, &ledger.RegisterTx{Amount: 100}))
	c.block(c.tx(F, &ledger.JoinTx{Round: 3})) // round 2 is still open (no votes yet), its window closed
	r2 := vote(2, "θ3", pledge{A, a2}, pledge{B, b2}, pledge{E, e2})
	c.block(c.tx(A, r2), c.tx(B, r2))
	a3, b3, e3, f3 := commitBody("A", 3, 10), commitBody("B", 3, 10), commitBody("E", 3, 10), commitBody("F", 3, 10)
	c.block(c.tx(A, a3), c.tx(B, b3), c.tx(E, e3))
	if info, _ := c.l.Round(3); info.Window == nil || info.Window.Expected != 4 || info.Window.Closed(&g, 0) {
		t.Fatalf("round 3's window with F joined early: %+v", info.Window)
	}
	c.block(c.tx(F, f3))
	if info, _ := c.l.Round(3); info.Window.Returning != 4 || !info.Window.Closed(&g, 0) {
		t.Fatalf("round 3's window after F committed: %+v", info.Window)
	}
	// Outside member rounds there is nothing to join.
	g2 := genesisFor(org, 2, A, B)
	c2 := newChain(t, g2, org)
	if err := c2.p.Submit(c2.tx(A, &ledger.JoinTx{Round: 0})); err == nil || !strings.Contains(err.Error(), "member rounds") {
		t.Fatalf("a join in an authority run: %v", err)
	}
}

// refusedBy returns a check that c's producer refuses a transaction with
// an error containing want.
func refusedBy(t *testing.T, c *chain) func(raw []byte, want string) {
	return func(raw []byte, want string) {
		t.Helper()
		err := c.p.Submit(raw)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v, want %q", err, want)
		}
	}
}
