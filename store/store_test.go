package store

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/ledger"
)

func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("cairn-store-test/" + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func testGenesis(workers ...ed25519.PrivateKey) *ledger.Genesis {
	g := &ledger.Genesis{ChainID: "store-test", Authorities: []ledger.PubKey{ledger.KeyOf(testKey("org"))}, MinStake: 10,
		UnbondingRounds: 2, EmissionPerRound: 100, SlashBasisPoints: 2500, SettlementLag: 1,
		Accounts: []ledger.GenesisAccount{{Key: ledger.KeyOf(testKey("org")), Balance: 1 << 40}}}
	for _, w := range workers {
		g.Accounts = append(g.Accounts, ledger.GenesisAccount{Key: ledger.KeyOf(w), Balance: 50, Stake: 40})
	}
	sort.Slice(g.Accounts, func(i, j int) bool { return bytes.Compare(g.Accounts[i].Key[:], g.Accounts[j].Key[:]) < 0 })
	return g
}

// signer tracks nonces for test transactions.
type signer struct {
	t      testing.TB
	chain  string
	nonces map[ledger.PubKey]uint64
}

func (s *signer) tx(key ed25519.PrivateKey, body ledger.Body) []byte {
	s.nonces[ledger.KeyOf(key)]++
	raw, err := ledger.SignTx(s.chain, key, s.nonces[ledger.KeyOf(key)], body)
	if err != nil {
		s.t.Fatal(err)
	}
	return raw
}

func produce(t testing.TB, c *Chain, now *time.Time, txs ...[]byte) *ledger.Block {
	t.Helper()
	for _, tx := range txs {
		if err := c.Submit(tx); err != nil {
			t.Fatal(err)
		}
	}
	*now = now.Add(time.Second)
	b, err := c.Produce(*now)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// buildLedger writes a small ledger at path: two workers commit, one
// round result, a settlement with a failed verdict, a transfer. It
// returns the closed chain's tip.
func buildLedger(t testing.TB, path string) ledger.Tip {
	A, B := testKey("A"), testKey("B")
	org := testKey("org")
	g := testGenesis(A, B)
	c, err := OpenChain(path, g, org)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := &signer{t: t, chain: g.ChainID, nonces: map[ledger.PubKey]uint64{}}
	now := time.Unix(1_767_225_600, 0)
	ca := &ledger.CommitTx{Round: 0, DeltaHash: sha256.Sum256([]byte("dA")), Tokens: 30, Fresh: true, Kernel: "avx2"}
	cb := &ledger.CommitTx{Round: 0, DeltaHash: sha256.Sum256([]byte("dB")), Tokens: 70, Fresh: true, Kernel: "go"}
	produce(t, c, &now, s.tx(A, ca), s.tx(B, cb))
	acc := []ledger.Contribution{{Worker: ledger.KeyOf(A), DeltaHash: ca.DeltaHash, Tokens: 30}, {Worker: ledger.KeyOf(B), DeltaHash: cb.DeltaHash, Tokens: 70}}
	vs := []ledger.Verdict{{Worker: ledger.KeyOf(A), Outcome: ledger.Passed}, {Worker: ledger.KeyOf(B), Outcome: ledger.Failed, Reason: "mismatch", Evidence: []byte{7, 7}}}
	if bytes.Compare(acc[0].Worker[:], acc[1].Worker[:]) > 0 {
		acc[0], acc[1] = acc[1], acc[0]
		vs[0], vs[1] = vs[1], vs[0]
	}
	produce(t, c, &now, s.tx(org, &ledger.ResultTx{Round: 0, ModelHash: sha256.Sum256([]byte("θ1")), Accepted: acc}))
	produce(t, c, &now, s.tx(org, &ledger.SettleTx{Round: 0, Verdicts: vs}), s.tx(A, &ledger.TransferTx{To: ledger.KeyOf(B), Amount: 5}))
	return c.Tip()
}

// TestReopenResumes: a closed and reopened ledger file resumes at the
// same tip and state and keeps producing; Verify replays it.
func TestReopenResumes(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	tip := buildLedger(t, path)
	if tip.Height != 3 {
		t.Fatalf("tip %+v", tip)
	}
	c, err := OpenChain(path, nil, testKey("org"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Tip() != tip {
		t.Fatalf("reopened at %+v, closed at %+v", c.Tip(), tip)
	}
	a, err := c.Account(ledger.KeyOf(testKey("A")))
	if err != nil || a.Balance != 50+100-5 || a.Nonce != 2 {
		t.Fatalf("account A after reopening: %+v %v", a, err)
	}
	now := time.Unix(1_767_225_700, 0)
	s := &signer{t: t, chain: "store-test", nonces: map[ledger.PubKey]uint64{ledger.KeyOf(testKey("A")): a.Nonce}}
	b := produce(t, c, &now, s.tx(testKey("A"), &ledger.TransferTx{To: ledger.KeyOf(testKey("org")), Amount: 1}))
	if b.Header.Height != 4 || b.Header.PrevHash != tip.BlockHash {
		t.Fatalf("block after reopening: %+v", b.Header)
	}
	if b, err := c.Produce(now); b != nil || err != nil {
		t.Fatalf("an empty mempool produced %v, %v", b, err)
	}
	got, rs, err := c.Block(4)
	if err != nil || got.Hash() != b.Hash() || len(rs) != 1 || rs[0].Code != ledger.CodeOK {
		t.Fatalf("stored block 4: %v", err)
	}
	c.Close()
	r, err := Verify(path)
	if err != nil {
		t.Fatal(err)
	}
	if r.Tip.Height != 4 || r.Txs != 6 || r.ChainID != "store-test" {
		t.Fatalf("report %+v", r)
	}
}

// TestOpenRefuses: files that are not this chain's ledger, and a file a
// node holds, are refused with a reason; read-only access writes nothing.
func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	buildLedger(t, path)
	empty := filepath.Join(dir, "empty.db")
	os.WriteFile(empty, nil, 0o600)
	garbage := filepath.Join(dir, "garbage.db")
	os.WriteFile(garbage, bytes.Repeat([]byte("not a bbolt file "), 1000), 0o600)
	other := testGenesis(testKey("C"))

	cases := []struct {
		name string
		open func() error
		want string
	}{
		{"missing file", func() error { _, err := Open(filepath.Join(dir, "none.db"), nil); return err }, "no ledger at"},
		{"missing file read-only", func() error { _, err := OpenReadOnly(filepath.Join(dir, "none.db")); return err }, "no ledger at"},
		{"empty file", func() error { _, err := OpenReadOnly(empty); return err }, "not a ledger file"},
		{"garbage file", func() error { _, err := OpenReadOnly(garbage); return err }, "garbage.db"},
		{"garbage file verify", func() error { _, err := Verify(garbage); return err }, "garbage.db"},
		{"another chain's genesis", func() error { _, err := Open(path, other); return err }, "another genesis"},
		{"a producer key that is no authority", func() error { _, err := OpenChain(path, nil, testKey("A")); return err }, "not a genesis authority"},
	}
	for _, tc := range cases {
		if err := tc.open(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}

	// While a chain holds the file, read-only access fails at once.
	c, err := OpenChain(path, nil, testKey("org"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := OpenReadOnly(path); !errors.Is(err, ErrInUse) {
		t.Fatalf("read-only open of a held file: %v", err)
	}
	if _, err := Verify(path); !errors.Is(err, ErrInUse) {
		t.Fatalf("verify of a held file: %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("refusing took %v", el)
	}
	c.Close()

	before, _ := os.ReadFile(path)
	s, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(&ledger.Block{}); err == nil {
		t.Fatal("a read-only store applied a block")
	}
	s.Close()
	if _, err := Verify(path); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("read-only access changed the file")
	}
}

// TestReplicaApply: a second file built by Apply from the first's blocks
// ends identical in tip and state; a bad block is refused and not
// written.
func TestReplicaApply(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.db")
	tip := buildLedger(t, src)
	from, err := OpenReadOnly(src)
	if err != nil {
		t.Fatal(err)
	}
	defer from.Close()
	dst := filepath.Join(dir, "dst.db")
	g := from.Ledger().Genesis()
	to, err := Open(dst, &g)
	if err != nil {
		t.Fatal(err)
	}
	for h := uint64(1); h <= tip.Height; h++ {
		b, _, err := from.Block(h)
		if err != nil {
			t.Fatal(err)
		}
		if h == 2 {
			forged := *b
			forged.Header.StateRoot[0] ^= 1
			var be *ledger.BlockError
			if _, err := to.Apply(&forged); !errors.As(err, &be) || be.Height != 2 {
				t.Fatalf("forged block: %v", err)
			}
		}
		if _, err := to.Apply(b); err != nil {
			t.Fatal(err)
		}
	}
	to.Close()
	r, err := Verify(dst)
	if err != nil || r.Tip != tip {
		t.Fatalf("replica: %+v %v", r, err)
	}
}

// TestFailedWriteKeepsTip: when persisting a block fails, the chain stays
// at its tip with the transactions still queued.
func TestFailedWriteKeepsTip(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	tip := buildLedger(t, path)
	c, err := OpenChain(path, nil, testKey("org"))
	if err != nil {
		t.Fatal(err)
	}
	s := &signer{t: t, chain: "store-test", nonces: map[ledger.PubKey]uint64{ledger.KeyOf(testKey("A")): 2}}
	if err := c.Submit(s.tx(testKey("A"), &ledger.TransferTx{To: ledger.KeyOf(testKey("B")), Amount: 1})); err != nil {
		t.Fatal(err)
	}
	c.s.db.Close() // the next write fails
	if b, err := c.Produce(time.Unix(1_800_000_000, 0)); err == nil || b != nil {
		t.Fatalf("produce on a closed file: %v, %v", b, err)
	}
	if c.Tip() != tip || c.Pending() != 1 {
		t.Fatalf("after a failed write: tip %+v, %d queued", c.Tip(), c.Pending())
	}
	if _, err := Verify(path); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyErrorText(t *testing.T) {
	for _, c := range []struct {
		e    *VerifyError
		want string
	}{{bad(0, "x"), "genesis: x"}, {bad(3, "tx root"), "block 3: tx root"}} {
		if c.e.Error() != c.want {
			t.Errorf("%q, want %q", c.e.Error(), c.want)
		}
	}

}
