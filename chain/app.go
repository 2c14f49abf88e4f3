package chain

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/store"
)

// Codespace names the ledger's result codes in CometBFT's responses.
const Codespace = "cairn"

// QueryGenesis is the query path that answers the ledger's genesis
// encoding (ledger.Genesis.Encode); the other paths are the ledger's own
// (ledger.Ledger.Query).
const QueryGenesis = "genesis"

// AppState is the genesis document's app_state: the ledger's genesis, in
// its canonical encoding.
type AppState struct {
	Ledger []byte `json:"cairn_ledger_genesis"`
}

// App is the Cairn ledger as a CometBFT application: an AppStore (the
// ledger state machine and its file) behind the ABCI methods.
//
//   - InitChain creates the ledger from the genesis document's app_state
//     (its chain ID must be the document's) and answers its state root.
//   - CheckTx checks a transaction against the pending (mempool) state;
//     a rejected one answers the ledger's code and reason and never
//     enters the mempool.
//   - PrepareProposal keeps, in mempool order, the transactions that
//     execute without error; ProcessProposal refuses a block with any
//     transaction that does not (malformed, badly signed, replayed,
//     overspending...), which every honest validator decides alike,
//     because the ledger is deterministic.
//   - FinalizeBlock executes the block and answers each transaction's
//     code and reason and the new state root (the next header's app
//     hash); Commit writes the state changes and the tip atomically.
//   - Info answers the last committed height and state root, so the
//     engine replays the blocks a restarted validator missed.
//   - Query answers the ledger's queries on the committed state and the
//     genesis (QueryGenesis).
//
// The methods are safe for concurrent use.
type App struct {
	abci.BaseApplication
	mu   sync.Mutex
	st   *store.AppStore
	path string
}

var _ abci.Application = (*App)(nil)

// OpenApp opens the application's state file at path (store.OpenApp).
func OpenApp(path string) (*App, error) {
	st, err := store.OpenApp(path)
	if err != nil {
		return nil, err
	}
	return &App{st: st, path: path}, nil
}

// Path is the application's state file.
func (a *App) Path() string { return a.path }

// Close closes the state file.
func (a *App) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st.Close()
}

// Ledger calls f with the committed ledger (nil before InitChain), under
// the application's lock: f must not keep it.
func (a *App) Ledger(f func(*ledger.Ledger)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a.st.Ledger())
}

// Info answers the last committed height and state root.
func (a *App) Info(context.Context, *abci.RequestInfo) (*abci.ResponseInfo, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.st.Ledger()
	if l == nil {
		return &abci.ResponseInfo{Data: "cairn ledger (no genesis yet)"}, nil
	}
	tip := l.Tip()
	resp := &abci.ResponseInfo{Data: "cairn ledger " + l.Genesis().ChainID, LastBlockHeight: int64(tip.Height)}
	if tip.Height > 0 {
		resp.LastBlockAppHash = tip.AppHash[:]
	}
	return resp, nil
}

