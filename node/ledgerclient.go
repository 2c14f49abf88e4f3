package node

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cairnlabs/cairn/chain"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/wire"
)

// LedgerRefusal is a request the ledger host refused without judging it:
// rate limited, busy, closed, an oversize or garbled message, a
// transaction signed by a key other than the peer's own, a query path
// it does not serve.
type LedgerRefusal struct{ Reason string }

func (e *LedgerRefusal) Error() string { return "ledger: host refused: " + e.Reason }

// LedgerClient is a worker's view of the chain its aggregator hosts: it
// submits the worker's own transactions, signed with the worker's
// identity key and numbered by a nonce tracker, and reads accounts,
// totals and rounds back. It is safe for concurrent use; transactions
// are sent one at a time, in nonce order.
type LedgerClient struct {
	tr   Transport
	host string        // the aggregator's peer ID
	rpc  *chain.Client // instead, a validator of a CometBFT network
	key  ed25519.PrivateKey
	self ledger.PubKey
	info LedgerInfo

	mu   sync.Mutex // held while a transaction is signed and sent
	last uint64     // the last nonce used (or the chain's, at the start)
}

// NewLedgerClient connects a worker with identity key (p2p.LedgerKey of
// its identity) to the chain hosted by the peer host, already connected
// on tr. It asks the host for the chain's description and the worker's
// account, whose nonce starts the tracker. If chainID is not empty the
// host must serve that chain (a worker that knows its run computes it
// with LedgerChainID); empty trusts the host to name it. It fails on a
// key that is not an ed25519 private key, a host serving another chain,
// and as the queries do.
func NewLedgerClient(ctx context.Context, tr Transport, host string, key ed25519.PrivateKey, chainID string) (*LedgerClient, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("ledger client: key of %d bytes, want an ed25519 private key", len(key))
	}
	c := &LedgerClient{tr: tr, host: host, key: key, self: ledger.KeyOf(key)}
	ans, err := c.Query(ctx, ledgerChainPath, nil)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(ans, &c.info); err != nil {
		return nil, fmt.Errorf("ledger client: chain description: %v", err)
	}
	if chainID != "" && c.info.ChainID != chainID {
		return nil, fmt.Errorf("ledger client: the host serves chain %q, not %q", c.info.ChainID, chainID)
	}
	if c.info.ChainID == "" {
		return nil, errors.New("ledger client: the host names no chain")
	}
	a, err := c.Account(ctx, c.self)
	if err != nil {
		return nil, err
	}
	c.last = a.Nonce
	return c, nil
}

// NewChainLedgerClient is NewLedgerClient for a chain run as a CometBFT
// network ('cairn chain start'), reached through the RPC address of any
// of its validators rather than through the aggregator: transactions are
// broadcast and waited for until a committed block holds them, and
// queries read the validator's committed state. It fails if the
// validator does not answer, serves no Cairn ledger, or serves a chain
// other than chainID (when given).
func NewChainLedgerClient(ctx context.Context, rpc string, key ed25519.PrivateKey, chainID string) (*LedgerClient, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("ledger client: key of %d bytes, want an ed25519 private key", len(key))
	}
	rc, err := chain.Dial(rpc)
	if err != nil {
		return nil, err
	}
	c := &LedgerClient{rpc: rc, key: key, self: ledger.KeyOf(key)}
	g, err := rc.Genesis(ctx)
	if err != nil {
		return nil, fmt.Errorf("ledger client: %v", err)
	}
	c.info = LedgerInfo{ChainID: g.ChainID, GenesisHash: g.Hash(), Authorities: g.Authorities, LedgerParams: ledgerParamsOf(g)}
	if chainID != "" && c.info.ChainID != chainID {
		return nil, fmt.Errorf("ledger client: the validator at %s serves chain %q, not %q", rpc, c.info.ChainID, chainID)
	}
	a, err := c.Account(ctx, c.self)
	if err != nil {
		return nil, err
	}
	c.last = a.Nonce
	return c, nil
}

// Info describes the chain (as the host answered at NewLedgerClient).
func (c *LedgerClient) Info() LedgerInfo { return c.info }

// Self is the worker's account.
func (c *LedgerClient) Self() ledger.PubKey { return c.self }

