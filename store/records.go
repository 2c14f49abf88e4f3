package store

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/cairnlabs/cairn/records"
)

// RecordsFileName is a collector's record file in its data directory.
const RecordsFileName = "records.db"

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
var ErrTaken = ErrHeld

// RecordStore keeps a collector's records durably (bbolt): each Put is one
// transaction, synced to disk before it returns, holding the record and
// its content hash, so a record acknowledged after Put is never lost and
// a crash never leaves part of one. A second record of the same content is
// refused, so none is stored twice.
type RecordStore struct{ log *hashLog }

// OpenRecords opens (creating it if needed) the record file at path. It
// fails if another process holds it (after a second) or if it is not a
// record file.
func OpenRecords(path string) (*RecordStore, error) {
	l, err := openHashLog(path, "record")
	if err != nil {
		return nil, err
	}
	return &RecordStore{l}, nil
}

// Close closes the file.
func (s *RecordStore) Close() error { return s.log.close() }

// Put stores a taken record under the next number and returns it. A record
// of content held already is refused with ErrTaken (and the number it
// holds); nothing is written then.
func (s *RecordStore) Put(r records.Record, reward uint64, similarity float64, at time.Time) (uint64, error) {
	return s.log.put(r.Hash(), func(n uint64) []byte {
		t := Taken{N: n, Record: r, Reward: reward, Similarity: similarity, At: at}
		return t.encode()
	})
}

// Each calls f with every record in number order, stopping at f's first
// error (returned) or at a record that does not decode.
func (s *RecordStore) Each(f func(Taken) error) error {
	return s.log.each(func(n uint64, v []byte) error {
		t, err := decodeTaken(n, v)
		if err != nil {
			return err
		}
		return f(t)
	})
}

// MarkOnChain notes that records ns are recorded on the ledger.
func (s *RecordStore) MarkOnChain(ns []uint64) error { return s.log.markOnChain(ns) }

// OnChain reports whether record n is noted as recorded on the ledger.
func (s *RecordStore) OnChain(n uint64) bool { return s.log.onChain(n) }
