package store

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/ledger"
)

// BenchmarkProduce100Transfers: a block of 100 transfers made, written
// (one fsynced bbolt transaction) and committed; signing is outside the
// timing.
func BenchmarkProduce100Transfers(b *testing.B) {
	A, B := testKey("A"), testKey("B")
	g := testGenesis(A, B)
	c, err := OpenChain(filepath.Join(b.TempDir(), FileName), g, testKey("org"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	org := testKey("org")
	blocks := make([][][]byte, b.N)
	nonce := uint64(0)
	for i := range blocks {
		for j := 0; j < 100; j++ {
			nonce++
			raw, _ := ledger.SignTx(g.ChainID, org, nonce, &ledger.TransferTx{To: ledger.KeyOf(A), Amount: 1})
			blocks[i] = append(blocks[i], raw)
		}
	}
	now := time.Unix(1_767_225_600, 0)
	b.ResetTimer()
	for _, txs := range blocks {
		for _, tx := range txs {
			if err := c.Submit(tx); err != nil {
				b.Fatal(err)
			}
		}
		now = now.Add(time.Second)
		if _, err := c.Produce(now); err != nil {
			b.Fatal(err)
		}
	}
}
