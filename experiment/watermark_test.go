package experiment

import (
	"testing"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/watermark"
)

// On an untrained model (near-uniform predictions, the easy case) every
// watermarked generation is detected and no human window is; the model's
// perplexity of either text is about the vocabulary (it knows nothing, so
// the watermark costs nothing). Entropy-selective detection at 0 nats is
// plain detection; at 100 nats it scores nothing.
func TestWatermarkExperiment(t *testing.T) {
	m := untrainedModel(t, gpt.DefaultConfig(16, 1, 2, 32), 1)
	s, err := watermark.New([]byte("k"), m.Config.VocabSize, 0, 0, watermark.LeftHash, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, text := corpus.Split(corpus.TinyShakespeare(), 0.9)
	val := corpus.Bytes(text)
	calls := 0
	rep, err := Watermark(WatermarkOptions{Model: m, Val: val, Scheme: s, Sampling: gpt.Sampling{Temperature: 1},
		Samples: 4, Tokens: 100, Windows: 200, Seed: 1, MinEntropies: []float64{0, 100}, Progress: func(done, total int) { calls++ }})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Detected != 4 || rep.PlainDetected != 0 || rep.HumanFP != 0 || calls != 4 {
		t.Fatalf("%+v (progress calls %d)", rep, calls)
	}
	if rep.PPLMarked < 200 || rep.PPLMarked > 300 || rep.PPLPlain < 200 || rep.PPLPlain > 300 || rep.Z[0] < 4 {
		t.Fatalf("perplexity %.3f watermarked vs %.3f, z %v", rep.PPLMarked, rep.PPLPlain, rep.Z)
	}
	if len(rep.Selected) != 2 {
		t.Fatalf("%d selective measures, want 2", len(rep.Selected))
	}
	if a := rep.Selected[0]; a.Detected != 4 || a.Scored != 1 || a.HumanFP != 0 || a.Z[0] != rep.Z[0] {
		t.Fatalf("at 0 nats: %+v, plain z %v", a, rep.Z)
	}
	if b := rep.Selected[1]; b.Detected != 0 || b.Scored != 0 || b.Z[3] != 0 {
		t.Fatalf("at 100 nats: %+v", b)
	}
	if _, err := Watermark(WatermarkOptions{Model: m, Val: val[:100], Scheme: s}); err == nil {
		t.Fatal("too short a validation text accepted")
	}
}
