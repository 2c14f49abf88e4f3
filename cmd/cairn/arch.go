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
}

func bindArch(fs *flag.FlagSet) archFlags {
	return archFlags{
		arch:         fs.String("arch", "gpt2", "model architecture: gpt2 (the default block) or llama (RMSNorm, rotary embeddings, grouped-query attention, SwiGLU, no biases)"),
		kvHeads:      fs.Int("kv-heads", 0, "with --arch llama: key/value heads for grouped-query attention (default: --heads)"),
		hidden:       fs.Int("hidden", 0, "with --arch llama: the SwiGLU MLP's width (default: 8/3 of the model width, rounded up to a multiple of 8)"),
		experts:      fs.Int("experts", 0, "with --arch llama: routed experts of a mixture of experts in every layer (DeepSeekMoE; 0: a dense MLP)"),
		shared:       fs.Int("shared-experts", 1, "with --experts: shared experts every token goes through"),
		topK:         fs.Int("top-k-experts", 2, "with --experts: routed experts per token"),
		expertHidden: fs.Int("expert-hidden", 0, "with --experts: each expert's SwiGLU width (default: --hidden divided by top-k plus shared, so a token's active MLP is as wide as the dense one)"),
	}
}

// apply turns c, the shape the other flags set, into the chosen
// architecture's config.
func (a archFlags) apply(c *gpt.Config) error {
	switch *a.arch {
	case "gpt2", "":
		if *a.kvHeads != 0 || *a.hidden != 0 || *a.experts != 0 {
			return badInput("--kv-heads, --hidden and --experts are for --arch llama")
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
	if c.Arch == gpt.Llama && c.Experts > 0 {
		return fmt.Sprintf("llama with a mixture of %d experts (top %d, %d shared, SwiGLU %d each; %d key/value heads)", c.Experts, c.TopK, c.SharedExperts, c.ExpertHidden, c.KVHeads)
	}
	if c.Arch == gpt.Llama {
		return fmt.Sprintf("llama (%d key/value heads, SwiGLU %d)", c.KVHeads, c.Hidden)
	}
	return "gpt2"
}
