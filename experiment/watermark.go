package experiment

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/watermark"
)

// WatermarkOptions configure Watermark.
type WatermarkOptions struct {
	Model    *gpt.Model
	Val      []int32 // human text as the model's tokens: prompts and the false-positive windows
	Scheme   *watermark.Scheme
	Sampling gpt.Sampling
	Samples  int // generations (default 200)
	Tokens   int // tokens per generation (default 200)
	Prompt   int // prompt tokens, from Val (default 32)
	Windows  int // human windows (default 1000)
	Window   int // tokens per window (default 200)
	Seed     uint64
	// MinEntropies, if any, are entropy thresholds (nats) at which the
	// generations and windows are also scored by DetectSelected, with
	// the model's entropies of the scored text alone (no prompt), as a
	// detector holding the model would compute them.
	MinEntropies []float64
	// Progress, if set, is called after each generation pair.
	Progress func(done, total int)
}

// WatermarkReport is what Watermark measured.
type WatermarkReport struct {
	Detected, Samples int       // watermarked generations at z >= 4
	Z                 []float64 // their z-scores, sorted
	// Plain generations (same prompts and seeds, no watermark) detected:
	// false positives on the model's own text.
	PlainDetected int
	// Human windows of the validation split detected (false positives).
	HumanFP, Windows int
	HumanZMax        float64
	// Perplexity of the generations under the model itself (temperature
	// 1, no watermark): the watermark's cost.
	PPLMarked, PPLPlain float64
	// Selected are the same measures under entropy-selective detection,
	// one per MinEntropies threshold.
	Selected []SelectedDetection
}

// SelectedDetection is Watermark's measure at one entropy threshold.
type SelectedDetection struct {
	MinEntropy                       float64
	Detected, PlainDetected, HumanFP int
	Z                                []float64 // watermarked generations', sorted
	HumanZMax                        float64
	// Scored is the share of the tokens plain detection scores that the
	// threshold keeps, over the watermarked generations.
	Scored float64
}

