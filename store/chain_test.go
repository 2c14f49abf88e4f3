package store

import (
	"bytes"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/ledger"
)

// TestChainConcurrent: workers submit while the aggregator produces
// blocks and answers queries; every accepted transaction lands in a
// block, in nonce order per sender, and the file verifies.
func TestChainConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	A, B := testKey("A"), testKey("B")
	g := testGenesis(A, B)
	c, err := OpenChain(path, g, testKey("org"))
	if err != nil {
		t.Fatal(err)
	}
	const perSender = 40 // below the balance of 50: no sender runs dry, whatever the interleaving
	var wg sync.WaitGroup
	for _, k := range [][]byte{A, B} {
		wg.Add(1)
		go func(key []byte) {
			defer wg.Done()
			other := ledger.KeyOf(A)
			if bytes.Equal(key, A) {
				other = ledger.KeyOf(B)
			}
			for n := uint64(1); n <= perSender; n++ {
				raw, err := ledger.SignTx(g.ChainID, key, n, &ledger.TransferTx{To: other, Amount: 1})
				if err != nil {
					t.Error(err)
					return
				}
				for {
					err := c.Submit(raw)
					if !errors.Is(err, ledger.ErrMempoolFull) {
						if err != nil {
							t.Errorf("nonce %d: %v", n, err)
						}
						break
					}
					time.Sleep(time.Millisecond)
				}
				if _, err := c.Query("account", other[:]); err != nil {
					t.Error(err)
				}
			}
		}(k)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	now := time.Unix(1_767_225_600, 0)
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		now = now.Add(time.Second)
		if _, err := c.Produce(now); err != nil {
			t.Fatal(err)
		}
		// The open chain replays while transactions keep arriving.
		if _, err := c.Verify(); err != nil {
			t.Fatalf("verify the open chain: %v", err)
		}
	}
	if _, err := c.Produce(now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, k := range []ledger.PubKey{ledger.KeyOf(A), ledger.KeyOf(B)} {
		if a, err := c.Account(k); err != nil || a.Nonce != perSender || a.Balance != 50 {
			t.Fatalf("account %s: %+v %v", k, a, err)
		}
	}
	if c.Pending() != 0 {
		t.Fatalf("%d transactions left queued", c.Pending())
	}
	open, err := c.Verify()
	if err != nil || open.Txs != 2*perSender {
		t.Fatalf("verify the open chain: %+v %v", open, err)
	}
	c.Close()
	r, err := Verify(path)
	if err != nil || r.Txs != 2*perSender || r.Tip != open.Tip {
		t.Fatalf("verify: %+v %v (open: %+v)", r, err, open)
	}
}

func FuzzDecodeTip(f *testing.F) {
	f.Add(encodeTip(ledger.Tip{Height: 3, Time: -1, BlockHash: ledger.Hash{1}, AppHash: ledger.Hash{2}}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		tip, err := decodeTip(b)
		if err == nil && !bytes.Equal(encodeTip(tip), b) {
			t.Fatal("re-encoding differs")
		}
	})
}

// TestChainMaxPoolAndGenesis: a bounded mempool refuses the transaction
// past its bound with ErrMempoolFull and takes it again once a block has
// emptied it; Genesis gives back the chain's genesis after a reopen.
func TestChainMaxPoolAndGenesis(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	A := testKey("A")
	g := testGenesis(A)
	c, err := OpenChain(path, g, testKey("org"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetMaxPool(2)
	to := ledger.KeyOf(testKey("org"))
	tx := func(n uint64) []byte {
		raw, err := ledger.SignTx(g.ChainID, A, n, &ledger.TransferTx{To: to, Amount: 1})
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	for n := uint64(1); n <= 2; n++ {
		if err := c.Submit(tx(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Submit(tx(3)); !errors.Is(err, ledger.ErrMempoolFull) {
		t.Fatalf("third transaction in a mempool of 2: %v", err)
	}
	if _, err := c.Produce(time.Unix(1_767_225_600, 0)); err != nil {
		t.Fatal(err)
	}
	if err := c.Submit(tx(3)); err != nil {
		t.Fatalf("after a block: %v", err)
	}
	c.Close()
	c, err = OpenChain(path, nil, testKey("org"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Genesis(); !bytes.Equal(got.Encode(), g.Encode()) {
		t.Fatalf("reopened genesis %+v, want %+v", got, g)
	}
}
