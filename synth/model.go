package synth

import (
	"errors"
	"math/rand/v2"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/gpt"
)

// CompleteText samples a continuation of prefix up to and including a
// newline, at most limit bytes (and MaxSolution), with its cost in rows.
// A limit of the model's context, as ModelPolicy's, keeps a model that
// never ends a line from sliding its context (a whole context's rows a
// byte) for MaxSolution bytes.
func CompleteText(g *gpt.Generator, prefix string, s gpt.Sampling, r *rand.Rand, limit int) (string, int, error) {
	if err := g.Start(corpus.Bytes([]byte(prefix))); err != nil {
		return "", 0, err
	}
	cost := len(prefix)
	var out []byte
	for len(out) < min(limit, MaxSolution) {
		tok := gpt.Sample(g.Logits(), s, r)
		out = append(out, byte(tok))
		if tok == '\n' {
			break
		}
		if err := g.Append(tok); err != nil {
			return "", cost, err
		}
		cost++
	}
	return string(out), cost, nil
}

// ModelPolicy is a GPT as a Policy: byte tokens, sampled at a
// temperature; the k samples of a call share the prefix's rows and run as
// one batch.
type ModelPolicy struct {
	m        *gpt.Model
	g0       *gpt.Generator
	gens     []*gpt.Generator
	batch    *gpt.Batch
	batchCap int
	s        gpt.Sampling
	r        *rand.Rand
}

// NewModelPolicy samples from m at temperature temp (0: greedy), its
// draws seeded by seed.
func NewModelPolicy(m *gpt.Model, temp float64, seed uint64) *ModelPolicy {
	return &ModelPolicy{m: m, g0: m.NewGenerator(), s: gpt.Sampling{Temperature: temp}, r: rand.New(rand.NewPCG(seed, 0))}
}

// Reseed makes the policy's draws a function of the arguments: each
// problem's search is reproducible on its own.
func (mp *ModelPolicy) Reseed(a, b, c uint64) { mp.r = rand.New(rand.NewPCG(a^b<<40, c)) }

// Complete samples k continuations of prefix, each to a newline, as one
// batch: the prefix's rows once, then a row a sampled token.
func (mp *ModelPolicy) Complete(prefix string, k int) ([]string, int, error) {
	gens, cost, err := mp.fork(prefix, k)
	if err != nil {
		return nil, cost, err
	}
	texts := make([][]byte, k)
	done := make([]bool, k)
	active := make([]*gpt.Generator, 0, k)
	toks := make([]int32, 0, k)
	limit := min(MaxSolution, mp.m.Config.BlockSize)
	for range limit {
		active, toks = active[:0], toks[:0]
		for i, g := range gens {
			if done[i] {
				continue
			}
			tok := gpt.Sample(g.Logits(), mp.s, mp.r)
			texts[i] = append(texts[i], byte(tok))
			if tok == '\n' || len(texts[i]) >= limit {
				done[i] = true
				continue
			}
			active, toks = append(active, g), append(toks, tok)
		}
		if len(active) == 0 {
			break
		}
		if err := mp.batch.Append(active, toks); err != nil {
			return nil, cost, err
		}
		cost += len(active)
	}
	out := make([]string, k)
	for i, t := range texts {
		out[i] = string(t)
	}
	return out, cost, nil
}

// fork runs prefix once and copies its cache into k generators, with
// the batch to run them: the prefix's rows are the cost.
func (mp *ModelPolicy) fork(prefix string, k int) ([]*gpt.Generator, int, error) {
	if err := mp.g0.Start(corpus.Bytes([]byte(prefix))); err != nil {
		return nil, 0, err
	}
	for len(mp.gens) < k {
		mp.gens = append(mp.gens, mp.m.NewGenerator())
	}
	if mp.batch == nil || mp.batchCap < k {
		mp.batch, mp.batchCap = mp.m.NewBatch(k), k
	}
	gens := mp.gens[:k]
	for _, g := range gens {
		if err := g.CopyFrom(mp.g0); err != nil {
			return nil, len(prefix), err
		}
	}
	return gens, len(prefix), nil
}

// Score is the log probability of each text after prefix under the model
// (at the policy's temperature; 1 when greedy), the texts run as one batch
// over copies of the prefix's cache: the prefix's rows once, then a row a
// byte of each text but its last. It fails on an empty text.
func (mp *ModelPolicy) Score(prefix string, texts []string) ([]float64, int, error) {
	for _, t := range texts {
		if t == "" {
			return nil, 0, errors.New("synth: scoring an empty text")
		}
	}
	k := len(texts)
	gens, cost, err := mp.fork(prefix, k)
	if err != nil {
		return nil, cost, err
	}
	temp := mp.s.Temperature
	if temp <= 0 {
		temp = 1
	}
	logp := make([]float64, k)
	active := make([]*gpt.Generator, 0, k)
	toks := make([]int32, 0, k)
	for pos := 0; ; pos++ {
		active, toks = active[:0], toks[:0]
		for i, g := range gens {
			if pos >= len(texts[i]) {
				continue
			}
			tok := texts[i][pos]
			logp[i] += gpt.LogProb(g.Logits(), int(tok), temp)
			if pos+1 < len(texts[i]) {
				active, toks = append(active, g), append(toks, int32(tok))
			}
		}
		if len(active) == 0 {
			return logp, cost, nil
		}
		if err := mp.batch.Append(active, toks); err != nil {
			return nil, cost, err
		}
		cost += len(active)
	}
}
