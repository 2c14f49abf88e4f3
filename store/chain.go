package store

import (
	"crypto/ed25519"
	"sync"
	"time"

	"github.com/cairnlabs/cairn/ledger"
)

// Chain is the embedded single-node chain an aggregator hosts: a Store
// and a ledger.Producer signing with an authority's key. Transactions
// arrive through Submit (checked at once against the pending state);
// Produce turns the queued ones into a block, persists it and commits it.
// It reads no clock: Produce takes the time. It is safe for concurrent
// use.
type Chain struct {
	mu sync.Mutex
	s  *Store
	p  *ledger.Producer
}

// OpenChain opens (or, given a genesis, creates) the ledger file at path
// and returns a chain producing blocks with key, which must be a genesis
// authority. Errors are those of Open and ledger.NewProducer.
func OpenChain(path string, g *ledger.Genesis, key ed25519.PrivateKey) (*Chain, error) {
	s, err := Open(path, g)
	if err != nil {
		return nil, err
	}
	p, err := ledger.NewProducer(s.l, key)
	if err != nil {
		s.Close()
		return nil, err
	}
	return &Chain{s: s, p: p}, nil
}

// Submit checks a transaction against the pending state and queues it
// for the next block. A refused transaction gives a *ledger.TxError with
// its code and reason; a full mempool gives ledger.ErrMempoolFull.
func (c *Chain) Submit(tx []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.p.Submit(tx)
}

// Pending is the number of queued transactions.
func (c *Chain) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.p.Pending()
}

// Produce makes a block of the queued transactions at time now, writes it
// (block, results, state changes and tip in one fsynced transaction) and
// commits it; it returns the block, or nil if nothing was queued. If the
// write fails the chain stays at its tip with the transactions still
// queued.
func (c *Chain) Produce(now time.Time) (*ledger.Block, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p.Pending() == 0 {
		return nil, nil
	}
	b, res, err := c.p.MakeBlock(now.UnixNano())
	if err != nil {
		return nil, err
	}
	if err := c.s.persist(b, res); err != nil {
		c.p.Discard()
		return nil, err
	}
	if _, err := c.p.Commit(); err != nil {
		return nil, err
	}
	return b, nil
}

// SetMaxPool bounds the mempool to n queued transactions (the
// producer's default is 10000); Submit gives ledger.ErrMempoolFull
// beyond it. An n below 1 is taken as 1. Transactions already queued
// stay queued.
func (c *Chain) SetMaxPool(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.p.MaxPool = max(n, 1)
}

// Genesis returns a copy of the chain's genesis (chain ID, authorities,
// parameters, initial accounts).
func (c *Chain) Genesis() ledger.Genesis {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s.l.Genesis()
}

// Tip is the last committed block.
func (c *Chain) Tip() ledger.Tip {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s.l.Tip()
}

// Account returns an account's committed state.
func (c *Chain) Account(k ledger.PubKey) (ledger.Account, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s.l.Account(k)
}

// Query answers ledger.Ledger.Query on the committed state.
func (c *Chain) Query(path string, data []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s.l.Query(path, data)
}

// Block returns a stored block and its results.
func (c *Chain) Block(h uint64) (*ledger.Block, []ledger.TxResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s.Block(h)
}

// Close closes the file; queued transactions are dropped.
func (c *Chain) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s.Close()
}
