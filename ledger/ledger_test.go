package ledger_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/ledger"
)

// smallChain is three blocks of every kind of transaction.
func smallChain(t *testing.T) *chain {
	org, A, B := keyFrom("org"), keyFrom("A"), keyFrom("B")
	c := newChain(t, genesisFor(org, 2, A, B), org)
	a0, b0 := commitBody("A", 0, 10), commitBody("B", 0, 30)
	c.block(c.tx(A, a0), c.tx(B, b0), c.tx(A, &ledger.TransferTx{To: ledger.KeyOf(B), Amount: 7}))
	c.block(c.tx(org, &ledger.ResultTx{Round: 0, ModelHash: hashOf("t1"), Accepted: sortedContribs(pledge{A, a0}, pledge{B, b0})}))
	vs := []ledger.Verdict{{Worker: ledger.KeyOf(A), Outcome: ledger.Passed}, {Worker: ledger.KeyOf(B), Outcome: ledger.Failed, Reason: "bad", Evidence: []byte("ev")}}
	if bytes.Compare(vs[0].Worker[:], vs[1].Worker[:]) > 0 {
		vs[0], vs[1] = vs[1], vs[0]
	}
	c.block(c.tx(org, &ledger.SettleTx{Round: 0, Verdicts: vs}), c.tx(B, &ledger.UnbondTx{Amount: 20}))
	return c
}

// TestReplayAndRestore: a second ledger that applies the producer's
// blocks through ApplyBlock reaches the same tip and state at every
// height; a ledger restored from an exported state continues the chain;
// blocks survive encoding.
func TestReplayAndRestore(t *testing.T) {
	c := smallChain(t)
	replica, err := ledger.New(c.g)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range c.blocks {
		dec, err := ledger.DecodeBlock(b.Encode())
		if err != nil || !reflect.DeepEqual(dec, b) {
			t.Fatalf("block %d does not survive encoding: %v", b.Header.Height, err)
		}
		if _, err := replica.ApplyBlock(dec); err != nil {
			t.Fatal(err)
		}
		if _, err := replica.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if replica.Tip() != c.l.Tip() {
		t.Fatalf("replica tip %+v, producer tip %+v", replica.Tip(), c.l.Tip())
	}
	var pairs []ledger.KV
	c.l.ExportState(func(k, v []byte) { pairs = append(pairs, ledger.KV{Key: k, Value: v}) })
	restored, err := ledger.Restore(c.g, c.l.Tip(), pairs)
	if err != nil {
		t.Fatal(err)
	}
	if restored.StateRoot() != c.l.StateRoot() {
		t.Fatal("restored state root differs")
	}
	// The restored ledger follows the chain.
	next := c.block(c.tx(keyFrom("A"), &ledger.TransferTx{To: ledger.KeyOf(keyFrom("B")), Amount: 1}))
	if _, err := restored.ApplyBlock(next); err != nil {
		t.Fatal(err)
	}
	restored.Commit()
	if restored.Tip() != c.l.Tip() {
		t.Fatal("restored ledger diverged")
	}
	// A corrupted pair is refused on restore.
	pairs[0].Value = append(bytes.Clone(pairs[0].Value), 0)
	if _, err := ledger.Restore(c.g, c.l.Tip(), pairs); err == nil {
		t.Fatal("restore accepted a corrupt state value")
	}
}

// TestApplyBlockRefusesTampering: every header field, transaction and
// signature of a block matters; a refused block leaves nothing pending.
func TestApplyBlockRefusesTampering(t *testing.T) {
	c := smallChain(t)
	other := keyFrom("not an authority")
	cases := []struct {
		name   string
		height int // index into c.blocks
		change func(b *ledger.Block)
		want   string
	}{
		{"chain ID", 0, func(b *ledger.Block) { b.Header.ChainID = "other" }, "chain ID"},
		{"height", 0, func(b *ledger.Block) { b.Header.Height = 2 }, "does not follow"},
		{"previous hash", 1, func(b *ledger.Block) { b.Header.PrevHash[0] ^= 1 }, "previous hash"},
		{"time", 1, func(b *ledger.Block) { b.Header.Time++ }, "bad proposer signature"},
		{"tx root", 0, func(b *ledger.Block) { b.Header.TxRoot[5] ^= 1 }, "bad proposer signature"},
		{"state root", 0, func(b *ledger.Block) { b.Header.StateRoot[5] ^= 1 }, "bad proposer signature"},
		{"signature", 0, func(b *ledger.Block) { b.Sig[0] ^= 1 }, "bad proposer signature"},
		{"transaction", 0, func(b *ledger.Block) { b.Txs[1][50] ^= 1 }, "transaction root mismatch"},
		{"dropped transaction", 0, func(b *ledger.Block) { b.Txs = b.Txs[:2] }, "transaction root mismatch"},
		{"proposer", 0, func(b *ledger.Block) { b.Header.Proposer = ledger.KeyOf(other); b.Sign(other) }, "not an authority"},
		{"re-signed wrong state root", 0, func(b *ledger.Block) { b.Header.StateRoot[0] ^= 1; b.Sign(c.org) }, "state root"},
		{"re-signed wrong results root", 0, func(b *ledger.Block) { b.Header.ResultsRoot[0] ^= 1; b.Sign(c.org) }, "results root mismatch"},
		{"re-signed time going back", 1, func(b *ledger.Block) { b.Header.Time = c.blocks[0].Header.Time - 1; b.Sign(c.org) }, "before the previous block"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, err := ledger.New(c.g)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range c.blocks[:tc.height] {
				if _, err := l.ApplyBlock(b); err != nil {
					t.Fatal(err)
				}
				l.Commit()
			}
			b, _ := ledger.DecodeBlock(c.blocks[tc.height].Encode())
			tc.change(b)
			_, err = l.ApplyBlock(b)
			var be *ledger.BlockError
			if !errors.As(err, &be) || !strings.Contains(be.Reason, tc.want) {
				t.Fatalf("got %v, want a block error containing %q", err, tc.want)
			}
			if _, err := l.Commit(); err == nil {
				t.Fatal("a refused block was left pending")
			}
			if _, err := l.ApplyBlock(c.blocks[tc.height]); err != nil {
				t.Fatalf("the genuine block after a refused one: %v", err)
			}
		})
	}
}

