package experiment

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/dp"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/secagg"
	"github.com/cairnlabs/cairn/verify"
)

// PrivacyOptions configure Privacy.
type PrivacyOptions struct {
	Base     *gpt.Model // the trained model the contributors fine-tune
	Text     []byte     // the corpus: its validation split scores, the rest is split among contributors
	Contribs int        // contributors (default 8), each holding private text
	Rounds   int        // rounds (default 10)
	Inner    int        // inner AdamW steps a round (default 50)
	LR       float64    // inner learning rate (default 3e-4)
	Repeats  int        // copies of the canary in contributor 1's text (default 20)
	Clip     float64    // L2 bound on each contribution with DP (default: the median norm of the first round's contributions without DP)
	Epsilons []float64  // DP arms: total ε at Delta (default 8)
	Delta    float64    // default 1e-5
	Seed     uint64
	Log      func(format string, args ...any)
	Pool     *kernels.Pool
}

// PrivacyArm is one run of the experiment.
type PrivacyArm struct {
	Name            string
	Epsilon         float64 // spent (0: no DP)
	Noise           float64 // noise multiplier z
	Clip            float64
	ValLoss         float64
	CanaryExposure  float64 // bits, of the planted canary
	ControlExposure float64 // bits, mean over Controls canaries of the same form never planted
}

// Controls is how many unplanted canaries the control exposure averages
// over (one alone is noisy: a model that learned which digits follow the
// prefix ranks any string of those digits high).
const Controls = 100

// PrivacyReport is what Privacy measured.
type PrivacyReport struct {
	Canary      string
	Controls    []string
	BaseLoss    float64
	BaseCanary  float64 // exposures in the base model
	BaseControl float64
	Arms        []PrivacyArm
}

// canaryPrefix is what precedes a canary's digits.
const canaryPrefix = "\nmy PIN is "

// Privacy is the memorisation audit of issue 15 (Carlini et al.'s Secret
// Sharer): contributors fine-tune Base on private text in rounds, their
// updates summed by secure aggregation (secagg) and averaged; one
// contributor's text holds a random canary ("my PIN is NNNNNN") Repeats
// times. Without DP, and with DP at each ε (every contribution clipped to
// Clip, Gaussian noise of standard deviation z·Clip added to the sum, z the
// smallest noise multiplier the Rényi accountant allows for Rounds rounds
// at ε), it reports the validation loss and the exposure of the canary and
// of control canaries that were never planted.
func Privacy(o PrivacyOptions) (*PrivacyReport, error) {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Contribs, 8)
	def(&o.Rounds, 10)
	def(&o.Inner, 50)
	def(&o.Repeats, 20)
	if o.LR <= 0 {
		o.LR = 3e-4
	}
	if o.Delta <= 0 {
		o.Delta = 1e-5
	}
	if o.Epsilons == nil {
		o.Epsilons = []float64{8}
	}
	if o.Contribs < 3 {
		return nil, errors.New("experiment: privacy needs at least 3 contributors")
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			o.Log(format, args...)
		}
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x9417))
	secret := rng.IntN(1000000)
	rep := &PrivacyReport{Canary: fmt.Sprintf("%06d", secret)}
	var controls []int
	for len(controls) < Controls {
		if c := rng.IntN(1000000); c != secret && !slices.Contains(controls, c) {
			controls = append(controls, c)
			rep.Controls = append(rep.Controls, fmt.Sprintf("%06d", c))
		}
	}
	trainText, val := corpus.Split(o.Text, 0.9)
	shards, err := privateShards(trainText, o.Contribs, canaryPrefix[1:]+rep.Canary+"\n", o.Repeats, rng)
	if err != nil {
		return nil, err
	}
	measure := func(m *gpt.Model) (loss, canary, ctl float64, err error) {
		if loss, err = ValLoss(m, val); err != nil {
			return
		}
		scores, err := DigitScores(m, []byte(canaryPrefix))
		if err != nil {
			return
		}
		for _, c := range controls {
			ctl += Exposure(scores, c) / float64(len(controls))
		}
		return loss, Exposure(scores, secret), ctl, nil
	}
	if rep.BaseLoss, rep.BaseCanary, rep.BaseControl, err = measure(o.Base); err != nil {
		return nil, err
	}
	logf("base model: val %.4f; exposure of the canary %s %.1f bits, of %d controls %.1f bits on average (of %.1f)", rep.BaseLoss, rep.Canary, rep.BaseCanary, Controls, rep.BaseControl, math.Log2(1e6))

	arms := []float64{0}
	arms = append(arms, o.Epsilons...)
	clip := o.Clip
	for _, eps := range arms {
		arm := PrivacyArm{Name: "no DP", Epsilon: 0}
		var z float64
		if eps > 0 {
			if z, err = dp.NoiseFor(eps, o.Delta, 1, o.Rounds); err != nil {
				return nil, err
			}
			arm.Name, arm.Epsilon, arm.Noise, arm.Clip = fmt.Sprintf("DP ε %g", eps), eps, z, clip
		}
		m, firstNorm, err := privateRounds(o, shards, z, clip, logf)
		if err != nil {
			return nil, err
		}
		if clip <= 0 {
			clip = firstNorm // the DP arms clip at the no-DP arm's median first-round norm
		}
		if arm.ValLoss, arm.CanaryExposure, arm.ControlExposure, err = measure(m); err != nil {
			return nil, err
		}
		logf("%s: val %.4f; exposure of the canary %.1f bits, of the controls %.1f bits", arm.Name, arm.ValLoss, arm.CanaryExposure, arm.ControlExposure)
		rep.Arms = append(rep.Arms, arm)
	}
	return rep, nil
}

