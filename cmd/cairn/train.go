package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"time"

	"github.com/cairnlabs/cairn/checkpoint"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/tokenizer"
	"github.com/cairnlabs/cairn/train"
)

// trainFlags binds the hyperparameter flags to o.
func trainFlags(fs *flag.FlagSet, o *train.Options) {
	fs.IntVar(&o.Model.NEmbd, "d", o.Model.NEmbd, "model width")
	fs.IntVar(&o.Model.NLayer, "layers", o.Model.NLayer, "transformer blocks")
	fs.IntVar(&o.Model.NHead, "heads", o.Model.NHead, "attention heads")
	fs.IntVar(&o.Model.BlockSize, "ctx", o.Model.BlockSize, "context length (block size)")
	fs.IntVar(&o.Batch, "batch", o.Batch, "sequences per step")
	fs.IntVar(&o.Steps, "steps", o.Steps, "training steps")
	fs.Float64Var(&o.LR, "lr", o.LR, "peak learning rate")
	fs.Float64Var(&o.MinLR, "min-lr", o.MinLR, "learning rate at the end of the cosine decay")
	fs.IntVar(&o.Warmup, "warmup", o.Warmup, "linear warm-up steps")
	fs.IntVar(&o.DecaySteps, "decay-steps", o.DecaySteps, "step at which the cosine decay ends (default: --steps)")
	fs.Float64Var(&o.Beta1, "beta1", o.Beta1, "AdamW beta1")
	fs.Float64Var(&o.Beta2, "beta2", o.Beta2, "AdamW beta2")
	fs.Float64Var(&o.WeightDecay, "wd", o.WeightDecay, "AdamW weight decay (matrices and embeddings)")
	fs.Float64Var(&o.GradClip, "clip", o.GradClip, "clip gradients to this global norm (0: off)")
	fs.Uint64Var(&o.Seed, "seed", o.Seed, "seed of the initial weights and of batch sampling")
	fs.IntVar(&o.EvalBatches, "eval-batches", o.EvalBatches, "validation batches per evaluation (0: the whole validation split)")
}

func runTrain(args []string, stdout, stderr io.Writer) error {
	o := train.NanoGPTCPU()
	fs := newFlags("train", stderr)
	trainFlags(fs, &o)
	arch := bindArch(fs)
	data := fs.String("data", "", "training text file (default: the embedded tiny shakespeare); first 90% trains, last 10% validates")
	out := fs.String("out", "out", "checkpoint directory")
	resume := fs.Bool("resume", false, "continue the run checkpointed in --out")
	threads := fs.Int("threads", 0, "threads (default: all cores)")
	evalEvery := fs.Int("eval-every", 250, "steps between validation runs and checkpoints")
	tokFile := fs.String("tokenizer", "", "train on the token ids of this BPE tokenizer (a tiktoken rank file, from 'cairn tokenizer train'), carried in the checkpoint; the vocabulary becomes the tokenizer's (default: bytes)")
	tokPattern := fs.String("pattern", string(tokenizer.GPT2), "with --tokenizer: its pre-tokenisation pattern (gpt2 or cl100k)")
	kernel := kernelFlag(fs)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if err := selectKernel(*kernel); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["decay-steps"] {
		o.DecaySteps = o.Steps
	}
	if err := arch.apply(&o.Model); err != nil {
		return err
	}
	if *evalEvery < 1 {
		return badInput("--eval-every must be positive, got %d", *evalEvery)
	}
	if *threads < 0 {
		return badInput("--threads must not be negative, got %d", *threads)
	}
	text, err := corpus.Load(*data)
	if err != nil {
		return badInput("%v", err)
	}
	trainData, valData := corpus.Split(text, 0.9)
	pool := kernels.NewPool(*threads)
	defer pool.Close()
	var tok *tokenizer.Tokenizer
	if *resume && !set["tokenizer"] {
		// The run's own tokenizer, if its checkpoint carries one.
		mpath, _ := checkpoint.Paths(*out)
		if ck, err := checkpoint.LoadModel(mpath); err == nil {
			if tok, err = tokenizer.FromMetadata(ck.Metadata); err != nil {
				return badInput("%s: %v", mpath, err)
			}
		}
	} else if *tokFile != "" {
		if tok, err = loadTokenizer(*tokFile, *tokPattern); err != nil {
			return err
		}
	}
	trainIDs, valIDs := corpus.Bytes(trainData), corpus.Bytes(valData)
	bytesPerToken := 1.0
	if tok != nil {
		start := time.Now()
		trainIDs, valIDs = tok.EncodeIDs(trainData), tok.EncodeIDs(valData)
		bytesPerToken = float64(len(valData)) / float64(max(len(valIDs), 1))
		o.Model.VocabSize = tok.Vocab()
		fmt.Fprintf(stdout, "tokenizer: %d tokens (%s); the data takes %d + %d tokens, %.2f bytes a token (encoded in %s)\n",
			tok.Vocab(), tok.Pattern(), len(trainIDs), len(valIDs), bytesPerToken, time.Since(start).Round(time.Millisecond))
	}

	var t *train.Trainer
	if *resume {
		t, err = resumeRun(*out, trainIDs, valIDs, o, set, pool)
	} else {
		if err = o.Validate(); err != nil {
			return badInput("%v", err)
		}
		t, err = train.NewTokens(o, trainIDs, valIDs, pool)
		if err != nil {
			err = badInput("%v", err)
		}
	}
	if err != nil {
		return err
	}
	if tok != nil {
		t.Meta = tok.Metadata()
	}
	o = t.Opts
	fmt.Fprintf(stdout, "model: %s, %d params (d %d, %d layers, %d heads, ctx %d); batch %d; %d steps from step %d; %d threads, kernel %s\n",
		archName(o.Model), o.Model.NumParams(), o.Model.NEmbd, o.Model.NLayer, o.Model.NHead, o.Model.BlockSize, o.Batch, o.Steps, t.Step, pool.Threads(), kernels.Impl())

	start := time.Now()
	p := newProgress(stderr, o.Steps, "train")
	if p.bar == nil {
		p.out = stdout
	}
	tokens := 0
	var last train.StepResult
	vl, evaluatedAt := 0.0, -1
	for t.Step < o.Steps {
		r, err := t.TrainStep()
		if err != nil {
			return err
		}
		last = r
		tokens += t.TokensPerStep()
		rate := float64(tokens) / time.Since(start).Seconds()
		p.update(t.Step, fmt.Sprintf("loss %.4f lr %.2e tok/s %.0f", r.Loss, r.LR, rate))
		if t.Step%*evalEvery == 0 || t.Step == o.Steps {
			if vl, err = t.Evaluate(); err != nil {
				return err
			}
			evaluatedAt = t.Step
			if err := t.Save(*out); err != nil {
				return err
			}
			p.log("step %d: train loss %.4f, val loss %.4f (%.4f bits a byte), checkpoint %s", t.Step, r.Loss, vl, bitsPerByte(vl, bytesPerToken), *out)
		}
	}
	p.finish()
	wall := time.Since(start)
	if evaluatedAt != t.Step {
		if vl, err = t.Evaluate(); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "done: step %d, train loss %.4f, val loss %.4f (%.4f bits a byte), wall time %s (%.0f tokens/s)\n",
		t.Step, last.Loss, vl, bitsPerByte(vl, bytesPerToken), wall.Round(time.Millisecond), float64(tokens)/wall.Seconds())
	if c := o.Model; c.Experts > 0 {
		// The loads of the last training step (evaluation ran after it: the
		// loads are the last forward pass's, a validation batch's).
		worst := 0.0
		for l := range c.NLayer {
			loads := t.Model.ExpertLoads(l)
			uniform := 0.0
			for _, n := range loads {
				uniform += float64(n)
			}
			uniform /= float64(len(loads))
			for _, n := range loads {
				worst = max(worst, float64(n)/uniform)
			}
		}
		fmt.Fprintf(stdout, "expert loads in the last forward pass: the busiest expert took %.2fx its even share\n", worst)
	}
	return nil
}

