package ledger

import (
	"crypto/ed25519"
	"errors"
	"fmt"
)

// ErrMempoolFull is returned by Submit when the mempool holds MaxPool
// transactions.
var ErrMempoolFull = errors.New("ledger: mempool full")

// Producer is the block producer of the embedded single-node chain: a
// mempool of transactions checked in arrival order against the pending
// state, and MakeBlock, which executes them as the next block signed by an
// authority's key. It reads no clock: the block time is an argument. Like
// the Ledger it drives, it is not safe for concurrent use.
type Producer struct {
	l       *Ledger
	key     ed25519.PrivateKey
	self    PubKey
	pool    [][]byte
	inBlock int // pool[:inBlock] are in the pending block

	// MaxPool bounds the mempool (default 10000).
	MaxPool int
}

// NewProducer returns a producer for l signing with key, which must be
// one of the genesis authorities.
func NewProducer(l *Ledger, key ed25519.PrivateKey) (*Producer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("ledger: producer key of %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	self := KeyOf(key)
	if !l.g.IsAuthority(self) {
		return nil, fmt.Errorf("ledger: producer key %s is not a genesis authority", self)
	}
	return &Producer{l: l, key: key, self: self, MaxPool: 10000}, nil
}

// Ledger returns the ledger the producer drives.
func (p *Producer) Ledger() *Ledger { return p.l }

// Submit checks raw against the pending state and queues it for the next
// block. A rejected transaction gives a *TxError (code and reason); a
// full mempool gives ErrMempoolFull.
func (p *Producer) Submit(raw []byte) error {
	if len(p.pool) >= p.MaxPool {
		return ErrMempoolFull
	}
	if err := p.l.CheckTx(raw); err != nil {
		return err
	}
	p.pool = append(p.pool, raw)
	return nil
}

// Pending is the number of queued transactions.
func (p *Producer) Pending() int { return len(p.pool) }

// MakeBlock executes the queued transactions (as many as fit in a block)
// as the next block at time now (Unix nanoseconds; raised to the previous
// block's time if earlier), signs it and leaves it pending in the ledger:
// the caller persists it, then calls Commit (or Discard if persisting
// failed). A queued transaction that no longer applies is dropped rather
// than included. An empty mempool gives an empty block.
func (p *Producer) MakeBlock(now int64) (*Block, *BlockResult, error) {
	if p.l.pending != nil {
		return nil, nil, errors.New("ledger: a block is already pending")
	}
	tip := p.l.tip
	now = max(now, tip.Time)
	for {
		n, size := 0, 1024
		for n < len(p.pool) && n < MaxBlockTxs && size+len(p.pool[n])+4 <= MaxBlockBytes {
			size += len(p.pool[n]) + 4
			n++
		}
		txs := p.pool[:n:n]
		res, err := p.l.FinalizeBlock(BlockInfo{Height: tip.Height + 1, Time: now, Proposer: p.self, Beacon: tip.BlockHash}, txs)
		if err != nil {
			return nil, nil, err
		}
		var keep [][]byte
		for i, r := range res.Results {
			if r.Code == CodeOK {
				keep = append(keep, txs[i])
			}
		}
		if len(keep) < n {
			// Drop what failed and execute again: a rejected transaction
			// changed no state, so the others' results do not change.
			p.l.Discard()
			p.pool = append(keep, p.pool[n:]...)
			continue
		}
		b := &Block{Header: Header{ChainID: p.l.g.ChainID, Height: tip.Height + 1, PrevHash: tip.BlockHash, Time: now,
			TxRoot: res.TxRoot, ResultsRoot: res.ResultsRoot, StateRoot: res.AppHash, Proposer: p.self}, Txs: txs}
		b.Sign(p.key)
		p.l.pending.blockHash = b.Hash()
		p.inBlock = n
		return b, res, nil
	}
}

// Commit commits the pending block, removes its transactions from the
// mempool and checks the rest again against the new state, dropping those
// that no longer apply. It returns the new tip.
func (p *Producer) Commit() (Tip, error) {
	tip, err := p.l.Commit()
	if err != nil {
		return tip, err
	}
	rest := p.pool[p.inBlock:]
	p.pool, p.inBlock = nil, 0
	for _, raw := range rest {
		if p.l.CheckTx(raw) == nil {
			p.pool = append(p.pool, raw)
		}
	}
	return tip, nil
}

// Discard drops the pending block; its transactions stay queued.
func (p *Producer) Discard() {
	p.l.Discard()
	p.inBlock = 0
}
