package main

import (
	"flag"
	"fmt"
	"io"
	"os"

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
	w.seeding = fs.String("seeding", "left-hash", "green-list seeding: left-hash (the previous token) or self-hash (the min-hash of --context previous tokens and the token itself)")
	w.context = fs.Int("context", 0, "tokens seeding the green list (left-hash: 1; self-hash default 4)")
	return w
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

const watermarkUsage = "usage: cairn watermark detect --key K FILE"

// runWatermark detects a watermark in a text file (bytes are tokens).
// Exit 0: watermarked (z >= 4); 1: not; 2: bad input.
func runWatermark(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "detect" {
		return badInput(watermarkUsage)
	}
	fs := newFlags("watermark detect", stderr)
	w := bindWatermarkFlags(fs, false)
	vocab := fs.Int("vocab", 256, "vocabulary size (the byte-level models: 256)")
	if err := parseFlags(fs, args[1:], 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return badInput(watermarkUsage)
	}
	s, err := w.scheme(*vocab)
	if err != nil {
		return err
	}
	text, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return badInput("%v", err)
	}
	tokens := make([]int32, len(text))
	for i, b := range text {
		tokens[i] = int32(b)
	}
	r := s.Detect(tokens)
	verdict := "not watermarked"
	if r.Watermarked {
		verdict = "watermarked"
	}
	fmt.Fprintf(stdout, "z %.2f, p-value %.3g (%d of %d scored tokens green, gamma %g): %s (threshold z >= %g)\n",
		r.Z, r.P, r.Green, r.Scored, s.Gamma, verdict, watermark.DetectZ)
	if !r.Watermarked {
		return failedCheck{"not watermarked"}
	}
	return nil
}
