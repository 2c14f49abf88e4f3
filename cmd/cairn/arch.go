package main

import (
	"flag"
	"fmt"

	"github.com/cairnlabs/cairn/gpt"
)

// archFlags choose a model's architecture.
type archFlags struct {
	arch                                *string
	kvHeads, hidden                     *int
	experts, shared, topK, expertHidden *int
	latent, nope, rope, vdim            *int
}

func bindArch(fs *flag.FlagSet) archFlags {
	return archFlags{
		arch:         fs.String("arch", "gpt2", "model architecture: gpt2 (the default block) or llama (RMSNorm, rotary embeddings, grouped-query attention, SwiGLU, no biases)"),
		kvHeads:      fs.Int("kv-heads", 0, "with --arch llama: key/value heads for grouped-query attention (default: --heads)"),
		hidden:       fs.Int("hidden", 0, "with --arch llama: the SwiGLU MLP's width (default: 8/3 of the model width, rounded up to a multiple of 8)"),
		experts:      fs.Int("experts", 0, "with --arch llama: routed experts of a mixture of experts in every layer (DeepSeekMoE; 0: a dense MLP)"),
		shared:       fs.Int("shared-experts", 1, "with --experts: shared experts every token goes through"),
		topK:         fs.Int("top-k-experts", 2, "with --experts: routed experts per token"),
		latent:       fs.Int("latent", 0, "with --arch llama: multi-head latent attention (DeepSeek-V2) with keys and values from a latent of this width (0: grouped-query attention); generation caches only the latent and a rotary key"),
		nope:         fs.Int("nope-dim", 0, "with --latent: each head's query/key width without position (default: half the head width)"),
		rope:         fs.Int("rope-dim", 0, "with --latent: the rotary query/key width, one key head shared by all (default: half the head width)"),
		vdim:         fs.Int("v-dim", 0, "with --latent: each head's value width (default: the head width)"),
		expertHidden: fs.Int("expert-hidden", 0, "with --experts: each expert's SwiGLU width (default: --hidden divided by top-k plus shared, so a token's active MLP is as wide as the dense one)"),
	}
}

// apply turns c, the shape the other flags set, into the chosen
// architecture's config.
func (a archFlags) apply(c *gpt.Config) error {
	switch *a.arch {
	case "gpt2", "":
		if *a.kvHeads != 0 || *a.hidden != 0 || *a.experts != 0 || *a.latent != 0 {
			return badInput("--kv-heads, --hidden, --experts and --latent are for --arch llama")
		}
		return nil
	case "llama":
	default:
		return badInput("--arch %q: want gpt2 or llama", *a.arch)
	}
	kv, hidden := *a.kvHeads, *a.hidden
	if kv == 0 {
		kv = c.NHead
	}
	if hidden == 0 {
		hidden = (8*c.NEmbd/3 + 7) / 8 * 8
	}
	l := gpt.LlamaConfig(c.NEmbd, c.NLayer, c.NHead, kv, hidden, c.BlockSize)
	l.VocabSize = c.VocabSize
	if *a.latent > 0 {
		hd := c.NEmbd / max(c.NHead, 1)
		def := func(v, d int) int {
			if v == 0 {
				return d
			}
			return v
		}
		l.KVLoraRank, l.NopeDim, l.RopeDim, l.VDim = *a.latent, def(*a.nope, hd/2), def(*a.rope, hd/2), def(*a.vdim, hd)
	}
	if *a.experts > 0 {
		eh := *a.expertHidden
		if eh == 0 {
			eh = max(8, hidden/(*a.topK+*a.shared))
		}
		l.Experts, l.SharedExperts, l.TopK, l.ExpertHidden, l.RouteScale = *a.experts, *a.shared, *a.topK, eh, 1
	}
	*c = l
	return nil
}

// archName describes c's architecture in a few words.
func archName(c gpt.Config) string {
	if c.Arch == gpt.Llama && c.KVLoraRank > 0 {
		moe := ""
		if c.Experts > 0 {
			moe = fmt.Sprintf(" and %d experts", c.Experts)
		}
		return fmt.Sprintf("llama with latent attention (latent %d, rotary %d, positionless %d, values %d; KV cache %d floats a token)%s",
			c.KVLoraRank, c.RopeDim, c.NopeDim, c.VDim, c.KVCacheFloats(), moe)
	}
	if c.Arch == gpt.Llama && c.Experts > 0 {
		return fmt.Sprintf("llama with a mixture of %d experts (top %d, %d shared, SwiGLU %d each; %d key/value heads)", c.Experts, c.TopK, c.SharedExperts, c.ExpertHidden, c.KVHeads)
	}
	if c.Arch == gpt.Llama {
		return fmt.Sprintf("llama (%d key/value heads, SwiGLU %d)", c.KVHeads, c.Hidden)
	}
	return "gpt2"
}
