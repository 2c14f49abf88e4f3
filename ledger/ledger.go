package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"sort"
)

// Tip is the last committed block.
type Tip struct {
	Height    uint64 `json:"height"`     // 0 before the first block
	BlockHash Hash   `json:"block_hash"` // the genesis hash at height 0
	Time      int64  `json:"time"`       // Unix nanoseconds; 0 at height 0
	AppHash   Hash   `json:"app_hash"`   // the state root
}

// BlockInfo is what FinalizeBlock needs of a block besides its
// transactions.
type BlockInfo struct {
	Height   uint64
	Time     int64
	Proposer PubKey
	// Beacon is a hash the block fixes that nobody knew before it: the
	// block's own hash on CometBFT, the previous block's on the embedded
	// chain (whose own hash covers the state root the block makes). A
	// round closed in the block draws its check committee from it.
	Beacon Hash
}

// KV is one state pair, as the store persists it.
type KV struct {
	Key, Value []byte
}

// BlockResult is the outcome of a finalized block.
type BlockResult struct {
	Height      uint64
	Results     []TxResult // one per transaction, in order
	TxRoot      Hash
	ResultsRoot Hash
	AppHash     Hash // the state root after the block
	Changes     []KV // the state pairs the block wrote, sorted by key
}

// BlockError is a block that does not follow the previous one or whose
// contents do not match its header.
type BlockError struct {
	Height uint64
	Reason string
}

func (e *BlockError) Error() string { return fmt.Sprintf("ledger: block %d: %s", e.Height, e.Reason) }

func blockErr(h uint64, format string, args ...any) *BlockError {
	return &BlockError{Height: h, Reason: fmt.Sprintf(format, args...)}
}

// Ledger is the deterministic state machine, shaped like an ABCI
// application: CheckTx against the pending (mempool) state, FinalizeBlock
// or ApplyBlock to execute a block on a working copy, Commit to make it
// the committed state (or Discard to drop it), and queries of the
// committed state. It is not safe for concurrent use.
type Ledger struct {
	g       Genesis
	gHash   Hash
	gSupply uint64
	base    *kvBase
	tip     Tip
	check   *overlay
	checkN  uint32
	pending *pendingBlock
}

type pendingBlock struct {
	info      BlockInfo
	writes    *overlay
	changed   map[int]Hash
	result    *BlockResult
	blockHash Hash
}

func cloneGenesis(g *Genesis) Genesis {
	c := *g
	c.Authorities = append([]PubKey(nil), g.Authorities...)
	c.Accounts = append([]GenesisAccount(nil), g.Accounts...)
	return c
}

func newLedger(g *Genesis) (*Ledger, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	supply, _ := g.supply()
	l := &Ledger{g: cloneGenesis(g), gHash: g.Hash(), gSupply: supply, base: newBase()}
	return l, nil
}

// New returns the ledger at height 0: the genesis accounts and a meta
// record with round 0 open. It fails on an invalid genesis.
func New(g Genesis) (*Ledger, error) {
	l, err := newLedger(&g)
	if err != nil {
		return nil, err
	}
	o := newOverlay(l.base)
	st := stateView{o}
	st.putMeta(&Meta{Supply: l.gSupply})
	for _, a := range l.g.Accounts {
		st.putAccount(&Account{Key: a.Key, Balance: a.Balance, Stake: a.Stake})
	}
	changed, root := l.base.prepare(o.writes)
	l.base.apply(o.writes, changed, root)
	l.tip = Tip{BlockHash: l.gHash, AppHash: root}
	l.resetCheck()
	return l, nil
}

// Restore returns the ledger at tip with the given state pairs (as a store
// persisted them). Every pair must decode, and the pairs must hash to
// tip.AppHash; otherwise it fails naming the problem.
func Restore(g Genesis, tip Tip, pairs []KV) (*Ledger, error) {
	l, err := newLedger(&g)
	if err != nil {
		return nil, err
	}
	if tip.Height == 0 && tip.BlockHash != l.gHash {
		return nil, errors.New("ledger: restore: height 0 but the tip is not the genesis hash")
	}
	for _, p := range pairs {
		if _, err := DecodeStateValue(p.Key, p.Value); err != nil {
			return nil, fmt.Errorf("ledger: restore: %w", err)
		}
		l.base.buckets[bucketOf(string(p.Key))][string(p.Key)] = bytes.Clone(p.Value)
	}
	for i := range l.base.buckets {
		l.base.hashes[i] = hashBucket(i, l.base.buckets[i], nil)
	}
	l.base.root = l.base.rootOf(nil)
	if l.base.root != tip.AppHash {
		return nil, fmt.Errorf("ledger: restore: state root %s, but block %d says %s", l.base.root, tip.Height, tip.AppHash)
	}
	if _, err := (stateView{newOverlay(l.base)}).meta(); err != nil {
		return nil, fmt.Errorf("ledger: restore: %w", err)
	}
	l.tip = tip
	l.resetCheck()
	return l, nil
}