// privateShards splits text among n contributors at line boundaries and
// inserts the canary line repeats times into the first one's, at random
// line starts.
func privateShards(text []byte, n int, canary string, repeats int, rng *rand.Rand) ([][]byte, error) {
	size := len(text) / n
	if size < 4096 {
		return nil, fmt.Errorf("experiment: %d bytes of text for %d contributors", len(text), n)
	}
	shards := make([][]byte, n)
	for i := range shards {
		shards[i] = text[i*size : (i+1)*size]
	}
	var lines []int
	for i, c := range shards[0] {
		if c == '\n' {
			lines = append(lines, i+1)
		}
	}
	if len(lines) < repeats {
		return nil, errors.New("experiment: too few lines for the canaries")
	}
	at := map[int]bool{}
	for len(at) < repeats {
		at[lines[rng.IntN(len(lines))]] = true
	}
	var out []byte
	for i, c := range shards[0] {
		if at[i] {
			out = append(out, canary...)
		}
		out = append(out, c)
	}
	shards[0] = out
	return shards, nil
}

// privateRounds runs the rounds from the base model and returns the final
// model and the median norm of the first round's contributions. With
// z > 0 each contribution is clipped to clip and noise z·clip is added to
// the securely aggregated sum.
func privateRounds(o PrivacyOptions, shards [][]byte, z, clip float64, logf func(string, ...any)) (*gpt.Model, float64, error) {
	c := o.Base.Config
	n := len(shards)
	global, err := gpt.New(c, o.Pool)
	if err != nil {
		return nil, 0, err
	}
	copy(global.Params, o.Base.Params)
	workers := make([]*plainTrainer, n)
	for k := range workers {
		m, err := gpt.New(c, o.Pool)
		if err != nil {
			return nil, 0, err
		}
		if workers[k], err = newPlainTrainer(m, corpus.Bytes(shards[k]), 12, c.BlockSize); err != nil {
			return nil, 0, err
		}
	}
	dim := len(global.Params)
	parties := make([]uint64, n)
	for k := range parties {
		parties[k] = uint64(k + 1)
	}
	deltas := make([][]float32, n)
	for k := range deltas {
		deltas[k] = make([]float32, dim)
	}
	var firstMedian float64
	for r := 1; r <= o.Rounds; r++ {
		norms := make([]float64, n)
		bound := 0.0
		for k, w := range workers {
			copy(w.m.Params, global.Params)
			for s := range o.Inner {
				if err := w.step(uint64(r*o.Inner+s), o.LR); err != nil {
					return nil, 0, err
				}
			}
			d := deltas[k]
			for i := range d {
				d[i] = global.Params[i] - w.m.Params[i]
			}
			if z > 0 {
				if norms[k], err = dp.Clip(d, clip); err != nil {
					return nil, 0, err
				}
				bound = clip // no value of a clipped contribution exceeds it
			} else {
				norms[k] = verify.Norm(d)
				for _, v := range d {
					bound = max(bound, math.Abs(float64(v)))
				}
			}
		}
		if r == 1 {
			firstMedian = median(norms)
		}
		// The sum, through secure aggregation at 32 bits.
		bound = math.Max(bound, 1e-12)
		sum, err := secureSum(deltas, parties, bound, uint64(r)^o.Seed<<20)
		if err != nil {
			return nil, 0, err
		}
		if z > 0 {
			seed := sha256.Sum256(fmt.Appendf(nil, "privacy noise %d %d", o.Seed, r))
			if err := dp.AddNoise(sum, z*clip, seed); err != nil {
				return nil, 0, err
			}
		}
		for i := range global.Params {
			global.Params[i] -= sum[i] / float32(n)
		}
		logf("round %d/%d: contribution norms median %.3f", r, o.Rounds, median(norms))
	}
	return global, firstMedian, nil
}

