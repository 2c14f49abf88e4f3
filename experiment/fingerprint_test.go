package experiment

import (
	"testing"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/fingerprint"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/train"
)

func TestFingerprintExperiment(t *testing.T) {
	m := untrainedModel(t, gpt.DefaultConfig(32, 1, 2, 24), 3)
	text := corpus.TinyShakespeare()[:60000]
	tr, val := corpus.Split(text, 0.9)
	to := train.NanoGPTCPU()
	to.Batch = 4
	rep, err := Fingerprint(FingerprintOptions{Model: m, Train: corpus.Bytes(tr), Val: corpus.Bytes(val),
		Embed:     fingerprint.Options{N: 6, KeyLen: 8, Steps: 150, Batch: 8, PerBatch: 6, LR: 3e-3, Alpha: 1, Seed: 1},
		TuneSteps: 100, TuneEvery: 50, Others: 2, OtherSteps: 5, OtherOptions: to})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Embedded.Matched < 5 || len(rep.Survival) != 2 || rep.Survival[1].Steps != 100 || len(rep.Others) != 2 {
		t.Fatalf("%+v", rep)
	}
	for _, r := range rep.Others {
		if r.Ours {
			t.Fatalf("a model of another seed called ours: %+v", r)
		}
	}
	if rep.ValBefore <= 0 || rep.ValAfter <= 0 {
		t.Fatalf("losses %v %v", rep.ValBefore, rep.ValAfter)
	}
}
