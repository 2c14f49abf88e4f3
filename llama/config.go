// Package llama is the Llama block, the architecture of today's open models
// (Llama, Qwen, SmolLM, Mistral): RMSNorm, rotary position embeddings,
// grouped-query attention, a SwiGLU MLP, no biases, optionally tied
// embeddings. Parameters are laid out under Hugging Face's names and in
// PyTorch's [out, in] order, and the config reads and writes config.json's
// keys, so a model of that family in safetensors loads as it is. Forward
// and Backward are paired passes over flat buffers, checked against a
// PyTorch reference (scripts/llama/make_fixture.py): logits, loss, every
// gradient, an AdamW step and greedy tokens.
package llama

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// Config is a Llama model's shape, in config.json's keys.
type Config struct {
	VocabSize     int     `json:"vocab_size"`
	Dim           int     `json:"hidden_size"`
	Hidden        int     `json:"intermediate_size"` // the MLP's width
	Layers        int     `json:"num_hidden_layers"`
	Heads         int     `json:"num_attention_heads"`
	KVHeads       int     `json:"num_key_value_heads"`
	NormEps       float64 `json:"rms_norm_eps"`
	RopeTheta     float64 `json:"rope_theta"`
	BlockSize     int     `json:"max_position_embeddings"`
	TieEmbeddings bool    `json:"tie_word_embeddings"`

	// Mixture of experts (DeepSeekMoE, with DeepSeek-V3's routing), in
	// every layer when Experts > 0: Experts routed experts and
	// SharedExperts shared ones, each a SwiGLU MLP of width ExpertHidden
	// (the shared ones fused into one of SharedExperts·ExpertHidden);
	// each token goes to the TopK experts of highest sigmoid affinity
	// plus balancing bias, weighted by its affinities normalised to sum to
	// RouteScale. Hidden is then unused.
	Experts       int     `json:"n_routed_experts,omitempty"`
	SharedExperts int     `json:"n_shared_experts,omitempty"`
	TopK          int     `json:"num_experts_per_tok,omitempty"`
	ExpertHidden  int     `json:"moe_intermediate_size,omitempty"`
	RouteScale    float64 `json:"routed_scaling_factor,omitempty"`

	// Multi-head latent attention (DeepSeek-V2, without query
	// compression), in every layer when KVLoraRank > 0: each position's
	// keys and values come from one latent of KVLoraRank values
	// (kv_a_proj_with_mqa, an RMSNorm, kv_b_proj); each head's query and
	// key have NopeDim values without position and RopeDim rotary ones,
	// the rotary key one head shared by all; values have VDim per head.
	// KVHeads is then unused, and generation caches only the latent and
	// the rotary key.
	KVLoraRank int `json:"kv_lora_rank,omitempty"`
	QLoraRank  int `json:"q_lora_rank,omitempty"` // must be 0: no query compression
	NopeDim    int `json:"qk_nope_head_dim,omitempty"`
	RopeDim    int `json:"qk_rope_head_dim,omitempty"`
	VDim       int `json:"v_head_dim,omitempty"`
}

// MLA reports whether the layers use multi-head latent attention.
func (c Config) MLA() bool { return c.KVLoraRank > 0 }

// MaxTensors bounds a model's tensors (a config with many layers of many
// tiny experts would otherwise describe a layout far larger than its
// parameters).
const MaxTensors = 1 << 18

// MaxExperts bounds the routed experts of a layer.
const MaxExperts = 1 << 10

// Limits on a config read from a file.
const (
	MaxDim    = 1 << 16
	MaxLayers = 1 << 10
	MaxVocab  = 1 << 21
	MaxParams = 1 << 34
)

// HeadDim is the width of one attention head.
func (c Config) HeadDim() int { return c.Dim / c.Heads }

