package node

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/store"
	"github.com/cairnlabs/cairn/wire"
)

// The ledger's protocols. The aggregator hosts the run's chain
// (LedgerHost); workers reach it with a LedgerClient. Each request is one
// stream.
//
// ProtoLedgerTx: the peer sends one signed transaction (a control
// message of at most MaxLedgerTxBytes) whose sender must be the peer's own
// verified identity; the host checks it against the pending state, queues
// it for the next block and answers {status: ok | rejected | mempool-full,
// code, reason, tx_hash}. A request it does not judge (rate limited,
// busy, oversize, another key's transaction) gets a one-line refusal.
//
// ProtoLedgerQuery: the peer sends {path, data}; the host answers with
// the JSON of ledger.Ledger.Query on the committed state ("account",
// "totals", "round", "history") or of its LedgerInfo ("chain"), at most
// MaxLedgerAnswerBytes, or a refusal. Queries never change anything.
const (
	ProtoLedgerTx    = "/cairn/ledger/tx/1.0.0"
	ProtoLedgerQuery = "/cairn/ledger/query/1.0.0"
)

// Message kinds on the ledger's streams.
const (
	kindLedgerTx uint8 = 0x40 + iota
	kindLedgerTxReply
	kindLedgerQuery
	kindLedgerAnswer
)

const (
	// MaxLedgerTxBytes bounds a transaction a peer sends. A worker's
	// transactions (register, transfer, unbond, withdraw, commit) encode
	// to under 300 bytes; the large kinds (round results and settlements,
	// up to ledger.MaxTxBytes) are the host's own and never cross the
	// network, so the bound is far below ledger.MaxTxBytes: a full
	// mempool of the largest peer transactions stays under 41 MB.
	MaxLedgerTxBytes = 4 << 10
	// MaxLedgerAnswerBytes bounds a query's answer.
	MaxLedgerAnswerBytes = 16 << 20
	// maxLedgerRequest bounds a query request and a transaction's reply.
	maxLedgerRequest = 4 << 10
	// ledgerStreamTimeout bounds one ledger request.
	ledgerStreamTimeout = 30 * time.Second
)

// The mempool: defaultMaxPool transactions at most, of which peers may
// fill all but ownReserve (an eighth of a smaller pool), so that a flood
// of peers' transactions never keeps the host's own round results and
// settlements out.
const (
	defaultMaxPool = 10000
	ownReserve     = 256
)

// The query path the host answers itself; the others are the ledger's.
const ledgerChainPath = "chain"

// ledgerTxReply answers a transaction the host judged.
type ledgerTxReply struct {
	Status string      `json:"status"` // "ok", "rejected" or "mempool-full"
	Code   uint8       `json:"code,omitempty"`
	Reason string      `json:"reason,omitempty"`
	TxHash ledger.Hash `json:"tx_hash"`
}

const (
	txOK          = "ok"
	txRejected    = "rejected"
	txMempoolFull = "mempool-full"
)

type ledgerQuery struct {
	Path string `json:"path"`
	Data []byte `json:"data,omitempty"`
}

// LedgerInfo describes a chain: what a worker needs to sign for it and
// the rules it plays by. The host answers it on the query path "chain".
type LedgerInfo struct {
	ChainID     string          `json:"chain_id"`
	GenesisHash ledger.Hash     `json:"genesis_hash"`
	Authorities []ledger.PubKey `json:"authorities"`
	LedgerParams
}

