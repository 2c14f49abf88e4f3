package experiment

import (
	"bytes"
	"context"
	"math"
	"testing"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/verify"
)

func TestAdversaries(t *testing.T) {
	cfg := diloco.DefaultConfig()
	cfg.Model = gpt.DefaultConfig(16, 1, 2, 16)
	cfg.Batch, cfg.InnerSteps, cfg.Warmup = 2, 5, 1
	text, err := corpus.Load("")
	if err != nil {
		t.Fatal(err)
	}
	trainData, _ := corpus.Split(text, 0.9)
	pool := kernels.NewPool(1)
	defer pool.Close()
	w, err := diloco.NewWorker("honest", cfg, trainData, pool)
	if err != nil {
		t.Fatal(err)
	}
	theta := diloco.InitialWeights(cfg)
	if err := w.SetWeights(0, theta, diloco.HashWeights(0, theta)); err != nil {
		t.Fatal(err)
	}
	honest, tokens, err := w.Train(context.Background(), cfg.InnerSteps, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := cfg.Model.NumParams()
	decode := func(p []byte) []float32 {
		d := make([]float32, n)
		if err := compress.Decode(p, d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	h := decode(honest)
	board := NewBoard()
	rec := Recorder{Board: board}
	if p, tok := rec.Forge(3, honest, tokens); !bytes.Equal(p, honest) || tok != tokens || rec.Steps(3, 5) != 5 {
		t.Fatal("the recorder is not honest")
	}
	for _, kind := range AdversaryKinds() {
		a, err := NewAdversary(kind, cfg, 7, board)
		if err != nil {
			t.Fatal(err)
		}
		p, claimed := a.Forge(4, honest, tokens)
		if claimed != cfg.TokensPerRound() {
			t.Errorf("%s claims %d tokens, not a whole round's %d", kind, claimed, cfg.TokensPerRound())
		}
		if steps := a.Steps(4, cfg.InnerSteps); steps < 1 || steps > cfg.InnerSteps {
			t.Errorf("%s trains %d steps", kind, steps)
		}
		switch kind {
		case Copier:
			if !bytes.Equal(p, honest) { // the board holds round 3's honest payload
				t.Error("the copier did not copy the previous round")
			}
			if p, _ := a.Forge(9, honest[:0], tokens); len(p) != 0 {
				t.Error("the copier invented a contribution with nothing to copy")
			}
			continue
		case Lazy:
			if !bytes.Equal(p, honest) || a.Steps(0, 50) != 10 {
				t.Error("the lazy worker does not submit its fifth of a round")
			}
			continue
		}
		d := decode(p)
		switch kind {
		case Noise:
			if r := verify.Norm(d) / verify.Norm(h); math.Abs(r-1) > 0.1 || verify.Distance(d, h) < 1 {
				t.Errorf("noise has norm ratio %.3f and distance %.3f to the honest Δ", r, verify.Distance(d, h))
			}
		case Scaled:
			if r := verify.Norm(d) / verify.Norm(h); math.Abs(r-50) > 1 {
				t.Errorf("x50 has norm ratio %.3f", r)
			}
		case Zeros:
			if verify.Norm(d) != 0 {
				t.Error("zeros are not zero")
			}
		case Negated:
			neg := make([]float32, n)
			for i, v := range h {
				neg[i] = -v
			}
			if dist := verify.Distance(d, neg); dist > 0.02 {
				t.Errorf("negated is %.3f from -Δ", dist)
			}
		case Overflow:
			if !(verify.Norm(d) > 1e30) {
				t.Errorf("overflow payload has norm %g", verify.Norm(d))
			}
		}
	}
	if _, err := NewAdversary("sneaky", cfg, 1, board); err == nil {
		t.Error("an unknown adversary kind was accepted")
	}
}
