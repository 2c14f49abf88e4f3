// Package store persists the ledger of Cairn's embedded single-node chain
// in one bbolt file (conventionally DIR/ledger.db).
//
// Layout (buckets):
//
//	meta     "version" -> 1 byte (1); "genesis" -> the genesis encoding;
//	         "tip" -> height u64 | block hash [32] | time i64 | app hash [32]
//	blocks   height (u64 big-endian) -> the block encoding (header, txs, signature)
//	results  height -> ledger.EncodeResults of the block's results
//	state    ledger state key -> value (the ledger's whole committed state)
//
// A block, its results, the state pairs it wrote and the new tip are
// written in ONE bbolt transaction (fsynced before it returns), and the
// in-memory ledger commits only after that: a crash at any point (even
// kill -9 mid-write) leaves the file at the previous or the next block,
// never between, and Open resumes from it. Open checks that the stored
// state hashes to the tip's state root; Verify replays every block from
// the genesis and compares everything.
//
// Store and Chain are the write side (one process: bbolt locks the file);
// OpenReadOnly is for inspection and fails within a tenth of a second, rather than waiting,
// while a node holds the file. A Store is not safe for concurrent use; a
// Chain is.
package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/cairnlabs/cairn/ledger"
	bolt "go.etcd.io/bbolt"
)

// FileName is the ledger file inside a node's data directory.
const FileName = "ledger.db"

// formatVersion is the store layout's version.
const formatVersion = 1

var (
	bucketMeta    = []byte("meta")
	bucketBlocks  = []byte("blocks")
	bucketResults = []byte("results")
	bucketState   = []byte("state")
	keyVersion    = []byte("version")
	keyGenesis    = []byte("genesis")
	keyTip        = []byte("tip")
)

// ErrInUse is returned by OpenReadOnly and Verify when a running node
// holds the file.
var ErrInUse = errors.New("store: ledger file is in use by a running node")

// Store is an open ledger file and the ledger it holds.
type Store struct {
	db       *bolt.DB
	l        *ledger.Ledger
	readOnly bool
}

func heightKey(h uint64) []byte { return binary.BigEndian.AppendUint64(nil, h) }

func encodeTip(t ledger.Tip) []byte {
	b := binary.BigEndian.AppendUint64(nil, t.Height)
	b = append(b, t.BlockHash[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(t.Time))
	return append(b, t.AppHash[:]...)
}

func decodeTip(b []byte) (ledger.Tip, error) {
	var t ledger.Tip
	if len(b) != 80 {
		return t, fmt.Errorf("tip record of %d bytes, want 80", len(b))
	}
	t.Height = binary.BigEndian.Uint64(b)
	copy(t.BlockHash[:], b[8:40])
	t.Time = int64(binary.BigEndian.Uint64(b[40:48]))
	copy(t.AppHash[:], b[48:80])
	return t, nil
}

// Open opens (or, given a genesis, creates) the ledger file at path and
// resumes its ledger. Without a genesis the file must already hold a
// ledger; with one, a file that holds another chain's genesis is an
// error. It fails if another process holds the file (after a second), if
// the file is not a ledger, or if its state does not hash to its tip's
// state root.
func Open(path string, g *ledger.Genesis) (*Store, error) {
	if g == nil {
		if err := existing(path); err != nil {
			return nil, err
		}
	} else if err := g.Validate(); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("store: %s: %w", path, ErrInUse)
		}
		return nil, fmt.Errorf("store: %s: %v", path, err)
	}
	s := &Store{db: db}
	var fresh bool
	err = db.View(func(tx *bolt.Tx) error { fresh = tx.Bucket(bucketMeta) == nil; return nil })
	switch {
	case err == nil && fresh && g == nil:
		err = fmt.Errorf("store: %s holds no ledger", path)
	case err == nil && fresh:
		err = db.Update(func(tx *bolt.Tx) error { return initialise(tx, g) })
	}
	if err == nil {
		err = db.View(func(tx *bolt.Tx) error { return s.load(tx, g) })
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// OpenReadOnly opens an existing ledger file without writing to it or
// waiting for a lock: it fails with ErrInUse while a node holds the file,
// and as Open does on a file that is not a consistent ledger.
func OpenReadOnly(path string) (s *Store, err error) {
	db, err := openReadOnly(path)
	if err != nil {
		return nil, err
	}
	defer func() {
		if p := recover(); p != nil { // bbolt panics on some damaged files
			db.Close()
			s, err = nil, fmt.Errorf("store: %s: unreadable: %v", path, p)
		}
	}()
	s = &Store{db: db, readOnly: true}
	if err := db.View(func(tx *bolt.Tx) error { return s.load(tx, nil) }); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// existing fails unless path is a non-empty regular file (bbolt would
// create or initialise anything else).
func existing(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("store: no ledger at %s", path)
		}
		return fmt.Errorf("store: %v", err)
	}
	if !st.Mode().IsRegular() || st.Size() == 0 {
		return fmt.Errorf("store: %s is not a ledger file", path)
	}
	return nil
}

func openReadOnly(path string) (*bolt.DB, error) {
	if err := existing(path); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: 100 * time.Millisecond})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("store: %s: %w", path, ErrInUse)
		}
		return nil, fmt.Errorf("store: %s: %v", path, err)
	}
	return db, nil
}