func median(x []float64) float64 {
	s := slices.Clone(x)
	slices.Sort(s)
	return s[len(s)/2]
}

// secureSum adds the contributions by running secagg among them (no
// dropouts), each value in 32-bit fixed point at a scale that holds
// values up to bound.
func secureSum(deltas [][]float32, parties []uint64, bound float64, round uint64) ([]float32, error) {
	n, dim := len(deltas), len(deltas[0])
	cfg := secagg.Config{Session: sha256.Sum256(fmt.Appendf(nil, "privacy round %d", round)), Parties: parties, Threshold: n/2 + 1, Dim: dim, Bits: 32}
	scale, err := secagg.ScaleFor(n, bound, 32)
	if err != nil {
		return nil, err
	}
	srv, err := secagg.NewServer(cfg)
	if err != nil {
		return nil, err
	}
	clients := make([]*secagg.Client, n)
	for k, id := range parties {
		var k2 secagg.Keys
		if clients[k], k2, err = secagg.NewClient(cfg, id, sha256.Sum256(fmt.Appendf(nil, "privacy client %d %d", round, id))); err != nil {
			return nil, err
		}
		if err := srv.AddKeys(k2); err != nil {
			return nil, err
		}
	}
	keys, err := srv.Keys()
	if err != nil {
		return nil, err
	}
	for k, c := range clients {
		boxes, err := c.ShareKeys(keys)
		if err != nil {
			return nil, err
		}
		if err := srv.AddBoxes(parties[k], boxes); err != nil {
			return nil, err
		}
	}
	routed, err := srv.Route()
	if err != nil {
		return nil, err
	}
	x := make([]uint32, dim)
	for k, c := range clients {
		if err := secagg.Encode(x, deltas[k], bound, scale, 32); err != nil {
			return nil, err
		}
		m, err := c.MaskInput(x, routed[parties[k]])
		if err != nil {
			return nil, err
		}
		if err := srv.AddMasked(m); err != nil {
			return nil, err
		}
	}
	surv, err := srv.Survivors()
	if err != nil {
		return nil, err
	}
	for _, c := range clients {
		rv, err := c.Unmask(surv)
		if err != nil {
			return nil, err
		}
		if err := srv.AddReveal(rv); err != nil {
			return nil, err
		}
	}
	s, _, err := srv.Sum()
	if err != nil {
		return nil, err
	}
	out := make([]float32, dim)
	return out, secagg.Decode(out, s, scale, 32)
}
