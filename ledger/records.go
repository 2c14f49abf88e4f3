package ledger

import (
	"bytes"
	"math/bits"
)

// Crowdsourced records. A collector (one of the chain's authorities)
// records every record it takes in a RecordsTx: the record's content hash,
// its contributor and the reward, which the ledger pays the contributor
// (newly minted, counted in the supply). A hash is recorded once: the
// chain refuses a second acceptance of the same content, whatever the
// collector says, so a record is paid once.

// RecordEntry is one accepted record.
type RecordEntry struct {
	Hash        Hash   `json:"hash"`
	Contributor PubKey `json:"contributor"`
	Reward      uint64 `json:"reward"`
}

// RecordsTx, signed by an authority, records accepted records: entries
// sorted by hash without repeats, none recorded before.
type RecordsTx struct {
	Entries []RecordEntry
}

// MaxRecordEntries bounds the records of one RecordsTx.
const MaxRecordEntries = 4096

// Kind implements Body.
func (*RecordsTx) Kind() Kind { return KindRecords }

func (b *RecordsTx) encode(e *encoder) {
	e.u32(uint32(len(b.Entries)))
	for _, r := range b.Entries {
		e.fixed(r.Hash[:])
		e.fixed(r.Contributor[:])
		e.u64(r.Reward)
	}
}

const minRecordEntry = 32 + 32 + 8

func decodeRecords(d *decoder) *RecordsTx {
	r := &RecordsTx{}
	n := d.count("record entries", MaxRecordEntries, minRecordEntry)
	if n == 0 && d.err == nil {
		d.fail("no record entries")
	}
	if d.err != nil {
		return r
	}
	r.Entries = make([]RecordEntry, n)
	for i := range r.Entries {
		e := &r.Entries[i]
		d.fixed(e.Hash[:])
		d.fixed(e.Contributor[:])
		e.Reward = d.u64()
		if d.err == nil && i > 0 && bytes.Compare(r.Entries[i-1].Hash[:], e.Hash[:]) >= 0 {
			d.fail("record entries not sorted by hash without repeats")
			return r
		}
	}
	return r
}

// RecordInfo is an accepted record as the ledger keeps it.
type RecordInfo struct {
	Hash        Hash   `json:"hash"`
	Contributor PubKey `json:"contributor"`
	Reward      uint64 `json:"reward"`
	Height      uint64 `json:"height"` // the block that records it
}

// prefixRecord keys accepted records: "d" + content hash.
const prefixRecord = 'd'

func recordKey(h Hash) string { return string(append([]byte{prefixRecord}, h[:]...)) }

func (r RecordInfo) encode() []byte {
	e := encoder{}
	e.fixed(r.Contributor[:])
	e.u64(r.Reward)
	e.u64(r.Height)
	return e.b
}

func decodeRecordInfo(h Hash, b []byte) (RecordInfo, error) {
	d := decoder{b: b}
	r := RecordInfo{Hash: h}
	d.fixed(r.Contributor[:])
	r.Reward, r.Height = d.u64(), d.u64()
	if d.err == nil && r.Height == 0 {
		d.fail("height 0")
	}
	return r, d.finish("record info")
}

// records executes a RecordsTx.
func (x *execution) records(a *Account, b *RecordsTx) error {
	if !x.g.IsAuthority(a.Key) {
		return reject(CodeUnauthorized, "%s may not record accepted records", a.Key)
	}
	var total uint64
	for _, e := range b.Entries {
		if _, ok := x.st.kv.get(recordKey(e.Hash)); ok {
			return reject(CodeDuplicateCommit, "record %s is already on the chain", e.Hash)
		}
		var c uint64
		if total, c = bits.Add64(total, e.Reward, 0); c != 0 {
			return reject(CodeInvalid, "the rewards overflow")
		}
	}
	if err := x.meta.mint(total); err != nil {
		return err
	}
	for _, e := range b.Entries {
		acct, err := x.acct(e.Contributor)
		if err != nil {
			return err
		}
		acct.Balance += e.Reward // below the supply, which did not overflow
		x.st.kv.put(recordKey(e.Hash), RecordInfo{Hash: e.Hash, Contributor: e.Contributor, Reward: e.Reward, Height: x.height}.encode())
	}
	return nil
}

// Record returns the accepted record with content hash h, and false if
// the chain has none. It fails only on corrupt state.
func (l *Ledger) Record(h Hash) (RecordInfo, bool, error) {
	b, ok := l.view().kv.get(recordKey(h))
	if !ok {
		return RecordInfo{}, false, nil
	}
	r, err := decodeRecordInfo(h, b)
	return r, true, err
}
