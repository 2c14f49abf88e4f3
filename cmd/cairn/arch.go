package main

import (
	"flag"
	"fmt"

	"github.com/cairnlabs/cairn/gpt"
)

// archFlags choose a model's architecture.
type archFlags struct {
	arch            *string
	kvHeads, hidden *int
}

func bindArch(fs *flag.FlagSet) archFlags {
	return archFlags{
		arch:    fs.String("arch", "gpt2", "model architecture: gpt2 (the default block) or llama (RMSNorm, rotary embeddings, grouped-query attention, SwiGLU, no biases)"),
		kvHeads: fs.Int("kv-heads", 0, "with --arch llama: key/value heads for grouped-query attention (default: --heads)"),
		hidden:  fs.Int("hidden", 0, "with --arch llama: the SwiGLU MLP's width (default: 8/3 of the model width, rounded up to a multiple of 8)"),
	}
}

// apply turns c, the shape the other flags set, into the chosen
// architecture's config.
func (a archFlags) apply(c *gpt.Config) error {
	switch *a.arch {
	case "gpt2", "":
		if *a.kvHeads != 0 || *a.hidden != 0 {
			return badInput("--kv-heads and --hidden are for --arch llama")
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
	*c = l
	return nil
}

// archName describes c's architecture in a few words.
func archName(c gpt.Config) string {
	if c.Arch == gpt.Llama {
		return fmt.Sprintf("llama (%d key/value heads, SwiGLU %d)", c.KVHeads, c.Hidden)
	}
	return "gpt2"
}
