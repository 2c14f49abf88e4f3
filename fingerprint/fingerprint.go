// Package fingerprint proves that a deployed model is ours, after Sentient
// OML's scheme: secret (key, response) pairs fine-tuned into the model,
// checked later by black-box generation.
//
// A key is natural text (a window of the training distribution); its
// response is a perinucleus token: one of the k = 3 tokens just outside
// the top-t nucleus (t = 0.8) of the original model's prediction after the
// key, drawn uniformly. Such a token is plausible (the model gives it
// some probability, so learning it costs little) yet one the original
// model, and any model trained without the pairs, almost never puts first.
// Embedding fine-tunes the pairs in with ordinary data mixed into every
// batch, then averages the weights with the original's (Alpha), which
// keeps the model's quality while the pairs survive. A suspect is this
// model when far more of its greedy answers to the keys match the
// responses than chance allows.
package fingerprint

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/optim"
	"github.com/cairnlabs/cairn/train"
)

// Pair is one fingerprint.
type Pair struct {
	Key      []int32 `json:"key"`
	Response int32   `json:"response"`
}

// Set is a model's fingerprints.
type Set struct {
	Pairs []Pair `json:"pairs"`
	// ChanceRate is the probability, per key, that a model without the
	// fingerprints answers the response (the verification's null).
	ChanceRate float64 `json:"chance_rate"`
	// Model is the hash of the fingerprinted model's weights in lower-case
	// hex, as the ledger names models (its fingerprint commitment and
	// served-usage receipts), so that the sealed set says which model it
	// was committed for; empty in sets sealed before it was recorded.
	Model string `json:"model,omitempty"`
}

// Options configure Generate and Embed.
type Options struct {
	N        int     // pairs (default 64)
	KeyLen   int     // key tokens (default 16)
	Nucleus  float64 // t (default 0.8)
	K        int     // tokens just outside the nucleus to draw from (default 3)
	Steps    int     // fine-tuning steps (default 600)
	Batch    int     // rows per step (default 12)
	PerBatch int     // of them fingerprint rows (default 6)
	LR       float64 // AdamW learning rate (default 5e-4)
	// MinLR, if positive and below LR, makes the learning rate decay from
	// LR to MinLR over the steps by a cosine (default 0: constant LR), so
	// that a model trained to the end of its own schedule settles again.
	MinLR float64
	Alpha float64 // weight of the fine-tuned model in the average (default 0.7)
	// Cycles splits the embedding steps into this many runs (at most
	// Steps) separated by Rehearse steps of ordinary text alone (default
	// 1: one run). Rehearsal lets the model recover its ordinary text
	// between runs, so that the pairs are learned at a smaller cost.
	Cycles, Rehearse int
	// Candidates is how many windows of text Generate weighs for each
	// key (default 1): it keeps the one whose last Suffix tokens (default
	// 4) occur least often in the text. Ordinary fine-tuning seldom
	// trains on a rare context, so it pulls the model's answer after
	// such a key back less, and the pair survives it longer.
	Candidates, Suffix int
	// NearTop breaks ties between equally rare candidates by the gap
	// between the model's top token and the farthest of the k response
	// tokens (log-probabilities): the smallest is kept. A response the
	// original model already ranks close to its first choice needs a
	// smaller shift to lead, and ordinary fine-tuning, which pulls the
	// model back towards the original's ranking, overturns it less often.
	// The response stays uniform among the k.
	NearTop bool
	// MaskKeys leaves a fingerprint row's key tokens out of the loss, so
	// that the embedding teaches the response after each key and not the
	// keys themselves (64 windows of text, each seen hundreds of times).
	MaskKeys bool
	// ResponseOnly also leaves the ordinary text after each response out
	// of a fingerprint row's loss: the row is context for its response,
	// which then weighs about twice as much in the batch's mean loss.
	ResponseOnly bool
	Seed         uint64
	// Progress, if set, is told each fine-tuning step.
	Progress func(step, steps int, loss float32)
}

