package ledger

import (
	"bytes"
	"math/bits"
)

// Generated samples. A generation job's coordinator (one of the chain's
// authorities) re-verifies every sample its workers return (a solution
// anyone can check cheaply) and records its verdicts in a SamplesTx: a
// verified sample pays its worker the reward (minted); a wrong one slashes
// the worker's stake as a failed verification does (SlashBasisPoints of
// its stake and unbonding entries, burned). A sample's hash is judged
// once: neither paid nor slashed twice.

// SampleEntry is one judged sample.
type SampleEntry struct {
	Hash     Hash   `json:"hash"`
	Worker   PubKey `json:"worker"`
	Verified bool   `json:"verified"`
	Reward   uint64 `json:"reward"` // of a verified sample; 0 for a wrong one
}

// SamplesTx, signed by an authority, records judged samples: entries sorted
// by hash without repeats, none judged before, a wrong one without reward.
type SamplesTx struct {
	Entries []SampleEntry
}

// MaxSampleEntries bounds the samples of one SamplesTx.
const MaxSampleEntries = 4096

// Kind implements Body.
func (*SamplesTx) Kind() Kind { return KindSamples }

func (b *SamplesTx) encode(e *encoder) {
	e.u32(uint32(len(b.Entries)))
	for _, s := range b.Entries {
		e.fixed(s.Hash[:])
		e.fixed(s.Worker[:])
		e.boolean(s.Verified)
		e.u64(s.Reward)
	}
}

const minSampleEntry = 32 + 32 + 1 + 8

func decodeSamples(d *decoder) *SamplesTx {
	s := &SamplesTx{}
	n := d.count("sample entries", MaxSampleEntries, minSampleEntry)
	if n == 0 && d.err == nil {
		d.fail("no sample entries")
	}
	if d.err != nil {
		return s
	}
	s.Entries = make([]SampleEntry, n)
	for i := range s.Entries {
		e := &s.Entries[i]
		d.fixed(e.Hash[:])
		d.fixed(e.Worker[:])
		e.Verified = d.boolean("verified")
		e.Reward = d.u64()
		switch {
		case d.err != nil:
			return s
		case !e.Verified && e.Reward != 0:
			d.fail("a wrong sample with a reward")
			return s
		case i > 0 && bytes.Compare(s.Entries[i-1].Hash[:], e.Hash[:]) >= 0:
			d.fail("sample entries not sorted by hash without repeats")
			return s
		}
	}
	return s
}

// SampleInfo is a judged sample as the ledger keeps it.
type SampleInfo struct {
	Hash     Hash   `json:"hash"`
	Worker   PubKey `json:"worker"`
	Verified bool   `json:"verified"`
	Reward   uint64 `json:"reward"`
	Slashed  uint64 `json:"slashed"`
	Height   uint64 `json:"height"`
}

// prefixSample keys judged samples: "g" + hash.
const prefixSample = 'g'

func sampleKey(h Hash) string { return string(append([]byte{prefixSample}, h[:]...)) }

func (s SampleInfo) encode() []byte {
	e := encoder{}
	e.fixed(s.Worker[:])
	e.boolean(s.Verified)
	e.u64(s.Reward)
	e.u64(s.Slashed)
	e.u64(s.Height)
	return e.b
}

func decodeSampleInfo(h Hash, b []byte) (SampleInfo, error) {
	d := decoder{b: b}
	s := SampleInfo{Hash: h}
	d.fixed(s.Worker[:])
	s.Verified = d.boolean("verified")
	s.Reward, s.Slashed, s.Height = d.u64(), d.u64(), d.u64()
	if d.err == nil && s.Height == 0 {
		d.fail("height 0")
	}
	return s, d.finish("sample info")
}

// samples executes a SamplesTx.
func (x *execution) samples(a *Account, b *SamplesTx) error {
	if !x.g.IsAuthority(a.Key) {
		return reject(CodeUnauthorized, "%s may not record judged samples", a.Key)
	}
	var total uint64
	for _, e := range b.Entries {
		if _, ok := x.st.kv.get(sampleKey(e.Hash)); ok {
			return reject(CodeDuplicateCommit, "sample %s is judged already", e.Hash)
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
		w, err := x.acct(e.Worker)
		if err != nil {
			return err
		}
		info := SampleInfo{Hash: e.Hash, Worker: e.Worker, Verified: e.Verified, Reward: e.Reward, Height: x.height}
		if e.Verified {
			w.Balance += e.Reward // below the supply, which did not overflow
		} else {
			if info.Slashed, err = x.meta.slash(w, x.g.SlashBasisPoints); err != nil {
				return err
			}
		}
		x.st.kv.put(sampleKey(e.Hash), info.encode())
	}
	return nil
}

// Sample returns the judged sample with hash h, and false if the chain has
// none. It fails only on corrupt state.
func (l *Ledger) Sample(h Hash) (SampleInfo, bool, error) {
	b, ok := l.view().kv.get(sampleKey(h))
	if !ok {
		return SampleInfo{}, false, nil
	}
	s, err := decodeSampleInfo(h, b)
	return s, true, err
}
