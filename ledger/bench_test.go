package ledger_test

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"sort"
	"testing"

	"github.com/cairnlabs/cairn/ledger"
)

// benchChain is a ledger whose genesis holds n funded accounts.
func benchChain(b *testing.B, n int) (*chain, []ed25519.PrivateKey) {
	org := keyFrom("org")
	keys := make([]ed25519.PrivateKey, n)
	for i := range keys {
		keys[i] = keyFrom(fmt.Sprint("bench", i))
	}
	g := genesisFor(org, 0)
	for _, k := range keys {
		g.Accounts = append(g.Accounts, ledger.GenesisAccount{Key: ledger.KeyOf(k), Balance: 1 << 30})
	}
	sort.Slice(g.Accounts, func(i, j int) bool { return bytes.Compare(g.Accounts[i].Key[:], g.Accounts[j].Key[:]) < 0 })
	return newChain(b, g, org), keys
}

// BenchmarkCheckTx: checking one signed transfer against the pending
// state (dominated by the ed25519 verification).
func BenchmarkCheckTx(b *testing.B) {
	c, keys := benchChain(b, 2)
	txs := make([][]byte, b.N)
	for i := range txs {
		txs[i] = c.tx(keys[0], &ledger.TransferTx{To: ledger.KeyOf(keys[1]), Amount: 1})
	}
	b.ResetTimer()
	for i := range txs {
		if err := c.l.CheckTx(txs[i]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBlock100Transfers: executing, hashing and committing a block
// of 100 transfers on a state of 10,000 accounts (plus the history the
// earlier blocks left).
func BenchmarkBlock100Transfers(b *testing.B) {
	c, keys := benchChain(b, 10000)
	blocks := make([][][]byte, b.N)
	for i := range blocks {
		for j := 0; j < 100; j++ {
			from, to := keys[(i*100+j)%len(keys)], keys[(i*100+j+1)%len(keys)]
			blocks[i] = append(blocks[i], c.tx(from, &ledger.TransferTx{To: ledger.KeyOf(to), Amount: 1}))
		}
	}
	b.ResetTimer()
	for i, txs := range blocks {
		tip := c.l.Tip()
		res, err := c.l.FinalizeBlock(ledger.BlockInfo{Height: tip.Height + 1, Time: int64(i)}, txs)
		if err != nil || res.Results[99].Code != ledger.CodeOK {
			b.Fatal(err, res.Results[99])
		}
		if _, err := c.l.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}
