package ledger_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/ledger"
)

func queryPrivacy(t *testing.T, l *ledger.Ledger) *ledger.PrivacyRecord {
	t.Helper()
	raw, err := l.Query("privacy", nil)
	if err != nil {
		t.Fatal(err)
	}
	var rec *ledger.PrivacyRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatalf("privacy query answered %s: %v", raw, err)
	}
	return rec
}

// TestPrivacyRecords: the authority records the privacy a run has spent
// after each closed round; the ledger refuses a record from anyone else,
// for a round not closed or already recorded, one whose ε falls, exceeds
// the budget, or whose budget or δ changes, each with its reason and
// without changing state.
func TestPrivacyRecords(t *testing.T) {
	org, w := keyFrom("org"), keyFrom("worker")
	g := genesisFor(org, 1, w)
	c := newChain(t, g, org)
	refused := func(key []byte, body ledger.Body, code ledger.Code, reason string) {
		t.Helper()
		raw := c.tx(key, body)
		k := ledger.KeyOf(key)
		c.nonces[k]-- // a refused transaction uses no nonce
		var te *ledger.TxError
		if err := c.l.CheckTx(raw); !errors.As(err, &te) || te.Code != code || !strings.Contains(te.Reason, reason) {
			t.Fatalf("%+v: %v, want %v containing %q", body, err, code, reason)
		}
	}
	if rec := queryPrivacy(t, c.l); rec != nil {
		t.Fatalf("a run without records answers %+v", rec)
	}
	refused(org, ledger.NewPrivacyTx(0, 4.2, 8, 1e-5), ledger.CodeRoundNotOpen, "has not closed")
	c.block(c.tx(org, &ledger.ResultTx{Round: 0, ModelHash: hashOf("theta 1")}))
	refused(w, ledger.NewPrivacyTx(0, 4.2, 8, 1e-5), ledger.CodeUnauthorized, "may not record")
	b := c.block(c.tx(org, ledger.NewPrivacyTx(0, 4.2, 8, 1e-5)))
	want := ledger.PrivacyRecord{Round: 0, Epsilon: 4_200_000, Budget: 8_000_000, Delta: 10_000_000, Height: b.Header.Height}
	if rec := queryPrivacy(t, c.l); rec == nil || *rec != want {
		t.Fatalf("record %+v, want %+v", rec, want)
	}
	c.block(c.tx(org, &ledger.SettleTx{Round: 0}))
	c.block(c.tx(org, &ledger.ResultTx{Round: 1, ModelHash: hashOf("theta 2")}))
	refused(org, ledger.NewPrivacyTx(0, 5, 8, 1e-5), ledger.CodeInvalid, "recorded already")
	refused(org, ledger.NewPrivacyTx(1, 4, 8, 1e-5), ledger.CodeInvalid, "falls")
	refused(org, ledger.NewPrivacyTx(1, 6, 9, 1e-5), ledger.CodeInvalid, "budget or delta changed")
	refused(org, ledger.NewPrivacyTx(1, 6, 8, 1e-6), ledger.CodeInvalid, "budget or delta changed")
	if _, err := ledger.SignTx(c.g.ChainID, org, 99, ledger.NewPrivacyTx(1, 8.5, 8, 1e-5)); err == nil || !strings.Contains(err.Error(), "past the budget") {
		t.Fatalf("a record past the budget was signed: %v", err)
	}
	c.block(c.tx(org, ledger.NewPrivacyTx(1, 6.29, 8, 1e-5)))
	if rec := queryPrivacy(t, c.l); rec == nil || rec.Round != 1 || rec.Spent() != 6.29 || rec.BudgetValue() != 8 || rec.DeltaValue() != 1e-5 {
		t.Fatalf("record %+v after round 1", rec)
	}
	// ε is rounded up, never understated.
	if p := ledger.NewPrivacyTx(2, 1.0000001, 8, 1e-5); p.Epsilon != 1000001 {
		t.Fatalf("ε 1.0000001 recorded as %d millionths", p.Epsilon)
	}
	// The record decodes from the exported state, and a restored ledger
	// answers it.
	var pairs []ledger.KV
	c.l.ExportState(func(k, v []byte) { pairs = append(pairs, ledger.KV{Key: k, Value: v}) })
	restored, err := ledger.Restore(c.g, c.l.Tip(), pairs)
	if err != nil {
		t.Fatal(err)
	}
	if rec, ok, err := restored.Privacy(); err != nil || !ok || rec.Epsilon != 6_290_000 {
		t.Fatalf("restored: %+v %v %v", rec, ok, err)
	}
	if d := ledger.DescribeStateKey([]byte{'p'}); !strings.Contains(d, "privacy") {
		t.Fatalf("described as %q", d)
	}
}
