package chain

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	rpchttp "github.com/cometbft/cometbft/rpc/client/http"

	"github.com/cairnlabs/cairn/ledger"
)

// Client reaches the ledger through a validator's RPC: transactions are
// broadcast (checked by the validator's CheckTx) and then waited for until
// a committed block holds them; state is read with ABCI queries of the
// committed state. It is safe for concurrent use.
type Client struct {
	rpc  *rpchttp.HTTP
	addr string
	// Poll is how often WaitTx asks whether a transaction is in a block
	// (default 100 ms).
	Poll time.Duration
}

// ErrNotIncluded is WaitTx giving up: the transaction is in no committed
// block by the deadline (the mempool may have dropped it).
var ErrNotIncluded = errors.New("chain: transaction not in a block")

// NormalizeRPC turns host:port or tcp://host:port into http://host:port.
func NormalizeRPC(addr string) string {
	addr = strings.TrimPrefix(addr, "tcp://")
	if !strings.HasPrefix(addr, "http://") && !strings.HasPrefix(addr, "https://") {
		addr = "http://" + addr
	}
	return addr
}

// Dial returns a client of the validator at addr (http://host:port,
// host:port or tcp://host:port). It does not connect until used.
func Dial(addr string) (*Client, error) {
	if addr == "" {
		return nil, errors.New("chain: no RPC address")
	}
	addr = NormalizeRPC(addr)
	c, err := rpchttp.New(addr, "/websocket")
	if err != nil {
		return nil, fmt.Errorf("chain: RPC %s: %v", addr, err)
	}
	return &Client{rpc: c, addr: addr, Poll: 100 * time.Millisecond}, nil
}

// Addr is the validator's RPC address.
func (c *Client) Addr() string { return c.addr }

// Broadcast sends tx to the validator, which checks it against its
// pending state and gossips it; it returns the transaction's hash
// (SHA-256 of tx, as CometBFT computes it). A transaction the ledger
// refuses gives a *ledger.TxError with its code and reason; a full
// mempool gives ledger.ErrMempoolFull; a transaction the validator
// already holds is not an error. Other errors are the RPC's.
func (c *Client) Broadcast(ctx context.Context, tx []byte) (ledger.Hash, error) {
	h := ledger.Hash(sha256.Sum256(tx))
	res, err := c.rpc.BroadcastTxSync(ctx, tx)
	switch {
	case err != nil && strings.Contains(err.Error(), "tx already exists in cache"):
		return h, nil
	case err != nil && strings.Contains(err.Error(), "mempool is full"):
		return h, ledger.ErrMempoolFull
	case err != nil:
		return h, fmt.Errorf("chain: broadcast to %s: %v", c.addr, err)
	case res.Code != 0:
		return h, &ledger.TxError{Code: ledger.Code(res.Code), Reason: res.Log}
	}
	return h, nil
}

// Included is a transaction found in a committed block.
type Included struct {
	Height int64
	Result ledger.TxResult
}

// Lookup reports whether the transaction with hash h is in a committed
// block, and its result there; found false means not (yet).
func (c *Client) Lookup(ctx context.Context, h ledger.Hash) (Included, bool, error) {
	res, err := c.rpc.Tx(ctx, h[:], false)
	if err != nil {
		if strings.Contains(err.Error(), "not found") {
			return Included{}, false, nil
		}
		return Included{}, false, fmt.Errorf("chain: %s: looking up transaction %s: %v", c.addr, h, err)
	}
	return Included{Height: res.Height, Result: ledger.TxResult{Code: ledger.Code(res.TxResult.Code), Reason: res.TxResult.Log}}, true, nil
}

// WaitTx waits until the transaction with hash h is in a committed block
// and returns its height and result, or ErrNotIncluded when ctx ends
// first.
func (c *Client) WaitTx(ctx context.Context, h ledger.Hash) (Included, error) {
	for {
		in, ok, err := c.Lookup(ctx, h)
		if ok {
			return in, nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return Included{}, fmt.Errorf("%w: %v", ErrNotIncluded, err)
			}
			return Included{}, fmt.Errorf("%w (%s)", ErrNotIncluded, h)
		case <-time.After(c.Poll):
		}
	}
}

// Submit broadcasts tx and waits until a block holds it. It returns the
// block's height; a transaction the block rejected (its state changed
// since it was checked) gives a *ledger.TxError, and the errors of
// Broadcast and WaitTx otherwise.
func (c *Client) Submit(ctx context.Context, tx []byte) (int64, error) {
	h, err := c.Broadcast(ctx, tx)
	if err != nil {
		return 0, err
	}
	in, err := c.WaitTx(ctx, h)
	if err != nil {
		return 0, err
	}
	if in.Result.Code != ledger.CodeOK {
		return in.Height, &ledger.TxError{Code: in.Result.Code, Reason: in.Result.Reason}
	}
	return in.Height, nil
}

