package verify

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Contribution is one decoded contribution of a round, as screening sees
// it.
type Contribution struct {
	Worker  string
	Payload Digest    // PayloadDigest of the payload as submitted
	Delta   []float32 // the decoded Δ
	// Held-out loss (HeldOut.Loss) at θr and at θr − Step·Δ, when Measured.
	Measured              bool
	LossBefore, LossAfter float64
}

// Origin is where a payload was first seen.
type Origin struct {
	Worker string
	Round  int
}

// Flag is a reason screening found a contribution suspicious.
type Flag uint8

const (
	// NonFinite: the contribution holds a value that is not finite.
	NonFinite Flag = 1 << iota
	// NormHigh: its norm is more than MaxNormRatio times the round's median.
	NormHigh
	// NormLow: its norm is less than MinNormRatio times the round's median
	// (zeros, or much less training than claimed).
	NormLow
	// Duplicate: its payload is byte for byte one seen before (in an
	// earlier round) or one another worker sent in this round (both are
	// flagged: either may be the copier).
	Duplicate
	// LossWorse: its held-out gain (loss before minus after applying it)
	// falls short of the round's median gain by at least max(|median|,
	// LossFloor) (when the median gain is positive: it gains nothing), or
	// the loss after it is not finite.
	LossWorse
	// Dissimilar: its direction is unlike the other contributions': its
	// typical cosine similarity with them is below (1 − SimilarityDrop)
	// times the round's typical similarity (noise, a negated or otherwise
	// redirected Δ).
	Dissimilar
)

// String lists the flags, comma-separated ("" for none).
func (f Flag) String() string {
	var s []string
	for _, x := range []struct {
		f    Flag
		name string
	}{{NonFinite, "non-finite"}, {NormHigh, "norm-high"}, {NormLow, "norm-low"}, {Duplicate, "duplicate"}, {LossWorse, "loss-worse"}, {Dissimilar, "dissimilar"}} {
		if f&x.f != 0 {
			s = append(s, x.name)
		}
	}
	return strings.Join(s, ",")
}

// ScreenOptions set the screening thresholds.
type ScreenOptions struct {
	// MaxNormRatio (> 1) and MinNormRatio (in (0, 1)) bound a
	// contribution's norm relative to the round's median before it is
	// flagged; the norm score is log(ratio)/log(MaxNormRatio) above the
	// median and log(1/ratio)/log(1/MinNormRatio) below, so 1 is the flag
	// threshold either way.
	MaxNormRatio, MinNormRatio float64
	// LossFloor (nats, > 0) is the smallest unit held-out loss gains are
	// measured in: the loss score is (median gain − gain) / max(|median
	// gain|, LossFloor), flagged at 1.
	LossFloor float64
	// SimilarityDrop (in (0, 1]) sets the similarity score:
	// (M − similarity) / (SimilarityDrop·M), where M is the round's median
	// similarity, flagged at 1. Rounds whose M is below MinSimilarity (in
	// (0, 1)) are too unlike each other for the score, which is then 0.
	SimilarityDrop, MinSimilarity float64
}

// DefaultScreenOptions are the thresholds measured for the demo model
// (see the package documentation).
func DefaultScreenOptions() ScreenOptions {
	return ScreenOptions{MaxNormRatio: 1.5, MinNormRatio: 0.6, LossFloor: 0.01, SimilarityDrop: 0.5, MinSimilarity: 0.05}
}

// Validate reports, in one line, what is wrong with o.
func (o ScreenOptions) Validate() error {
	if !(o.MaxNormRatio > 1) || math.IsInf(o.MaxNormRatio, 0) || !(o.MinNormRatio > 0 && o.MinNormRatio < 1) ||
		!(o.LossFloor > 0) || math.IsInf(o.LossFloor, 0) || !(o.SimilarityDrop > 0 && o.SimilarityDrop <= 1) ||
		!(o.MinSimilarity > 0 && o.MinSimilarity < 1) {
		return fmt.Errorf("verify: screen options %+v: want MaxNormRatio > 1, MinNormRatio in (0, 1), LossFloor > 0, all finite, SimilarityDrop in (0, 1], MinSimilarity in (0, 1)", o)
	}
	return nil
}

