package ledger_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/ledger"
)

// Served usage pays the trainers: a settlement counts the tokens of the
// contributions it pays (not the failed one), and a receipts transaction
// debits each requester its fees and splits their sum among the
// contributors pro rata to those tokens, exactly; the supply does not
// change. Only an authority records usage, a requester short of its fee
// rejects the whole batch, and a malformed batch does not decode.
func TestReceiptsPayContributors(t *testing.T) {
	org, a, b, f, user := keyFrom("org"), keyFrom("a"), keyFrom("b"), keyFrom("f"), keyFrom("user")
	g := genesisFor(org, 3, a, b, f, user)
	g.MinStake, g.EmissionPerRound = 100, 1000
	c := newChain(t, g, org)
	model := hashOf("model")
	entries := []ledger.ReceiptEntry{{Requester: ledger.KeyOf(user), Requests: 3, Tokens: 90, Fee: 901}}
	// No contributor yet: nothing to pay.
	raw := c.tx(org, &ledger.ReceiptsTx{Model: model, Entries: entries})
	var te *ledger.TxError
	if err := c.l.CheckTx(raw); !errors.As(err, &te) || te.Code != ledger.CodeInvalid || !strings.Contains(te.Reason, "no contributor") {
		t.Fatalf("receipts before any contribution: %v", err)
	}

	pa, pb, pf := commitBody("a", 0, 300), commitBody("b", 0, 600), commitBody("f", 0, 100)
	for _, p := range []*ledger.CommitTx{pa, pb, pf} {
		p.Fresh = true
	}
	c.block(c.tx(a, pa), c.tx(b, pb), c.tx(f, pf))
	accepted := sortedContribs(pledge{a, pa}, pledge{b, pb}, pledge{f, pf})
	c.block(c.tx(org, &ledger.ResultTx{Round: 0, ModelHash: model, Accepted: accepted}))
	var vs []ledger.Verdict
	for _, x := range accepted {
		v := ledger.Verdict{Worker: x.Worker, Outcome: ledger.Unchecked}
		if x.Worker == ledger.KeyOf(f) {
			v = ledger.Verdict{Worker: x.Worker, Outcome: ledger.Failed, Reason: "mismatch", Evidence: []byte{1}}
		}
		vs = append(vs, v)
	}
	c.block(c.tx(org, &ledger.SettleTx{Round: 0, Verdicts: vs}))
	cs, err := c.l.Contributors()
	if err != nil {
		t.Fatal(err)
	}
	want := []ledger.Contributor{{Worker: ledger.KeyOf(a), Tokens: 300}, {Worker: ledger.KeyOf(b), Tokens: 600}}
	slices.SortFunc(want, func(x, y ledger.Contributor) int { return strings.Compare(string(x.Worker[:]), string(y.Worker[:])) })
	if !slices.Equal(cs, want) {
		t.Fatalf("contributors %+v, want %+v", cs, want)
	}

	before := map[string]uint64{"a": c.account(a).Balance, "b": c.account(b).Balance, "f": c.account(f).Balance, "user": c.account(user).Balance}
	supply := must(c.l.Totals()).Supply
	// A worker may not record usage; a requester short of its fee fails
	// the batch.
	if err := c.l.CheckTx(c.tx(a, &ledger.ReceiptsTx{Model: model, Entries: entries})); !errors.As(err, &te) || te.Code != ledger.CodeUnauthorized {
		t.Fatalf("receipts from a worker: %v", err)
	}
	broke := []ledger.ReceiptEntry{{Requester: ledger.KeyOf(user), Requests: 1, Tokens: 1, Fee: 1_000_000}}
	if err := c.l.CheckTx(c.tx(org, &ledger.ReceiptsTx{Model: model, Entries: broke})); !errors.As(err, &te) || te.Code != ledger.CodeInsufficientFunds {
		t.Fatalf("receipts beyond the balance: %v", err)
	}
	c.block(c.tx(org, &ledger.ReceiptsTx{Model: model, Entries: entries}))
	// 901 split 300:600 is 300.33 and 600.67: a gets 300, b 601.
	if got := c.account(user).Balance; got != before["user"]-901 {
		t.Fatalf("user balance %d, want %d", got, before["user"]-901)
	}
	if ga, gb := c.account(a).Balance-before["a"], c.account(b).Balance-before["b"]; ga != 300 || gb != 601 {
		t.Fatalf("a got %d, b got %d; want 300 and 601", ga, gb)
	}
	if c.account(f).Balance != before["f"] {
		t.Fatal("the failed worker was paid")
	}
	tot := must(c.l.Totals())
	if tot.Supply != supply || c.l.CheckInvariants() != nil {
		t.Fatalf("supply %d, was %d; invariants %v", tot.Supply, supply, c.l.CheckInvariants())
	}
	hist, err := c.l.History(ledger.KeyOf(user))
	if err != nil || len(hist) == 0 || hist[len(hist)-1].Kind != ledger.KindReceipts {
		t.Fatalf("the requester's history: %+v %v", hist, err)
	}

	// Malformed batches do not decode.
	for name, body := range map[string]*ledger.ReceiptsTx{
		"empty":    {Model: model},
		"no fee":   {Model: model, Entries: []ledger.ReceiptEntry{{Requester: ledger.KeyOf(user), Requests: 1}}},
		"unsorted": {Model: model, Entries: []ledger.ReceiptEntry{entries[0], entries[0]}},
	} {
		if _, err := ledger.SignTx(g.ChainID, org, 99, body); err == nil {
			t.Errorf("%s: a malformed receipts batch signed", name)
		}
	}
}
