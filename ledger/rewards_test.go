package ledger_test

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/ledger"
)

func TestSplitEmission(t *testing.T) {
	cases := []struct {
		emission uint64
		tokens   []uint64
		want     []uint64
	}{
		{1000, []uint64{300, 400}, []uint64{429, 571}}, // remainders 400 and 300 of 700: the larger gets the unit
		{10, []uint64{1, 1, 1}, []uint64{4, 3, 3}},     // equal remainders: the lower index first
		{2, []uint64{1, 1, 1}, []uint64{1, 1, 0}},      // fewer units than contributions
		{7, []uint64{5, 0, 5}, []uint64{4, 0, 3}},      // no tokens, no share
		{100, []uint64{0, 0}, []uint64{0, 0}},          // nothing to pay: nothing minted
		{0, []uint64{3, 4}, []uint64{0, 0}},            // no emission
		{math.MaxUint64, []uint64{1, 1}, []uint64{math.MaxUint64/2 + 1, math.MaxUint64 / 2}},
		{math.MaxUint64, []uint64{ledger.MaxTokens, 1}, nil}, // 128-bit products: checked by the sum below
	}
	for _, c := range cases {
		got, err := ledger.SplitEmission(c.emission, c.tokens)
		if err != nil {
			t.Fatal(err)
		}
		if c.want != nil && !slices.Equal(got, c.want) {
			t.Errorf("SplitEmission(%d, %v) = %v, want %v", c.emission, c.tokens, got, c.want)
		}
		if s := sum(got); s != c.emission && sum(c.tokens) != 0 {
			t.Errorf("SplitEmission(%d, %v) pays %d", c.emission, c.tokens, s)
		}
	}
	if _, err := ledger.SplitEmission(1, []uint64{math.MaxUint64, 1}); err == nil {
		t.Error("tokens overflowing 64 bits accepted")
	}

	// Random splits: exact sum, each share within one unit of its exact
	// pro-rata value, and a larger claim never paid less.
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 2000; trial++ {
		n := 1 + rng.IntN(40)
		tokens := make([]uint64, n)
		for i := range tokens {
			tokens[i] = rng.Uint64N(1 << (1 + rng.IntN(40)))
		}
		emission := rng.Uint64N(1 << (1 + rng.IntN(63)))
		got, _ := ledger.SplitEmission(emission, tokens)
		total := sum(tokens)
		if total == 0 {
			continue
		}
		if sum(got) != emission {
			t.Fatalf("emission %d tokens %v: shares %v add up to %d", emission, tokens, got, sum(got))
		}
		for i := range tokens {
			exact := float64(emission) * float64(tokens[i]) / float64(total)
			if d := float64(got[i]) - exact; d < -1-1e-6*exact || d > 1+1e-6*exact {
				t.Fatalf("share %d is %d, exact %.1f", i, got[i], exact)
			}
			for j := range tokens {
				if tokens[i] > tokens[j] && got[i] < got[j] {
					t.Fatalf("%d tokens paid %d, %d tokens paid %d", tokens[i], got[i], tokens[j], got[j])
				}
			}
		}
	}
}

func sum(xs []uint64) uint64 {
	var s uint64
	for _, x := range xs {
		s += x
	}
	return s
}

