package serve

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/ledger"
)

// fakeChain is a real ledger behind the Ledger interface: each Submit is
// a block.
type fakeChain struct {
	t      *testing.T
	l      *ledger.Ledger
	p      *ledger.Producer
	now    int64
	submit int
}

func (f *fakeChain) Nonce(_ context.Context, k ledger.PubKey) (uint64, error) {
	a, err := f.l.Account(k)
	return a.Nonce, err
}

func (f *fakeChain) Submit(_ context.Context, raw []byte) error {
	f.submit++
	if err := f.p.Submit(raw); err != nil {
		return err
	}
	f.now += 1e9
	_, res, err := f.p.MakeBlock(f.now)
	if err != nil {
		return err
	}
	if _, err := f.p.Commit(); err != nil {
		return err
	}
	if len(res.Results) != 1 {
		return errors.New("the transaction was dropped from the block")
	}
	return nil
}

func (f *fakeChain) send(key ed25519.PrivateKey, nonce uint64, body ledger.Body) {
	raw, err := ledger.SignTx("cairn-serve-test", key, nonce, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.Submit(context.Background(), raw); err != nil {
		f.t.Fatal(err)
	}
}

// Receipts recorded on the ledger move the fees from the requester to
// the run's contributor, exactly; the server then stops counting them
// against the requester's balance (the ledger carries them), records
// nothing twice, and a batch sent before a crash is not sent again.
func TestRecordReceiptsOnTheLedger(t *testing.T) {
	srvKey, worker := key("server"), key("worker")
	g := ledger.Genesis{ChainID: "cairn-serve-test", Authorities: []ledger.PubKey{ledger.KeyOf(srvKey)}, MinStake: 100,
		UnbondingRounds: 2, EmissionPerRound: 1000, SlashBasisPoints: 5000, SettlementLag: 1,
		Accounts: []ledger.GenesisAccount{{Key: alice, Balance: 1000}, {Key: ledger.KeyOf(worker), Stake: 100}}}
	if string(g.Accounts[0].Key[:]) > string(g.Accounts[1].Key[:]) {
		g.Accounts[0], g.Accounts[1] = g.Accounts[1], g.Accounts[0]
	}
	l, err := ledger.New(g)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ledger.NewProducer(l, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	ch := &fakeChain{t: t, l: l, p: p, now: time.Now().UnixNano()}
	delta := ledger.Hash{1}
	ch.send(worker, 1, &ledger.CommitTx{Round: 0, DeltaHash: delta, Tokens: 50, EndState: ledger.Hash{2}, Fresh: true, Kernel: "avx2"})
	ch.send(srvKey, 1, &ledger.ResultTx{Round: 0, ModelHash: ledger.Hash{3}, Accepted: []ledger.Contribution{{Worker: ledger.KeyOf(worker), DeltaHash: delta, Tokens: 50}}})
	ch.send(srvKey, 2, &ledger.SettleTx{Round: 0, Verdicts: []ledger.Verdict{{Worker: ledger.KeyOf(worker), Outcome: ledger.Unchecked}}})
	workerBefore := must(l.Account(ledger.KeyOf(worker))).Balance

	dir := t.TempDir()
	logPath, statePath := filepath.Join(dir, "receipts.jsonl"), filepath.Join(dir, "recorded.json")
	log, err := OpenFileLog(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	ts := newServer(t, true, log)
	ts.o.Key, ts.o.RecordState = srvKey, statePath
	ts.o.Balances = func(_ context.Context, k ledger.PubKey) (uint64, error) {
		a, err := l.Account(k)
		return a.Balance, err
	}
	for range 3 {
		if code, _, raw := ts.post(t, "sk-alice-key", `{"prompt":"ROMEO:","max_tokens":32}`); code != 200 {
			t.Fatalf("%d %s", code, raw)
		}
	}
	fees := 3 * uint64(2*(6+32))
	if got := ts.Spent(alice); got != fees {
		t.Fatalf("spent %d before recording, want %d", got, fees)
	}
	n, err := ts.Record(context.Background(), ch, g.ChainID, statePath)
	if err != nil || n != 3 {
		t.Fatalf("recorded %d: %v", n, err)
	}
	if a := must(l.Account(alice)); a.Balance != 1000-fees {
		t.Fatalf("alice's ledger balance %d, want %d", a.Balance, 1000-fees)
	}
	if w := must(l.Account(ledger.KeyOf(worker))); w.Balance != workerBefore+fees {
		t.Fatalf("the contributor got %d, want %d", w.Balance-workerBefore, fees)
	}
	if ts.Spent(alice) != 0 {
		t.Fatalf("still counting %d against alice after recording", ts.Spent(alice))
	}
	if l.CheckInvariants() != nil {
		t.Fatal(l.CheckInvariants())
	}
	// Nothing new: nothing sent.
	sent := ch.submit
	if n, err := ts.Record(context.Background(), ch, g.ChainID, statePath); err != nil || n != 0 || ch.submit != sent {
		t.Fatalf("second record: %d %v, %d submits", n, err, ch.submit-sent)
	}
	// A batch sent and included, but the server stopped before noting
	// it: found by its nonce, not sent again.
	if code, _, _ := ts.post(t, "sk-alice-key", `{"prompt":"ROMEO:","max_tokens":32}`); code != 200 {
		t.Fatal(code)
	}
	rs, _ := ts.Receipts()
	upTo, body := ts.batch(rs, 3)
	nonce := must(l.Account(ledger.KeyOf(srvKey))).Nonce + 1
	raw, _ := ledger.SignTx(g.ChainID, srvKey, nonce, body)
	if err := ch.Submit(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	if err := writeRecordState(statePath, recordState{Recorded: 3, Pending: true, PendingNonce: nonce, PendingUpTo: upTo, PendingTx: raw}); err != nil {
		t.Fatal(err)
	}
	sent = ch.submit
	if n, err := ts.Record(context.Background(), ch, g.ChainID, statePath); err != nil || n != 1 || ch.submit != sent {
		t.Fatalf("after a crash: recorded %d (%v), %d submits", n, err, ch.submit-sent)
	}
	if a := must(l.Account(alice)); a.Balance != 1000-4*fees/3 {
		t.Fatalf("alice %d after four requests, want %d", a.Balance, 1000-4*fees/3)
	}
	// A restarted server counts only unrecorded receipts.
	ts.Close()
	s2, err := New(Options{Model: ts.o.Model, Keys: ts.o.Keys, Balances: ts.o.Balances, Price: 2, Key: srvKey, Receipts: log, RecordState: statePath})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Spent(alice) != 0 {
		t.Fatalf("a restarted server counts %d against alice", s2.Spent(alice))
	}
	os.WriteFile(statePath, []byte("{"), 0o600)
	if _, err := New(Options{Model: ts.o.Model, Keys: ts.o.Keys, Balances: ts.o.Balances, Price: 2, Key: srvKey, Receipts: log, RecordState: statePath}); err == nil {
		t.Fatal("a garbled record state accepted")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