// TestUnbondingAndSlashing: unbonded stake stays slashable, slashing
// takes the stake first and then the oldest unbonding entries, withdrawal
// waits for the unbonding period, and a worker slashed below the minimum
// cannot commit until it bonds again.
func TestUnbondingAndSlashing(t *testing.T) {
	org, A, B := keyFrom("org"), keyFrom("A"), keyFrom("B")
	g := genesisFor(org, 0, A, B)
	g.SlashBasisPoints = 10000 // everything at risk
	c := newChain(t, g, org)
	c.block(c.tx(A, &ledger.RegisterTx{Amount: 300}), c.tx(B, &ledger.RegisterTx{Amount: 100}))
	a0 := commitBody("A", 0, 10)
	c.block(c.tx(A, a0), c.tx(A, &ledger.UnbondTx{Amount: 150}), c.tx(A, &ledger.UnbondTx{Amount: 50}), c.tx(B, &ledger.UnbondTx{Amount: 40}))
	if a := c.account(A); a.Stake != 100 || len(a.Unbonding) != 2 || a.Unbonding[0].ReleaseRound != 3 {
		t.Fatalf("after unbonding: %+v", a)
	}
	c.block(c.tx(org, &ledger.ResultTx{Round: 0, Accepted: sortedContribs(pledge{A, a0})}))
	// Round 1 open: B's unbonding matures at round 3.
	if err := c.p.Submit(c.tx(B, &ledger.WithdrawTx{})); err == nil || !strings.Contains(err.Error(), "before round 3") {
		t.Fatalf("early withdrawal: %v", err)
	}
	c.block(c.tx(org, &ledger.SettleTx{Round: 0, Verdicts: []ledger.Verdict{{Worker: ledger.KeyOf(A), Outcome: ledger.Failed, Reason: "x", Evidence: []byte{1}}}}))
	a := c.account(A)
	if a.Stake != 0 || len(a.Unbonding) != 0 || a.Balance != 700 {
		t.Fatalf("after a 100%% slash: %+v", a)
	}
	if err := c.p.Submit(c.tx(A, commitBody("A", 1, 10))); err == nil || !strings.Contains(err.Error(), "not-staked") {
		t.Fatalf("commit after being slashed: %v", err)
	}
	// Bonding again lets it commit (a fresh start or its last end state).
	c.block(c.tx(A, &ledger.RegisterTx{Amount: 100}), c.tx(A, commitBody("A", 1, 10)))

	// Close rounds 1 and 2 with nothing accepted; B withdraws at round 3.
	c.block(c.tx(org, &ledger.ResultTx{Round: 1}))
	c.block(c.tx(org, &ledger.SettleTx{Round: 1}), c.tx(org, &ledger.ResultTx{Round: 2}))
	bal := c.account(B).Balance
	c.block(c.tx(B, &ledger.WithdrawTx{}))
	if b := c.account(B); b.Balance != bal+40 || len(b.Unbonding) != 0 || b.Stake != 60 {
		t.Fatalf("after withdrawal: %+v", b)
	}
	tot, _ := c.l.Totals()
	if tot.Minted != 0 || tot.Burned != 300 {
		t.Fatalf("totals %+v", tot)
	}
}