// MaxScore is the score of a certain finding (a non-finite value, a
// duplicate payload, a non-finite held-out loss, a zero norm in a round
// whose median is not zero), and the cap of every score.
const MaxScore = 1e6

// Screening is what screening found about one contribution.
type Screening struct {
	Worker    string
	Norm      float64 // L2 norm of Δ
	NormRatio float64 // Norm over the round's median norm (1 when both are 0)
	Gain      float64 // held-out loss before minus after (0 when not measured)
	// Similarity is the upper median of the cosine similarities of Δ with
	// each other contribution of the round (both of finite, non-zero
	// norm); Peers the number of those (0: no similarity, which is then 0).
	Similarity float64
	Peers      int
	// Score is the suspicion: the largest of the norm, loss and certain
	// scores, in [0, MaxScore]; 1 or more means flagged.
	Score float64
	Flags Flag
	// DuplicateOf is, when Flags has Duplicate, the payload's sighting in
	// an earlier round, or else the first other worker of this round that
	// sent it.
	DuplicateOf Origin
}

// Screen scores the round's contributions, given in canonical order, for
// suspicion. prior maps the payload digests of earlier rounds to where
// they were first seen (the caller keeps it; Screen does not modify it);
// a payload that repeats one of them, or that two workers of this round
// sent, is a Duplicate. Medians are lower medians over the round's
// contributions (norms: those that are finite; gains: those measured;
// similarities: those with peers). Similarities cost k(k−1)/2 dot
// products for k contributions. It fails when o is invalid or a worker
// appears twice or the contributions differ in length.
func Screen(round int, cs []Contribution, prior map[Digest]Origin, o ScreenOptions) ([]Screening, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	out := make([]Screening, len(cs))
	seen := make(map[Digest]int, len(cs)) // first index of each payload
	workers := make(map[string]bool, len(cs))
	var norms, gains []float64
	for i, c := range cs {
		if workers[c.Worker] {
			return nil, fmt.Errorf("verify: worker %q appears twice in round %d", c.Worker, round)
		}
		workers[c.Worker] = true
		if len(c.Delta) != len(cs[0].Delta) {
			return nil, fmt.Errorf("verify: contribution of %q has %d values, that of %q %d", c.Worker, len(c.Delta), cs[0].Worker, len(cs[0].Delta))
		}
		s := &out[i]
		s.Worker = c.Worker
		s.Norm = Norm(c.Delta)
		if math.IsNaN(s.Norm) || math.IsInf(s.Norm, 0) {
			s.Flags |= NonFinite
		} else {
			norms = append(norms, s.Norm)
		}
		if org, ok := prior[c.Payload]; ok {
			s.Flags, s.DuplicateOf = s.Flags|Duplicate, org
		} else if first, ok := seen[c.Payload]; ok {
			// Either may be the copier: flag both, so both are recomputed.
			s.Flags, s.DuplicateOf = s.Flags|Duplicate, Origin{Worker: cs[first].Worker, Round: round}
			if f := &out[first]; f.Flags&Duplicate == 0 {
				f.Flags, f.DuplicateOf = f.Flags|Duplicate, Origin{Worker: c.Worker, Round: round}
			}
		} else {
			seen[c.Payload] = i
		}
		if c.Measured {
			s.Gain = c.LossBefore - c.LossAfter
			if math.IsNaN(s.Gain) || math.IsInf(s.Gain, 0) {
				s.Flags |= LossWorse
			} else {
				gains = append(gains, s.Gain)
			}
		}
	}
	medNorm := lowerMedian(norms)
	medGain := lowerMedian(gains)
	medSim := similarities(cs, out)
	for i, c := range cs {
		s := &out[i]
		if s.Flags&(NonFinite|Duplicate|LossWorse) != 0 {
			s.Score = MaxScore
		}
		if s.Flags&NonFinite == 0 {
			s.NormRatio, s.Score = normScore(s, medNorm, o, s.Score)
		}
		if c.Measured && s.Flags&LossWorse == 0 {
			ls := (medGain - s.Gain) / max(math.Abs(medGain), o.LossFloor)
			if ls >= 1 {
				s.Flags |= LossWorse
			}
			s.Score = max(s.Score, min(ls, MaxScore))
		}
		if s.Peers > 0 && medSim >= o.MinSimilarity {
			ss := (medSim - s.Similarity) / (o.SimilarityDrop * medSim)
			if ss >= 1 {
				s.Flags |= Dissimilar
			}
			s.Score = max(s.Score, ss)
		}
	}
	return out, nil
}