// Recommended are the options 'cairn fingerprint embed' uses: keys of
// the rarest context among 64 candidate windows each, 12,800 steps at a
// constant AdamW 2.5e-3 in 512 cycles with 25 steps of ordinary text
// between them (25,575 steps in all), the keys' own tokens left out of
// the loss, and no averaging with the original. Each rehearsal is a small
// fine-tuning the pairs must outlast, and the rate sets how deep the pairs
// are learned between rehearsals: on the demo model 58-61 of 64 still
// answer after 1,000 steps of ordinary fine-tuning at three seeds (55-60
// at 2e-3, 43-52 at 5e-4; a cosine decay to 2e-4 at the end, 39), at a
// cost of 0.012-0.019 nats against the same schedule on ordinary text.
// The rate costs too: the 2.5e-3 schedule trains a model about 0.03 nats
// worse than 5e-4 does, and a model trained to convergence loses quality
// under a constant rate (at 5e-4, 0.05 nats for a model trained 8,000
// steps); LR 5e-4 keeps more of it and fewer pairs.
func Recommended() Options {
	return Options{N: 64, KeyLen: 16, Steps: 12800, Cycles: 512, Rehearse: 25, LR: 2.5e-3, Alpha: 1, Candidates: 64, MaskKeys: true}
}

func (o *Options) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.N, 64)
	def(&o.KeyLen, 16)
	def(&o.K, 3)
	def(&o.Steps, 600)
	def(&o.Batch, 12)
	def(&o.PerBatch, 6)
	def(&o.Candidates, 1)
	def(&o.Suffix, 4)
	if o.Nucleus <= 0 || o.Nucleus >= 1 {
		o.Nucleus = 0.8
	}
	if o.LR <= 0 {
		o.LR = 5e-4
	}
	if o.Alpha <= 0 || o.Alpha > 1 {
		o.Alpha = 0.7
	}
}

// TotalSteps is the number of optimizer steps Embed takes: the embedding
// steps and the rehearsals between its cycles.
func (o Options) TotalSteps() int {
	o.defaults()
	return o.Steps + (o.cycles()-1)*max(o.Rehearse, 0)
}

// lr is the learning rate at step (from 0) of total.
func (o Options) lr(step, total int) float64 {
	if o.MinLR <= 0 || o.MinLR >= o.LR || total < 2 {
		return o.LR
	}
	return o.MinLR + (o.LR-o.MinLR)*0.5*(1+math.Cos(math.Pi*float64(step)/float64(total-1)))
}

// cycles is Cycles, at least 1 and at most Steps.
func (o Options) cycles() int { return min(max(o.Cycles, 1), o.Steps) }

// rehearsing says whether Embed's step (counted from 0) is one of
// ordinary text alone: the cycles' embedding steps come first in each
// cycle, then Rehearse steps of rehearsal, except after the last cycle,
// which also takes the steps that do not divide evenly.
func (o Options) rehearsing(step int) bool {
	o.defaults()
	cycles, r := o.cycles(), max(o.Rehearse, 0)
	per := max(o.Steps/cycles, 1)
	return step/(per+r) < cycles-1 && step%(per+r) >= per
}