// QueryError is a query the application answered with an error.
type QueryError struct{ Path, Reason string }

func (e *QueryError) Error() string { return fmt.Sprintf("chain: query %s: %s", e.Path, e.Reason) }

// Query asks the application path (a ledger query or QueryGenesis) on
// its committed state. A refused query gives a *QueryError.
func (c *Client) Query(ctx context.Context, path string, data []byte) ([]byte, error) {
	res, err := c.rpc.ABCIQuery(ctx, path, data)
	if err != nil {
		return nil, fmt.Errorf("chain: %s: query %s: %v", c.addr, path, err)
	}
	if res.Response.Code != 0 {
		return nil, &QueryError{Path: path, Reason: res.Response.Log}
	}
	return res.Response.Value, nil
}

// Genesis reads the ledger's genesis from the application.
func (c *Client) Genesis(ctx context.Context) (*ledger.Genesis, error) {
	b, err := c.Query(ctx, QueryGenesis, nil)
	if err != nil {
		return nil, err
	}
	g, err := ledger.DecodeGenesis(b)
	if err != nil {
		return nil, fmt.Errorf("chain: %s: the genesis it answers: %v", c.addr, err)
	}
	return g, nil
}

// Account reads account k from the committed state.
func (c *Client) Account(ctx context.Context, k ledger.PubKey) (ledger.Account, error) {
	var a ledger.Account
	b, err := c.Query(ctx, "account", k[:])
	if err != nil {
		return a, err
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("chain: %s: account %s: %v", c.addr, k, err)
	}
	return a, nil
}

// Fingerprint reads the fingerprint commitment for model from the
// committed state; found is false when the model has none.
func (c *Client) Fingerprint(ctx context.Context, model ledger.Hash) (rec ledger.FingerprintRecord, found bool, err error) {
	b, err := c.Query(ctx, "fingerprint", model[:])
	if err != nil {
		return rec, false, err
	}
	var r *ledger.FingerprintRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return rec, false, fmt.Errorf("chain: %s: fingerprint commitment for model %s: %v", c.addr, model, err)
	}
	if r == nil {
		return rec, false, nil
	}
	return *r, true, nil
}

// Head is a validator's latest committed block.
type Head struct {
	Height     int64
	BlockHash  []byte
	AppHash    []byte
	Time       time.Time
	CatchingUp bool
}

// Head reads the validator's latest committed block.
func (c *Client) Head(ctx context.Context) (Head, error) {
	st, err := c.rpc.Status(ctx)
	if err != nil {
		return Head{}, fmt.Errorf("chain: %s: status: %v", c.addr, err)
	}
	s := st.SyncInfo
	return Head{Height: s.LatestBlockHeight, BlockHash: s.LatestBlockHash, AppHash: s.LatestAppHash, Time: s.LatestBlockTime, CatchingUp: s.CatchingUp}, nil
}

// Block is a committed block's header fields the ledger's users need.
type Block struct {
	Height  int64
	Hash    ledger.Hash
	AppHash []byte // the state root after the previous block
	Time    time.Time
	Txs     int
}

// Block reads the committed block at height.
func (c *Client) Block(ctx context.Context, height int64) (Block, error) {
	res, err := c.rpc.Block(ctx, &height)
	if err != nil {
		return Block{}, fmt.Errorf("chain: %s: block %d: %v", c.addr, height, err)
	}
	var h ledger.Hash
	if len(res.BlockID.Hash) != len(h) {
		return Block{}, fmt.Errorf("chain: %s: block %d has a hash of %d bytes", c.addr, height, len(res.BlockID.Hash))
	}
	copy(h[:], res.BlockID.Hash)
	return Block{Height: height, Hash: h, AppHash: res.Block.AppHash, Time: res.Block.Time, Txs: len(res.Block.Txs)}, nil
}

// WaitReady waits until the validator answers and has committed at
// least one block past height 0 (its chain is live), or ctx ends.
func (c *Client) WaitReady(ctx context.Context) error {
	var last error
	for {
		h, err := c.Head(ctx)
		if err == nil && h.Height > 0 && !h.CatchingUp {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return last
			}
			return fmt.Errorf("chain: %s: no block committed yet", c.addr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
