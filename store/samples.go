package store

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"
)

// SamplesFileName is a generation job's sample file in its data directory.
const SamplesFileName = "samples.db"

// Sample is a generated sample a job took: a problem's prompt, a worker's
// solution, the worker's key and when. A verified sample belongs to the
// job's dataset; a wrong one (Wrong) is kept only so that its verdict, and
// the worker's slashing, survive a restart of the job before they reach
// the chain.
type Sample struct {
	N        uint64
	Prompt   string
	Solution string
	Worker   [32]byte
	At       time.Time
	Wrong    bool
}

// wrongBit marks a wrong sample in the prompt's length (prompts are far
// shorter than 2^31 bytes; files from before wrong samples were kept have
// it clear).
const wrongBit = 1 << 31

// SampleHash names a worker's solution to a prompt: SHA-256 over a
// domain, the worker's key, the prompt and the solution.
func SampleHash(worker [32]byte, prompt, solution string) [32]byte {
	h := sha256.New()
	h.Write([]byte("cairn sample v1\n"))
	h.Write(worker[:])
	h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(prompt))))
	h.Write([]byte(prompt))
	h.Write([]byte(solution))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// Hash is the sample's SampleHash.
func (s *Sample) Hash() [32]byte { return SampleHash(s.Worker, s.Prompt, s.Solution) }

func (s *Sample) encode() []byte {
	b := append([]byte(nil), s.Worker[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(s.At.UnixNano()))
	l := uint32(len(s.Prompt))
	if s.Wrong {
		l |= wrongBit
	}
	b = binary.BigEndian.AppendUint32(b, l)
	b = append(b, s.Prompt...)
	return append(b, s.Solution...)
}

func decodeSample(n uint64, b []byte) (Sample, error) {
	if len(b) < 44 {
		return Sample{}, fmt.Errorf("store: sample %d of %d bytes", n, len(b))
	}
	s := Sample{N: n, At: time.Unix(0, int64(binary.BigEndian.Uint64(b[32:])))}
	copy(s.Worker[:], b)
	l := binary.BigEndian.Uint32(b[40:])
	s.Wrong, l = l&wrongBit != 0, l&^wrongBit
	if uint64(l) > uint64(len(b)-44) {
		return Sample{}, fmt.Errorf("store: sample %d: a prompt of %d bytes in %d", n, l, len(b)-44)
	}
	s.Prompt, s.Solution = string(b[44:44+l]), string(b[44+l:])
	return s, nil
}

// SampleStore keeps a generation job's verified samples durably, as
// RecordStore keeps records: one synced transaction a sample, unique by
// hash.
type SampleStore struct{ log *hashLog }

// OpenSamples opens (creating it if needed) the sample file at path.
func OpenSamples(path string) (*SampleStore, error) {
	l, err := openHashLog(path, "sample")
	if err != nil {
		return nil, err
	}
	return &SampleStore{l}, nil
}

// Close closes the file.
func (s *SampleStore) Close() error { return s.log.close() }

// Put stores a sample under the next number and returns it; a sample held
// already is ErrHeld.
func (s *SampleStore) Put(x Sample) (uint64, error) {
	return s.log.put(x.Hash(), func(n uint64) []byte { x.N = n; return x.encode() })
}

// Each calls f with every sample in number order, wrong ones included.
func (s *SampleStore) Each(f func(Sample) error) error {
	return s.log.each(func(n uint64, v []byte) error {
		x, err := decodeSample(n, v)
		if err != nil {
			return err
		}
		return f(x)
	})
}

// MarkOnChain notes that samples ns are recorded on the chain.
func (s *SampleStore) MarkOnChain(ns []uint64) error { return s.log.markOnChain(ns) }

// OnChain reports whether sample n is noted as recorded on the chain.
func (s *SampleStore) OnChain(n uint64) bool { return s.log.onChain(n) }
