package node

import (
	"context"
	"slices"
	"testing"

	"github.com/cairnlabs/cairn/ledger"
)

// failLast is a Settler that fails, from round 1 on, the last accepted
// contribution of each round (a validator's verdict stand-in), so that
// the runs below pay and slash.
type failLast struct{}

func (failLast) Settle(rec ledger.RoundRecord, _ ledger.Hash) ([]ledger.Verdict, bool, error) {
	vs, _, _ := SettleUnchecked{}.Settle(rec, ledger.Hash{})
	if n := len(vs); rec.Round >= 1 && n > 0 {
		vs[n-1] = ledger.Verdict{Worker: vs[n-1].Worker, Outcome: ledger.Failed, Reason: "test: caught", Evidence: []byte("evidence")}
	}
	return vs, true, nil
}

// The same run, once on the embedded chain and once on a two-validator
// CometBFT network in this process (workers sending their transactions
// to the validators in turn), ends with the same weights and the same
// balances, stakes, rewards and totals on both ledgers; the validators
// agree on every block and app hash.
func TestChainLedgerMatchesEmbedded(t *testing.T) {
	if testing.Short() {
		t.Skip("starts CometBFT nodes")
	}
	cfg := tinyConfig(3)
	run := func(validators int) LocalResult {
		res, err := RunLocal(context.Background(), LocalOptions{Config: cfg, Text: testText(), Workers: 3, EvalBatches: 1, Log: testLog(t),
			Settler: failLast{}, ChainValidators: validators})
		if err != nil {
			t.Fatal(err)
		}
		l := res.Ledger
		if l.Invariants != nil || l.Verified != nil || l.Validators != validators || l.Totals.NextSettle != 3 {
			t.Fatalf("%d validators: invariants %v, verified %v, validators %d, totals %+v", validators, l.Invariants, l.Verified, l.Validators, l.Totals)
		}
		return res
	}
	emb, ch := run(0), run(2)
	if !slices.Equal(emb.Weights, ch.Weights) {
		t.Fatal("the runs ended with different weights")
	}
	if emb.Ledger.Totals.Minted != ch.Ledger.Totals.Minted || emb.Ledger.Totals.Burned != ch.Ledger.Totals.Burned ||
		emb.Ledger.Totals.Supply != ch.Ledger.Totals.Supply {
		t.Fatalf("totals: embedded %+v, chain %+v", emb.Ledger.Totals, ch.Ledger.Totals)
	}
	if emb.Ledger.Totals.Burned == 0 {
		t.Fatal("nothing was slashed: the comparison misses the slashing path")
	}
	for i, a := range emb.Ledger.Accounts {
		b := ch.Ledger.Accounts[i]
		if a.ID != b.ID || a.Reward != b.Reward || a.Account.Balance != b.Account.Balance || a.Account.Stake != b.Account.Stake {
			t.Fatalf("worker %d: embedded %+v, chain %+v", i, a, b)
		}
	}
}
