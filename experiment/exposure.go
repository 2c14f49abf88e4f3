package experiment

import (
	"fmt"
	"math"

	"github.com/cairnlabs/cairn/gpt"
)

// CanaryDigits is the length of a canary's secret: its randomness space
// holds 10^CanaryDigits candidates.
const CanaryDigits = 6

// DigitScores returns, for every one of the 10^6 digit strings, the model's
// log-probability of it after prefix (byte tokens), indexed by the digits
// read as a number. Each string's score is the sum of its six digits'
// log-probabilities, each given the prefix and the digits before it: the
// exact ranking the Secret Sharer's exposure needs, computed from one
// forward pass over every prefix and five-digit string (10^5 windows).
func DigitScores(m *gpt.Model, prefix []byte) ([]float32, error) {
	T := len(prefix) + CanaryDigits - 1
	if T > m.Config.BlockSize {
		return nil, fmt.Errorf("experiment: a prefix of %d bytes and its digits exceed the context of %d", len(prefix), m.Config.BlockSize)
	}
	const stems = 100000 // the five-digit strings
	const B = 500
	V := m.Config.VocabSize
	scores := make([]float32, stems*10)
	inputs := make([]int32, B*T)
	logp := make([]float64, 10)
	for base := 0; base < stems; base += B {
		for b := range B {
			row := inputs[b*T : (b+1)*T]
			for i, c := range prefix {
				row[i] = int32(c)
			}
			writeDigits(row[len(prefix):], base+b, CanaryDigits-1)
		}
		if _, err := m.Forward(inputs, nil, B, T); err != nil {
			return nil, err
		}
		logits := m.Logits()
		for b := range B {
			stem := base + b
			var path float64
			// Positions len(prefix)-1 .. T-2 predict digits 1..5 of the stem;
			// position T-1 predicts the sixth, all ten of which are scored.
			for d := range CanaryDigits {
				pos := len(prefix) - 1 + d
				digitLogProbs(logits[(b*T+pos)*V:(b*T+pos+1)*V], logp)
				if d < CanaryDigits-1 {
					path += logp[digitAt(stem, d, CanaryDigits-1)]
					continue
				}
				for last := range 10 {
					scores[stem*10+last] = float32(path + logp[last])
				}
			}
		}
	}
	return scores, nil
}

// digitAt is the d-th digit (from the left) of v written with n digits.
func digitAt(v, d, n int) int {
	for range n - 1 - d {
		v /= 10
	}
	return v % 10
}

// writeDigits writes v as n ASCII digits.
func writeDigits(dst []int32, v, n int) {
	for i := n - 1; i >= 0; i-- {
		dst[i] = int32('0' + v%10)
		v /= 10
	}
}

// digitLogProbs writes the log-softmax over the whole vocabulary of the ten
// digit tokens.
func digitLogProbs(logits []float32, out []float64) {
	lz := logSumExp(logits)
	for d := range 10 {
		out[d] = float64(logits['0'+d]) - lz
	}
}

// Exposure is the Secret Sharer's exposure of the secret whose index is
// secret among scores (higher is likelier): log2 of the space's size minus
// log2 of the secret's rank (1 for the likeliest; ties count against it).
func Exposure(scores []float32, secret int) float64 {
	s := scores[secret]
	rank := 1
	for i, v := range scores {
		if i != secret && v >= s {
			rank++
		}
	}
	return math.Log2(float64(len(scores))) - math.Log2(float64(rank))
}