// TestRewardsAddUpRoundAfterRound runs 12 rounds with a changing set of
// workers, token claims that do not divide the emission, and random
// verdicts: every settlement pays exactly the emission (or nothing when
// all failed), the supply invariant holds after every block, and the
// totals at the end are the sums of the rounds.
func TestRewardsAddUpRoundAfterRound(t *testing.T) {
	org := keyFrom("org")
	var workers []ed25519.PrivateKey
	for i := 0; i < 6; i++ {
		workers = append(workers, keyFrom(fmt.Sprint("w", i)))
	}
	g := genesisFor(org, 0, workers...)
	g.EmissionPerRound = 1_000_003 // prime: remainders in every round
	g.SlashBasisPoints = 1000
	g.MinStake = 10
	c := newChain(t, g, org)
	var reg [][]byte
	for _, w := range workers {
		reg = append(reg, c.tx(w, &ledger.RegisterTx{Amount: 500}))
	}
	c.block(reg...)

	rng := rand.New(rand.NewPCG(3, 4))
	var minted, burned uint64
	var paidRounds int
	const rounds = 12
	for r := uint64(0); r < rounds; r++ {
		var txs [][]byte
		var ps []pledge
		for i, w := range workers {
			if rng.IntN(4) == 0 || c.account(w).Stake < g.MinStake {
				continue // sits this round out
			}
			body := commitBody(fmt.Sprint("w", i), r, 1+rng.Uint64N(10000))
			body.Fresh = true
			txs = append(txs, c.tx(w, body))
			ps = append(ps, pledge{w, body})
		}
		c.block(txs...)
		accepted := sortedContribs(ps...)
		c.block(c.tx(org, &ledger.ResultTx{Round: r, ModelHash: hashOf(fmt.Sprint("theta", r+1)), Accepted: accepted}))
		var vs []ledger.Verdict
		paid := false
		for _, a := range accepted {
			v := ledger.Verdict{Worker: a.Worker, Outcome: ledger.Outcome(1 + rng.IntN(3))}
			if r == 5 {
				v.Outcome = ledger.Failed // a round where nothing is paid mints nothing
			}
			if v.Outcome == ledger.Failed {
				v.Reason, v.Evidence = "mismatch", []byte{1, 2, 3}
			} else {
				paid = true
			}
			vs = append(vs, v)
		}
		before := c.account(org).Balance
		c.block(c.tx(org, &ledger.SettleTx{Round: r, Verdicts: vs}))
		info, err := c.l.Round(r)
		if err != nil {
			t.Fatal(err)
		}
		if info.Status != "settled" || len(info.Verdicts) != len(accepted) || len(info.Commits) != len(accepted) {
			t.Fatalf("round %d: %+v", r, info)
		}
		var rewards, slashed uint64
		for _, v := range info.Verdicts {
			rewards += v.Reward
			slashed += v.Slashed
			if v.Outcome == ledger.Failed && v.Reward != 0 {
				t.Fatalf("round %d: failed contribution paid %d", r, v.Reward)
			}
		}
		want := uint64(0)
		if paid {
			want = g.EmissionPerRound
			paidRounds++
		}
		if rewards != want {
			t.Fatalf("round %d: rewards add up to %d, emission %d", r, rewards, want)
		}
		if c.account(org).Balance != before {
			t.Fatal("the aggregator was paid")
		}
		minted += rewards
		burned += slashed
	}
	tot, err := c.l.Totals()
	if err != nil {
		t.Fatal(err)
	}
	if tot.Minted != minted || tot.Burned != burned || tot.Supply != tot.GenesisSupply+minted-burned || tot.OpenRound != rounds || tot.NextSettle != rounds {
		t.Fatalf("totals %+v, minted %d burned %d", tot, minted, burned)
	}
	if paidRounds != rounds-1 || burned == 0 {
		t.Fatalf("the test exercised %d paid rounds and burned %d", paidRounds, burned)
	}
	t.Logf("%d rounds, %d paid, minted %d, burned %d, supply %d", rounds, paidRounds, minted, burned, tot.Supply)
}

// TestRejectedContributionSlashed: a contribution screening kept out of
// the round is never paid, but a failed verification of it slashes its
// worker; it cannot pass, and a verdict for a worker without any
// contribution is refused.
func TestRejectedContributionSlashed(t *testing.T) {
	org, A, B, C := keyFrom("org"), keyFrom("A"), keyFrom("B"), keyFrom("C")
	c := newChain(t, genesisFor(org, 3, A, B, C), org)
	a0, b0 := commitBody("A", 0, 100), commitBody("B", 0, 100)
	c.block(c.tx(A, a0), c.tx(B, b0))
	c.block(c.tx(org, &ledger.ResultTx{Round: 0, ModelHash: hashOf("theta1"), Accepted: sortedContribs(pledge{A, a0}),
		Rejected: []ledger.Rejection{{Worker: ledger.KeyOf(B), Reason: "norm 50x the median"}}}))
	for _, tc := range []struct {
		name     string
		verdicts []ledger.Verdict
		want     string
	}{
		{"rejected passes", sortedVerdicts(ledger.Verdict{Worker: ledger.KeyOf(A), Outcome: ledger.Passed},
			ledger.Verdict{Worker: ledger.KeyOf(B), Outcome: ledger.Passed}), "cannot pass"},
		{"stranger judged", sortedVerdicts(ledger.Verdict{Worker: ledger.KeyOf(A), Outcome: ledger.Passed},
			ledger.Verdict{Worker: ledger.KeyOf(C), Outcome: ledger.Unchecked}), "who has no contribution in round 0"},
		{"only the rejected", []ledger.Verdict{{Worker: ledger.KeyOf(B), Outcome: ledger.Unchecked}}, "no verdict for the accepted contribution"},
	} {
		raw := c.tx(org, &ledger.SettleTx{Round: 0, Verdicts: tc.verdicts})
		var te *ledger.TxError
		if err := c.p.Submit(raw); !errors.As(err, &te) || !strings.Contains(te.Reason, tc.want) {
			t.Fatalf("%s: %v, want a refusal containing %q", tc.name, err, tc.want)
		}
	}
	c.nonces[ledger.KeyOf(org)] -= 3 // the refused settlements used no nonce
	before := c.account(B)
	c.block(c.tx(org, &ledger.SettleTx{Round: 0, Verdicts: sortedVerdicts(
		ledger.Verdict{Worker: ledger.KeyOf(A), Outcome: ledger.Passed},
		ledger.Verdict{Worker: ledger.KeyOf(B), Outcome: ledger.Failed, Reason: "payload mismatch", Evidence: []byte("recomputed")})}))
	a, b := c.account(A), c.account(B)
	if a.Balance != 1000+c.g.EmissionPerRound {
		t.Fatalf("A holds %d, want its balance plus the whole emission", a.Balance)
	}
	if b.Balance != before.Balance || b.Stake != before.Stake/2 {
		t.Fatalf("B holds %d and stakes %d, want %d unpaid and half of %d slashed", b.Balance, b.Stake, before.Balance, before.Stake)
	}
}
