// Package gpt is the model every other part of Cairn trains, samples and
// serves: by default a GPT-2-style language model (learned token and
// position embeddings, pre-LayerNorm transformer blocks with a fused
// attention projection, exact (erf) GELU, biases everywhere and an untied
// output head), or, when its config names the architecture "llama", the
// Llama block of package llama behind the same Model (arch.go). Forward and backward passes are explicit functions over flat
// float32 buffers; the parameter names and layouts follow nanoGPT and
// PyTorch ([out, in] weights), so weights move between the two unchanged.
//
// The package is numeric only: it knows nothing of files, networks or
// ledgers.
package gpt

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
)

// Config is the shape of a model. Its JSON form is the one nanoGPT-style
// checkpoints carry in their metadata.
type Config struct {
	VocabSize     int     `json:"vocab_size"`
	NEmbd         int     `json:"n_embd"`
	NLayer        int     `json:"n_layer"`
	NHead         int     `json:"n_head"`
	BlockSize     int     `json:"block_size"`
	Bias          bool    `json:"bias"`
	TieEmbeddings bool    `json:"tie_embeddings"`
	LayerNormEps  float64 `json:"layer_norm_eps"` // the RMSNorm eps of a Llama
	Activation    string  `json:"activation"`
	// Arch names the architecture (see arch.go): empty for this
	// package's GPT-2 block, "llama" for the Llama block, which also
	// uses KVHeads, Hidden and RopeTheta.
	Arch      string  `json:"arch,omitempty"`
	KVHeads   int     `json:"n_kv_head,omitempty"`
	Hidden    int     `json:"n_hidden,omitempty"`
	RopeTheta float64 `json:"rope_theta,omitempty"`
	// A Llama's mixture of experts (llama.Config's fields of the same
	// names; none when Experts is 0).
	Experts       int     `json:"n_experts,omitempty"`
	SharedExperts int     `json:"n_shared_experts,omitempty"`
	TopK          int     `json:"top_k,omitempty"`
	ExpertHidden  int     `json:"n_expert_hidden,omitempty"`
	RouteScale    float64 `json:"route_scale,omitempty"`
	// A Llama's multi-head latent attention (llama.Config's fields of the
	// same names; none when KVLoraRank is 0).
	KVLoraRank int `json:"kv_lora_rank,omitempty"`
	NopeDim    int `json:"qk_nope_dim,omitempty"`
	RopeDim    int `json:"qk_rope_dim,omitempty"`
	VDim       int `json:"v_dim,omitempty"`
}

// DefaultConfig returns a byte-level model of the given shape with the
// settings this package implements (biases, untied head, eps 1e-5, exact
// GELU).
func DefaultConfig(width, layers, heads, blockSize int) Config {
	return Config{
		VocabSize: 256, NEmbd: width, NLayer: layers, NHead: heads, BlockSize: blockSize,
		Bias: true, LayerNormEps: 1e-5, Activation: "gelu_erf",
	}
}

// Limits on a model's shape. Configs come from files and from the network,
// so every dimension is bounded before anything is computed from it, and
// the parameter count is computed without overflow: a config that passes
// Validate allocates at most MaxParams float32 values per parameter
// buffer, and its sizes fit an int on every platform.
const (
	MaxVocab     = 1 << 20
	MaxWidth     = 1 << 16
	MaxLayers    = 1 << 12
	MaxBlockSize = 1 << 20
	// MaxParams is the most parameters a model may have: 2^31 − 1, 8 GiB
	// of float32 weights (and four times that to train with AdamW).
	MaxParams = 1<<31 - 1
	// MaxBatch bounds the sequences of one training step.
	MaxBatch = 1 << 16
	// MaxActivationFloats bounds the activations of one training step
	// (64 GiB of float32), and MaxParams every single activation buffer.
	MaxActivationFloats = 1 << 34
)