// TestOpenRun: a genesis with a minimum stake of 0 is an open run: an
// account with no stake at all commits and is paid, and a failed verdict
// takes nothing from it (there is nothing to take).
func TestOpenRun(t *testing.T) {
	org, A, B := keyFrom("org"), keyFrom("A"), keyFrom("B")
	g := genesisFor(org, 0, A)
	g.MinStake = 0
	c := newChain(t, g, org)
	a0, b0 := commitBody("A", 0, 30), commitBody("B", 0, 10)
	c.block(c.tx(A, a0), c.tx(B, b0)) // B has no account at all before its commit
	c.block(c.tx(org, &ledger.ResultTx{Round: 0, Accepted: sortedContribs(pledge{A, a0}, pledge{B, b0})}))
	vs := []ledger.Verdict{{Worker: ledger.KeyOf(A), Outcome: ledger.Unchecked}, {Worker: ledger.KeyOf(B), Outcome: ledger.Failed, Reason: "x", Evidence: []byte{1}}}
	if bytes.Compare(vs[0].Worker[:], vs[1].Worker[:]) > 0 {
		vs[0], vs[1] = vs[1], vs[0]
	}
	c.block(c.tx(org, &ledger.SettleTx{Round: 0, Verdicts: vs}))
	if a, b := c.account(A), c.account(B); a.Balance != 1000+1000 || b.Balance != 0 || b.Stake != 0 {
		t.Fatalf("after settling an open run's round: A %+v, B %+v", a, b)
	}
	if tot, _ := c.l.Totals(); tot.Minted != 1000 || tot.Burned != 0 {
		t.Fatalf("totals %+v", tot)
	}
}

// TestPendingState: CheckTx checks against the state left by the
// transactions it accepted before (a second spend of the same balance is
// refused before any block), and after a block the producer re-checks
// what it still holds.
func TestPendingState(t *testing.T) {
	org, A, B := keyFrom("org"), keyFrom("A"), keyFrom("B")
	c := newChain(t, genesisFor(org, 0, A, B), org)
	if err := c.p.Submit(c.tx(A, &ledger.TransferTx{To: ledger.KeyOf(B), Amount: 600})); err != nil {
		t.Fatal(err)
	}
	var te *ledger.TxError
	if err := c.p.Submit(c.tx(A, &ledger.TransferTx{To: ledger.KeyOf(B), Amount: 600})); !errors.As(err, &te) || te.Code != ledger.CodeInsufficientFunds {
		t.Fatalf("double spend in the mempool: %v", err)
	}
	if err := c.p.Submit(c.tx(A, &ledger.TransferTx{To: ledger.KeyOf(B), Amount: 400})); err != nil {
		t.Fatal(err)
	}
	raw := c.tx(B, &ledger.TransferTx{To: ledger.KeyOf(A), Amount: 2000}) // B holds 2000 only after both
	if err := c.p.Submit(raw); err != nil {
		t.Fatal(err)
	}
	if err := c.p.Submit(raw); !errors.As(err, &te) || te.Code != ledger.CodeBadNonce {
		t.Fatalf("the same transaction twice: %v", err)
	}
	b, _, err := c.p.MakeBlock(c.now + 1)
	if err != nil || len(b.Txs) != 3 {
		t.Fatalf("block of %d: %v", len(b.Txs), err)
	}
	if _, err := c.p.Commit(); err != nil {
		t.Fatal(err)
	}
	if c.p.Pending() != 0 || c.account(A).Balance != 2000 || c.account(B).Balance != 0 {
		t.Fatalf("after the block: pending %d, A %+v, B %+v", c.p.Pending(), c.account(A), c.account(B))
	}
	// An empty mempool makes an empty block; the time never goes back.
	b, _, err = c.p.MakeBlock(0)
	if err != nil || len(b.Txs) != 0 || b.Header.Time != c.now+1 {
		t.Fatalf("empty block %+v: %v", b, err)
	}
	c.p.Discard()
}