// Genesis returns a copy of the chain's genesis.
func (l *Ledger) Genesis() Genesis { return cloneGenesis(&l.g) }

// GenesisHash is the hash block 1 chains to.
func (l *Ledger) GenesisHash() Hash { return l.gHash }

// Tip returns the last committed block.
func (l *Ledger) Tip() Tip { return l.tip }

func (l *Ledger) resetCheck() {
	l.check = newOverlay(l.base)
	l.checkN = 0
}

// CheckTx checks raw against the pending state (the committed state plus
// every transaction CheckTx accepted since the last Commit) and, if it is
// valid, applies it there, so a mempool's transactions are checked in
// order. It returns a *TxError naming the code and reason for a rejected
// transaction, which changes nothing.
func (l *Ledger) CheckTx(raw []byte) error {
	err := execTx(l.check, &l.g, BlockInfo{Height: l.tip.Height + 1, Time: l.tip.Time}, l.checkN, raw)
	if err == nil {
		l.checkN++
	}
	return err
}

// FinalizeBlock executes txs as block info.Height on a working copy of the
// committed state and returns each transaction's result and the new state
// root; a rejected transaction gets its code and reason and changes no
// state. The block stays pending until Commit or Discard. It fails with a
// *BlockError if a block is already pending, the height does not follow
// the tip, the time goes back, or there are more than MaxBlockTxs
// transactions, and with another error only if the state is corrupt.
func (l *Ledger) FinalizeBlock(info BlockInfo, txs [][]byte) (*BlockResult, error) {
	switch {
	case l.pending != nil:
		return nil, blockErr(info.Height, "block %d is pending: commit or discard it first", l.pending.info.Height)
	case info.Height != l.tip.Height+1:
		return nil, blockErr(info.Height, "height does not follow %d", l.tip.Height)
	case info.Time < l.tip.Time:
		return nil, blockErr(info.Height, "time %d before the previous block's %d", info.Time, l.tip.Time)
	case len(txs) > MaxBlockTxs:
		return nil, blockErr(info.Height, "%d transactions, limit %d", len(txs), MaxBlockTxs)
	}
	w := newOverlay(l.base)
	res := &BlockResult{Height: info.Height, Results: make([]TxResult, len(txs)), TxRoot: TxRoot(txs)}
	for i, raw := range txs {
		err := execTx(w, &l.g, info, uint32(i), raw)
		if err == nil {
			continue
		}
		te, ok := isTxError(err)
		if !ok {
			return nil, err
		}
		res.Results[i] = TxResult{Code: te.Code, Reason: te.Reason}
	}
	res.ResultsRoot = ResultsRoot(res.Results)
	changed, root := l.base.prepare(w.writes)
	res.AppHash = root
	keys := make([]string, 0, len(w.writes))
	for k := range w.writes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		res.Changes = append(res.Changes, KV{Key: []byte(k), Value: w.writes[k]})
	}
	l.pending = &pendingBlock{info: info, writes: w, changed: changed, result: res}
	return res, nil
}

