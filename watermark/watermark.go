// Package watermark marks generated text so that whoever holds the key
// can tell it from text written without it (Kirchenbauer et al., "A
// Watermark for Large Language Models", 2023).
//
// At each step the key and the preceding tokens split the vocabulary
// into a green share γ and a red rest; sampling adds δ to the green
// tokens' logits, so watermarked text holds more green tokens than the
// γ expected of text that knows nothing of the key. Detection counts the
// green tokens and reports the z-score of that count against γ, and its
// one-sided p-value.
//
// Seeding (Scheme.Seeding):
//   - LeftHash: token t's green list depends on the key and the ordered
//     Context tokens before t (the paper's h; its default is 1, ours 2:
//     a wider context repeats fewer (seed, token) pairs, so more tokens
//     are scored). With one token the seed is that token's keyed hash.
//   - SelfHash: on the key, the Context tokens before t and the
//     candidate itself, through the minimum of their keyed hashes (the
//     follow-up paper's "min-hash with self-salting"): an edit changes
//     fewer green lists, and the candidate's own hash enters its list.
//
// A token's colour is a function of its seed and itself, so each
// distinct (seed, token) pair counts once in detection: a repeated phrase
// is one piece of evidence, not many. With self-hashing, a token whose own
// hash is below its context's has a colour fixed by the key alone and is
// not scored. Both keep the count of unmarked text binomial and the
// false-positive rate where the z-score says.
//
// # Low-entropy text
//
// Where the model is nearly certain of the next token the bias cannot
// change it, so those tokens carry no evidence and dilute the score (a
// byte-level model is certain of most bytes). A detector that has the
// model can score only the tokens whose predictive entropy reaches a
// threshold (DetectSelected; Lee et al., "Who Wrote this Code?
// Watermarking for Code Generation", 2023, SWEET). The selection depends
// only on the tokens before each scored one, not on its colour, so the
// count of unmarked text stays binomial.
//
// The package does no I/O and draws no randomness: the key is an
// argument and sampling is the caller's.
package watermark

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Seeding picks how the green list of a step is seeded.
type Seeding int

// The seedings.
const (
	LeftHash Seeding = iota
	SelfHash
)

// String names the seeding as the flags do.
func (s Seeding) String() string {
	if s == SelfHash {
		return "self-hash"
	}
	return "left-hash"
}

// ParseSeeding reads "left-hash" or "self-hash".
func ParseSeeding(s string) (Seeding, error) {
	switch s {
	case "left-hash", "lefthash", "left":
		return LeftHash, nil
	case "self-hash", "selfhash", "self":
		return SelfHash, nil
	}
	return 0, fmt.Errorf("watermark: seeding %q: want left-hash or self-hash", s)
}

// Scheme is a watermark: the key and its parameters. Detection needs the
// same key, vocabulary, γ, seeding and context; δ only matters when
// generating.
type Scheme struct {
	Gamma   float64 // green share of the vocabulary, in (0, 1); default 0.25
	Delta   float64 // bias added to green logits; default 2.0
	Seeding Seeding
	Context int // tokens before t that seed its list: default 2 for LeftHash, 4 for SelfHash
	Vocab   int // vocabulary size

	tokenHash []uint64 // keyed hash of every token
	threshold uint64   // green iff mix < threshold
}

// Defaults of the paper's experiments.
const (
	DefaultGamma       = 0.25
	DefaultDelta       = 2.0
	DefaultSelfContext = 4
	// DefaultLeftContext is 2, not the paper's 1: over a byte vocabulary
	// one token of context gives only 256 green lists, and text repeats
	// its bigrams so often that, each (seed, token) pair scored once, 200
	// tokens hold too little evidence (README, Watermarks).
	DefaultLeftContext = 2
	// DetectZ is the z-score at or above which text is called
	// watermarked (one-sided p ≈ 3.2e-5).
	DetectZ = 4.0
)

// New returns the scheme for key over a vocabulary of vocab tokens. A
// zero gamma, delta or context takes the default. It fails on an empty
// key, a vocabulary under 2 tokens, gamma outside (0, 1), a negative
// delta, or a context outside 1..16.
func New(key []byte, vocab int, gamma, delta float64, seeding Seeding, context int) (*Scheme, error) {
	if len(key) == 0 {
		return nil, errors.New("watermark: empty key")
	}
	if vocab < 2 {
		return nil, fmt.Errorf("watermark: vocabulary of %d tokens", vocab)
	}
	if gamma == 0 {
		gamma = DefaultGamma
	}
	if delta == 0 {
		delta = DefaultDelta
	}
	if context == 0 {
		context = DefaultLeftContext
		if seeding == SelfHash {
			context = DefaultSelfContext
		}
	}
	switch {
	case !(gamma > 0 && gamma < 1):
		return nil, fmt.Errorf("watermark: gamma %g outside (0, 1)", gamma)
	case delta < 0 || math.IsNaN(delta) || math.IsInf(delta, 0):
		return nil, fmt.Errorf("watermark: delta %g", delta)
	case context < 1 || context > 16:
		return nil, fmt.Errorf("watermark: context of %d tokens, want 1..16", context)
	}
	s := &Scheme{Gamma: gamma, Delta: delta, Seeding: seeding, Context: context, Vocab: vocab,
		tokenHash: make([]uint64, vocab), threshold: uint64(gamma * (1 << 63) * 2)}
	k := sha256.Sum256(append([]byte("cairn/watermark/v1\x00"), key...))
	for v := range vocab {
		h := sha256.Sum256(binary.BigEndian.AppendUint32(k[:], uint32(v)))
		s.tokenHash[v] = binary.BigEndian.Uint64(h[:8])
	}
	return s, nil
}

