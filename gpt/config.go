// Package gpt is a GPT-2-style byte-level language model: learned token and
// position embeddings, pre-LayerNorm transformer blocks with a fused
// attention projection, exact (erf) GELU, biases everywhere and an untied
// output head. Forward and backward passes are explicit functions over flat
// float32 buffers; the parameter names and layouts follow nanoGPT and
// PyTorch ([out, in] weights), so weights move between the two unchanged.
//
// The package is numeric only: it knows nothing of files, networks or
// ledgers.
package gpt

import (
	"encoding/json"
	"fmt"
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
	LayerNormEps  float64 `json:"layer_norm_eps"`
	Activation    string  `json:"activation"`
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

// Validate reports the first thing wrong with c, in one line.
func (c Config) Validate() error {
	switch {
	case c.VocabSize < 1:
		return fmt.Errorf("vocab_size must be positive, got %d", c.VocabSize)
	case c.NEmbd < 1:
		return fmt.Errorf("width (n_embd) must be positive, got %d", c.NEmbd)
	case c.NLayer < 1:
		return fmt.Errorf("number of layers must be at least 1, got %d", c.NLayer)
	case c.NHead < 1:
		return fmt.Errorf("number of heads must be at least 1, got %d", c.NHead)
	case c.NEmbd%c.NHead != 0:
		return fmt.Errorf("width %d is not divisible by the number of heads %d", c.NEmbd, c.NHead)
	case c.BlockSize < 1:
		return fmt.Errorf("context length (block_size) must be positive, got %d", c.BlockSize)
	case !c.Bias:
		return fmt.Errorf("models without biases are not supported")
	case c.TieEmbeddings:
		return fmt.Errorf("tied embeddings are not supported")
	case c.LayerNormEps <= 0:
		return fmt.Errorf("layer_norm_eps must be positive, got %g", c.LayerNormEps)
	case c.Activation != "gelu_erf" && c.Activation != "gelu":
		return fmt.Errorf("activation %q is not supported (want gelu_erf)", c.Activation)
	}
	if n := c.NumParams(); n > 1<<34 {
		return fmt.Errorf("model has %d parameters, too many", n)
	}
	return nil
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