// ApplyBlock checks that b follows the tip (chain ID, height, previous
// hash, time, an authority's valid signature, the transaction root),
// executes it like FinalizeBlock and checks the results root and the state
// root against the header. On success the block is pending until Commit;
// on any mismatch nothing is pending and the error is a *BlockError.
func (l *Ledger) ApplyBlock(b *Block) (*BlockResult, error) {
	h := &b.Header
	switch {
	case h.ChainID != l.g.ChainID:
		return nil, blockErr(h.Height, "chain ID %q, want %q", h.ChainID, l.g.ChainID)
	case h.Height != l.tip.Height+1:
		return nil, blockErr(h.Height, "height does not follow %d", l.tip.Height)
	case h.PrevHash != l.tip.BlockHash:
		return nil, blockErr(h.Height, "previous hash %s, want %s", h.PrevHash, l.tip.BlockHash)
	case !l.g.IsAuthority(h.Proposer):
		return nil, blockErr(h.Height, "proposer %s is not an authority", h.Proposer)
	case !b.VerifySig():
		return nil, blockErr(h.Height, "bad proposer signature")
	case len(b.Txs) > MaxBlockTxs:
		return nil, blockErr(h.Height, "%d transactions, limit %d", len(b.Txs), MaxBlockTxs)
	case TxRoot(b.Txs) != h.TxRoot:
		return nil, blockErr(h.Height, "transaction root mismatch")
	}
	res, err := l.FinalizeBlock(BlockInfo{Height: h.Height, Time: h.Time, Proposer: h.Proposer, Beacon: h.PrevHash}, b.Txs)
	if err != nil {
		return nil, err
	}
	switch {
	case res.ResultsRoot != h.ResultsRoot:
		l.Discard()
		return nil, blockErr(h.Height, "results root mismatch")
	case res.AppHash != h.StateRoot:
		l.Discard()
		return nil, blockErr(h.Height, "state root %s after replay, header says %s", res.AppHash, h.StateRoot)
	}
	l.pending.blockHash = b.Hash()
	return res, nil
}

// Commit makes the pending block the committed state and returns the new
// tip. The tip's block hash is the block's when it came through ApplyBlock
// or Producer.MakeBlock, and zero after a bare FinalizeBlock (a host such
// as CometBFT keeps its own block hashes). The pending (mempool) state of
// CheckTx is reset to the new state: the caller checks its remaining
// transactions again. It fails if no block is pending.
func (l *Ledger) Commit() (Tip, error) {
	p := l.pending
	if p == nil {
		return l.tip, errors.New("ledger: commit: no pending block")
	}
	l.base.apply(p.writes.writes, p.changed, p.result.AppHash)
	l.tip = Tip{Height: p.info.Height, BlockHash: p.blockHash, Time: p.info.Time, AppHash: p.result.AppHash}
	l.pending = nil
	l.resetCheck()
	return l.tip, nil
}

// Discard drops the pending block, if any (for instance when persisting it
// failed).
func (l *Ledger) Discard() { l.pending = nil }

// StateRoot is the root of the committed state.
func (l *Ledger) StateRoot() Hash { return l.base.root }

// ExportState calls f with every committed state pair in key order.
func (l *Ledger) ExportState(f func(key, value []byte)) {
	l.base.each(func(k string, v []byte) { f([]byte(k), v) })
}

// CheckInvariants recomputes the supply from every account (balances,
// stakes, unbonding entries) and checks that it equals both the recorded
// supply and genesis supply + minted - burned, and that every state value
// decodes. It returns the first violation.
func (l *Ledger) CheckInvariants() error {
	m, err := (stateView{newOverlay(l.base)}).meta()
	if err != nil {
		return err
	}
	var sum, carry uint64
	var bad error
	l.base.each(func(k string, v []byte) {
		if bad != nil {
			return
		}
		rec, err := DecodeStateValue([]byte(k), v)
		if err != nil {
			bad = err
			return
		}
		if a, ok := rec.(Account); ok {
			for _, x := range append([]uint64{a.Balance, a.Stake}, unbondingAmounts(a)...) {
				sum, carry = bits.Add64(sum, x, 0)
				if carry != 0 {
					bad = errors.New("ledger: invariant: account total overflows")
					return
				}
			}
		}
	})
	if bad != nil {
		return bad
	}
	if sum != m.Supply {
		return fmt.Errorf("ledger: invariant: accounts hold %d, recorded supply %d", sum, m.Supply)
	}
	if expect := l.gSupply + m.Minted - m.Burned; expect != m.Supply {
		return fmt.Errorf("ledger: invariant: genesis %d + minted %d - burned %d = %d, supply %d", l.gSupply, m.Minted, m.Burned, expect, m.Supply)
	}
	return nil
}

func unbondingAmounts(a Account) []uint64 {
	out := make([]uint64, len(a.Unbonding))
	for i, u := range a.Unbonding {
		out[i] = u.Amount
	}
	return out
}