// InitChain creates the ledger from the genesis document's app_state. It
// fails on a missing or invalid ledger genesis and on a chain ID other
// than the document's.
func (a *App) InitChain(_ context.Context, req *abci.RequestInitChain) (*abci.ResponseInitChain, error) {
	g, err := GenesisOf(req.AppStateBytes)
	if err != nil {
		return nil, err
	}
	if g.ChainID != req.ChainId {
		return nil, fmt.Errorf("chain: the ledger's genesis is for chain %q, the genesis document for %q", g.ChainID, req.ChainId)
	}
	if req.InitialHeight > 1 {
		return nil, fmt.Errorf("chain: initial height %d: the ledger starts at block 1", req.InitialHeight)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.st.Init(*g); err != nil {
		return nil, err
	}
	root := a.st.Ledger().StateRoot()
	return &abci.ResponseInitChain{AppHash: root[:]}, nil
}

// GenesisOf decodes the ledger's genesis from a genesis document's
// app_state (AppState JSON). It fails naming what is missing or invalid.
func GenesisOf(appState []byte) (*ledger.Genesis, error) {
	var s AppState
	if err := json.Unmarshal(appState, &s); err != nil {
		return nil, fmt.Errorf("chain: app_state: %v", err)
	}
	if len(s.Ledger) == 0 {
		return nil, errors.New("chain: app_state holds no cairn_ledger_genesis")
	}
	g, err := ledger.DecodeGenesis(s.Ledger)
	if err != nil {
		return nil, fmt.Errorf("chain: app_state: %v", err)
	}
	return g, g.Validate()
}

func resultCode(err error) (uint32, string) {
	if err == nil {
		return 0, ""
	}
	var te *ledger.TxError
	if errors.As(err, &te) {
		return uint32(te.Code), te.Reason
	}
	return uint32(ledger.CodeInvalid), err.Error()
}

// CheckTx checks a transaction against the pending state.
func (a *App) CheckTx(_ context.Context, req *abci.RequestCheckTx) (*abci.ResponseCheckTx, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.st.Ledger()
	if l == nil {
		return &abci.ResponseCheckTx{Code: uint32(ledger.CodeInvalid), Log: "the chain has no genesis yet", Codespace: Codespace}, nil
	}
	err := l.CheckTx(req.Tx)
	if te, ok := err.(*ledger.TxError); ok && te.Code == ledger.CodeBadNonce && aheadOfCommitted(l, req.Tx) {
		// Gossip can deliver one sender's transactions out of order (nonce
		// k+1 from one peer before k from another). The pending state
		// then calls k a replay, but it is not one: the committed state
		// has not used k. It waits in the mempool, and PrepareProposal
		// puts each sender's transactions in nonce order.
		err = nil
	}
	code, reason := resultCode(err)
	return &abci.ResponseCheckTx{Code: code, Log: reason, Codespace: Codespace}, nil
}

// aheadOfCommitted reports whether raw's nonce exceeds its sender's last
// committed nonce.
func aheadOfCommitted(l *ledger.Ledger, raw []byte) bool {
	tx, err := ledger.DecodeTx(raw)
	if err != nil {
		return false
	}
	a, err := l.Account(tx.Sender)
	return err == nil && tx.Nonce > a.Nonce
}

// nonceOrder puts each sender's transactions in nonce order, in the
// places its transactions hold; others' places and undecodable
// transactions stay where they are.
func nonceOrder(txs [][]byte) [][]byte {
	type item struct {
		nonce uint64
		raw   []byte
	}
	places := map[ledger.PubKey][]int{}
	items := map[ledger.PubKey][]item{}
	for i, raw := range txs {
		tx, err := ledger.DecodeTx(raw)
		if err != nil {
			continue
		}
		places[tx.Sender] = append(places[tx.Sender], i)
		items[tx.Sender] = append(items[tx.Sender], item{tx.Nonce, raw})
	}
	out := slices.Clone(txs)
	for k, it := range items {
		if len(it) < 2 {
			continue
		}
		slices.SortStableFunc(it, func(a, b item) int { return cmp.Compare(a.nonce, b.nonce) })
		for j, at := range places[k] {
			out[at] = it[j].raw
		}
	}
	return out
}

func blockInfo(height int64, unixNano int64) (ledger.BlockInfo, error) {
	if height < 1 {
		return ledger.BlockInfo{}, fmt.Errorf("chain: block height %d", height)
	}
	return ledger.BlockInfo{Height: uint64(height), Time: unixNano}, nil
}

// PrepareProposal keeps the mempool's transactions that execute without
// error, in order, within the block's byte limit.
func (a *App) PrepareProposal(_ context.Context, req *abci.RequestPrepareProposal) (*abci.ResponsePrepareProposal, error) {
	info, err := blockInfo(req.Height, req.Time.UnixNano())
	if err != nil {
		return nil, err
	}
	var txs [][]byte
	var size int64
	for _, tx := range req.Txs {
		if len(txs) == ledger.MaxBlockTxs || size+int64(len(tx)) > req.MaxTxBytes {
			break
		}
		txs = append(txs, tx)
		size += int64(len(tx))
	}
	txs = nonceOrder(txs)
	a.mu.Lock()
	defer a.mu.Unlock()
	for {
		rs, err := a.st.Simulate(info, txs)
		if err != nil {
			return nil, err
		}
		keep := txs[:0:0]
		for i, r := range rs {
			if r.Code == ledger.CodeOK {
				keep = append(keep, txs[i])
			}
		}
		if len(keep) == len(txs) {
			return &abci.ResponsePrepareProposal{Txs: keep}, nil
		}
		// A rejected transaction changed no state, so the others' results
		// stand; one more pass confirms it.
		txs = keep
	}
}

// ProcessProposal accepts a block only if every transaction in it
// executes without error on the committed state.
func (a *App) ProcessProposal(_ context.Context, req *abci.RequestProcessProposal) (*abci.ResponseProcessProposal, error) {
	reject := &abci.ResponseProcessProposal{Status: abci.ResponseProcessProposal_REJECT}
	info, err := blockInfo(req.Height, req.Time.UnixNano())
	if err != nil || len(req.Txs) > ledger.MaxBlockTxs {
		return reject, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	rs, err := a.st.Simulate(info, req.Txs)
	if err != nil {
		return reject, nil
	}
	for _, r := range rs {
		if r.Code != ledger.CodeOK {
			return reject, nil
		}
	}
	return &abci.ResponseProcessProposal{Status: abci.ResponseProcessProposal_ACCEPT}, nil
}

// FinalizeBlock executes the decided block and answers each
// transaction's result and the new state root.
func (a *App) FinalizeBlock(_ context.Context, req *abci.RequestFinalizeBlock) (*abci.ResponseFinalizeBlock, error) {
	info, err := blockInfo(req.Height, req.Time.UnixNano())
	if err != nil {
		return nil, err
	}
	// The block's hash is the beacon of a round it closes (proposals are
	// simulated without one: a beacon only changes what a later block
	// accepts).
	if len(req.Hash) != len(info.Beacon) {
		return nil, fmt.Errorf("chain: block %d has a hash of %d bytes", req.Height, len(req.Hash))
	}
	copy(info.Beacon[:], req.Hash)
	a.mu.Lock()
	defer a.mu.Unlock()
	res, err := a.st.FinalizeBlock(info, req.Txs)
	if err != nil {
		return nil, err
	}
	out := &abci.ResponseFinalizeBlock{TxResults: make([]*abci.ExecTxResult, len(res.Results)), AppHash: res.AppHash[:]}
	for i, r := range res.Results {
		out.TxResults[i] = &abci.ExecTxResult{Code: uint32(r.Code), Log: r.Reason, Codespace: Codespace}
	}
	return out, nil
}

// Commit persists the finalized block. Every block is kept (retain
// height 0): the chain is the run's record.
func (a *App) Commit(context.Context, *abci.RequestCommit) (*abci.ResponseCommit, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.st.Commit(); err != nil {
		return nil, err
	}
	return &abci.ResponseCommit{}, nil
}

// Query answers the ledger's queries on the committed state, and
// QueryGenesis. An unknown path or bad data answers a non-zero code and
// the reason.
func (a *App) Query(_ context.Context, req *abci.RequestQuery) (*abci.ResponseQuery, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.st.Ledger()
	if l == nil {
		return &abci.ResponseQuery{Code: 1, Log: "the chain has no genesis yet", Codespace: Codespace}, nil
	}
	height := int64(l.Tip().Height)
	if req.Height != 0 && req.Height != height {
		return &abci.ResponseQuery{Code: 1, Log: fmt.Sprintf("only the committed state (height %d) is kept for queries", height), Codespace: Codespace}, nil
	}
	var v []byte
	var err error
	if req.Path == QueryGenesis {
		g := l.Genesis()
		v = g.Encode()
	} else {
		v, err = l.Query(req.Path, req.Data)
	}
	if err != nil {
		return &abci.ResponseQuery{Code: 1, Log: err.Error(), Codespace: Codespace, Height: height}, nil
	}
	return &abci.ResponseQuery{Value: v, Height: height}, nil
}
