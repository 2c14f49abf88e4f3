package gpt

import (
	"fmt"

	"github.com/cairnlabs/cairn/attention"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/llama"
)

// Model holds a model's parameters and gradients as flat buffers laid out as
// Config.Layout(), with the activations of its last forward pass. Forward
// and Backward run on the model's thread pool and allocate nothing once the
// activations for a batch shape exist. Results are bitwise the same for any
// number of threads. A Model is not safe for concurrent use.
type Model struct {
	Config Config
	Params []float32
	Grads  []float32

	w, g views
	pool *kernels.Pool
	acts *activations
	jobs jobs
	prof *Profile // nil unless profiling
	// ll runs a Llama (Config.Arch), sharing Params and Grads.
	ll *llama.Model
}

// New returns a model of config c with zero parameters; fill them with
// InitParams or from a checkpoint. The pool runs its computations.
func New(c Config, pool *kernels.Pool) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Arch == Llama {
		ll, err := llama.New(c.llama(), pool)
		if err != nil {
			return nil, err
		}
		return &Model{Config: c, Params: ll.Params, Grads: ll.Grads, pool: pool, ll: ll}, nil
	}
	n := c.NumParams()
	m := &Model{Config: c, Params: make([]float32, n), Grads: make([]float32, n), pool: pool}
	m.w = makeViews(c, m.Params)
	m.g = makeViews(c, m.Grads)
	m.jobs.init(m)
	return m, nil
}

// Pool is the thread pool the model computes on.
func (m *Model) Pool() *kernels.Pool { return m.pool }

// Clone is a new model with m's configuration, pool and a copy of its
// weights (its gradients and activations start empty). It fails as New does.
func (m *Model) Clone() (*Model, error) {
	c, err := New(m.Config, m.pool)
	if err != nil {
		return nil, err
	}
	copy(c.Params, m.Params)
	return c, nil
}

// ZeroGrad sets all gradients to zero. Backward accumulates into them.
func (m *Model) ZeroGrad() { clear(m.Grads) }

// activations are the buffers of one forward and backward pass for a batch
// of B sequences of T tokens.
type activations struct {
	B, T    int
	encoded []float32 // [B*T, C] input to the first block
	layers  []layerActs
	lnf     []float32 // [B*T, C]
	lnfMean []float32
	lnfRstd []float32
	logits  []float32 // [B*T, V]
	probs   []float32 // [B*T, V] softmax of logits, then its gradient
	losses  []float32 // [B*T]
	targets []int32   // of the last forward, nil without
	counted int       // targets of the last forward that are not IgnoreTarget
	inputs  []int32

	// gradients, shared by all layers
	dres  []float32 // [B*T, C] gradient of the residual stream
	dln   []float32 // [B*T, C]
	datty []float32 // [B*T, C]
	dqkv  []float32 // [B*T, 3C]
	dfch  []float32 // [B*T, 4C]
	// per-thread attention scratch, attention.Scratch(T) each
	scratch [][]float32
	// LayerNorm backward partial sums, [chunks][2C]
	lnPartial []float32
}

type layerActs struct {
	ln1, ln1Mean, ln1Rstd []float32
	qkv                   []float32 // [B*T, 3C]
	atty                  []float32 // [B*T, C]
	res2                  []float32 // [B*T, C] residual after attention
	ln2, ln2Mean, ln2Rstd []float32
	fch                   []float32 // [B*T, 4C] before GELU
	fchGelu               []float32 // [B*T, 4C]
	res3                  []float32 // [B*T, C] block output
}

// lnChunk is the number of rows whose LayerNorm weight gradients are summed
// together before the chunks are added up in order; fixed, so that the
// result does not depend on the thread count.
const lnChunk = 64

func (m *Model) ensureActs(B, T int) *activations {
	if a := m.acts; a != nil && a.B == B && a.T == T {
		return a
	}
	c := m.Config
	C, V, BT := c.NEmbd, c.VocabSize, B*T
	f := func(n int) []float32 { return make([]float32, n) }
	a := &activations{B: B, T: T,
		encoded: f(BT * C), lnf: f(BT * C), lnfMean: f(BT), lnfRstd: f(BT),
		logits: f(BT * V), probs: f(BT * V), losses: f(BT),
		dres: f(BT * C), dln: f(BT * C), datty: f(BT * C), dqkv: f(BT * 3 * C), dfch: f(BT * 4 * C),
		lnPartial: f((BT + lnChunk - 1) / lnChunk * 2 * C),
	}
	for l := 0; l < c.NLayer; l++ {
		a.layers = append(a.layers, layerActs{
			ln1: f(BT * C), ln1Mean: f(BT), ln1Rstd: f(BT), qkv: f(BT * 3 * C),
			atty: f(BT * C), res2: f(BT * C),
			ln2: f(BT * C), ln2Mean: f(BT), ln2Rstd: f(BT),
			fch: f(BT * 4 * C), fchGelu: f(BT * 4 * C), res3: f(BT * C),
		})
	}
	for i := 0; i < m.pool.Threads(); i++ {
		a.scratch = append(a.scratch, f(attention.Scratch(T)))
	}
	m.acts = a
	return a
}

// IgnoreTarget as a target leaves its position out of the loss (PyTorch's
// ignore_index): it adds nothing to the mean nor to the gradient, and the
// mean is over the other positions.
const IgnoreTarget = llama.IgnoreTarget

// checkBatch validates a batch against the model, in one line.
func (m *Model) checkBatch(inputs, targets []int32, B, T int) error {
	c := m.Config
	if B < 1 || T < 1 {
		return fmt.Errorf("batch %d×%d is empty", B, T)
	}
	if T > c.BlockSize {
		return fmt.Errorf("context length %d is longer than the model's block size %d", T, c.BlockSize)
	}
	if len(inputs) != B*T {
		return fmt.Errorf("got %d input tokens for a %d×%d batch", len(inputs), B, T)
	}
	if targets != nil && len(targets) != B*T {
		return fmt.Errorf("got %d targets for a %d×%d batch", len(targets), B, T)
	}
	for _, tok := range inputs {
		if tok < 0 || int(tok) >= c.VocabSize {
			return fmt.Errorf("input token %d outside the vocabulary [0, %d)", tok, c.VocabSize)
		}
	}
	for _, tok := range targets {
		if tok != IgnoreTarget && (tok < 0 || int(tok) >= c.VocabSize) {
			return fmt.Errorf("target token %d outside the vocabulary [0, %d)", tok, c.VocabSize)
		}
	}
	return nil
}

// Logits returns the logits of the last forward pass, [B*T, VocabSize]
// row-major. The slice is overwritten by the next pass.
func (m *Model) Logits() []float32 {
	if m.ll != nil {
		return m.ll.Logits()
	}
	if m.acts == nil {
		return nil
	}
	return m.acts.logits
}