// bitsPerByte converts a loss in nats a token to bits a byte of text, for
// a tokenizer whose tokens average bytesPerToken bytes (1: bytes), so that
// models with different tokenizers compare.
func bitsPerByte(natsPerToken, bytesPerToken float64) float64 {
	return natsPerToken / math.Ln2 / bytesPerToken
}

// loadTokenizer reads a tiktoken rank file made with pattern, or a Hugging
// Face tokenizer.json (which names its own pattern).
func loadTokenizer(path, pattern string) (*tokenizer.Tokenizer, error) {
	p, err := patternFlag(pattern)
	if err != nil {
		return nil, err
	}
	tok, err := tokenizer.LoadFile(path, p)
	if err != nil {
		return nil, badInput("--tokenizer %v", err)
	}
	return tok, nil
}

// resumeRun continues the run in dir; flags that change the model's shape
// must agree with the checkpoint, --steps may extend it.
func resumeRun(dir string, trainData, valData []int32, o train.Options, set map[string]bool, pool *kernels.Pool) (*train.Trainer, error) {
	mpath, _ := checkpoint.Paths(dir)
	if _, err := os.Stat(mpath); errors.Is(err, fs.ErrNotExist) {
		return nil, badInput("no checkpoint to resume: %s does not exist", mpath)
	}
	steps := 0
	if set["steps"] {
		steps = o.Steps
	}
	t, err := train.ResumeTokens(dir, trainData, valData, steps, pool)
	if err != nil {
		return nil, badInput("%v", err)
	}
	c := t.Opts.Model
	if set["ctx"] && o.Model.BlockSize > c.BlockSize {
		return nil, badInput("context %d is longer than the checkpoint's block size %d", o.Model.BlockSize, c.BlockSize)
	}
	for name, pair := range map[string][2]int{"d": {o.Model.NEmbd, c.NEmbd}, "layers": {o.Model.NLayer, c.NLayer}, "heads": {o.Model.NHead, c.NHead}, "ctx": {o.Model.BlockSize, c.BlockSize}} {
		if set[name] && pair[0] != pair[1] {
			return nil, badInput("--%s %d differs from the checkpoint's %d", name, pair[0], pair[1])
		}
	}
	return t, nil
}
