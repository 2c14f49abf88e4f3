package records

import (
	"hash/fnv"
	"math/bits"
	"math/rand/v2"
	"strings"
	"unicode"
)

// Near-duplicate detection: each record's text is normalised (lower case,
// letters and digits kept, everything else a word break), cut into
// shingles of ShingleWords consecutive words, and summarised by a MinHash
// signature of Bands·Rows hashes h_i(x) = (a_i·x + b_i) mod (2^61 − 1)
// over the shingles' 64-bit FNV-1a hashes (a_i, b_i from a fixed seed, so
// every collector hashes alike). Two records that agree on all Rows
// hashes of some band are candidates (probability 1 − (1 − s^Rows)^Bands
// at Jaccard similarity s: about 0.55 at the threshold's half point);
// a candidate is a near-duplicate when the exact Jaccard similarity of the
// shingle sets is at least the collector's threshold.
const (
	ShingleWords = 3
	Bands        = 20
	Rows         = 5
	mersenne61   = 1<<61 - 1
)

var perms = func() (p [Bands * Rows][2]uint64) {
	r := rand.New(rand.NewPCG(0xca12, 0x5eed))
	for i := range p {
		p[i] = [2]uint64{1 + r.Uint64N(mersenne61-1), r.Uint64N(mersenne61)}
	}
	return p
}()

// words is text cut at every character that is not a letter or a digit,
// in lower case.
func words(text []byte) []string {
	return strings.FieldsFunc(strings.ToLower(string(text)), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

// Shingles is the set of shingle hashes of text: every ShingleWords
// consecutive words (a text of fewer words is one shingle of all of
// them; one of no words has none).
func Shingles(text []byte) map[uint64]struct{} {
	w := words(text)
	set := map[uint64]struct{}{}
	if len(w) == 0 {
		return set
	}
	k := min(ShingleWords, len(w))
	for i := 0; i+k <= len(w); i++ {
		h := fnv.New64a()
		for j := i; j < i+k; j++ {
			h.Write([]byte(w[j]))
			h.Write([]byte{0})
		}
		set[h.Sum64()] = struct{}{}
	}
	return set
}

// Jaccard is |a ∩ b| / |a ∪ b| (1 for two empty sets).
func Jaccard(a, b map[uint64]struct{}) float64 {
	if len(a) == 0 && len(b) == 0 {
		return 1
	}
	if len(a) > len(b) {
		a, b = b, a
	}
	inter := 0
	for x := range a {
		if _, ok := b[x]; ok {
			inter++
		}
	}
	return float64(inter) / float64(len(a)+len(b)-inter)
}

// Signature is a MinHash signature.
type Signature [Bands * Rows]uint64

// MinHash is the signature of a shingle set.
func MinHash(set map[uint64]struct{}) Signature {
	var s Signature
	for i := range s {
		s[i] = mersenne61
	}
	for x := range set {
		x %= mersenne61
		for i, p := range perms {
			if h := mulmod(p[0], x, p[1]); h < s[i] {
				s[i] = h
			}
		}
	}
	return s
}

// mulmod is (a·x + b) mod 2^61 − 1, exactly.
func mulmod(a, x, b uint64) uint64 {
	hi, lo := bits.Mul64(a, x)
	lo, c := bits.Add64(lo, b, 0)
	hi += c
	// 2^64 ≡ 2^3 (mod 2^61 − 1)
	r := (lo & mersenne61) + (lo >> 61) + (hi << 3)
	for r >= mersenne61 {
		r -= mersenne61
	}
	return r
}

// bandKey is band i of s as a map key.
func bandKey(s *Signature, i int) [Rows]uint64 {
	var k [Rows]uint64
	copy(k[:], s[i*Rows:(i+1)*Rows])
	return k
}
