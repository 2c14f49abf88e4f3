package experiment

import (
	"testing"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/watermark"
)

// On an untrained model (near-uniform predictions, the easy case) every
// watermarked generation is detected, no human window is, and the
// watermark raises the model's perplexity of its own text.
func TestWatermarkExperiment(t *testing.T) {
	m := untrainedModel(t, gpt.DefaultConfig(16, 1, 2, 32), 1)
	s, err := watermark.New([]byte("k"), m.Config.VocabSize, 0, 0, watermark.LeftHash, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, val := corpus.Split(corpus.TinyShakespeare(), 0.9)
	calls := 0
	rep, err := Watermark(WatermarkOptions{Model: m, Val: val, Scheme: s, Sampling: gpt.Sampling{Temperature: 1},
		Samples: 4, Tokens: 100, Windows: 200, Seed: 1, Progress: func(done, total int) { calls++ }})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Detected != 4 || rep.PlainDetected != 0 || rep.HumanFP != 0 || calls != 4 {
		t.Fatalf("%+v (progress calls %d)", rep, calls)
	}
	if !(rep.PPLMarked > rep.PPLPlain) || rep.Z[0] < 4 {
		t.Fatalf("perplexity %.3f watermarked vs %.3f, z %v", rep.PPLMarked, rep.PPLPlain, rep.Z)
	}
	if _, err := Watermark(WatermarkOptions{Model: m, Val: val[:100], Scheme: s}); err == nil {
		t.Fatal("too short a validation text accepted")
	}
}