// LedgerHostOptions configure a LedgerHost. Zero values take the
// defaults given.
type LedgerHostOptions struct {
	// DataDir holds the chain's file (store.FileName).
	DataDir string
	// Genesis creates the chain; nil resumes the one in DataDir (an
	// error if there is none). A genesis other than the file's is an
	// error.
	Genesis *ledger.Genesis
	// ChainRPC, if set, records on a CometBFT network of the ledger
	// (cairn chain init/start) through this validator's RPC address
	// instead of a chain in DataDir: transactions are broadcast, Produce
	// waits until they are in committed blocks, and the network makes
	// its blocks on its own. DataDir and Genesis are then unused.
	ChainRPC string
	// Key is the host's identity key (p2p.LedgerKey of the node's
	// identity); it must be a genesis authority. It signs blocks and the
	// host's own transactions.
	Key ed25519.PrivateKey

	// TxRate and TxBurst limit each peer's transactions (default 20 per
	// second, bursts of 40); QueryRate and QueryBurst its queries
	// (default 50 per second, bursts of 100).
	TxRate     float64
	TxBurst    int
	QueryRate  float64
	QueryBurst int
	// MaxPeers bounds the peers the rate limits track (default 4096).
	MaxPeers int
	// MaxInFlight bounds the requests served at once (default 64); more
	// are refused as busy.
	MaxInFlight int
	// MaxPool bounds the mempool (default 10000 transactions); peers'
	// transactions may fill all but 256 places (an eighth of a smaller
	// pool), which stay for the host's own.
	MaxPool int
	// BlockInterval is the least time between two blocks made by Tick
	// (default 1 s).
	BlockInterval time.Duration
	// Now is the rate limits' clock (default time.Now).
	Now func() time.Time
	// Log receives refusals (debug) and block production (info);
	// default discards.
	Log *slog.Logger
}

// LedgerHost hosts a run's chain on the aggregator: a store.Chain in its
// data directory, served to peers over ProtoLedgerTx and
// ProtoLedgerQuery, fed with the host's own round results and
// settlements, and turned into blocks by Produce or Tick from the node's
// clock loop. It is safe for concurrent use.
type LedgerHost struct {
	chain    *store.Chain // nil on a CometBFT network
	be       ledgerBackend
	key      ed25519.PrivateKey
	self     ledger.PubKey
	info     LedgerInfo
	infoJSON []byte
	txRate   *peerRate
	qRate    *peerRate
	inFlight chan struct{}
	peerPool int // the mempool room peers' transactions may take
	interval time.Duration
	now      func() time.Time
	log      *slog.Logger

	ownMu    sync.Mutex // serialises the host's own transactions
	ownNonce uint64     // the last nonce the host used

	closed    atomic.Bool
	mu        sync.Mutex // serialises Produce and Close
	lastBlock time.Time
}

// OpenLedgerHost opens (or, given a genesis, creates) the chain in
// o.DataDir. It fails if the key is not a genesis authority, and as
// store.OpenChain does (another process holds the file, the file is not
// a ledger or holds another chain, its state does not match its tip).
func OpenLedgerHost(o LedgerHostOptions) (*LedgerHost, error) {
	if len(o.Key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("ledger host: key of %d bytes, want an ed25519 private key", len(o.Key))
	}
	pool := orDefault(o.MaxPool, defaultMaxPool)
	log := o.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var c *store.Chain
	var be ledgerBackend
	if o.ChainRPC != "" {
		r, err := dialRemote(o.ChainRPC, pool, log)
		if err != nil {
			return nil, err
		}
		if g := r.Genesis(); !g.IsAuthority(ledger.KeyOf(o.Key)) {
			return nil, fmt.Errorf("ledger host: the chain at %s does not list this node (%s) among its authorities: give it to 'cairn chain init --organiser DIR' or --authority",
				o.ChainRPC, ledger.KeyOf(o.Key))
		}
		be = r
	} else {
		if o.DataDir == "" {
			return nil, errors.New("ledger host: no data directory")
		}
		var err error
		if c, err = store.OpenChain(filepath.Join(o.DataDir, store.FileName), o.Genesis, o.Key); err != nil {
			return nil, err
		}
		c.SetMaxPool(pool)
		be = embeddedBackend{c}
	}
	g := be.Genesis()
	info := LedgerInfo{ChainID: g.ChainID, GenesisHash: g.Hash(), Authorities: g.Authorities, LedgerParams: ledgerParamsOf(&g)}
	infoJSON, err := json.Marshal(info)
	if err != nil {
		be.Close()
		return nil, err
	}
	h := &LedgerHost{
		chain:    c,
		be:       be,
		key:      o.Key,
		self:     ledger.KeyOf(o.Key),
		info:     info,
		infoJSON: infoJSON,
		txRate:   newPeerRate(orDefault(o.TxRate, 20), orDefault(o.TxBurst, 40), orDefault(o.MaxPeers, 4096)),
		qRate:    newPeerRate(orDefault(o.QueryRate, 50), orDefault(o.QueryBurst, 100), orDefault(o.MaxPeers, 4096)),
		inFlight: make(chan struct{}, orDefault(o.MaxInFlight, 64)),
		peerPool: pool - min(ownReserve, pool/8),
		interval: orDefault(o.BlockInterval, time.Second),
		now:      o.Now,
		log:      log,
	}
	if h.now == nil {
		h.now = time.Now
	}
	if c != nil {
		h.lastBlock = time.Unix(0, c.Tip().Time)
	}
	return h, nil
}

