package main

import (
	"flag"
	"fmt"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/tokenizer"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/experiment"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/watermark"
)

// watermarkFlags are a watermark's key and parameters.
type watermarkFlags struct {
	key            *string
	gamma, delta   *float64
	seeding        *string
	context        *int
	withDelta, req bool
}

// bindWatermarkFlags binds --watermark-key (or --key when detecting),
// --gamma, --seeding, --context and, for sampling, --delta.
func bindWatermarkFlags(fs *flag.FlagSet, sampling bool) *watermarkFlags {
	w := &watermarkFlags{withDelta: sampling, req: !sampling}
	if sampling {
		w.key = fs.String("watermark-key", "", "watermark the text with this secret key (Kirchenbauer et al.: green tokens' logits raised by --delta)")
		w.delta = fs.Float64("delta", watermark.DefaultDelta, "watermark bias added to the green tokens' logits")
	} else {
		w.key = fs.String("key", "", "the watermark's secret key")
	}
	w.gamma = fs.Float64("gamma", watermark.DefaultGamma, "green share of the vocabulary")
	w.seeding = fs.String("seeding", "left-hash", "green-list seeding: left-hash (the --context previous tokens) or self-hash (the min-hash of --context previous tokens and the token itself)")
	w.context = fs.Int("context", 0, "tokens seeding the green list (default: left-hash 2, self-hash 4)")
	return w
}

// check validates the flags before any work (the vocabulary comes later,
// with the model).
func (w *watermarkFlags) check() error {
	_, err := w.scheme(2)
	return err
}

// scheme is the watermark the flags describe, or nil when sampling
// without a key. Bad parameters are bad input.
func (w *watermarkFlags) scheme(vocab int) (*watermark.Scheme, error) {
	if *w.key == "" {
		if w.req {
			return nil, badInput("--key is required")
		}
		return nil, nil
	}
	sd, err := watermark.ParseSeeding(*w.seeding)
	if err != nil {
		return nil, badInput("%v", err)
	}
	delta := watermark.DefaultDelta
	if w.withDelta {
		if *w.delta <= 0 {
			return nil, badInput("--delta must be positive, got %g", *w.delta)
		}
		delta = *w.delta
	}
	s, err := watermark.New([]byte(*w.key), vocab, *w.gamma, delta, sd, *w.context)
	if err != nil {
		return nil, badInput("%v", err)
	}
	return s, nil
}

const watermarkUsage = "usage: cairn watermark detect --key K [--ckpt MODEL] FILE"

// runWatermark detects a watermark in a text file (bytes are tokens).
// Exit 0: watermarked (z >= 4); 1: not; 2: bad input.
func runWatermark(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "detect" {
		return badInput(watermarkUsage)
	}
	fs := newFlags("watermark detect", stderr)
	w := bindWatermarkFlags(fs, false)
	vocab := fs.Int("vocab", 256, "vocabulary size (the byte-level models: 256)")
	ckpt := fs.String("ckpt", "", "the model that wrote the text: score only the tokens where its predictive entropy reaches --min-entropy")
	minH := fs.Float64("min-entropy", 1, "with --ckpt, the entropy (nats) a token's prediction needs to be scored")
	tokf := bindTokenizer(fs)
	if err := parseFlags(fs, args[1:], 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return badInput(watermarkUsage)
	}
	if !(*minH >= 0) || math.IsInf(*minH, 1) {
		return badInput("--min-entropy must be a non-negative number of nats, got %g", *minH)
	}
	if err := w.check(); err != nil {
		return err
	}
	text, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return badInput("%v", err)
	}
	tk, err := tokf.load()
	if err != nil {
		return err
	}
	var entropy []float64
	var m *gpt.Model
	if *ckpt != "" {
		var mt *tokenizer.Tokenizer
		var pool *kernels.Pool
		if m, mt, pool, err = loadModelTok(*ckpt, 0, 0); err != nil {
			return err
		}
		defer pool.Close()
		if tk == nil {
			tk = mt // the model's own tokenizer
		}
		*vocab = m.Config.VocabSize
	}
	// The text as the writer's tokens: bytes, or the tokenizer's ids.
	tokens := corpus.Bytes(text)
	if tk != nil {
		tokens = tk.EncodeIDs(text)
		if *ckpt == "" {
			*vocab = tk.Vocab()
		}
	}
	if m != nil {
		if entropy, err = m.Entropies(tokens); err != nil {
			return badInput("%v", err)
		}
	}
	s, err := w.scheme(*vocab)
	if err != nil {
		return err
	}
	var r watermark.Result
	how := ""
	if entropy == nil {
		r = s.Detect(tokens)
	} else {
		if r, err = s.DetectSelected(tokens, entropy, *minH); err != nil {
			return badInput("%v", err)
		}
		how = fmt.Sprintf(", entropy >= %g nats", *minH)
	}
	verdict := "not watermarked"
	if r.Watermarked {
		verdict = "watermarked"
	}
	fmt.Fprintf(stdout, "z %.2f, p-value %.3g (%d of %d scored tokens green, gamma %g%s): %s (threshold z >= %g)\n",
		r.Z, r.P, r.Green, r.Scored, s.Gamma, how, verdict, watermark.DetectZ)
	if !r.Watermarked {
		return failedCheck{"not watermarked"}
	}
	return nil
}

