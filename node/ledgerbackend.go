package node

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cairnlabs/cairn/chain"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/store"
)

// ledgerBackend is the chain a LedgerHost records on: the embedded
// single-node chain in the aggregator's data directory, or a CometBFT
// network of validators reached through one validator's RPC.
type ledgerBackend interface {
	Genesis() ledger.Genesis
	// Submit checks raw against the pending state and queues it; a
	// refusal is a *ledger.TxError or ledger.ErrMempoolFull.
	Submit(raw []byte) error
	// Pending is the number of queued transactions not yet in a block.
	Pending() int
	// Produce puts the queued transactions in a block: the embedded
	// chain makes one at now (a nil block if nothing was queued); a
	// network is waited on until each is in a committed block.
	Produce(now time.Time) (*ledger.Block, error)
	// Produces reports whether blocks are made by Produce (the embedded
	// chain) rather than by the network on its own.
	Produces() bool
	Height() (uint64, error)
	Account(k ledger.PubKey) (ledger.Account, error)
	Query(path string, data []byte) ([]byte, error)
	// BlockHash is the hash of the committed block at height h, the
	// beacon of the round whose result it holds.
	BlockHash(h uint64) (ledger.Hash, error)
	Close() error
}

// embeddedBackend is the aggregator's own chain.
type embeddedBackend struct{ *store.Chain }

func (e embeddedBackend) Produces() bool { return true }

func (e embeddedBackend) Height() (uint64, error) { return e.Tip().Height, nil }

func (e embeddedBackend) BlockHash(h uint64) (ledger.Hash, error) {
	b, _, err := e.Block(h)
	if err != nil {
		return ledger.Hash{}, err
	}
	return b.Hash(), nil
}

// remoteBackend is a CometBFT network of the ledger application: a
// transaction is broadcast to the validator and the host remembers it
// until Produce sees it in a committed block.
type remoteBackend struct {
	c       *chain.Client
	g       ledger.Genesis
	timeout time.Duration // one RPC request
	wait    time.Duration // Produce's wait for inclusion
	log     *slog.Logger

	mu      sync.Mutex
	pending []ledger.Hash
	maxPool int
}

// dialRemote connects to the validator at rpc and reads the chain's
// genesis. It fails if the validator does not answer within timeout or
// serves no Cairn ledger.
func dialRemote(rpc string, maxPool int, log *slog.Logger) (*remoteBackend, error) {
	c, err := chain.Dial(rpc)
	if err != nil {
		return nil, err
	}
	r := &remoteBackend{c: c, timeout: 10 * time.Second, wait: 60 * time.Second, log: log, maxPool: maxPool}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		return nil, fmt.Errorf("the chain at %s: %v", rpc, err)
	}
	g, err := c.Genesis(ctx)
	if err != nil {
		return nil, fmt.Errorf("the chain at %s: %v", rpc, err)
	}
	r.g = *g
	return r, nil
}

func (r *remoteBackend) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), r.timeout)
}

func (r *remoteBackend) Genesis() ledger.Genesis { return r.g }
func (r *remoteBackend) Produces() bool          { return false }

func (r *remoteBackend) Submit(raw []byte) error {
	r.mu.Lock()
	full := len(r.pending) >= r.maxPool
	r.mu.Unlock()
	if full {
		return ledger.ErrMempoolFull
	}
	ctx, cancel := r.ctx()
	defer cancel()
	h, err := r.c.Broadcast(ctx, raw)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.pending = append(r.pending, h)
	r.mu.Unlock()
	return nil
}

func (r *remoteBackend) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}

// Produce waits until every transaction submitted so far is in a
// committed block. One the block rejected (the state changed since it
// was checked) is logged and dropped, as the embedded chain drops it; one
// still missing after the wait is dropped with an error (the mempool lost
// it: the caller's checks of the state see what happened).
func (r *remoteBackend) Produce(time.Time) (*ledger.Block, error) {
	r.mu.Lock()
	todo := r.pending
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), r.wait)
	defer cancel()
	var errs []error
	for _, h := range todo {
		in, err := r.c.WaitTx(ctx, h)
		switch {
		case err != nil:
			errs = append(errs, err)
		case in.Result.Code != ledger.CodeOK:
			r.log.Warn("a ledger transaction was rejected in its block", "tx", h, "code", in.Result.Code, "reason", in.Result.Reason)
		}
	}
	r.mu.Lock()
	r.pending = r.pending[len(todo):]
	r.mu.Unlock()
	if len(errs) > 0 {
		return nil, fmt.Errorf("the chain at %s: %d of %d transactions not in a block: %w", r.c.Addr(), len(errs), len(todo), errs[0])
	}
	return nil, nil
}

func (r *remoteBackend) Height() (uint64, error) {
	ctx, cancel := r.ctx()
	defer cancel()
	h, err := r.c.Head(ctx)
	return uint64(max(h.Height, 0)), err
}

func (r *remoteBackend) Account(k ledger.PubKey) (ledger.Account, error) {
	ctx, cancel := r.ctx()
	defer cancel()
	return r.c.Account(ctx, k)
}

func (r *remoteBackend) Query(path string, data []byte) ([]byte, error) {
	ctx, cancel := r.ctx()
	defer cancel()
	return r.c.Query(ctx, path, data)
}

func (r *remoteBackend) BlockHash(h uint64) (ledger.Hash, error) {
	ctx, cancel := r.ctx()
	defer cancel()
	b, err := r.c.Block(ctx, int64(h))
	return b.Hash, err
}

func (r *remoteBackend) Close() error { return nil }
