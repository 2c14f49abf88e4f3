package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/cairnlabs/cairn/checkpoint"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/llama"
	"github.com/cairnlabs/cairn/tokenizer"
)

func runSample(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sample", stderr)
	ckpt := fs.String("ckpt", "out/model.safetensors", "model file, or a checkpoint directory")
	prompt := fs.String("prompt", "\n", "text to continue")
	n := fs.Int("tokens", 300, "tokens to generate")
	temp := fs.Float64("temperature", 0.8, "sampling temperature (0: greedy)")
	topK := fs.Int("top-k", 40, "sample from the k most likely tokens (0: all)")
	ctx := fs.Int("ctx", 0, "context window in tokens (default: the model's block size)")
	seed := fs.Uint64("seed", 1, "random seed")
	threads := fs.Int("threads", 0, "threads (default: all cores)")
	wm := bindWatermarkFlags(fs, true)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	switch {
	case *n < 0:
		return badInput("--tokens must not be negative, got %d", *n)
	case *temp < 0:
		return badInput("--temperature must not be negative, got %g", *temp)
	case *topK < 0:
		return badInput("--top-k must not be negative, got %d", *topK)
	case *prompt == "":
		return badInput("--prompt is empty")
	}
	if *ctx < 0 {
		return badInput("--ctx must not be negative, got %d", *ctx)
	}
	if err := wm.check(); err != nil {
		return err
	}
	m, tk, pool, err := loadModelTok(*ckpt, *threads, *ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	cfg := m.Config
	scheme, err := wm.scheme(cfg.VocabSize)
	if err != nil {
		return err
	}
	tokens := corpus.Bytes([]byte(*prompt))
	if tk != nil {
		tokens = tk.EncodeIDs([]byte(*prompt))
	}
	g := m.NewGenerator()
	if err := g.Start(tokens); err != nil {
		return badInput("%v", err)
	}
	r := rand.New(rand.NewPCG(*seed, 0))
	s := gpt.Sampling{Temperature: *temp, TopK: *topK}
	fmt.Fprint(stdout, *prompt)
	logits := make([]float32, cfg.VocabSize)
	for i := 0; i < *n; i++ {
		copy(logits, g.Logits())
		if scheme != nil {
			scheme.Bias(tokens, logits)
		}
		tok := gpt.Sample(logits, s, r)
		tokens = append(tokens, tok)
		if tk != nil {
			b, _ := tk.Token(int(tok)) // below the vocabulary: checked on load
			stdout.Write(b)
		} else {
			fmt.Fprint(stdout, string([]byte{byte(tok)}))
		}
		if err := g.Append(tok); err != nil {
			return err
		}
	}
	fmt.Fprintln(stdout)
	return nil
}

// copyPrefix loads the checkpoint into m, whose position table may be
// shorter than the checkpoint's.
func copyPrefix(m *gpt.Model, ck *checkpoint.Model) {
	src := ck.Config.Layout()
	for i, t := range m.Config.Layout() {
		s := src[i]
		copy(m.Params[t.Offset:t.Offset+t.Size()], ck.Params[s.Offset:s.Offset+t.Size()])
	}
}

// loadModel loads a byte-level model file (or a checkpoint directory's)
// on a pool of threads (0: all cores); the caller closes the pool. Errors
// are bad input, a model on BPE token ids among them.
func loadModel(path string, threads int) (*gpt.Model, *kernels.Pool, error) {
	return loadModelCtx(path, threads, 0)
}

// loadModelCtx is loadModel with the context window cut to ctx tokens (0:
// the checkpoint's block size).
func loadModelCtx(path string, threads, ctx int) (*gpt.Model, *kernels.Pool, error) {
	m, tok, pool, err := loadModelTok(path, threads, ctx)
	if err == nil && tok != nil {
		// The commands that load models this way (the privacy and
		// serving experiments, generation jobs) read text as bytes: they
		// would feed a BPE model the wrong ids.
		pool.Close()
		return nil, nil, badInput("%s is a model on BPE token ids (%d tokens): this command works on byte-level models only so far ('sample' and 'serve' take it)", path, tok.Vocab())
	}
	return m, pool, err
}

// loadModelTok is loadModelCtx that also returns the model's tokenizer
// (nil for a byte-level model).
func loadModelTok(path string, threads, ctx int) (*gpt.Model, *tokenizer.Tokenizer, *kernels.Pool, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		if _, err := os.Stat(filepath.Join(path, llama.ConfigFile)); err == nil {
			return loadHFModel(path, threads, ctx)
		}
		path = filepath.Join(path, checkpoint.ModelFile)
	}
	ck, err := checkpoint.LoadModel(path)
	if err != nil {
		return nil, nil, nil, badInput("%v", err)
	}
	cfg := ck.Config
	if ctx > cfg.BlockSize {
		return nil, nil, nil, badInput("context %d is longer than the checkpoint's block size %d", ctx, cfg.BlockSize)
	}
	if ctx > 0 {
		cfg.BlockSize = ctx // a shorter window uses the first ctx positions
	}
	pool := kernels.NewPool(threads)
	m, err := gpt.New(cfg, pool)
	if err != nil {
		pool.Close()
		return nil, nil, nil, badInput("%v", err)
	}
	copyPrefix(m, ck)
	tok, err := tokenizer.FromMetadata(ck.Metadata)
	if err != nil {
		pool.Close()
		return nil, nil, nil, badInput("%s: %v", path, err)
	}
	if tok != nil && tok.Vocab() != cfg.VocabSize {
		pool.Close()
		return nil, nil, nil, badInput("%s: its tokenizer has %d tokens, the model a vocabulary of %d", path, tok.Vocab(), cfg.VocabSize)
	}
	return m, tok, pool, nil
}