func orDefault[T int | float64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Serve registers the ledger's protocols on tr: peers can submit their
// transactions and query the chain from now on.
func (h *LedgerHost) Serve(tr Transport) {
	tr.Handle(ProtoLedgerTx, func(s wire.NetStream, from string) {
		h.serve(s, from, h.txRate, "transactions", h.serveTx)
	})
	tr.Handle(ProtoLedgerQuery, func(s wire.NetStream, from string) {
		h.serve(s, from, h.qRate, "queries", h.serveQuery)
	})
}

// Chain is the hosted chain, for local reads (Account, Query, Block);
// nil when the host records on a CometBFT network.
func (h *LedgerHost) Chain() *store.Chain { return h.chain }

// Remote reports whether the host records on a CometBFT network.
func (h *LedgerHost) Remote() bool { return !h.be.Produces() }

// Info describes the chain.
func (h *LedgerHost) Info() LedgerInfo { return h.info }

// Account is the host's own account (its authority key).
func (h *LedgerHost) Account() ledger.PubKey { return h.self }

// Produce makes a block of the queued transactions at time now, persists
// it and commits it (store.Chain.Produce); it returns nil if nothing was
// queued. After a write error the transactions stay queued. On a
// CometBFT network it waits until every transaction queued so far is in
// a committed block and returns a nil block.
func (h *LedgerHost) Produce(now time.Time) (*ledger.Block, error) {
	if h.closed.Load() {
		return nil, errors.New("ledger host: closed")
	}
	if !h.be.Produces() {
		return h.be.Produce(now)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed.Load() {
		return nil, errors.New("ledger host: closed")
	}
	b, err := h.chain.Produce(now)
	if err != nil {
		return nil, fmt.Errorf("ledger host: block at %v: %v", now, err)
	}
	if b != nil {
		h.lastBlock = now
		h.log.Info("ledger block", "height", b.Header.Height, "txs", len(b.Txs))
	}
	return b, nil
}

// Tick is Produce for the node's clock loop: it makes a block only when
// transactions are queued and BlockInterval has passed since the last
// block; otherwise it returns nil and does nothing. A CometBFT network
// makes its blocks by itself: Tick does nothing there.
func (h *LedgerHost) Tick(now time.Time) (*ledger.Block, error) {
	if !h.be.Produces() {
		return nil, nil
	}
	h.mu.Lock()
	due := !h.closed.Load() && h.chain.Pending() > 0 && now.Sub(h.lastBlock) >= h.interval
	h.mu.Unlock()
	if !due {
		return nil, nil
	}
	return h.Produce(now)
}

// SubmitResult signs the round result r with the host's key and queues
// it; it closes r.Round in the next block. The host numbers its own
// transactions, continuing after restarts from its account's nonce on
// the chain. It returns the transaction's hash, or a *ledger.TxError when
// the ledger refuses the result (a round that is not open, a
// contribution without a matching commit, ...), or ledger.ErrMempoolFull.
func (h *LedgerHost) SubmitResult(r *ledger.ResultTx) (ledger.Hash, error) {
	return h.submitOwn(r)
}

// SubmitPrivacy signs the privacy record p with the host's key and queues
// it. Errors are as for SubmitResult.
func (h *LedgerHost) SubmitPrivacy(p *ledger.PrivacyTx) (ledger.Hash, error) {
	return h.submitOwn(p)
}

// SubmitSettle signs the settlement s with the host's key and queues it;
// it pays and slashes in the next block. Errors are as for SubmitResult.
func (h *LedgerHost) SubmitSettle(s *ledger.SettleTx) (ledger.Hash, error) {
	return h.submitOwn(s)
}

func (h *LedgerHost) submitOwn(body ledger.Body) (ledger.Hash, error) {
	h.ownMu.Lock()
	defer h.ownMu.Unlock()
	acct, err := h.be.Account(h.self)
	if err != nil {
		return ledger.Hash{}, err
	}
	// The committed nonce covers a restart (queued transactions die with
	// the process); ownNonce covers those still queued. A transaction
	// queued and later dropped leaves a gap, which the ledger allows.
	n := max(h.ownNonce, acct.Nonce) + 1
	raw, err := ledger.SignTx(h.info.ChainID, h.key, n, body)
	if err != nil {
		return ledger.Hash{}, err
	}
	if err := h.be.Submit(raw); err != nil {
		return ledger.Hash{}, err
	}
	h.ownNonce = n
	return sha256.Sum256(raw), nil
}

// submitPeer queues a peer's transaction, within the peers' share of the
// mempool. Errors are store.Chain.Submit's.
func (h *LedgerHost) submitPeer(raw []byte) error {
	if h.be.Pending() >= h.peerPool {
		return ledger.ErrMempoolFull
	}
	return h.be.Submit(raw)
}

// Totals reads the chain's counters (open round, next round to settle,
// supply, minted, burned) and its tip from the committed state.
func (h *LedgerHost) Totals() (ledger.Totals, error) {
	var t ledger.Totals
	err := h.queryJSON("totals", nil, &t)
	return t, err
}

// Round reads round r's status, result, commits and verdicts from the
// committed state.
func (h *LedgerHost) Round(r uint64) (ledger.RoundInfo, error) {
	var ri ledger.RoundInfo
	err := h.queryJSON("round", binary.BigEndian.AppendUint64(nil, r), &ri)
	return ri, err
}

// recordOnce puts on the chain, in one transaction of the host's own and
// one block made at now, the entries whose hashes the chain does not hold
// yet under query path (asked for each: after a crash between a block and
// the caller's note of it, nothing is recorded twice); body makes the
// transaction from those entries' indices. It returns how many went on.
func (h *LedgerHost) recordOnce(path string, hashes []ledger.Hash, now time.Time, body func(keep []int) ledger.Body) (int, error) {
	var keep []int
	for i, hh := range hashes {
		var rec json.RawMessage
		if err := h.queryJSON(path, hh[:], &rec); err != nil {
			return 0, err
		}
		if string(rec) == "null" {
			keep = append(keep, i)
		}
	}
	if len(keep) == 0 {
		return 0, nil
	}
	if _, err := h.submitOwn(body(keep)); err != nil {
		return 0, err
	}
	if _, err := h.Produce(now); err != nil {
		return 0, err
	}
	return len(keep), nil
}

func (h *LedgerHost) queryJSON(path string, data []byte, v any) error {
	ans, err := h.be.Query(path, data)
	if err != nil {
		return err
	}
	return json.Unmarshal(ans, v)
}

// Verify replays the run's ledger file from its genesis while the node
// runs (store.Chain.Verify): nil when every block, signature and state
// root checks out. A ledger on a CometBFT network has no file here: it
// says so.
func (h *LedgerHost) Verify() error {
	if h.chain == nil {
		return errors.New("the ledger is on a CometBFT network: compare its validators with 'cairn chain verify'")
	}
	_, err := h.chain.Verify()
	return err
}

// AccountOf returns account k as the committed state holds it (the zero
// account, with Key k, if it does not exist).
func (h *LedgerHost) AccountOf(k ledger.PubKey) (ledger.Account, error) {
	var a ledger.Account
	err := h.queryJSON("account", k[:], &a)
	return a, err
}

// Close stops serving and closes the chain's file; transactions still
// queued are dropped (peers resubmit them).
func (h *LedgerHost) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed.Swap(true) {
		return nil
	}
	return h.be.Close()
}

// serve runs one ledger request: the peer's rate limit and the in-flight
// bound are checked before a byte of the request is read, so a flood
// costs a map lookup and a one-line refusal per stream.
func (h *LedgerHost) serve(s wire.NetStream, from string, rate *peerRate, what string, handle func(wire.Stream, string) error) {
	defer s.Close()
	s.SetDeadline(time.Now().Add(ledgerStreamTimeout))
	if !rate.allow(from, h.now()) {
		wire.WriteError(s, fmt.Sprintf("rate limited: more than %g %s per second from this peer", rate.rate, what))
		return
	}
	select {
	case h.inFlight <- struct{}{}:
		defer func() { <-h.inFlight }()
	default:
		wire.WriteError(s, "ledger busy: too many requests in flight, try again shortly")
		return
	}
	if h.closed.Load() {
		wire.WriteError(s, "ledger closed")
		return
	}
	if err := handle(s, from); err != nil {
		h.log.Debug("ledger request refused", "peer", from, "what", what, "err", err)
		var re *refusal
		if errors.As(err, &re) {
			wire.WriteError(s, re.msg)
		} else {
			s.Reset()
		}
	}
}

// serveTx judges one transaction from peer from.
func (h *LedgerHost) serveTx(s wire.Stream, from string) error {
	sender, err := p2p.AccountOf(from)
	if err != nil {
		return refuse("%v", err)
	}
	kind, raw, err := wire.ReadMsg(s, MaxLedgerTxBytes)
	if err != nil {
		return refuse("transaction: %v", err)
	}
	if kind != kindLedgerTx {
		return refuse("message kind %d, want a transaction (%d)", kind, kindLedgerTx)
	}
	reply := ledgerTxReply{Status: txOK, TxHash: sha256.Sum256(raw)}
	tx, err := ledger.DecodeTx(raw)
	if err == nil && tx.Sender != sender {
		return refuse("transaction signed by %s, but this stream is from %s: a peer submits only its own transactions",
			p2p.PeerIDOf(tx.Sender), from)
	}
	if err == nil {
		err = h.submitPeer(raw)
	} else {
		err = &ledger.TxError{Code: ledger.CodeMalformed, Reason: err.Error()}
	}
	var te *ledger.TxError
	switch {
	case err == nil:
	case errors.As(err, &te):
		reply.Status, reply.Code, reply.Reason = txRejected, uint8(te.Code), te.Reason
	case errors.Is(err, ledger.ErrMempoolFull):
		reply.Status = txMempoolFull
	default:
		return err
	}
	return wire.WriteJSON(s, kindLedgerTxReply, reply)
}

// serveQuery answers one query on the committed state.
func (h *LedgerHost) serveQuery(s wire.Stream, _ string) error {
	var q ledgerQuery
	if err := wire.ReadJSON(s, kindLedgerQuery, maxLedgerRequest, &q); err != nil {
		return refuse("query: %v", err)
	}
	var ans []byte
	switch q.Path {
	case ledgerChainPath:
		ans = h.infoJSON
	case "accounts":
		// A dump of every account grows with the run; it is for the
		// host's own tools (cairn ledger balances), not for peers.
		return refuse("query %q is not served to peers", q.Path)
	default:
		var err error
		if ans, err = h.be.Query(q.Path, q.Data); err != nil {
			return refuse("query %q: %v", q.Path, err)
		}
	}
	if len(ans) > MaxLedgerAnswerBytes {
		return refuse("query %q: answer of %d bytes exceeds the limit of %d", q.Path, len(ans), MaxLedgerAnswerBytes)
	}
	return wire.WriteMsg(s, kindLedgerAnswer, ans)
}
