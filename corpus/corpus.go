// Package corpus provides training text: the embedded tiny-shakespeare
// corpus, train/validation splits and deterministic batch sampling.
package corpus

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
)

//go:embed tinyshakespeare.txt.gz
var tinyShakespeareGz []byte

var tiny = sync.OnceValues(func() ([]byte, error) {
	r, err := gzip.NewReader(bytes.NewReader(tinyShakespeareGz))
	if err != nil {
		return nil, fmt.Errorf("embedded corpus: %v", err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("embedded corpus: %v", err)
	}
	return b, nil
})

// TinyShakespeare returns the embedded tiny-shakespeare corpus (1,115,394
// bytes of Shakespeare's plays, public domain). The slice is shared: do not
// modify it.
func TinyShakespeare() []byte {
	b, err := tiny()
	if err != nil {
		panic(err) // the embedded file is part of the binary
	}
	return b
}

// Load returns the bytes of path, or the embedded corpus when path is "".
// An empty file is an error.
func Load(path string) ([]byte, error) {
	if path == "" {
		return TinyShakespeare(), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("data file %s is empty", path)
	}
	return b, nil
}

// Split divides data into its first frac for training and the rest for
// validation, as nanoGPT does (frac 0.9).
func Split(data []byte, frac float64) (train, val []byte) {
	n := int(float64(len(data)) * frac)
	return data[:n], data[n:]
}

// Bytes returns data as token ids, one per byte (the byte-level models'
// tokens).
func Bytes(data []byte) []int32 {
	ids := make([]int32, len(data))
	for i, b := range data {
		ids[i] = int32(b)
	}
	return ids
}

// Sampler draws batches of B windows of T+1 consecutive tokens: inputs are
// the first T, targets the last T. The windows of a batch are a function of
// (seed, stream, step) only, so anyone can recompute which tokens a step
// trained on; streams separate independent consumers of the same data
// (workers, say).
type Sampler struct {
	ids        []int32
	B, T       int
	seed       uint64
	pcg        rand.PCG
	rng        *rand.Rand
	lastStarts []int
}

// NewSampler returns a sampler over data, one token per byte. It fails
// when data is too short to hold one window of T+1 bytes.
func NewSampler(data []byte, B, T int, seed uint64) (*Sampler, error) {
	if len(data) < T+1 && B >= 1 && T >= 1 {
		return nil, fmt.Errorf("data has %d bytes, shorter than the context of %d plus one", len(data), T)
	}
	return NewTokenSampler(Bytes(data), B, T, seed)
}

// NewTokenSampler returns a sampler over token ids (a tokenizer's). It
// fails when ids are too few to hold one window of T+1 tokens.
func NewTokenSampler(ids []int32, B, T int, seed uint64) (*Sampler, error) {
	if B < 1 || T < 1 {
		return nil, fmt.Errorf("batch size and context must be positive, got %d and %d", B, T)
	}
	if len(ids) < T+1 {
		return nil, fmt.Errorf("data has %d tokens, shorter than the context of %d plus one", len(ids), T)
	}
	s := &Sampler{ids: ids, B: B, T: T, seed: seed, lastStarts: make([]int, B)}
	s.rng = rand.New(&s.pcg)
	return s, nil
}

// Batch fills inputs and targets (each B*T long) with the batch of the
// given stream and step, and returns the start offsets of its windows (a
// slice reused by the next call).
func (s *Sampler) Batch(stream, step uint64, inputs, targets []int32) []int {
	s.pcg.Seed(s.seed^(stream*0x9e3779b97f4a7c15), step)
	n := uint64(len(s.ids) - s.T)
	for b := 0; b < s.B; b++ {
		start := int(s.rng.Uint64N(n))
		s.lastStarts[b] = start
		w := s.ids[start : start+s.T+1]
		copy(inputs[b*s.T:(b+1)*s.T], w[:s.T])
		copy(targets[b*s.T:(b+1)*s.T], w[1:])
	}
	return s.lastStarts
}
