package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/cairnlabs/cairn/ledger"
	bolt "go.etcd.io/bbolt"
)

// AppFileName is the ledger application's file inside a chain
// validator's data directory.
const AppFileName = "cairn-app.db"

var keyKind = []byte("kind")

// appKind marks a file as an ABCI application's state (no blocks: the
// consensus engine keeps those).
const appKind = "abci-app"

// AppStore persists the ledger of a chain whose blocks a consensus engine
// (CometBFT) keeps: the genesis, the tip (height, time and state root;
// the block hash is the engine's business and stays zero) and the whole
// committed state, in one bbolt file. Layout: meta "version", "kind",
// "genesis", "tip" as in the embedded chain's file, and the state bucket;
// there are no block buckets.
//
// A block's state changes and the new tip are written in one fsynced
// transaction before the in-memory ledger commits, so a process killed at
// any moment restarts at the previous or the next block and the engine
// replays what the application missed. An AppStore is not safe for
// concurrent use.
type AppStore struct {
	db          *bolt.DB
	l           *ledger.Ledger
	pending     *ledger.BlockResult
	pendingTime int64
}

// OpenApp opens (creating it empty if absent) the application file at
// path. A file that holds state is restored and checked (its state must
// hash to its tip's state root); a new one holds no ledger until Init. It
// fails if another process holds the file (after a second) or the file
// is not an application state file.
func OpenApp(path string) (*AppStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("store: %s: %w", path, ErrInUse)
		}
		return nil, fmt.Errorf("store: %s: %v", path, err)
	}
	s := &AppStore{db: db}
	err = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		if k := meta.Get(keyKind); string(k) != appKind {
			return fmt.Errorf("store: %s is not a chain application's state (kind %q)", path, k)
		}
		g, tip, err := readMeta(tx)
		if err != nil {
			return fmt.Errorf("store: %s: %v", path, err)
		}
		var pairs []ledger.KV
		if err := tx.Bucket(bucketState).ForEach(func(k, v []byte) error {
			pairs = append(pairs, ledger.KV{Key: k, Value: v})
			return nil
		}); err != nil {
			return err
		}
		s.l, err = ledger.Restore(*g, tip, pairs)
		return err
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Ledger returns the ledger at the stored tip, or nil before Init.
func (s *AppStore) Ledger() *ledger.Ledger { return s.l }

// Init creates the ledger at height 0 from g and persists it. On a store
// that already holds a ledger it does nothing if the genesis is the same
// (the engine calls InitChain again when it restarts before block 1) and
// fails otherwise.
func (s *AppStore) Init(g ledger.Genesis) error {
	if s.l != nil {
		if s.l.GenesisHash() != g.Hash() {
			return fmt.Errorf("store: the application holds chain %q with another genesis", s.l.Genesis().ChainID)
		}
		return nil
	}
	l, err := ledger.New(g)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		state, err := tx.CreateBucketIfNotExists(bucketState)
		if err != nil {
			return err
		}
		for k, v := range map[string][]byte{string(keyVersion): {formatVersion}, string(keyKind): []byte(appKind),
			string(keyGenesis): g.Encode(), string(keyTip): encodeTip(l.Tip())} {
			if err := meta.Put([]byte(k), v); err != nil {
				return err
			}
		}
		l.ExportState(func(k, v []byte) {
			if err == nil {
				err = state.Put(k, v)
			}
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("store: initialising the application: %v", err)
	}
	s.l = l
	return nil
}

// FinalizeBlock executes a block on the ledger (ledger.FinalizeBlock) and
// keeps its result pending until Commit. A block still pending from an
// earlier call (a round the engine abandoned) is dropped first.
func (s *AppStore) FinalizeBlock(info ledger.BlockInfo, txs [][]byte) (*ledger.BlockResult, error) {
	if s.l == nil {
		return nil, errors.New("store: the application has no ledger (InitChain has not run)")
	}
	s.l.Discard()
	res, err := s.l.FinalizeBlock(info, txs)
	if err != nil {
		return nil, err
	}
	s.pending, s.pendingTime = res, info.Time
	return res, nil
}

// Commit writes the pending block's state changes and the new tip in one
// transaction, then commits the ledger. It fails if nothing is pending or
// the write fails (the block stays pending: the engine stops, and replays
// the block when it restarts).
func (s *AppStore) Commit() (ledger.Tip, error) {
	res := s.pending
	if s.l == nil || res == nil {
		return ledger.Tip{}, errors.New("store: commit without a finalized block")
	}
	tip := ledger.Tip{Height: res.Height, Time: s.pendingTime, AppHash: res.AppHash}
	err := s.db.Update(func(tx *bolt.Tx) error { return putChanges(tx, res.Changes, tip) })
	if err != nil {
		return ledger.Tip{}, fmt.Errorf("store: writing block %d: %v", res.Height, err)
	}
	s.pending = nil
	return s.l.Commit()
}

// Close closes the file.
func (s *AppStore) Close() error { return s.db.Close() }

// Simulate executes txs as block info.Height on a scratch copy of the
// committed state and returns each transaction's result, leaving nothing
// pending: what a proposer uses to keep only valid transactions and a
// validator to judge a proposal. A block left pending by an abandoned
// round is dropped.
func (s *AppStore) Simulate(info ledger.BlockInfo, txs [][]byte) ([]ledger.TxResult, error) {
	if s.l == nil {
		return nil, errors.New("store: the application has no ledger (InitChain has not run)")
	}
	s.l.Discard()
	s.pending = nil
	res, err := s.l.FinalizeBlock(info, txs)
	if err != nil {
		return nil, err
	}
	s.l.Discard()
	return res.Results, nil
}
