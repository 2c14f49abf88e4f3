package store

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cairnlabs/cairn/ledger"
	bolt "go.etcd.io/bbolt"
)

// VerifyError is a ledger file that does not replay: the first bad block
// (Height; 0 for the genesis and metadata) and what is wrong with it.
// Damage to the state or the tip is reported at the last block.
type VerifyError struct {
	Height uint64
	Reason string
}

func (e *VerifyError) Error() string {
	if e.Height == 0 {
		return "genesis: " + e.Reason
	}
	return fmt.Sprintf("block %d: %s", e.Height, e.Reason)
}

func bad(h uint64, format string, args ...any) *VerifyError {
	return &VerifyError{Height: h, Reason: fmt.Sprintf(format, args...)}
}

// Report summarises an intact ledger file.
type Report struct {
	ChainID string
	Tip     ledger.Tip
	Txs     int // transactions in all blocks
	Pairs   int // state pairs
}

// Verify replays the ledger file at path from its genesis into a fresh
// ledger: every block's encoding, height, chaining, proposer and its
// signature, transaction root, each transaction's signature and validity,
// results root and state root; the stored results of every block; the
// tip; and finally every stored state pair against the replayed state.
// It returns a *VerifyError naming the first bad block for a damaged or
// tampered file, and another error if the file cannot be read at all (no
// such file, ErrInUse while a node holds it). It never writes.
func Verify(path string) (r Report, err error) {
	db, err := openReadOnly(path)
	if err != nil {
		return Report{}, err
	}
	defer db.Close()
	defer func() {
		if p := recover(); p != nil { // bbolt panics on some damaged files
			r, err = Report{}, bad(0, "unreadable bbolt file: %v", p)
		}
	}()
	err = db.View(func(tx *bolt.Tx) error {
		var err error
		r, err = verifyTx(tx)
		return err
	})
	return r, err
}

// verifyTx is Verify inside a bbolt transaction.
func verifyTx(tx *bolt.Tx) (Report, error) {
	var r Report
	g, tip, err := readMeta(tx)
	if err != nil {
		return r, bad(0, "%v", err)
	}
	n := 0
	tx.Bucket(bucketMeta).ForEach(func(k, v []byte) error { n++; return nil })
	if n != 3 {
		return r, bad(0, "meta bucket holds %d keys, want 3", n)
	}
	blocks, results, state := tx.Bucket(bucketBlocks), tx.Bucket(bucketResults), tx.Bucket(bucketState)
	if blocks == nil || results == nil || state == nil {
		return r, bad(0, "missing buckets")
	}
	l, err := ledger.New(*g)
	if err != nil {
		return r, bad(0, "%v", err)
	}
	r.ChainID = g.ChainID
	rc := results.Cursor()
	rk, rv := rc.First()
	c := blocks.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		h := l.Tip().Height + 1
		if !bytes.Equal(k, heightKey(h)) {
			return r, bad(h, "stored under key %x", k)
		}
		b, err := ledger.DecodeBlock(v)
		if err != nil {
			return r, bad(h, "%v", err)
		}
		res, err := l.ApplyBlock(b)
		if err != nil {
			var be *ledger.BlockError
			if errors.As(err, &be) {
				return r, bad(h, "%s", be.Reason)
			}
			return r, bad(h, "%v", err)
		}
		if !bytes.Equal(rk, k) {
			return r, bad(h, "results stored under key %x", rk)
		}
		if !bytes.Equal(rv, ledger.EncodeResults(res.Results)) {
			return r, bad(h, "stored results differ from the replay")
		}
		if _, err := l.Commit(); err != nil {
			return r, bad(h, "%v", err)
		}
		r.Txs += len(b.Txs)
		rk, rv = rc.Next()
	}
	last := l.Tip().Height
	if rk != nil {
		return r, bad(last, "results stored for a block that does not exist (key %x)", rk)
	}
	if got := l.Tip(); tip != got {
		return r, bad(last, "stored tip (height %d, hash %s, state root %s) differs from the replay (height %d, hash %s, state root %s)",
			tip.Height, tip.BlockHash, tip.AppHash, got.Height, got.BlockHash, got.AppHash)
	}
	// Every stored state pair against the replayed state, both ways.
	var replayed []ledger.KV
	l.ExportState(func(k, v []byte) { replayed = append(replayed, ledger.KV{Key: k, Value: v}) })
	i := 0
	sc := state.Cursor()
	for k, v := sc.First(); k != nil; k, v = sc.Next() {
		if i >= len(replayed) || !bytes.Equal(k, replayed[i].Key) {
			return r, bad(last, "state key %s is not in the replayed state", ledger.DescribeStateKey(k))
		}
		if !bytes.Equal(v, replayed[i].Value) {
			return r, bad(last, "state value of %s differs from the replay", ledger.DescribeStateKey(k))
		}
		i++
	}
	if i != len(replayed) {
		return r, bad(last, "state key %s is missing", ledger.DescribeStateKey(replayed[i].Key))
	}
	r.Tip, r.Pairs = l.Tip(), i
	return r, nil
}

// Verify replays the open chain's file as the package's Verify does, in a
// read transaction beside the writer: the blocks committed when it
// starts, without stopping the node.
func (c *Chain) Verify() (r Report, err error) {
	defer func() {
		if p := recover(); p != nil {
			r, err = Report{}, bad(0, "unreadable bbolt file: %v", p)
		}
	}()
	err = c.s.db.View(func(tx *bolt.Tx) error {
		var err error
		r, err = verifyTx(tx)
		return err
	})
	return r, err
}
