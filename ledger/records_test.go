package ledger_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/ledger"
)

// TestRecordsTx: an authority records accepted records; each contributor
// is paid the reward (minted: the supply and the invariants agree); a
// hash is recorded once; anyone else is refused; the record answers the
// record query and survives an export and restore.
func TestRecordsTx(t *testing.T) {
	org, a, b := keyFrom("org"), keyFrom("alice"), keyFrom("bob")
	g := genesisFor(org, 0, a, b)
	c := newChain(t, g, org)
	h1, h2 := hashOf("record one"), hashOf("record two")
	if bytes.Compare(h1[:], h2[:]) > 0 {
		h1, h2 = h2, h1
	}
	entries := []ledger.RecordEntry{{Hash: h1, Contributor: ledger.KeyOf(a), Reward: 700}, {Hash: h2, Contributor: ledger.KeyOf(b), Reward: 300}}
	blk := c.block(c.tx(org, &ledger.RecordsTx{Entries: entries}))
	for _, e := range entries {
		acct, err := c.l.Account(e.Contributor)
		if err != nil || acct.Balance != 1000+e.Reward {
			t.Fatalf("%s: balance %d, want %d (%v)", e.Contributor, acct.Balance, 1000+e.Reward, err)
		}
		raw, err := c.l.Query("record", e.Hash[:])
		if err != nil {
			t.Fatal(err)
		}
		var rec *ledger.RecordInfo
		if err := json.Unmarshal(raw, &rec); err != nil || rec == nil || rec.Contributor != e.Contributor || rec.Reward != e.Reward || rec.Height != blk.Header.Height {
			t.Fatalf("query record: %s %v", raw, err)
		}
	}
	tot, err := c.l.Totals()
	if err != nil || tot.Minted != 1000 || tot.Supply != tot.GenesisSupply+1000 {
		t.Fatalf("totals %+v %v", tot, err)
	}
	if err := c.l.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	refused := func(key []byte, body ledger.Body, code ledger.Code, reason string) {
		t.Helper()
		raw := c.tx(key, body)
		c.nonces[ledger.KeyOf(key)]--
		var te *ledger.TxError
		if err := c.l.CheckTx(raw); !errors.As(err, &te) || te.Code != code || !strings.Contains(te.Reason, reason) {
			t.Fatalf("%+v: %v, want %v containing %q", body, err, code, reason)
		}
	}
	refused(org, &ledger.RecordsTx{Entries: entries[:1]}, ledger.CodeDuplicateCommit, "already on the chain")
	refused(a, &ledger.RecordsTx{Entries: []ledger.RecordEntry{{Hash: hashOf("three"), Contributor: ledger.KeyOf(a), Reward: 5}}}, ledger.CodeUnauthorized, "may not record")
	if _, err := ledger.SignTx(g.ChainID, org, 50, &ledger.RecordsTx{Entries: []ledger.RecordEntry{entries[1], entries[0]}}); err == nil {
		t.Fatal("unsorted entries signed")
	}
	if _, err := ledger.SignTx(g.ChainID, org, 50, &ledger.RecordsTx{}); err == nil {
		t.Fatal("no entries signed")
	}
	none := hashOf("never")
	if raw, _ := c.l.Query("record", none[:]); string(raw) != "null" {
		t.Fatalf("an unknown record answers %s", raw)
	}
	var pairs []ledger.KV
	c.l.ExportState(func(k, v []byte) { pairs = append(pairs, ledger.KV{Key: k, Value: v}) })
	restored, err := ledger.Restore(c.g, c.l.Tip(), pairs)
	if err != nil {
		t.Fatal(err)
	}
	if rec, ok, err := restored.Record(entries[0].Hash); err != nil || !ok || rec.Reward != entries[0].Reward {
		t.Fatalf("restored: %+v %v %v", rec, ok, err)
	}
	if d := ledger.DescribeStateKey(append([]byte{'d'}, h1[:]...)); !strings.Contains(d, "accepted record") {
		t.Fatalf("described as %q", d)
	}
}

// TestSamplesTx: an authority judges generated samples; a verified one
// pays its worker the reward, a wrong one slashes the worker's stake
// (burned, the supply and the invariants agree); a sample is judged once;
// a wrong sample cannot carry a reward; anyone else is refused.
func TestSamplesTx(t *testing.T) {
	org, w := keyFrom("org"), keyFrom("worker")
	g := genesisFor(org, 1, w) // w holds a stake of 100
	c := newChain(t, g, org)
	good, bad := hashOf("sample good"), hashOf("sample bad")
	es := []ledger.SampleEntry{{Hash: good, Worker: ledger.KeyOf(w), Verified: true, Reward: 40}, {Hash: bad, Worker: ledger.KeyOf(w)}}
	if bytes.Compare(good[:], bad[:]) > 0 {
		es[0], es[1] = es[1], es[0]
	}
	c.block(c.tx(org, &ledger.SamplesTx{Entries: es}))
	acct, _ := c.l.Account(ledger.KeyOf(w))
	if acct.Balance != 1040 || acct.Stake != 50 { // SlashBasisPoints 5000 of 100
		t.Fatalf("the worker after one verified and one wrong sample: %+v", acct)
	}
	tot, _ := c.l.Totals()
	if tot.Minted != 40 || tot.Burned != 50 {
		t.Fatalf("totals %+v", tot)
	}
	if err := c.l.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	if s, ok, err := c.l.Sample(bad); err != nil || !ok || s.Verified || s.Slashed != 50 {
		t.Fatalf("the wrong sample's record: %+v %v %v", s, ok, err)
	}
	raw := c.tx(org, &ledger.SamplesTx{Entries: es[:1]})
	c.nonces[ledger.KeyOf(org)]--
	var te *ledger.TxError
	if err := c.l.CheckTx(raw); !errors.As(err, &te) || te.Code != ledger.CodeDuplicateCommit {
		t.Fatalf("a sample judged twice: %v", err)
	}
	if _, err := ledger.SignTx(g.ChainID, org, 90, &ledger.SamplesTx{Entries: []ledger.SampleEntry{{Hash: hashOf("x"), Worker: ledger.KeyOf(w), Reward: 1}}}); err == nil {
		t.Fatal("a wrong sample with a reward signed")
	}
	raw = c.tx(w, &ledger.SamplesTx{Entries: []ledger.SampleEntry{{Hash: hashOf("y"), Worker: ledger.KeyOf(w), Verified: true, Reward: 9}}})
	c.nonces[ledger.KeyOf(w)]--
	if err := c.l.CheckTx(raw); !errors.As(err, &te) || te.Code != ledger.CodeUnauthorized {
		t.Fatalf("a worker judging its own sample: %v", err)
	}
}