func TestQuery(t *testing.T) {
	c := smallChain(t)
	A := ledger.KeyOf(keyFrom("A"))
	var acct ledger.Account
	if raw, err := c.l.Query("account", A[:]); err != nil || json.Unmarshal(raw, &acct) != nil || acct.Key != A || acct.Nonce != 2 {
		t.Fatalf("account query: %s %v", raw, err)
	}
	var hist []ledger.HistoryEntry
	if raw, err := c.l.Query("history", A[:]); err != nil || json.Unmarshal(raw, &hist) != nil {
		t.Fatal(err)
	}
	// A sent a commit and a transfer (block 1), was accepted (block 2)
	// and judged (block 3).
	var kinds []ledger.Kind
	for _, h := range hist {
		kinds = append(kinds, h.Kind)
	}
	if want := []ledger.Kind{ledger.KindCommit, ledger.KindTransfer, ledger.KindResult, ledger.KindSettle}; !reflect.DeepEqual(kinds, want) {
		t.Fatalf("history kinds %v, want %v", kinds, want)
	}
	var round ledger.RoundInfo
	if raw, err := c.l.Query("round", binary.BigEndian.AppendUint64(nil, 0)); err != nil || json.Unmarshal(raw, &round) != nil ||
		round.Status != "settled" || len(round.Commits) != 2 || len(round.Verdicts) != 2 || round.Result == nil {
		t.Fatalf("round query: %+v %v", round, err)
	}
	var tot ledger.Totals
	if raw, err := c.l.Query("totals", nil); err != nil || json.Unmarshal(raw, &tot) != nil || tot.Minted != 1000 || tot.Tip != c.l.Tip() {
		t.Fatalf("totals query: %+v %v", tot, err)
	}
	for _, q := range []struct {
		path string
		data []byte
	}{{"nope", nil}, {"account", []byte{1}}, {"round", nil}, {"totals", []byte{1}}} {
		if _, err := c.l.Query(q.path, q.data); err == nil {
			t.Errorf("query %q %x accepted", q.path, q.data)
		}
	}
}

func TestGenesisValidation(t *testing.T) {
	org := keyFrom("org")
	A, B := keyFrom("A"), keyFrom("B")
	base := genesisFor(org, 1, A, B)
	if _, err := ledger.New(base); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		change func(g *ledger.Genesis)
		want   string
	}{
		{"chain ID", func(g *ledger.Genesis) { g.ChainID = "Bad ID" }, "chain ID"},
		{"no authority", func(g *ledger.Genesis) { g.Authorities = nil }, "0 authorities"},
		{"repeated authority", func(g *ledger.Genesis) { g.Authorities = append(g.Authorities, g.Authorities[0]) }, "not sorted or repeated"},
		{"unsorted accounts", func(g *ledger.Genesis) { g.Accounts[0], g.Accounts[1] = g.Accounts[1], g.Accounts[0] }, "not sorted"},
		{"supply overflow", func(g *ledger.Genesis) { g.Accounts[0].Balance = 1 << 63; g.Accounts[1].Balance = 1 << 63 }, "overflows"},
		{"zero lag", func(g *ledger.Genesis) { g.SettlementLag = 0 }, "settlement lag"},
		{"short unbonding", func(g *ledger.Genesis) { g.UnbondingRounds = g.SettlementLag }, "must exceed the settlement lag"},
		{"slash over 100%", func(g *ledger.Genesis) { g.SlashBasisPoints = 10001 }, "exceeds 10000"},
	}
	for _, tc := range cases {
		g := base
		g.Authorities = append([]ledger.PubKey(nil), base.Authorities...)
		g.Accounts = append([]ledger.GenesisAccount(nil), base.Accounts...)
		tc.change(&g)
		if _, err := ledger.New(g); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	dec, err := ledger.DecodeGenesis(base.Encode())
	if err != nil || !reflect.DeepEqual(*dec, base) || dec.Hash() != base.Hash() {
		t.Fatalf("genesis does not survive encoding: %v", err)
	}
}

