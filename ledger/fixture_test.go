package ledger_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"sort"
	"testing"

	"github.com/cairnlabs/cairn/ledger"
)

// keyFrom is a deterministic test key.
func keyFrom(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("cairn-ledger-test-key/" + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func hashOf(s string) ledger.Hash { return sha256.Sum256([]byte(s)) }

// chain is a ledger driven by a producer, with nonces tracked per key.
type chain struct {
	t      testing.TB
	g      ledger.Genesis
	org    ed25519.PrivateKey
	l      *ledger.Ledger
	p      *ledger.Producer
	nonces map[ledger.PubKey]uint64
	now    int64
	blocks []*ledger.Block
}

// genesisFor returns a genesis with org as the only authority and the
// given accounts: balance 1000 each, and a stake of 100 for the first
// `staked` of them.
func genesisFor(org ed25519.PrivateKey, staked int, accts ...ed25519.PrivateKey) ledger.Genesis {
	g := ledger.Genesis{
		ChainID:          "cairn-test",
		Authorities:      []ledger.PubKey{ledger.KeyOf(org)},
		MinStake:         100,
		UnbondingRounds:  3,
		EmissionPerRound: 1000,
		SlashBasisPoints: 5000,
		SettlementLag:    1,
	}
	for i, k := range accts {
		a := ledger.GenesisAccount{Key: ledger.KeyOf(k), Balance: 1000}
		if i < staked {
			a.Stake = 100
		}
		g.Accounts = append(g.Accounts, a)
	}
	sort.Slice(g.Accounts, func(i, j int) bool { return bytes.Compare(g.Accounts[i].Key[:], g.Accounts[j].Key[:]) < 0 })
	return g
}

func newChain(t testing.TB, g ledger.Genesis, org ed25519.PrivateKey) *chain {
	t.Helper()
	l, err := ledger.New(g)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ledger.NewProducer(l, org)
	if err != nil {
		t.Fatal(err)
	}
	return &chain{t: t, g: g, org: org, l: l, p: p, nonces: map[ledger.PubKey]uint64{}, now: 1_700_000_000_000_000_000}
}

// tx signs body from key with its next nonce.
func (c *chain) tx(key ed25519.PrivateKey, body ledger.Body) []byte {
	c.t.Helper()
	k := ledger.KeyOf(key)
	c.nonces[k]++
	raw, err := ledger.SignTx(c.g.ChainID, key, c.nonces[k], body)
	if err != nil {
		c.t.Fatal(err)
	}
	return raw
}

// block submits txs (each must be accepted), makes, checks and commits a
// block, and returns it.
func (c *chain) block(txs ...[]byte) *ledger.Block {
	c.t.Helper()
	for i, raw := range txs {
		if err := c.p.Submit(raw); err != nil {
			c.t.Fatalf("block %d tx %d: %v", c.l.Tip().Height+1, i, err)
		}
	}
	c.now += 1e9
	b, res, err := c.p.MakeBlock(c.now)
	if err != nil {
		c.t.Fatal(err)
	}
	if len(b.Txs) != len(txs) {
		c.t.Fatalf("block holds %d of %d transactions", len(b.Txs), len(txs))
	}
	for i, r := range res.Results {
		if r.Code != ledger.CodeOK {
			c.t.Fatalf("tx %d: %v %s", i, r.Code, r.Reason)
		}
	}
	if _, err := c.p.Commit(); err != nil {
		c.t.Fatal(err)
	}
	if err := c.l.CheckInvariants(); err != nil {
		c.t.Fatalf("after block %d: %v", b.Header.Height, err)
	}
	c.blocks = append(c.blocks, b)
	return b
}

func (c *chain) account(key ed25519.PrivateKey) ledger.Account {
	c.t.Helper()
	a, err := c.l.Account(ledger.KeyOf(key))
	if err != nil {
		c.t.Fatal(err)
	}
	return a
}

// commitBody is worker name's commit in round r with the given tokens,
// chaining its local state from round to round.
func commitBody(name string, r, tokens uint64) *ledger.CommitTx {
	return &ledger.CommitTx{Round: r, DeltaHash: hashOf(fmt.Sprint("delta", name, r)), Tokens: tokens,
		StartState: hashOf(fmt.Sprint("state", name, r)), EndState: hashOf(fmt.Sprint("state", name, r+1)), Kernel: "avx512"}
}

// pledge is a worker's commit.
type pledge struct {
	key ed25519.PrivateKey
	c   *ledger.CommitTx
}

// sortedContribs returns the accepted list (sorted by worker) for the
// commits.
func sortedContribs(ps ...pledge) []ledger.Contribution {
	var out []ledger.Contribution
	for _, p := range ps {
		out = append(out, ledger.Contribution{Worker: ledger.KeyOf(p.key), DeltaHash: p.c.DeltaHash, Tokens: p.c.Tokens})
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].Worker[:], out[j].Worker[:]) < 0 })
	return out
}