// loadHFModel loads a model directory in the Hugging Face layout
// (config.json, model.safetensors; see llama.Load) with its tokenizer: the
// one in the weights' metadata when Cairn wrote them, else the directory's
// tokenizer.json (LoadHF), else none (token ids are bytes). The tokenizer
// must have exactly the model's vocabulary.
func loadHFModel(dir string, threads, ctx int) (*gpt.Model, *tokenizer.Tokenizer, *kernels.Pool, error) {
	ck, err := llama.Load(dir)
	if err != nil {
		return nil, nil, nil, badInput("%v", err)
	}
	cfg := gpt.FromLlama(ck.Config)
	if ctx > cfg.BlockSize {
		return nil, nil, nil, badInput("context %d is longer than the model's %d positions", ctx, cfg.BlockSize)
	}
	if ctx > 0 {
		cfg.BlockSize = ctx
	}
	tok, err := tokenizer.FromMetadata(ck.Metadata)
	if err != nil {
		return nil, nil, nil, badInput("%s: %v", dir, err)
	}
	if tj := filepath.Join(dir, "tokenizer.json"); tok == nil {
		if _, err := os.Stat(tj); err == nil {
			if tok, err = tokenizer.LoadFile(tj, tokenizer.GPT2); err != nil {
				return nil, nil, nil, badInput("%v", err)
			}
		}
	}
	if tok != nil && tok.Vocab() != cfg.VocabSize {
		return nil, nil, nil, badInput("%s: its tokenizer has %d tokens, the model a vocabulary of %d", dir, tok.Vocab(), cfg.VocabSize)
	}
	pool := kernels.NewPool(threads)
	m, err := gpt.New(cfg, pool)
	if err != nil {
		pool.Close()
		return nil, nil, nil, badInput("%v", err)
	}
	if len(m.Params) != len(ck.Params) {
		pool.Close()
		return nil, nil, nil, badInput("%s: %d parameters for a model of %d", dir, len(ck.Params), len(m.Params))
	}
	copy(m.Params, ck.Params)
	return m, tok, pool, nil
}
