package experiment

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/tokenizer"
	"github.com/cairnlabs/cairn/train"
)

// EfficiencyOptions set the architecture comparison.
type EfficiencyOptions struct {
	Text []byte // the corpus: the first 90% trains, the rest validates
	// Tokenizer, if set, gives every model its token ids (else bytes).
	Tokenizer *tokenizer.Tokenizer
	// Steps is the dense GPT's training steps; every other model trains
	// for as many steps as the same training FLOPs buy it.
	Steps   int
	Threads int
	// Variants are the models (default: EfficiencyVariants at the
	// NanoGPTCPU recipe's shape).
	Variants []EfficiencyVariant
	Progress func(name string, step, steps int)
}

// EfficiencyVariant is one model of the comparison.
type EfficiencyVariant struct {
	Name   string
	Config gpt.Config
}

// EfficiencyVariants are the four architectures at one shape: the dense
// GPT, the dense Llama block (SwiGLU 8/3 wide), a mixture of 8 experts
// (top 2 and 1 shared, each a third of the dense width: as many active
// FLOPs) and latent attention (a latent of a quarter of the width, rotary
// and positionless parts half a head each).
func EfficiencyVariants(base gpt.Config) []EfficiencyVariant {
	D, L, H, T := base.NEmbd, base.NLayer, base.NHead, base.BlockSize
	hidden := (8*D/3 + 7) / 8 * 8
	hd := D / H
	dense := gpt.LlamaConfig(D, L, H, H, hidden, T)
	moe := dense
	moe.Experts, moe.SharedExperts, moe.TopK, moe.ExpertHidden, moe.RouteScale = 8, 1, 2, hidden/3, 1
	mla := dense
	mla.KVLoraRank, mla.NopeDim, mla.RopeDim, mla.VDim = D/4, hd/2, hd/2, hd
	return []EfficiencyVariant{
		{"gpt2 dense", base}, {"llama dense", dense}, {"llama + MoE 8 (top 2 + 1 shared)", moe}, {"llama + latent attention", mla},
	}
}

// EfficiencyRow is one model's result.
type EfficiencyRow struct {
	Name          string
	Params        int
	FLOPsPerToken float64
	Steps         int
	Tokens        int // trained on
	ValLoss       float64
	BitsPerByte   float64
	TokensPerSec  float64
	Wall          time.Duration
	KVBytes       int // KV cache per token (float32)
}

// Efficiency trains each variant on the same data stream (seed, batches)
// for the steps that give it the dense GPT's training FLOPs, and measures
// its validation loss (in bits a byte of text, so tokenizers compare),
// throughput, size and KV cache. It fails on a variant that does not
// validate or data too short for the context.
func Efficiency(ctx context.Context, o EfficiencyOptions) ([]EfficiencyRow, error) {
	base := train.NanoGPTCPU()
	if o.Steps <= 0 {
		o.Steps = base.Steps
	}
	if o.Variants == nil {
		o.Variants = EfficiencyVariants(base.Model)
	}
	trainText, valText := corpus.Split(o.Text, 0.9)
	trainIDs, valIDs := corpus.Bytes(trainText), corpus.Bytes(valText)
	bytesPerToken := 1.0
	if o.Tokenizer != nil {
		trainIDs, valIDs = o.Tokenizer.EncodeIDs(trainText), o.Tokenizer.EncodeIDs(valText)
		bytesPerToken = float64(len(valText)) / float64(max(len(valIDs), 1))
	}
	pool := kernels.NewPool(o.Threads)
	defer pool.Close()
	budget := 0.0
	var rows []EfficiencyRow
	for i, v := range o.Variants {
		cfg := v.Config
		if o.Tokenizer != nil {
			cfg.VocabSize = o.Tokenizer.Vocab()
		}
		if err := cfg.Validate(); err != nil {
			return rows, fmt.Errorf("%s: %v", v.Name, err)
		}
		opts := base
		opts.Model = cfg
		perStep := cfg.TrainFLOPsPerToken() * float64(opts.Batch*cfg.BlockSize)
		if i == 0 {
			budget = perStep * float64(o.Steps)
		}
		opts.Steps = max(1, int(math.Round(budget/perStep)))
		opts.DecaySteps = opts.Steps
		t, err := train.NewTokens(opts, trainIDs, valIDs, pool)
		if err != nil {
			return rows, fmt.Errorf("%s: %v", v.Name, err)
		}
		start := time.Now()
		for t.Step < opts.Steps {
			if err := ctx.Err(); err != nil {
				return rows, err
			}
			if _, err := t.TrainStep(); err != nil {
				return rows, fmt.Errorf("%s: %v", v.Name, err)
			}
			if o.Progress != nil {
				o.Progress(v.Name, t.Step, opts.Steps)
			}
		}
		wall := time.Since(start)
		vl, err := t.Evaluate()
		if err != nil {
			return rows, err
		}
		tokens := opts.Steps * opts.Batch * cfg.BlockSize
		rows = append(rows, EfficiencyRow{Name: v.Name, Params: cfg.NumParams(), FLOPsPerToken: cfg.TrainFLOPsPerToken(), Steps: opts.Steps,
			Tokens: tokens, ValLoss: vl, BitsPerByte: vl / math.Ln2 / bytesPerToken, TokensPerSec: float64(tokens) / wall.Seconds(),
			Wall: wall, KVBytes: 4 * cfg.KVCacheFloats()})
	}
	return rows, nil
}