// Nonce is the last nonce the worker used, as far as the tracker knows.
func (c *LedgerClient) Nonce() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// Submit sends one signed transaction (raw, its encoding) to the host,
// which checks it against its pending state and queues it for the next
// block. It returns nil once queued (on a CometBFT network: once a
// committed block holds it, or a *ledger.TxError if the block rejected
// it, or chain.ErrNotIncluded when ctx ends first); a *ledger.TxError with the ledger's
// code and reason if the ledger rejected it (a replay is
// ledger.CodeBadNonce); ledger.ErrMempoolFull; a *LedgerRefusal if the
// host refused the request; or a network error. Submit leaves the nonce
// tracker alone: it is for transactions built elsewhere.
func (c *LedgerClient) Submit(ctx context.Context, raw []byte) error {
	if len(raw) > MaxLedgerTxBytes {
		return fmt.Errorf("ledger client: transaction of %d bytes exceeds the limit of %d", len(raw), MaxLedgerTxBytes)
	}
	if c.rpc != nil {
		wctx, cancel := context.WithTimeout(ctx, ledgerStreamTimeout)
		defer cancel()
		_, err := c.rpc.Submit(wctx, raw)
		return err
	}
	var reply ledgerTxReply
	err := c.exchange(ctx, ProtoLedgerTx, func(s wire.Stream) error {
		return wire.WriteMsg(s, kindLedgerTx, raw)
	}, func(s wire.Stream) error {
		return wire.ReadJSON(s, kindLedgerTxReply, maxLedgerRequest, &reply)
	})
	if err != nil {
		return err
	}
	switch reply.Status {
	case txOK:
		return nil
	case txRejected:
		return &ledger.TxError{Code: ledger.Code(reply.Code), Reason: reply.Reason}
	case txMempoolFull:
		return ledger.ErrMempoolFull
	}
	return fmt.Errorf("ledger client: unknown reply status %q", reply.Status)
}

// Send signs body with the worker's key and the next nonce and submits
// it. The tracker advances unless the host answered that it did not
// queue the transaction (gaps are allowed, so a lost reply costs
// nothing). If the host calls the nonce a replay because the chain has
// moved past the tracker (another process with the same key, or a
// restart), Send catches up with the chain's nonce and tries once more.
// Errors are Submit's.
func (c *LedgerClient) Send(ctx context.Context, body ledger.Body) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for retried := false; ; retried = true {
		n := c.last + 1
		raw, err := ledger.SignTx(c.info.ChainID, c.key, n, body)
		if err != nil {
			return err
		}
		err = c.Submit(ctx, raw)
		var te *ledger.TxError
		var lr *LedgerRefusal
		switch {
		case errors.As(err, &te), errors.As(err, &lr), errors.Is(err, ledger.ErrMempoolFull):
			// Answered and not queued: the nonce is still free.
		default:
			c.last = n
		}
		if te != nil && te.Code == ledger.CodeBadNonce && !retried {
			if a, aerr := c.Account(ctx, c.self); aerr == nil && a.Nonce > c.last {
				c.last = a.Nonce
				continue
			}
		}
		return err
	}
}

// signNext signs body with the next nonce and advances the tracker: for a
// transaction that travels another way (a commit inside a contribution).
// A nonce signed and never used leaves a gap, which the ledger allows.
func (c *LedgerClient) signNext(body ledger.Body) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	raw, err := ledger.SignTx(c.info.ChainID, c.key, c.last+1, body)
	if err == nil {
		c.last++
	}
	return raw, err
}

// catchUp moves the tracker up to nonce n (the chain's) if it is behind.
func (c *LedgerClient) catchUp(n uint64) {
	c.mu.Lock()
	c.last = max(c.last, n)
	c.mu.Unlock()
}

// Register bonds amount of the worker's balance as stake (the stake
// afterwards must reach the chain's minimum). Errors are Send's.
func (c *LedgerClient) Register(ctx context.Context, amount uint64) error {
	return c.Send(ctx, &ledger.RegisterTx{Amount: amount})
}

// Transfer moves amount of the worker's balance to another account.
func (c *LedgerClient) Transfer(ctx context.Context, to ledger.PubKey, amount uint64) error {
	return c.Send(ctx, &ledger.TransferTx{To: to, Amount: amount})
}