// TestTxEncoding: every kind survives encoding exactly, and a signature
// binds the chain ID and the kind.
func TestTxEncoding(t *testing.T) {
	key := keyFrom("A")
	bodies := []ledger.Body{
		&ledger.RegisterTx{Amount: 5},
		&ledger.TransferTx{To: ledger.KeyOf(keyFrom("B")), Amount: 9},
		&ledger.UnbondTx{Amount: 3},
		&ledger.WithdrawTx{},
		&ledger.CommitTx{Round: 4, DeltaHash: hashOf("d"), Tokens: 77, StartState: hashOf("s"), EndState: hashOf("e"), Fresh: true, Kernel: "go"},
		&ledger.CommitTx{Round: 5, DeltaHash: hashOf("d"), Tokens: 77, StartState: hashOf("s"), EndState: hashOf("e"), Kernel: "avx512", Private: true},
		&ledger.ResultTx{Round: 4, ModelHash: hashOf("m"), Accepted: []ledger.Contribution{{Worker: ledger.PubKey{1}, DeltaHash: hashOf("d"), Tokens: 1}, {Worker: ledger.PubKey{2}}},
			Rejected: []ledger.Rejection{{Worker: ledger.PubKey{3}, Reason: "late"}}},
		&ledger.SettleTx{Round: 4, Verdicts: []ledger.Verdict{{Worker: ledger.PubKey{1}, Outcome: ledger.Failed, Reason: "r", Evidence: []byte{9}}, {Worker: ledger.PubKey{2}, Outcome: ledger.Unchecked, Reason: "busy"}}},
		&ledger.ReceiptsTx{Model: hashOf("m"), Entries: []ledger.ReceiptEntry{{Requester: ledger.PubKey{4}, Requests: 1, Tokens: 2, Fee: 3}}},
		&ledger.FingerprintTx{Model: hashOf("m"), Set: hashOf("set")},
	}
	for _, body := range bodies {
		raw, err := ledger.SignTx("chain-a", key, 11, body)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := ledger.DecodeTx(raw)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(tx.Body, body) || tx.Nonce != 11 || tx.Sender != ledger.KeyOf(key) || !bytes.Equal(tx.Encode(), raw) {
			t.Fatalf("%v does not survive encoding: %+v", body.Kind(), tx.Body)
		}
		if !tx.VerifySig("chain-a") || tx.VerifySig("chain-b") {
			t.Fatalf("%v: signature not bound to the chain", body.Kind())
		}
	}
	// The same body bytes under another kind: the signature fails.
	reg, _ := ledger.SignTx("chain-a", key, 1, &ledger.RegisterTx{Amount: 5})
	unb := bytes.Clone(reg)
	unb[1] = byte(ledger.KindUnbond)
	if tx, err := ledger.DecodeTx(unb); err != nil || tx.VerifySig("chain-a") {
		t.Fatalf("a register signature verifies as an unbond: %v", err)
	}
	// Bodies that cannot be encoded canonically are refused at signing.
	if _, err := ledger.SignTx("chain-a", key, 1, &ledger.CommitTx{Kernel: "AVX"}); err == nil {
		t.Fatal("a kernel path outside [a-z0-9._+/-] was signed")
	}
	if _, err := ledger.SignTx("chain-a", ed25519.PrivateKey{1}, 1, &ledger.WithdrawTx{}); err == nil {
		t.Fatal("a short key was accepted")
	}
}
