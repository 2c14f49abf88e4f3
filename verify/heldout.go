package verify

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
)

// HeldOutDomain starts the preimage of a worker's held-out stream.
const HeldOutDomain = "cairn/verify/held-out\n"

// HeldOutStream is the data stream of a worker's held-out slice: the
// first 8 bytes, little-endian, of SHA-256(HeldOutDomain ‖ stream as
// uint64 little-endian), where stream is the worker's training stream
// (diloco.Stream of its id). Its batches are drawn from the same data as
// the worker's training batches but by another generator, so they are not
// the windows the worker trained on (except by chance overlap of random
// windows).
func HeldOutStream(stream uint64) uint64 {
	var b [len(HeldOutDomain) + 8]byte
	copy(b[:], HeldOutDomain)
	binary.LittleEndian.PutUint64(b[len(HeldOutDomain):], stream)
	s := sha256.Sum256(b[:])
	return binary.LittleEndian.Uint64(s[:8])
}

// HeldOut measures the loss of a contribution on a held-out slice of its
// worker's data, before and after applying Step times it (about its weight
// in the aggregate: a single worker's full Δ overshoots, and on the demo
// model its held-out gain is negative for honest workers by mid-run, while
// a quarter of it gains; see the package documentation). The slice of a worker's
// round is Batches batches of Batch windows of the model's block size,
// drawn by corpus.Sampler with the run's seed from the data given (the
// run's training text, the worker's assigned data; or its validation
// text) on stream HeldOutStream(stream) at steps round·Batches + b for
// b < Batches: a function of (seed, stream, round) only, so every node
// draws the same slice. A HeldOut is not safe for concurrent use.
type HeldOut struct {
	Batch, Batches int
	Step           float64 // the fraction of Δ applied, 0.25 unless changed

	model           *gpt.Model
	sampler         *corpus.Sampler
	inputs, targets []int32
}

// NewHeldOut prepares held-out scoring for a model of config cfg on data
// with the run's seed. It fails when cfg is invalid, batch or batches is
// not positive, or data is shorter than one window.
func NewHeldOut(cfg gpt.Config, data []byte, batch, batches int, seed uint64, pool *kernels.Pool) (*HeldOut, error) {
	return NewHeldOutTokens(cfg, corpus.Bytes(data), batch, batches, seed, pool)
}

// NewHeldOutTokens is NewHeldOut on token ids (a tokenizer's).
func NewHeldOutTokens(cfg gpt.Config, data []int32, batch, batches int, seed uint64, pool *kernels.Pool) (*HeldOut, error) {
	if batch < 1 || batches < 1 {
		return nil, fmt.Errorf("verify: held-out slice needs a positive batch size and number of batches, got %d and %d", batch, batches)
	}
	m, err := gpt.New(cfg, pool)
	if err != nil {
		return nil, err
	}
	s, err := corpus.NewTokenSampler(data, batch, cfg.BlockSize, seed)
	if err != nil {
		return nil, fmt.Errorf("verify: held-out data: %v", err)
	}
	n := batch * batches * cfg.BlockSize
	return &HeldOut{Batch: batch, Batches: batches, Step: 0.25, model: m, sampler: s,
		inputs: make([]int32, n), targets: make([]int32, n)}, nil
}

// Loss returns the mean loss over the held-out slice of (stream, round) of
// the weights theta (before) and of theta − Step·delta (after, each value
// float32(v − float32(Step·d))). A contribution that makes the model
// produce non-finite values gives an after of +Inf or NaN, not an error.
// The losses are bitwise reproducible on one kernel path (not across
// paths). It fails when theta or delta does not fit the model, round is
// negative, or Step is not positive and finite.
func (h *HeldOut) Loss(theta, delta []float32, stream uint64, round int) (before, after float64, err error) {
	p := h.model.Params
	if round < 0 {
		return 0, 0, fmt.Errorf("verify: round %d is negative", round)
	}
	if !(h.Step > 0) || math.IsInf(h.Step, 0) {
		return 0, 0, fmt.Errorf("verify: held-out step %v is not positive and finite", h.Step)
	}
	if len(theta) != len(p) || len(delta) != len(p) {
		return 0, 0, fmt.Errorf("verify: weights and contribution have %d and %d values, the model %d", len(theta), len(delta), len(p))
	}
	T := h.model.Config.BlockSize
	bt := h.Batch * T
	hs := HeldOutStream(stream)
	for b := 0; b < h.Batches; b++ {
		h.sampler.Batch(hs, uint64(round)*uint64(h.Batches)+uint64(b), h.inputs[b*bt:(b+1)*bt], h.targets[b*bt:(b+1)*bt])
	}
	copy(p, theta)
	if before, err = h.mean(); err != nil {
		return 0, 0, err
	}
	a := float32(h.Step)
	for i, v := range theta {
		p[i] = v - float32(a*delta[i]) // the conversion forbids a fused multiply-add
	}
	if after, err = h.mean(); err != nil {
		return 0, 0, err
	}
	return before, after, nil
}

// mean is the mean loss of the model over the prepared batches.
func (h *HeldOut) mean() (float64, error) {
	T := h.model.Config.BlockSize
	bt := h.Batch * T
	var sum float64
	for b := 0; b < h.Batches; b++ {
		l, err := h.model.Forward(h.inputs[b*bt:(b+1)*bt], h.targets[b*bt:(b+1)*bt], h.Batch, T)
		if err != nil {
			return 0, err
		}
		sum += float64(l)
	}
	return sum / float64(h.Batches), nil
}