// Unbond starts unbonding amount of the worker's stake.
func (c *LedgerClient) Unbond(ctx context.Context, amount uint64) error {
	return c.Send(ctx, &ledger.UnbondTx{Amount: amount})
}

// Withdraw releases the worker's matured unbonding entries to its
// balance.
func (c *LedgerClient) Withdraw(ctx context.Context) error {
	return c.Send(ctx, &ledger.WithdrawTx{})
}

// Commit commits the worker to its contribution in the open round (before
// it reveals the contribution to the aggregator).
func (c *LedgerClient) Commit(ctx context.Context, commit ledger.CommitTx) error {
	return c.Send(ctx, &commit)
}

// Account reads an account's committed state (balance, stake, unbonding
// entries, nonce); an account never seen is all zeros.
func (c *LedgerClient) Account(ctx context.Context, k ledger.PubKey) (ledger.Account, error) {
	var a ledger.Account
	err := c.queryJSON(ctx, "account", k[:], &a)
	return a, err
}

// Totals reads the chain's supply, minted and burned totals, open round
// and tip.
func (c *LedgerClient) Totals(ctx context.Context) (ledger.Totals, error) {
	var t ledger.Totals
	err := c.queryJSON(ctx, "totals", nil, &t)
	return t, err
}

// Round reads round r's status, result, commits and verdicts.
func (c *LedgerClient) Round(ctx context.Context, r uint64) (ledger.RoundInfo, error) {
	var ri ledger.RoundInfo
	err := c.queryJSON(ctx, "round", binary.BigEndian.AppendUint64(nil, r), &ri)
	return ri, err
}

// History reads the transactions that touched an account, oldest first.
func (c *LedgerClient) History(ctx context.Context, k ledger.PubKey) ([]ledger.HistoryEntry, error) {
	var h []ledger.HistoryEntry
	err := c.queryJSON(ctx, "history", k[:], &h)
	return h, err
}

// Query sends a raw query (see ProtoLedgerQuery) and returns the host's
// JSON answer, at most MaxLedgerAnswerBytes. A refused query gives a
// *LedgerRefusal naming the reason.
func (c *LedgerClient) Query(ctx context.Context, path string, data []byte) ([]byte, error) {
	if c.rpc != nil {
		if path == ledgerChainPath {
			return json.Marshal(c.info)
		}
		ans, err := c.rpc.Query(ctx, path, data)
		var qe *chain.QueryError
		if errors.As(err, &qe) {
			return nil, &LedgerRefusal{Reason: qe.Reason}
		}
		return ans, err
	}
	var ans json.RawMessage
	err := c.exchange(ctx, ProtoLedgerQuery, func(s wire.Stream) error {
		return wire.WriteJSON(s, kindLedgerQuery, ledgerQuery{Path: path, Data: data})
	}, func(s wire.Stream) error {
		return wire.ReadJSON(s, kindLedgerAnswer, MaxLedgerAnswerBytes, &ans)
	})
	return ans, err
}

func (c *LedgerClient) queryJSON(ctx context.Context, path string, data []byte, v any) error {
	ans, err := c.Query(ctx, path, data)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(ans, v); err != nil {
		return fmt.Errorf("ledger client: %s answer: %v", path, err)
	}
	return nil
}

// exchange runs one request stream: write, half-close, read. A refusal
// becomes a *LedgerRefusal; ctx's end aborts the stream.
func (c *LedgerClient) exchange(ctx context.Context, proto string, write, read func(wire.Stream) error) error {
	s, err := c.tr.Open(ctx, c.host, proto)
	if err != nil {
		return fmt.Errorf("ledger client: open %s: %w", proto, err)
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	deadline := time.Now().Add(ledgerStreamTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	s.SetDeadline(deadline)
	err = write(s)
	if err == nil {
		err = s.CloseWrite()
	}
	// Read even after a failed write: the host may have refused the
	// request before reading all of it.
	if rerr := read(s); rerr != nil || err == nil {
		err = rerr
	}
	var re *wire.RemoteError
	if errors.As(err, &re) {
		return &LedgerRefusal{Reason: re.Msg}
	}
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("ledger client: %s: %w", proto, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("ledger client: %s: %w", proto, err)
	}
	return nil
}