// mix is SplitMix64's finaliser: a bijection of 64 bits that spreads
// every input bit over the output.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// seed is the context's part of the green-list seed: the keyed hash of
// the previous token (LeftHash) or the minimum over the Context previous
// tokens (SelfHash, which also takes the candidate's in green).
func (s *Scheme) seed(prev []int32) uint64 {
	if s.Seeding == LeftHash {
		n := len(prev)
		h := s.tokenHash[prev[n-1]]
		for j := 2; j <= s.Context; j++ { // h > 1: the ordered h-gram
			h = mix(h*0x9e3779b97f4a7c15 + s.tokenHash[prev[n-j]])
		}
		return h
	}
	m := uint64(math.MaxUint64)
	for _, t := range prev[len(prev)-s.Context:] {
		m = min(m, s.tokenHash[t])
	}
	return m
}

func (s *Scheme) green(seed uint64, v int) bool {
	if s.Seeding == SelfHash {
		seed = min(seed, s.tokenHash[v])
	}
	return s.colour(seed, v)
}

// colour is token v's colour under the final seed (the self-hash
// minimum already taken).
func (s *Scheme) colour(seed uint64, v int) bool {
	return mix(seed^mix(uint64(v)+0x9e3779b97f4a7c15)) < s.threshold
}

// Green reports whether token v is green after the tokens prev (at least
// Context of them; only the last Context count). It is false for a token
// outside the vocabulary or too short a context.
func (s *Scheme) Green(prev []int32, v int32) bool {
	if len(prev) < s.Context || v < 0 || int(v) >= s.Vocab || !s.inVocab(prev[len(prev)-s.Context:]) {
		return false
	}
	return s.green(s.seed(prev), int(v))
}

func (s *Scheme) inVocab(ts []int32) bool {
	for _, t := range ts {
		if t < 0 || int(t) >= s.Vocab {
			return false
		}
	}
	return true
}

// Bias adds δ to the logits of the tokens that are green after prev, in
// place. With fewer than Context tokens of context (the first steps
// after a short prompt) it leaves the logits alone. It panics if logits
// does not have Vocab entries (a caller's bug).
func (s *Scheme) Bias(prev []int32, logits []float32) {
	if len(logits) != s.Vocab {
		panic(fmt.Sprintf("watermark: %d logits for a vocabulary of %d", len(logits), s.Vocab))
	}
	if len(prev) < s.Context || !s.inVocab(prev[len(prev)-s.Context:]) {
		return
	}
	seed, d := s.seed(prev), float32(s.Delta)
	for v := range logits {
		if s.green(seed, v) {
			logits[v] += d
		}
	}
}

// Result is the detector's verdict on a text.
type Result struct {
	Scored int     // tokens scored: distinct (seed, token) pairs
	Green  int     // of them green
	Z      float64 // (Green - γ·Scored) / sqrt(Scored·γ·(1-γ))
	P      float64 // one-sided p-value of Z under the null (no watermark)
	// Watermarked is Z >= DetectZ.
	Watermarked bool
}

// Detect scores tokens: every token with Context tokens before it, each
// distinct (seed, token) pair once. A text with nothing to score
// gives Z = 0 and P = 1.
func (s *Scheme) Detect(tokens []int32) Result { return s.detect(tokens, nil, 0) }

// DetectSelected is Detect scoring only the tokens t with entropy[t] >=
// min: entropy[t] is the model's predictive entropy (nats) for token t
// given the tokens before it, as gpt.Model.Entropies gives it. It fails
// if entropy and tokens differ in length or min is negative or not
// finite.
func (s *Scheme) DetectSelected(tokens []int32, entropy []float64, min float64) (Result, error) {
	if len(entropy) != len(tokens) {
		return Result{}, fmt.Errorf("watermark: %d entropies for %d tokens", len(entropy), len(tokens))
	}
	if !(min >= 0) || math.IsInf(min, 1) {
		return Result{}, fmt.Errorf("watermark: entropy threshold %g is not a finite non-negative number", min)
	}
	return s.detect(tokens, entropy, min), nil
}

func (s *Scheme) detect(tokens []int32, entropy []float64, minEntropy float64) Result {
	var r Result
	type pair struct {
		seed uint64
		v    int32
	}
	seen := map[pair]bool{}
	for t := s.Context; t < len(tokens); t++ {
		if !s.inVocab(tokens[t-s.Context:t+1]) || entropy != nil && !(entropy[t] >= minEntropy) {
			continue
		}
		seed := s.seed(tokens[t-s.Context : t])
		if s.Seeding == SelfHash && s.tokenHash[tokens[t]] < seed {
			// The token's own hash is the minimum: its colour is a
			// constant of the key, the same wherever it stands, so it
			// is no evidence (over a small vocabulary, counting it
			// biases the score of unmarked text).
			continue
		}
		// A token's colour is a function of (seed, token): a pair seen
		// before is the same evidence again.
		if p := (pair{seed, tokens[t]}); seen[p] {
			continue
		} else {
			seen[p] = true
		}
		r.Scored++
		if s.colour(seed, int(tokens[t])) {
			r.Green++
		}
	}
	if r.Scored == 0 {
		r.P = 1
		return r
	}
	n, g := float64(r.Scored), s.Gamma
	r.Z = (float64(r.Green) - g*n) / math.Sqrt(n*g*(1-g))
	r.P = 0.5 * math.Erfc(r.Z/math.Sqrt2)
	r.Watermarked = r.Z >= DetectZ
	return r
}