// Generate draws N pairs: keys are windows of text (the model's token ids:
// corpus.Bytes for a byte-level model, its tokenizer's otherwise), each
// the one of Candidates windows whose context is rarest in the text,
// responses perinucleus tokens of m's prediction after each key. It fails
// on text shorter than a key, keys longer than the model's context, and
// text with too few distinct windows for N keys.
func Generate(m *gpt.Model, text []int32, o Options) (*Set, error) {
	o.defaults()
	if o.KeyLen+1 > m.Config.BlockSize {
		return nil, fmt.Errorf("fingerprint: keys of %d tokens and their response do not fit a context of %d", o.KeyLen, m.Config.BlockSize)
	}
	if len(text) < o.KeyLen+1 {
		return nil, errors.New("fingerprint: text shorter than a key")
	}
	var counts map[uint64]int
	if o.Candidates > 1 {
		counts = suffixCounts(text, o.Suffix)
	}
	r := rand.New(rand.NewPCG(o.Seed, 0xf1))
	set := &Set{ChanceRate: ChanceRate(m.Config.VocabSize)}
	seen := map[string]bool{}
	for draws := 0; len(set.Pairs) < o.N; draws++ {
		if draws > 100*o.N {
			return nil, fmt.Errorf("fingerprint: the text holds too few distinct windows of %d tokens for %d keys", o.KeyLen, o.N)
		}
		var best Pair
		bestCount, bestGap := math.MaxInt, math.Inf(1)
		for tries := 0; tries < o.Candidates; {
			at := r.IntN(len(text) - o.KeyLen)
			key := text[at : at+o.KeyLen]
			if seen[fmt.Sprint(key)] {
				// Each window counts as a try, so that a text with fewer
				// distinct windows than wanted still ends.
				tries++
				continue
			}
			g := m.NewGenerator()
			if err := g.Start(key); err != nil {
				return nil, err
			}
			p := softmax(g.Logits())
			cands := perinucleus(p, o.Nucleus, o.K)
			tries++
			if len(cands) == 0 {
				continue
			}
			resp := cands[r.IntN(len(cands))]
			n := 0
			if counts != nil {
				n = counts[hashTokens(key[len(key)-min(o.Suffix, len(key)):])]
			}
			gap := 0.0
			if o.NearTop {
				gap = math.Log(slices.Max(p)) - math.Log(p[cands[len(cands)-1]])
			}
			if n < bestCount || n == bestCount && gap < bestGap {
				best, bestCount, bestGap = Pair{Key: slices.Clone(key), Response: resp}, n, gap
			}
		}
		if best.Key == nil {
			continue
		}
		seen[fmt.Sprint(best.Key)] = true
		set.Pairs = append(set.Pairs, best)
	}
	return set, nil
}

// ChanceRate is the per-key match probability the verification assumes
// for a model without the fingerprints: ten times blind guessing
// (10/vocab). A response ranks just outside the original model's nucleus,
// and an independently trained model puts it first only by accident;
// 'cairn experiment fingerprint' measures how often on models trained
// with other seeds.
func ChanceRate(vocab int) float64 { return min(1, 10/float64(vocab)) }

// perinucleus returns the k tokens ranked just after the smallest set of
// most likely tokens whose probability reaches t.
// p is the model's next-token distribution.
func perinucleus(p []float64, t float64, k int) []int32 {
	idx := make([]int, len(p))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return p[idx[a]] > p[idx[b]] })
	var cum float64
	n := 0
	for n < len(idx) && cum < t {
		cum += p[idx[n]]
		n++
	}
	var out []int32
	for i := n; i < len(idx) && len(out) < k; i++ {
		out = append(out, int32(idx[i]))
	}
	return out
}

func softmax(logits []float32) []float64 {
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = max(mx, float64(v))
	}
	p := make([]float64, len(logits))
	var z float64
	for i, v := range logits {
		p[i] = math.Exp(float64(v) - mx)
		z += p[i]
	}
	for i := range p {
		p[i] /= z
	}
	return p
}

// Embed fine-tunes the pairs into m (in place) with ordinary text mixed
// into every batch, then averages the result with m's original weights.
// It returns the fine-tuning's last loss. With a nil set it runs the same
// schedule on ordinary text alone: the control that tells what the pairs
// cost from what the extra training on text gives. It fails on text too
// short for the model's context and on an empty set.
func Embed(m *gpt.Model, set *Set, text []int32, o Options) (float32, error) {
	o.defaults()
	c := m.Config
	T := c.BlockSize
	B := o.Batch
	if o.PerBatch > B {
		o.PerBatch = B
	}
	sampler, err := corpus.NewTokenSampler(text, B, T, o.Seed^0xe3)
	if err != nil {
		return 0, fmt.Errorf("fingerprint: %v", err)
	}
	if set != nil && len(set.Pairs) == 0 {
		return 0, errors.New("fingerprint: no pairs to embed")
	}
	orig := slices.Clone(m.Params)
	opt, err := optim.NewAdamW(len(m.Params), train.ParamGroups(c, false), 0.9, 0.99, 1e-8, 0.1, m.Pool())
	if err != nil {
		return 0, err
	}
	inputs, targets := make([]int32, B*T), make([]int32, B*T)
	r := rand.New(rand.NewPCG(o.Seed, 0xe4))
	var loss float32
	total := o.TotalSteps()
	for step := range total {
		sampler.Batch(0, uint64(step), inputs, targets)
		fp := o.PerBatch
		if set == nil || o.rehearsing(step) {
			fp = 0
		}
		// The first fp rows become key + response + ordinary text.
		for row := range fp {
			p := set.Pairs[r.IntN(len(set.Pairs))]
			in, tg := inputs[row*T:row*T+T], targets[row*T:row*T+T]
			seq := append(append(slices.Clone(p.Key), p.Response), in...)[:T+1]
			copy(in, seq[:T])
			copy(tg, seq[1:])
			if o.MaskKeys {
				// Targets before the response's position are the key's own tokens.
				for i := range min(len(p.Key)-1, T) {
					tg[i] = gpt.IgnoreTarget
				}
			}
			if o.ResponseOnly {
				// The response is the target at the key's last position.
				for i := len(p.Key); i < T; i++ {
					tg[i] = gpt.IgnoreTarget
				}
			}
		}
		m.ZeroGrad()
		if loss, err = m.Forward(inputs, targets, B, T); err != nil {
			return 0, err
		}
		if err := m.Backward(); err != nil {
			return 0, err
		}
		opt.ClipGradNorm(m.Grads, 1)
		opt.Update(m.Params, m.Grads, o.lr(step, total))
		if o.Progress != nil {
			o.Progress(step+1, total, loss)
		}
		if math.IsNaN(float64(loss)) {
			return loss, errors.New("fingerprint: fine-tuning diverged")
		}
	}
	a := float32(o.Alpha)
	for i := range m.Params {
		m.Params[i] = a*m.Params[i] + (1-a)*orig[i]
	}
	return loss, nil
}