// runWatermarkExperiment measures a watermark on a checkpoint.
func runWatermarkExperiment(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("experiment watermark", stderr)
	ckpt := fs.String("ckpt", "out/model.safetensors", "model file, or a checkpoint directory")
	data := fs.String("data", "", "text whose last 10% gives the prompts and the human windows (default: the embedded tiny shakespeare)")
	w := bindWatermarkFlags(fs, true)
	temp := fs.Float64("temperature", 1, "sampling temperature (the paper samples at 1)")
	topK := fs.Int("top-k", 0, "sample from the k most likely tokens (0: all)")
	samples := fs.Int("samples", 200, "watermarked generations (each also generated without the watermark)")
	tokens := fs.Int("tokens", 200, "tokens per generation")
	windows := fs.Int("windows", 1000, "windows of human text for false positives")
	seed := fs.Uint64("seed", 1, "seed of prompts, windows and sampling")
	threads := fs.Int("threads", 0, "threads (default: all cores)")
	minH := fs.String("min-entropy", "", "also score with entropy-selective detection at these comma-separated thresholds in nats (e.g. 0.5,1)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	thresholds, err := parseThresholds(*minH)
	if err != nil {
		return err
	}
	if *w.key == "" {
		*w.key = "cairn watermark experiment"
	}
	if *temp <= 0 || *topK < 0 || *samples < 1 || *tokens < 1 || *windows < 1 {
		return badInput("--temperature must be positive; --top-k not negative; --samples, --tokens and --windows at least 1")
	}
	if err := w.check(); err != nil {
		return err
	}
	m, tk, pool, err := loadModelTok(*ckpt, *threads, 0)
	if err != nil {
		return err
	}
	defer pool.Close()
	s, err := w.scheme(m.Config.VocabSize)
	if err != nil {
		return err
	}
	text, err := corpus.Load(*data)
	if err != nil {
		return badInput("%v", err)
	}
	_, held := corpus.Split(text, 0.9)
	// The validation split as the model's tokens: bytes, or its
	// tokenizer's ids.
	val, unit := corpus.Bytes(held), "bytes"
	if tk != nil {
		val, unit = tk.EncodeIDs(held), "tokens"
	}
	fmt.Fprintf(stdout, "watermark: gamma %g, delta %g, %v seeding (context %d); %d generations of %d tokens at temperature %g, top-k %d; %d windows of 200 %s of the validation split\n",
		s.Gamma, s.Delta, s.Seeding, s.Context, *samples, *tokens, *temp, *topK, *windows, unit)
	p := newProgress(stderr, *samples, "generating")
	rep, err := experiment.Watermark(experiment.WatermarkOptions{Model: m, Val: val, Scheme: s, Sampling: gpt.Sampling{Temperature: *temp, TopK: *topK},
		Samples: *samples, Tokens: *tokens, Windows: *windows, Seed: *seed, MinEntropies: thresholds, Progress: func(done, _ int) { p.update(done, "") }})
	p.finish()
	if err != nil {
		return err
	}
	q := func(f float64) float64 { return rep.Z[min(len(rep.Z)-1, int(f*float64(len(rep.Z))))] }
	fmt.Fprintf(stdout, "watermarked generations detected at z >= %g: %d/%d (%.1f%%); z min %.2f, 5th percentile %.2f, median %.2f\n",
		watermark.DetectZ, rep.Detected, rep.Samples, 100*float64(rep.Detected)/float64(rep.Samples), rep.Z[0], q(0.05), q(0.5))
	fmt.Fprintf(stdout, "false positives: %d/%d unwatermarked generations, %d/%d human windows (%.2f%%; highest z %.2f)\n",
		rep.PlainDetected, rep.Samples, rep.HumanFP, rep.Windows, 100*float64(rep.HumanFP)/float64(rep.Windows), rep.HumanZMax)
	fmt.Fprintf(stdout, "perplexity of the generations under the model: %.3f watermarked, %.3f without (+%.1f%%)\n",
		rep.PPLMarked, rep.PPLPlain, 100*(rep.PPLMarked/rep.PPLPlain-1))
	for _, sd := range rep.Selected {
		q := func(f float64) float64 { return sd.Z[min(len(sd.Z)-1, int(f*float64(len(sd.Z))))] }
		fmt.Fprintf(stdout, "entropy >= %g nats (%.0f%% of the tokens scored): detected %d/%d (%.1f%%), z 5th percentile %.2f, median %.2f; false positives %d/%d generations, %d/%d human windows (highest z %.2f)\n",
			sd.MinEntropy, 100*sd.Scored, sd.Detected, rep.Samples, 100*float64(sd.Detected)/float64(rep.Samples), q(0.05), q(0.5),
			sd.PlainDetected, rep.Samples, sd.HumanFP, rep.Windows, sd.HumanZMax)
	}
	return nil
}

// parseThresholds reads comma-separated non-negative entropy thresholds.
func parseThresholds(s string) ([]float64, error) {
	if s == "" {
		return nil, nil
	}
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || !(v >= 0) || math.IsInf(v, 1) {
			return nil, badInput("--min-entropy: %q is not a non-negative number of nats", f)
		}
		out = append(out, v)
	}
	return out, nil
}
