package gpt

import (
	"github.com/cairnlabs/cairn/llama"
)

// Architectures a Config may name (Config.Arch). A model's architecture
// travels in its config, so a checkpoint, a run's configuration and the
// serving code carry it with no change of their own: every *Model runs the
// architecture its config names.
const (
	// GPT2 is this package's own block (the empty Arch).
	GPT2 = ""
	// Llama is the Llama block (package llama): RMSNorm, rotary
	// embeddings, grouped-query attention (KVHeads), a SwiGLU MLP of
	// width Hidden, no biases, optionally tied embeddings; parameters under
	// Hugging Face's names.
	Llama = "llama"
)

// LlamaConfig returns a Llama model of the given shape: kvHeads key/value
// heads, an MLP of width hidden, RMSNorm eps 1e-5, rope theta 10000,
// untied embeddings, a byte-level vocabulary (change VocabSize for a
// tokenizer's).
func LlamaConfig(width, layers, heads, kvHeads, hidden, blockSize int) Config {
	return Config{Arch: Llama, VocabSize: 256, NEmbd: width, NLayer: layers, NHead: heads, KVHeads: kvHeads, Hidden: hidden,
		BlockSize: blockSize, LayerNormEps: 1e-5, RopeTheta: 10000, Activation: "silu"}
}

// llama is c as the llama package's config.
func (c Config) llama() llama.Config {
	return llama.Config{VocabSize: c.VocabSize, Dim: c.NEmbd, Hidden: c.Hidden, Layers: c.NLayer, Heads: c.NHead, KVHeads: c.KVHeads,
		NormEps: c.LayerNormEps, RopeTheta: c.RopeTheta, BlockSize: c.BlockSize, TieEmbeddings: c.TieEmbeddings,
		Experts: c.Experts, SharedExperts: c.SharedExperts, TopK: c.TopK, ExpertHidden: c.ExpertHidden, RouteScale: c.RouteScale,
		KVLoraRank: c.KVLoraRank, NopeDim: c.NopeDim, RopeDim: c.RopeDim, VDim: c.VDim}
}

// FromLlama is the config of a Llama model.
func FromLlama(l llama.Config) Config {
	return Config{Arch: Llama, VocabSize: l.VocabSize, NEmbd: l.Dim, NLayer: l.Layers, NHead: l.Heads, KVHeads: l.KVHeads, Hidden: l.Hidden,
		BlockSize: l.BlockSize, TieEmbeddings: l.TieEmbeddings, LayerNormEps: l.NormEps, RopeTheta: l.RopeTheta, Activation: "silu",
		Experts: l.Experts, SharedExperts: l.SharedExperts, TopK: l.TopK, ExpertHidden: l.ExpertHidden, RouteScale: l.RouteScale,
		KVLoraRank: l.KVLoraRank, NopeDim: l.NopeDim, RopeDim: l.RopeDim, VDim: l.VDim}
}

func llamaLayout(c Config) []TensorInfo {
	var ts []TensorInfo
	for _, t := range c.llama().Layout() {
		ts = append(ts, TensorInfo{Name: t.Name, Shape: t.Shape, Offset: t.Offset})
	}
	return ts
}

// llamaActivations estimates a Llama training step's activation values,
// as ActivationFloats does for the GPT.
func llamaActivations(c Config, batch int) (total, largest uint64) {
	B, T := uint64(max(batch, 0)), uint64(c.BlockSize)
	C, V, NH, L, F := uint64(c.NEmbd), uint64(c.VocabSize), uint64(c.NHead), uint64(c.NLayer), uint64(c.Hidden)
	BT := mulSat(B, T)
	perLayer := addSat(mulSat(BT, 10*C+5*F+2), mulSat(mulSat(B, NH), mulSat(T, T)))
	total = addSat(mulSat(L, perLayer), addSat(mulSat(BT, 2*V+8*C+2*F+2), T))
	largest = max(mulSat(BT, 2*F), mulSat(BT, V), mulSat(mulSat(B, NH), mulSat(T, T)))
	return total, largest
}

// BalanceStep is the bias step of auxiliary-loss-free expert balancing
// (DeepSeek-V3 uses 0.001 at its scale; a small model's few tokens a step
// want a larger one).
const BalanceStep = 0.01

// Balance moves a mixture of experts' balancing biases towards an even
// load after a training step (llama.Model.Balance); any other model is
// unchanged.
func (m *Model) Balance() {
	if m.ll != nil {
		m.ll.Balance(BalanceStep)
	}
}

// ExpertLoads returns the routed experts' loads of layer l in the last
// forward pass (nil for a model without experts).
func (m *Model) ExpertLoads(l int) []int {
	if m.ll == nil {
		return nil
	}
	return m.ll.Loads(l)
}

// KVCacheFloats is what generation caches per token: every layer's keys
// and values, or a Llama's latents with latent attention.
func (c Config) KVCacheFloats() int {
	if c.Arch == Llama {
		return c.llama().KVCacheFloats()
	}
	return c.NLayer * 2 * c.NEmbd
}

// TrainFLOPsPerToken estimates a training step's floating-point
// operations per token: 6 per multiply-add of every weight a token uses
// (forward and backward; a mixture of experts counts its router, shared
// experts and top-k routed experts only) plus 6 per multiply-add of
// causal attention over a full window (half of BlockSize positions on
// average). Norms, activations and the optimizer are left out.
func (c Config) TrainFLOPsPerToken() float64 {
	D, L, V, T := float64(c.NEmbd), float64(c.NLayer), float64(c.VocabSize), float64(c.BlockSize)
	H := float64(c.NHead)
	if c.Arch != Llama {
		return 6*(L*12*D*D+V*D) + 6*L*T*D
	}
	hd := D / H
	attnW := D*H*hd*2 + 2*D*float64(c.KVHeads)*hd // q, o, k, v
	qk, v := hd, hd
	if c.KVLoraRank > 0 {
		r, n, p, dv := float64(c.KVLoraRank), float64(c.NopeDim), float64(c.RopeDim), float64(c.VDim)
		attnW = D*H*(n+p) + D*(r+p) + r*H*(n+dv) + H*dv*D
		qk, v = n+p, dv
	}
	mlp := 3 * D * float64(c.Hidden)
	if c.Experts > 0 {
		mlp = float64(c.Experts)*D + 3*D*float64(c.ExpertHidden)*float64(c.TopK+c.SharedExperts)
	}
	return 6*(L*(attnW+mlp)+V*D) + 6*L*H*(qk+v)*T/2
}