// normScore returns the norm ratio and the score raised by the norm's
// deviation from the median, setting NormHigh or NormLow.
func normScore(s *Screening, med float64, o ScreenOptions, score float64) (ratio, _ float64) {
	switch {
	case s.Norm == med:
		return 1, score
	case med == 0:
		s.Flags |= NormHigh
		return math.Inf(1), MaxScore
	case s.Norm == 0:
		s.Flags |= NormLow
		return 0, MaxScore
	}
	ratio = s.Norm / med
	var ns float64
	if ratio > 1 {
		ns = math.Log(ratio) / math.Log(o.MaxNormRatio)
		if ns >= 1 {
			s.Flags |= NormHigh
		}
	} else {
		ns = math.Log(1/ratio) / math.Log(1/o.MinNormRatio)
		if ns >= 1 {
			s.Flags |= NormLow
		}
	}
	return ratio, max(score, min(ns, MaxScore))
}

// similarities sets each screening's Similarity and Peers, and returns
// the round's median similarity.
func similarities(cs []Contribution, out []Screening) float64 {
	k := len(cs)
	cos := make([]float64, k*k)
	ok := func(i int) bool { return out[i].Flags&NonFinite == 0 && out[i].Norm > 0 }
	for i := 0; i < k; i++ {
		for j := i + 1; j < k; j++ {
			if ok(i) && ok(j) {
				c := dot(cs[i].Delta, cs[j].Delta) / (out[i].Norm * out[j].Norm)
				cos[i*k+j], cos[j*k+i] = c, c
			} else {
				cos[i*k+j], cos[j*k+i] = math.NaN(), math.NaN()
			}
		}
	}
	var sims []float64
	row := make([]float64, 0, k)
	for i := 0; i < k; i++ {
		row = row[:0]
		for j := 0; j < k; j++ {
			if j != i && !math.IsNaN(cos[i*k+j]) {
				row = append(row, cos[i*k+j])
			}
		}
		if len(row) == 0 {
			continue
		}
		slices.Sort(row)
		out[i].Similarity, out[i].Peers = row[len(row)/2], len(row)
		sims = append(sims, out[i].Similarity)
	}
	return lowerMedian(sims)
}

// dot is the dot product of a and b in float64, the same on every
// platform: each product is exact in float64, and the products at indices
// ≡ l (mod 4) are summed in order into partial sum l, then
// (s0+s1)+(s2+s3).
func dot(a, b []float32) float64 {
	var s0, s1, s2, s3 float64
	b = b[:len(a)]
	i := 0
	for ; i+4 <= len(a); i += 4 {
		x, y := a[i:i+4:i+4], b[i:i+4:i+4]
		s0 += float64(x[0]) * float64(y[0])
		s1 += float64(x[1]) * float64(y[1])
		s2 += float64(x[2]) * float64(y[2])
		s3 += float64(x[3]) * float64(y[3])
	}
	for l := 0; i < len(a); i, l = i+1, l+1 {
		p := float64(a[i]) * float64(b[i])
		switch l {
		case 0:
			s0 += p
		case 1:
			s1 += p
		default:
			s2 += p
		}
	}
	return (s0 + s1) + (s2 + s3)
}

// lowerMedian is the element at (len−1)/2 of the sorted values, 0 for
// none. It sorts a copy.
func lowerMedian(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	s := slices.Clone(x)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}