// Validate reports the first problem with c.
func (c Config) Validate() error {
	switch {
	case c.VocabSize < 1 || c.VocabSize > MaxVocab:
		return fmt.Errorf("llama: vocab_size %d, want 1..%d", c.VocabSize, MaxVocab)
	case c.Dim < 1 || c.Dim > MaxDim || (c.Experts == 0 && c.Hidden < 1) || c.Hidden < 0 || c.Hidden > 16*MaxDim:
		return fmt.Errorf("llama: hidden_size %d and intermediate_size %d, want 1..%d and 1..%d", c.Dim, c.Hidden, MaxDim, 16*MaxDim)
	case c.Layers < 1 || c.Layers > MaxLayers:
		return fmt.Errorf("llama: num_hidden_layers %d, want 1..%d", c.Layers, MaxLayers)
	case c.Heads < 1 || c.Dim%c.Heads != 0:
		return fmt.Errorf("llama: %d attention heads do not divide hidden_size %d", c.Heads, c.Dim)
	case c.HeadDim()%2 != 0:
		return fmt.Errorf("llama: head width %d is odd: rotary embeddings rotate pairs", c.HeadDim())
	case c.KVHeads < 1 || c.Heads%c.KVHeads != 0:
		return fmt.Errorf("llama: %d key/value heads do not divide %d attention heads", c.KVHeads, c.Heads)
	case !(c.NormEps > 0) || c.NormEps > 1:
		return fmt.Errorf("llama: rms_norm_eps %g, want (0, 1]", c.NormEps)
	case !(c.RopeTheta > 1) || math.IsInf(c.RopeTheta, 0):
		return fmt.Errorf("llama: rope_theta %g, want a finite number above 1", c.RopeTheta)
	case c.BlockSize < 1 || c.BlockSize > 1<<20:
		return fmt.Errorf("llama: max_position_embeddings %d, want 1..%d", c.BlockSize, 1<<20)
	case c.Experts < 0 || c.Experts > MaxExperts:
		return fmt.Errorf("llama: n_routed_experts %d, want 0..%d", c.Experts, MaxExperts)
	case c.Experts > 0 && (c.TopK < 1 || c.TopK > c.Experts):
		return fmt.Errorf("llama: num_experts_per_tok %d, want 1..%d (the routed experts)", c.TopK, c.Experts)
	case c.Experts > 0 && (c.ExpertHidden < 1 || c.ExpertHidden > 16*MaxDim || c.SharedExperts < 0 || c.SharedExperts > MaxExperts):
		return fmt.Errorf("llama: moe_intermediate_size %d and n_shared_experts %d, want 1..%d and 0..%d", c.ExpertHidden, c.SharedExperts, 16*MaxDim, MaxExperts)
	case c.Experts > 0 && !(c.RouteScale > 0 && c.RouteScale < 1e6):
		return fmt.Errorf("llama: routed_scaling_factor %g, want a positive number", c.RouteScale)
	case c.KVLoraRank < 0 || c.KVLoraRank > MaxDim:
		return fmt.Errorf("llama: kv_lora_rank %d, want 0..%d", c.KVLoraRank, MaxDim)
	case c.MLA() && c.QLoraRank != 0:
		return fmt.Errorf("llama: q_lora_rank %d: query compression is not supported (want none)", c.QLoraRank)
	case c.MLA() && (c.NopeDim < 0 || c.NopeDim > 4096 || c.RopeDim < 2 || c.RopeDim%2 != 0 || c.RopeDim > 4096 || c.VDim < 1 || c.VDim > 4096):
		return fmt.Errorf("llama: qk_nope_head_dim %d, qk_rope_head_dim %d (even, 2 or more), v_head_dim %d: out of range", c.NopeDim, c.RopeDim, c.VDim)
	}
	if int64(c.Layers)*int64(3*c.Experts+16) > MaxTensors {
		return fmt.Errorf("llama: %d layers of %d experts: more than %d tensors", c.Layers, c.Experts, MaxTensors)
	}
	if n := c.NumParams(); n > MaxParams {
		return fmt.Errorf("llama: %d parameters, limit %d", n, int64(MaxParams))
	}
	return nil
}

// hfConfig is config.json as Hugging Face writes it, for reading.
type hfConfig struct {
	Config
	ModelType     string   `json:"model_type"`
	Architectures []string `json:"architectures"`
	HiddenAct     string   `json:"hidden_act"`
}