// initialise writes a new ledger's genesis, state and tip.
func initialise(tx *bolt.Tx, g *ledger.Genesis) error {
	l, err := ledger.New(*g)
	if err != nil {
		return err
	}
	var bs [4]*bolt.Bucket
	for i, name := range [][]byte{bucketMeta, bucketBlocks, bucketResults, bucketState} {
		if bs[i], err = tx.CreateBucket(name); err != nil {
			return err
		}
	}
	meta, state := bs[0], bs[3]
	if err := meta.Put(keyVersion, []byte{formatVersion}); err != nil {
		return err
	}
	if err := meta.Put(keyGenesis, g.Encode()); err != nil {
		return err
	}
	if err := meta.Put(keyTip, encodeTip(l.Tip())); err != nil {
		return err
	}
	l.ExportState(func(k, v []byte) {
		if err == nil {
			err = state.Put(k, v)
		}
	})
	return err
}

// readMeta returns the stored genesis and tip.
func readMeta(tx *bolt.Tx) (*ledger.Genesis, ledger.Tip, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return nil, ledger.Tip{}, errors.New("no meta bucket")
	}
	if v := meta.Get(keyVersion); !bytes.Equal(v, []byte{formatVersion}) {
		return nil, ledger.Tip{}, fmt.Errorf("store format version %x, want %d", v, formatVersion)
	}
	g, err := ledger.DecodeGenesis(meta.Get(keyGenesis))
	if err != nil {
		return nil, ledger.Tip{}, err
	}
	tip, err := decodeTip(meta.Get(keyTip))
	return g, tip, err
}

// load restores the ledger from tx: genesis, tip and state, checked
// against each other and against the last block.
func (s *Store) load(tx *bolt.Tx, want *ledger.Genesis) error {
	g, tip, err := readMeta(tx)
	if err != nil {
		return fmt.Errorf("store: %v", err)
	}
	if want != nil && want.Hash() != g.Hash() {
		return fmt.Errorf("store: the file holds chain %q with another genesis (%s, given %s)", g.ChainID, g.Hash(), want.Hash())
	}
	blocks, state := tx.Bucket(bucketBlocks), tx.Bucket(bucketState)
	if blocks == nil || state == nil || tx.Bucket(bucketResults) == nil {
		return errors.New("store: missing buckets")
	}
	if k, v := blocks.Cursor().Last(); tip.Height == 0 && k != nil || tip.Height > 0 && !bytes.Equal(k, heightKey(tip.Height)) {
		return fmt.Errorf("store: tip at height %d but the last stored block is %x", tip.Height, k)
	} else if k != nil {
		b, err := ledger.DecodeBlock(v)
		if err != nil || b.Hash() != tip.BlockHash || b.Header.StateRoot != tip.AppHash {
			return fmt.Errorf("store: block %d does not match the stored tip", tip.Height)
		}
	}
	var pairs []ledger.KV
	err = state.ForEach(func(k, v []byte) error {
		pairs = append(pairs, ledger.KV{Key: k, Value: v}) // Restore copies them
		return nil
	})
	if err != nil {
		return err
	}
	l, err := ledger.Restore(*g, tip, pairs)
	if err != nil {
		return fmt.Errorf("store: %v (run 'cairn ledger verify')", err)
	}
	s.l = l
	return nil
}

// Ledger returns the ledger at the stored tip, for queries. Changing it
// other than through the Store or a Chain desynchronises it from the file.
func (s *Store) Ledger() *ledger.Ledger { return s.l }

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Apply checks a block against the tip (ledger.ApplyBlock), persists it
// and commits it: the replica path for a block produced elsewhere. It
// fails with the ledger's *BlockError for a bad block and with a write
// error if persisting failed; either way the ledger stays at the old tip.
func (s *Store) Apply(b *ledger.Block) (*ledger.BlockResult, error) {
	res, err := s.l.ApplyBlock(b)
	if err != nil {
		return nil, err
	}
	if err := s.persist(b, res); err != nil {
		s.l.Discard()
		return nil, err
	}
	_, err = s.l.Commit()
	return res, err
}

// persist writes the pending block, its results, the state pairs it
// changed and the new tip in one transaction.
func (s *Store) persist(b *ledger.Block, res *ledger.BlockResult) error {
	if s.readOnly {
		return errors.New("store: opened read-only")
	}
	tip := ledger.Tip{Height: b.Header.Height, BlockHash: b.Hash(), Time: b.Header.Time, AppHash: res.AppHash}
	err := s.db.Update(func(tx *bolt.Tx) error {
		h := heightKey(b.Header.Height)
		if err := tx.Bucket(bucketBlocks).Put(h, b.Encode()); err != nil {
			return err
		}
		if err := tx.Bucket(bucketResults).Put(h, ledger.EncodeResults(res.Results)); err != nil {
			return err
		}
		return putChanges(tx, res.Changes, tip)
	})
	if err != nil {
		return fmt.Errorf("store: writing block %d: %v", b.Header.Height, err)
	}
	return nil
}

// Block returns the stored block at height h (1..tip), decoded.
func (s *Store) Block(h uint64) (*ledger.Block, []ledger.TxResult, error) {
	var b *ledger.Block
	var rs []ledger.TxResult
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketBlocks).Get(heightKey(h))
		if v == nil {
			return fmt.Errorf("store: no block %d", h)
		}
		var err error
		if b, err = ledger.DecodeBlock(v); err != nil {
			return err
		}
		rs, err = ledger.DecodeResults(tx.Bucket(bucketResults).Get(heightKey(h)))
		if err == nil && len(rs) != len(b.Txs) {
			err = fmt.Errorf("store: block %d has %d transactions and %d results", h, len(b.Txs), len(rs))
		}
		return err
	})
	return b, rs, err
}

// putChanges writes a block's state changes and the new tip.
func putChanges(tx *bolt.Tx, changes []ledger.KV, tip ledger.Tip) error {
	st := tx.Bucket(bucketState)
	for _, kv := range changes {
		if err := st.Put(kv.Key, kv.Value); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketMeta).Put(keyTip, encodeTip(tip))
}
