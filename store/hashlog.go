package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// hashLog is an append-only log of values in a bbolt file, each under the
// next number and unique by a 32-byte hash, each Put one synced
// transaction, with a note of the entries recorded on a chain. The record
// and sample stores are built on it.
type hashLog struct {
	db *bolt.DB
}

var (
	bucketEntries = []byte("records") // number (u64) → value
	bucketHashes  = []byte("hashes")  // hash → number
	bucketLedger  = []byte("onchain") // number → empty: recorded on the chain
)

// ErrHeld is Put's error for a hash the log holds already.
var ErrHeld = errors.New("store: an entry with this hash is held already")

func openHashLog(path, what string) (*hashLog, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("store: %s: %w", path, ErrInUse)
		}
		return nil, fmt.Errorf("store: %s: %v", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketEntries, bucketHashes, bucketLedger} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s is not a %s file: %v", path, what, err)
	}
	return &hashLog{db: db}, nil
}

func (l *hashLog) close() error { return l.db.Close() }

// put appends value under hash, made by value(n) once its number n is
// known, or returns ErrHeld and the number of the entry holding hash.
func (l *hashLog) put(hash [32]byte, value func(n uint64) []byte) (uint64, error) {
	var n uint64
	err := l.db.Update(func(tx *bolt.Tx) error {
		hashes := tx.Bucket(bucketHashes)
		if v := hashes.Get(hash[:]); v != nil {
			n = binary.BigEndian.Uint64(v)
			return ErrHeld
		}
		entries := tx.Bucket(bucketEntries)
		seq, err := entries.NextSequence()
		if err != nil {
			return err
		}
		n = seq - 1
		key := binary.BigEndian.AppendUint64(nil, n)
		if err := entries.Put(key, value(n)); err != nil {
			return err
		}
		return hashes.Put(hash[:], key)
	})
	return n, err
}

func (l *hashLog) each(f func(n uint64, v []byte) error) error {
	return l.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEntries).ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("store: an entry key of %d bytes", len(k))
			}
			return f(binary.BigEndian.Uint64(k), v)
		})
	})
}

func (l *hashLog) markOnChain(ns []uint64) error {
	return l.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLedger)
		for _, n := range ns {
			if err := b.Put(binary.BigEndian.AppendUint64(nil, n), nil); err != nil {
				return err
			}
		}
		return nil
	})
}

func (l *hashLog) onChain(n uint64) (on bool) {
	l.db.View(func(tx *bolt.Tx) error {
		on = tx.Bucket(bucketLedger).Get(binary.BigEndian.AppendUint64(nil, n)) != nil
		return nil
	})
	return on
}