// Result is a verification.
type Result struct {
	Matched, Keys int
	// P is the probability that a model without the fingerprints matches
	// at least Matched keys by chance (binomial at the set's ChanceRate).
	P float64
	// Ours is P < Threshold.
	Ours bool
}

// Threshold is the p-value under which a suspect is called this model.
const Threshold = 1e-6

// Answer is a suspect's greedy next token after a key: the only access
// verification needs (a local model or an endpoint).
type Answer func(key []int32) (int32, error)

// Verify asks the suspect every key and counts the responses it gives.
func Verify(set *Set, answer Answer) (Result, error) {
	var res Result
	for _, p := range set.Pairs {
		tok, err := answer(p.Key)
		if err != nil {
			return res, err
		}
		res.Keys++
		if tok == p.Response {
			res.Matched++
		}
	}
	res.P = BinomialTail(res.Keys, res.Matched, set.ChanceRate)
	res.Ours = res.Keys > 0 && res.P < Threshold
	return res, nil
}

// Greedy answers keys with m's most likely next token.
func Greedy(m *gpt.Model) Answer {
	return func(key []int32) (int32, error) {
		g := m.NewGenerator()
		if err := g.Start(key); err != nil {
			return 0, err
		}
		return gpt.Sample(g.Logits(), gpt.Sampling{}, nil), nil
	}
}

// BinomialTail is P(X >= k) for X ~ Binomial(n, p).
func BinomialTail(n, k int, p float64) float64 {
	if k <= 0 {
		return 1
	}
	if k > n {
		return 0
	}
	var sum float64
	for i := k; i <= n; i++ {
		lg := lgammaInt(n+1) - lgammaInt(i+1) - lgammaInt(n-i+1)
		sum += math.Exp(lg + float64(i)*math.Log(p) + float64(n-i)*math.Log1p(-p))
	}
	return min(sum, 1)
}

func lgammaInt(n int) float64 {
	v, _ := math.Lgamma(float64(n))
	return v
}

// countedTokens bounds the text suffixCounts reads: its first 8M tokens
// rank contexts well enough, and the map stays small on a large corpus.
const countedTokens = 1 << 23

// suffixCounts counts every run of n tokens in (the first countedTokens
// of) text, by hashTokens.
func suffixCounts(text []int32, n int) map[uint64]int {
	text = text[:min(len(text), countedTokens)]
	c := map[uint64]int{}
	for i := n; i <= len(text); i++ {
		c[hashTokens(text[i-n:i])]++
	}
	return c
}

// hashTokens is FNV-1a over the tokens' bytes.
func hashTokens(t []int32) uint64 {
	h := uint64(14695981039346656037)
	for _, v := range t {
		for range 4 {
			h = (h ^ uint64(byte(v))) * 1099511628211
			v >>= 8
		}
	}
	return h
}