// ParseConfig reads a config.json of a Llama-family model. It fails on
// malformed JSON, another architecture or activation, or a config
// Validate refuses. A missing num_key_value_heads means multi-head
// attention, a missing rope_theta 10000.
func ParseConfig(b []byte) (Config, error) {
	var h hfConfig
	if err := json.Unmarshal(b, &h); err != nil {
		return Config{}, fmt.Errorf("llama: config: %v", err)
	}
	if h.ModelType != "" && h.ModelType != "llama" {
		return Config{}, fmt.Errorf("llama: config of a %q model", h.ModelType)
	}
	if h.HiddenAct != "" && h.HiddenAct != "silu" {
		return Config{}, fmt.Errorf("llama: activation %q, only silu (SwiGLU)", h.HiddenAct)
	}
	c := h.Config
	if c.KVHeads == 0 {
		c.KVHeads = c.Heads
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000
	}
	if c.Experts > 0 && c.RouteScale == 0 {
		c.RouteScale = 1
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// JSON is c as config.json.
func (c Config) JSON() string {
	b, _ := json.Marshal(hfConfig{Config: c, ModelType: "llama", Architectures: []string{"LlamaForCausalLM"}, HiddenAct: "silu"})
	return string(b)
}

// Tensor is one named parameter tensor in the flat buffer.
type Tensor struct {
	Name   string
	Shape  []int
	Offset int
}

// Size is the tensor's number of values.
func (t Tensor) Size() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Layout lists the parameters in buffer order under Hugging Face's names.
func (c Config) Layout() []Tensor {
	var ts []Tensor
	off := 0
	add := func(name string, shape ...int) {
		t := Tensor{Name: name, Shape: shape, Offset: off}
		ts = append(ts, t)
		off += t.Size()
	}
	hd := c.HeadDim()
	add("model.embed_tokens.weight", c.VocabSize, c.Dim)
	for l := range c.Layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", c.Dim)
		if c.MLA() {
			add(p+"self_attn.q_proj.weight", c.Heads*(c.NopeDim+c.RopeDim), c.Dim)
			add(p+"self_attn.kv_a_proj_with_mqa.weight", c.KVLoraRank+c.RopeDim, c.Dim)
			add(p+"self_attn.kv_a_layernorm.weight", c.KVLoraRank)
			add(p+"self_attn.kv_b_proj.weight", c.Heads*(c.NopeDim+c.VDim), c.KVLoraRank)
			add(p+"self_attn.o_proj.weight", c.Dim, c.Heads*c.VDim)
		} else {
			add(p+"self_attn.q_proj.weight", c.Heads*hd, c.Dim)
			add(p+"self_attn.k_proj.weight", c.KVHeads*hd, c.Dim)
			add(p+"self_attn.v_proj.weight", c.KVHeads*hd, c.Dim)
			add(p+"self_attn.o_proj.weight", c.Dim, c.Heads*hd)
		}
		add(p+"post_attention_layernorm.weight", c.Dim)
		if c.Experts == 0 {
			add(p+"mlp.gate_proj.weight", c.Hidden, c.Dim)
			add(p+"mlp.up_proj.weight", c.Hidden, c.Dim)
			add(p+"mlp.down_proj.weight", c.Dim, c.Hidden)
			continue
		}
		add(p+"mlp.gate.weight", c.Experts, c.Dim)
		// Not trained by gradient: moved by Model.Balance.
		add(p+"mlp.gate.e_score_correction_bias", c.Experts)
		for e := range c.Experts {
			q := fmt.Sprintf("%smlp.experts.%d.", p, e)
			add(q+"gate_proj.weight", c.ExpertHidden, c.Dim)
			add(q+"up_proj.weight", c.ExpertHidden, c.Dim)
			add(q+"down_proj.weight", c.Dim, c.ExpertHidden)
		}
		if fs := c.ExpertHidden * c.SharedExperts; fs > 0 {
			add(p+"mlp.shared_experts.gate_proj.weight", fs, c.Dim)
			add(p+"mlp.shared_experts.up_proj.weight", fs, c.Dim)
			add(p+"mlp.shared_experts.down_proj.weight", c.Dim, fs)
		}
	}
	add("model.norm.weight", c.Dim)
	if !c.TieEmbeddings {
		add("lm_head.weight", c.VocabSize, c.Dim)
	}
	return ts
}

// NumParams counts the parameters (in int64: a config from a file may be
// large).
func (c Config) NumParams() int64 {
	d, h, hd := int64(c.Dim), int64(c.Hidden), int64(c.Dim/max(c.Heads, 1))
	mlp := 3 * d * h
	if c.Experts > 0 {
		e, fe := int64(c.Experts), int64(c.ExpertHidden)
		mlp = e*d + e + 3*d*fe*(e+int64(c.SharedExperts))
	}
	attn := d*int64(c.Heads)*hd*2 + 2*d*int64(c.KVHeads)*hd
	if c.MLA() {
		H, r, n, p, v := int64(c.Heads), int64(c.KVLoraRank), int64(c.NopeDim), int64(c.RopeDim), int64(c.VDim)
		attn = H*(n+p)*d + (r+p)*d + r + H*(n+v)*r + d*H*v
	}
	per := 2*d + attn + mlp
	n := int64(c.VocabSize)*d + int64(c.Layers)*per + d
	if !c.TieEmbeddings {
		n += int64(c.VocabSize) * d
	}
	return n
}

var errShape = errors.New("llama: batch does not fit the model")
