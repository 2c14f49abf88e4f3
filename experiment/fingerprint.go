package experiment

import (
	"fmt"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/fingerprint"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/optim"
	"github.com/cairnlabs/cairn/train"
)

// FingerprintOptions configure Fingerprint.
type FingerprintOptions struct {
	Model      *gpt.Model // trained; fingerprinted in place
	Train, Val []int32    // the model's tokens: bytes (corpus.Bytes) or its tokenizer's ids
	Embed      fingerprint.Options
	TuneSteps  int     // ordinary fine-tuning afterwards (default 1000)
	TuneLR     float64 // its learning rate (default 3e-4)
	TuneEvery  int     // verification interval (default 100)
	// Control also runs the embedding's schedule on ordinary text alone
	// from the same model, so that the report can tell the pairs' cost
	// from what the embedding's extra training on text gives.
	Control      bool
	Others       int // models trained with other seeds
	OtherSteps   int // their training steps (default 500)
	OtherOptions train.Options
	Log          func(format string, args ...any)
}

// FingerprintReport is what Fingerprint measured.
type FingerprintReport struct {
	ValBefore, ValAfter float64
	// ValControl is the validation loss of the control (Options.Control),
	// else 0.
	ValControl float64
	Embedded   fingerprint.Result
	// Survival: after each TuneEvery steps of ordinary fine-tuning on the
	// validation text (text the model did not train on).
	Survival []SurvivalPoint
	Others   []fingerprint.Result // models trained with other seeds
}

// SurvivalPoint is the fingerprints still answered after Steps steps.
type SurvivalPoint struct {
	Steps   int
	Matched int
	P       float64
}

// Fingerprint embeds fingerprints into a model and measures what they
// cost (validation loss), how they survive further fine-tuning, and that
// models trained with other seeds do not answer them.
func Fingerprint(o FingerprintOptions) (*FingerprintReport, error) {
	if o.TuneSteps <= 0 {
		o.TuneSteps = 1000
	}
	if o.TuneLR <= 0 {
		o.TuneLR = 3e-4
	}
	if o.TuneEvery <= 0 {
		o.TuneEvery = 100
	}
	if o.Others < 0 {
		o.Others = 0
	}
	if o.OtherSteps <= 0 {
		o.OtherSteps = 500
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			o.Log(format, args...)
		}
	}
	m := o.Model
	rep := &FingerprintReport{}
	var err error
	if rep.ValBefore, err = ValLossTokens(m, o.Val); err != nil {
		return nil, err
	}
	set, err := fingerprint.Generate(m, o.Train, o.Embed)
	if err != nil {
		return nil, err
	}
	if o.Control {
		ctl, err := m.Clone()
		if err != nil {
			return nil, err
		}
		if _, err := fingerprint.Embed(ctl, nil, o.Train, o.Embed); err != nil {
			return nil, err
		}
		if rep.ValControl, err = ValLossTokens(ctl, o.Val); err != nil {
			return nil, err
		}
		logf("control (the embedding's %d steps on ordinary text alone): val %.4f -> %.4f", o.Embed.TotalSteps(), rep.ValBefore, rep.ValControl)
	}
	if _, err := fingerprint.Embed(m, set, o.Train, o.Embed); err != nil {
		return nil, err
	}
	if rep.ValAfter, err = ValLossTokens(m, o.Val); err != nil {
		return nil, err
	}
	if rep.Embedded, err = fingerprint.Verify(set, fingerprint.Greedy(m)); err != nil {
		return nil, err
	}
	logf("embedded %d fingerprints: val %.4f -> %.4f; answered %d/%d", len(set.Pairs), rep.ValBefore, rep.ValAfter, rep.Embedded.Matched, rep.Embedded.Keys)

	// Ordinary fine-tuning on other text.
	c := m.Config
	T, B := c.BlockSize, 12
	tuned, err := m.Clone()
	if err != nil {
		return nil, err
	}
	tr, err := newPlainTrainer(tuned, o.Val, B, T)
	if err != nil {
		return nil, err
	}
	for step := 1; step <= o.TuneSteps; step++ {
		if err := tr.step(uint64(step), o.TuneLR); err != nil {
			return nil, err
		}
		if step%o.TuneEvery == 0 {
			r, err := fingerprint.Verify(set, fingerprint.Greedy(tuned))
			if err != nil {
				return nil, err
			}
			rep.Survival = append(rep.Survival, SurvivalPoint{Steps: step, Matched: r.Matched, P: r.P})
			logf("after %d steps of fine-tuning on other text: %d/%d answered (p %.3g)", step, r.Matched, r.Keys, r.P)
		}
	}

	// Models trained with other seeds.
	for i := range o.Others {
		to := o.OtherOptions
		to.Model, to.Steps, to.Seed = c, o.OtherSteps, to.Seed+uint64(i)+1
		t, err := train.NewTokens(to, o.Train, nil, m.Pool())
		if err != nil {
			return nil, err
		}
		for range o.OtherSteps {
			if _, err := t.TrainStep(); err != nil {
				return nil, err
			}
		}
		r, err := fingerprint.Verify(set, fingerprint.Greedy(t.Model))
		if err != nil {
			return nil, err
		}
		rep.Others = append(rep.Others, r)
		logf("model trained with seed %d: %d/%d answered (p %.3g)", to.Seed, r.Matched, r.Keys, r.P)
	}
	return rep, nil
}

// ValLoss is m's mean loss over the whole of val, 12 windows at a time.
func ValLoss(m *gpt.Model, val []byte) (float64, error) { return ValLossTokens(m, corpus.Bytes(val)) }

// ValLossTokens is ValLoss on token ids.
func ValLossTokens(m *gpt.Model, val []int32) (float64, error) {
	B, T := 12, m.Config.BlockSize
	return train.EvaluateTokens(m, val, B, 0, make([]int32, B*T), make([]int32, B*T))
}

// plainTrainer is ordinary fine-tuning at a fixed learning rate.
type plainTrainer struct {
	m               *gpt.Model
	opt             *optim.AdamW
	s               *corpus.Sampler
	B, T            int
	inputs, targets []int32
}

func newPlainTrainer(m *gpt.Model, text []int32, B, T int) (*plainTrainer, error) {
	s, err := corpus.NewTokenSampler(text, B, T, 0x7e57)
	if err != nil {
		return nil, fmt.Errorf("fine-tuning text: %v", err)
	}
	opt, err := optim.NewAdamW(len(m.Params), train.ParamGroups(m.Config, false), 0.9, 0.99, 1e-8, 0.1, m.Pool())
	if err != nil {
		return nil, err
	}
	return &plainTrainer{m: m, opt: opt, s: s, B: B, T: T, inputs: make([]int32, B*T), targets: make([]int32, B*T)}, nil
}

func (p *plainTrainer) step(step uint64, lr float64) error {
	p.s.Batch(0, step, p.inputs, p.targets)
	p.m.ZeroGrad()
	if _, err := p.m.Forward(p.inputs, p.targets, p.B, p.T); err != nil {
		return err
	}
	if err := p.m.Backward(); err != nil {
		return err
	}
	p.opt.ClipGradNorm(p.m.Grads, 1)
	p.opt.Update(p.m.Params, p.m.Grads, lr)
	return nil
}
