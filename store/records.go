package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cairnlabs/cairn/records"
	bolt "go.etcd.io/bbolt"
)

// RecordsFileName is a collector's record file in its data directory.
const RecordsFileName = "records.db"

var (
	bucketRecords = []byte("records") // number (u64) → Taken's encoding
	bucketHashes  = []byte("hashes")  // content hash → number
	bucketLedger  = []byte("onchain") // number → empty: recorded on the ledger
)

// Taken is a record a collector took, as stored: its number (from 0, in
// the order taken), the record, the collector's decision and when.
type Taken struct {
	N          uint64
	Record     records.Record
	Reward     uint64
	Similarity float64
	At         time.Time
}

func (t *Taken) encode() []byte {
	b := binary.BigEndian.AppendUint64(nil, t.Reward)
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(t.Similarity))
	b = binary.BigEndian.AppendUint64(b, uint64(t.At.UnixNano()))
	return append(b, t.Record.Marshal()...)
}

func decodeTaken(n uint64, b []byte) (Taken, error) {
	if len(b) < 24 {
		return Taken{}, fmt.Errorf("store: record %d of %d bytes", n, len(b))
	}
	t := Taken{N: n, Reward: binary.BigEndian.Uint64(b), Similarity: math.Float64frombits(binary.BigEndian.Uint64(b[8:])),
		At: time.Unix(0, int64(binary.BigEndian.Uint64(b[16:])))}
	r, err := records.Parse(b[24:])
	if err != nil {
		return Taken{}, fmt.Errorf("store: record %d: %v", n, err)
	}
	t.Record = r
	return t, nil
}

// ErrTaken is Put's error for content the store holds already.
var ErrTaken = errors.New("store: a record with this content is held already")

// RecordStore keeps a collector's records durably (bbolt): each Put is one
// transaction, synced to disk before it returns, holding the record and
// its content hash, so a record acknowledged after Put is never lost and
// a crash never leaves part of one. A second record of the same content is
// refused, so none is stored twice.
type RecordStore struct {
	db *bolt.DB
}

// OpenRecords opens (creating it if needed) the record file at path. It
// fails if another process holds it (after a second) or if it is not a
// record file.
func OpenRecords(path string) (*RecordStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("store: %s: %w", path, ErrInUse)
		}
		return nil, fmt.Errorf("store: %s: %v", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRecords, bucketHashes, bucketLedger} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s is not a record file: %v", path, err)
	}
	return &RecordStore{db: db}, nil
}

// Close closes the file.
func (s *RecordStore) Close() error { return s.db.Close() }

// Put stores a taken record under the next number and returns it. A record
// of content held already is refused with ErrTaken (and the number it
// holds); nothing is written then.
func (s *RecordStore) Put(r records.Record, reward uint64, similarity float64, at time.Time) (uint64, error) {
	h := r.Hash()
	var n uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		hashes := tx.Bucket(bucketHashes)
		if v := hashes.Get(h[:]); v != nil {
			n = binary.BigEndian.Uint64(v)
			return ErrTaken
		}
		recs := tx.Bucket(bucketRecords)
		seq, err := recs.NextSequence()
		if err != nil {
			return err
		}
		n = seq - 1
		t := Taken{N: n, Record: r, Reward: reward, Similarity: similarity, At: at}
		key := binary.BigEndian.AppendUint64(nil, n)
		if err := recs.Put(key, t.encode()); err != nil {
			return err
		}
		return hashes.Put(h[:], key)
	})
	return n, err
}

// Len is the number of records held.
func (s *RecordStore) Len() (n int) {
	s.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(bucketRecords).Stats().KeyN; return nil })
	return n
}

// Each calls f with every record in number order, stopping at f's first
// error (returned) or at a record that does not decode.
func (s *RecordStore) Each(f func(Taken) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("store: a record key of %d bytes", len(k))
			}
			t, err := decodeTaken(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			return f(t)
		})
	})
}

// MarkOnChain notes that records ns are recorded on the ledger.
func (s *RecordStore) MarkOnChain(ns []uint64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLedger)
		for _, n := range ns {
			if err := b.Put(binary.BigEndian.AppendUint64(nil, n), nil); err != nil {
				return err
			}
		}
		return nil
	})
}

// OnChain reports whether record n is noted as recorded on the ledger.
func (s *RecordStore) OnChain(n uint64) (on bool) {
	s.db.View(func(tx *bolt.Tx) error {
		on = tx.Bucket(bucketLedger).Get(binary.BigEndian.AppendUint64(nil, n)) != nil
		return nil
	})
	return on
}