// Validate reports the first thing wrong with c, in one line.
func (c Config) Validate() error {
	switch c.Arch {
	case GPT2:
	case Llama:
		if c.BlockSize > MaxBlockSize || c.NLayer > MaxLayers || c.NEmbd > MaxWidth || c.VocabSize > MaxVocab {
			return fmt.Errorf("a dimension is past its limit (vocab %d, width %d, layers %d, context %d)", c.VocabSize, c.NEmbd, c.NLayer, c.BlockSize)
		}
		if c.Activation != "silu" {
			return fmt.Errorf("activation %q: a llama model uses silu (SwiGLU)", c.Activation)
		}
		if err := c.llama().Validate(); err != nil {
			return err
		}
		if n := c.ParamCount(); n > MaxParams {
			return fmt.Errorf("model has %d parameters, more than the %d allowed", n, uint64(MaxParams))
		}
		return nil
	default:
		return fmt.Errorf("architecture %q: want %q (GPT-2) or %q", c.Arch, GPT2, Llama)
	}
	switch {
	case c.VocabSize < 1:
		return fmt.Errorf("vocab_size must be positive, got %d", c.VocabSize)
	case c.VocabSize > MaxVocab:
		return fmt.Errorf("vocab_size must be at most %d, got %d", MaxVocab, c.VocabSize)
	case c.NEmbd < 1:
		return fmt.Errorf("width (n_embd) must be positive, got %d", c.NEmbd)
	case c.NEmbd > MaxWidth:
		return fmt.Errorf("width (n_embd) must be at most %d, got %d", MaxWidth, c.NEmbd)
	case c.NLayer < 1:
		return fmt.Errorf("number of layers must be at least 1, got %d", c.NLayer)
	case c.NLayer > MaxLayers:
		return fmt.Errorf("number of layers must be at most %d, got %d", MaxLayers, c.NLayer)
	case c.NHead < 1:
		return fmt.Errorf("number of heads must be at least 1, got %d", c.NHead)
	case c.NEmbd%c.NHead != 0:
		return fmt.Errorf("width %d is not divisible by the number of heads %d", c.NEmbd, c.NHead)
	case c.BlockSize < 1:
		return fmt.Errorf("context length (block_size) must be positive, got %d", c.BlockSize)
	case c.BlockSize > MaxBlockSize:
		return fmt.Errorf("context length (block_size) must be at most %d, got %d", MaxBlockSize, c.BlockSize)
	case !c.Bias:
		return fmt.Errorf("models without biases are not supported")
	case c.TieEmbeddings:
		return fmt.Errorf("tied embeddings are not supported")
	case c.LayerNormEps <= 0:
		return fmt.Errorf("layer_norm_eps must be positive, got %g", c.LayerNormEps)
	case c.Activation != "gelu_erf" && c.Activation != "gelu":
		return fmt.Errorf("activation %q is not supported (want gelu_erf)", c.Activation)
	}
	if n := c.ParamCount(); n > MaxParams {
		return fmt.Errorf("model has %d parameters, more than the %d allowed", n, uint64(MaxParams))
	}
	return nil
}

// ParamCount counts the model's parameters in 64 bits, from the shape
// alone (no layout is built): 2·V·C + T·C + L·(12·C² + 13·C) + 2·C + V.
// It does not overflow for any config within the dimension limits; for
// a valid config it equals NumParams.
func (c Config) ParamCount() uint64 {
	if c.Arch == Llama {
		return uint64(c.llama().NumParams())
	}
	V, C, L, T := uint64(c.VocabSize), uint64(c.NEmbd), uint64(c.NLayer), uint64(c.BlockSize)
	return 2*V*C + T*C + L*(12*C*C+13*C) + 2*C + V
}

// ActivationFloats counts the float32 values of the activations and
// their gradients for a training step of batch sequences of BlockSize
// tokens, in total and in the largest single buffer. It saturates instead
// of overflowing.
func (c Config) ActivationFloats(batch int) (total, largest uint64) {
	if c.Arch == Llama {
		return llamaActivations(c, batch)
	}
	B, T := uint64(max(batch, 0)), uint64(c.BlockSize)
	C, V, NH, L := uint64(c.NEmbd), uint64(c.VocabSize), uint64(c.NHead), uint64(c.NLayer)
	BT := mulSat(B, T)
	perLayer := addSat(mulSat(BT, 16*C+6), mulSat(mulSat(B, NH), mulSat(T, T)))
	total = addSat(mulSat(L, perLayer), addSat(mulSat(BT, 2*V+9*C+3), mulSat(T, T)))
	largest = max(mulSat(BT, 4*C), mulSat(BT, V), mulSat(mulSat(B, NH), mulSat(T, T)))
	return total, largest
}

// ValidateBatch reports, in one line, whether c can train batch sequences
// per step within MaxBatch and the activation limits. c must be valid.
func (c Config) ValidateBatch(batch int) error {
	if batch < 1 || batch > MaxBatch {
		return fmt.Errorf("batch must be in [1, %d], got %d", MaxBatch, batch)
	}
	total, largest := c.ActivationFloats(batch)
	if total > MaxActivationFloats || largest > MaxParams {
		return fmt.Errorf("a batch of %d sequences of %d tokens needs %d activation values (largest buffer %d), more than the %d allowed",
			batch, c.BlockSize, total, largest, uint64(MaxActivationFloats))
	}
	return nil
}

func mulSat(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi != 0 {
		return math.MaxUint64
	}
	return lo
}

func addSat(a, b uint64) uint64 {
	s, carry := bits.Add64(a, b, 0)
	if carry != 0 {
		return math.MaxUint64
	}
	return s
}

// HeadDim is the width of one attention head.
func (c Config) HeadDim() int { return c.NEmbd / c.NHead }

// NumParams counts the model's parameters.
func (c Config) NumParams() int {
	n := 0
	for _, t := range c.Layout() {
		n += t.Size()
	}
	return n
}

// JSON encodes c as the metadata string checkpoints carry.
func (c Config) JSON() string {
	b, _ := json.Marshal(c)
	return string(b)
}

// ParseConfig decodes and validates a config in its JSON form. Fields that
// are absent take the values of DefaultConfig.
func ParseConfig(s string) (Config, error) {
	c := DefaultConfig(0, 0, 0, 0)
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		return Config{}, fmt.Errorf("model config: %v", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("model config: %v", err)
	}
	return c, nil
}