// Watermark measures a watermark on a model: the share of watermarked
// generations detected, false positives on unwatermarked generations and
// on windows of human text, and the perplexity cost of watermarked
// sampling. It fails on a validation text too short for its prompts and
// windows.
func Watermark(o WatermarkOptions) (*WatermarkReport, error) {
	if o.Samples <= 0 {
		o.Samples = 200
	}
	if o.Tokens <= 0 {
		o.Tokens = 200
	}
	if o.Prompt <= 0 {
		o.Prompt = 32
	}
	if o.Windows <= 0 {
		o.Windows = 1000
	}
	if o.Window <= 0 {
		o.Window = 200
	}
	if o.Model == nil || o.Scheme == nil {
		return nil, errors.New("watermark experiment: no model or scheme")
	}
	if o.Prompt < o.Scheme.Context {
		return nil, fmt.Errorf("watermark experiment: prompt of %d tokens, the scheme needs %d of context", o.Prompt, o.Scheme.Context)
	}
	if len(o.Val) < 2*max(o.Prompt, o.Window) {
		return nil, fmt.Errorf("watermark experiment: %d tokens of validation text, too few for prompts of %d and windows of %d", len(o.Val), o.Prompt, o.Window)
	}
	r := rand.New(rand.NewPCG(o.Seed, 0x5741))
	rep := &WatermarkReport{Samples: o.Samples, Windows: o.Windows}
	var nllMarked, nllPlain float64
	var markedAll, plainAll, windows [][]int32
	for i := range o.Samples {
		at := r.IntN(len(o.Val) - o.Prompt)
		prompt := o.Val[at : at+o.Prompt]
		seed := r.Uint64()
		marked, nll, err := generate(o.Model, prompt, o.Tokens, o.Sampling, o.Scheme, seed)
		if err != nil {
			return nil, err
		}
		nllMarked += nll
		marked = marked[len(prompt)-o.Scheme.Context:]
		res := o.Scheme.Detect(marked)
		rep.Z = append(rep.Z, res.Z)
		markedAll = append(markedAll, marked)
		if res.Watermarked {
			rep.Detected++
		}
		plain, nll, err := generate(o.Model, prompt, o.Tokens, o.Sampling, nil, seed)
		if err != nil {
			return nil, err
		}
		nllPlain += nll
		plain = plain[len(prompt)-o.Scheme.Context:]
		if o.Scheme.Detect(plain).Watermarked {
			rep.PlainDetected++
		}
		plainAll = append(plainAll, plain)
		if o.Progress != nil {
			o.Progress(i+1, o.Samples)
		}
	}
	slices.Sort(rep.Z)
	n := float64(o.Samples * o.Tokens)
	rep.PPLMarked, rep.PPLPlain = math.Exp(nllMarked/n), math.Exp(nllPlain/n)
	rep.HumanZMax = math.Inf(-1)
	for range o.Windows {
		at := r.IntN(len(o.Val) - o.Window)
		w := o.Val[at : at+o.Window]
		res := o.Scheme.Detect(w)
		rep.HumanZMax = max(rep.HumanZMax, res.Z)
		if res.Watermarked {
			rep.HumanFP++
		}
		windows = append(windows, w)
	}
	if len(o.MinEntropies) > 0 {
		if err := o.selected(rep, markedAll, plainAll, windows); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// selected scores the texts by DetectSelected at each threshold.
func (o *WatermarkOptions) selected(rep *WatermarkReport, marked, plain, windows [][]int32) error {
	entropies := func(texts [][]int32) ([][]float64, error) {
		var hs [][]float64
		for _, ts := range texts {
			h, err := o.Model.Entropies(ts)
			if err != nil {
				return nil, err
			}
			hs = append(hs, h)
		}
		return hs, nil
	}
	hm, err := entropies(marked)
	if err != nil {
		return err
	}
	hp, err := entropies(plain)
	if err != nil {
		return err
	}
	hw, err := entropies(windows)
	if err != nil {
		return err
	}
	all := 0 // tokens plain detection scores in the watermarked generations
	for _, ts := range marked {
		all += o.Scheme.Detect(ts).Scored
	}
	for _, min := range o.MinEntropies {
		sd := SelectedDetection{MinEntropy: min, HumanZMax: math.Inf(-1)}
		kept := 0
		for i, ts := range marked {
			res, err := o.Scheme.DetectSelected(ts, hm[i], min)
			if err != nil {
				return err
			}
			kept += res.Scored
			sd.Z = append(sd.Z, res.Z)
			if res.Watermarked {
				sd.Detected++
			}
			if res, _ := o.Scheme.DetectSelected(plain[i], hp[i], min); res.Watermarked {
				sd.PlainDetected++
			}
		}
		for i, ts := range windows {
			res, _ := o.Scheme.DetectSelected(ts, hw[i], min)
			sd.HumanZMax = max(sd.HumanZMax, res.Z)
			if res.Watermarked {
				sd.HumanFP++
			}
		}
		slices.Sort(sd.Z)
		sd.Scored = float64(kept) / float64(max(all, 1))
		rep.Selected = append(rep.Selected, sd)
	}
	return nil
}

// generate samples n tokens after prompt (watermarked by s unless nil)
// and returns the whole sequence and the summed negative log-likelihood
// of the new tokens under the model itself (raw logits, temperature 1).
func generate(m *gpt.Model, prompt []int32, n int, smp gpt.Sampling, s *watermark.Scheme, seed uint64) ([]int32, float64, error) {
	g := m.NewGenerator()
	g.HalfBlockRestart = true // 30 times cheaper over 200 tokens; README, Watermarks
	if err := g.Start(prompt); err != nil {
		return nil, 0, err
	}
	r := rand.New(rand.NewPCG(seed, 1))
	ts := slices.Clone(prompt)
	logits := make([]float32, m.Config.VocabSize)
	var nll float64
	for range n {
		raw := g.Logits()
		copy(logits, raw)
		if s != nil {
			s.Bias(ts, logits)
		}
		tok := gpt.Sample(logits, smp, r)
		nll -= gpt.LogProb(raw, int(tok), 1)
		ts = append(ts, tok)
		if err := g.Append(tok); err != nil {
			return nil, 0, err
		}
	}
	return ts, nll, nil
}

// logSumExp is log Σ exp(logits), computed stably.
func logSumExp(logits []float32) float64 {
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = max(mx, float64(v))
	}
	var z float64
	for _, v := range logits {
		z += math.Exp(float64(v) - mx)
	}
	return mx + math.Log(z)
}
