package secagg

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Config describes one round of one cohort; every party and the server
// must be given the same.
type Config struct {
	// Session names the round uniquely (say, a hash of the run, the round
	// and the cohort): every key and box is bound to it, so a message from
	// another round does not open or unmask here.
	Session [32]byte
	// Parties are the cohort's party numbers: distinct, non-zero, each
	// also its Shamir evaluation point.
	Parties []uint64
	// Threshold is t: the fewest parties that must stay to the end, and
	// the shares needed to rebuild a secret. At least 2 and more than half
	// the cohort, so that two disjoint sets of survivors cannot both
	// unmask.
	Threshold int
	// Dim is the length of every input.
	Dim int
	// Bits is the width of every value: inputs, masks and the sum are
	// taken modulo 2^Bits (8 to 32; 0 means 32). Masked inputs travel in
	// Bits bits a value, so a narrow width (wide enough for the sum, see
	// ScaleFor) keeps the traffic near that of the plain inputs.
	Bits int
}

// bits is c.Bits with its default.
func (c Config) bits() int {
	if c.Bits == 0 {
		return 32
	}
	return c.Bits
}

// lowMask keeps the low bits of a value.
func (c Config) lowMask() uint32 { return uint32(uint64(1)<<c.bits() - 1) }

// MaxParties bounds a cohort.
const MaxParties = 1024

// MaxDim bounds an input's length (the masks are expanded in full).
const MaxDim = 1 << 28

// Validate says what is wrong with c, in one line.
func (c Config) Validate() error {
	n := len(c.Parties)
	switch {
	case n < 2 || n > MaxParties:
		return fmt.Errorf("secagg: a cohort of %d parties (2 to %d)", n, MaxParties)
	case c.Threshold < 2 || c.Threshold > n || 2*c.Threshold <= n:
		return fmt.Errorf("secagg: threshold %d for %d parties (more than half, at least 2, at most all)", c.Threshold, n)
	case c.Dim < 1 || c.Dim > MaxDim:
		return fmt.Errorf("secagg: inputs of %d values (1 to %d)", c.Dim, MaxDim)
	case c.Bits != 0 && (c.Bits < 8 || c.Bits > 32):
		return fmt.Errorf("secagg: values of %d bits (8 to 32)", c.Bits)
	}
	seen := map[uint64]bool{}
	for _, p := range c.Parties {
		if p == 0 || seen[p] {
			return fmt.Errorf("secagg: party number %d is zero or listed twice", p)
		}
		seen[p] = true
	}
	return nil
}

// checkKeys checks a list of advertised keys against the cohort and
// returns them by party.
func (c Config) checkKeys(keys []Keys) (map[uint64]Keys, error) {
	if len(keys) < c.Threshold {
		return nil, fmt.Errorf("secagg: keys of %d parties, below the threshold %d", len(keys), c.Threshold)
	}
	m := map[uint64]Keys{}
	used := map[[32]byte]bool{}
	for _, k := range keys {
		if !slices.Contains(c.Parties, k.ID) {
			return nil, fmt.Errorf("secagg: keys of party %d, not in the cohort", k.ID)
		}
		if _, dup := m[k.ID]; dup {
			return nil, fmt.Errorf("secagg: keys of party %d listed twice", k.ID)
		}
		if used[k.Enc] || used[k.Mask] || k.Enc == k.Mask {
			return nil, fmt.Errorf("secagg: party %d advertised a key already in use", k.ID)
		}
		used[k.Enc], used[k.Mask] = true, true
		m[k.ID] = k
	}
	return m, nil
}

// Keys are a party's advertised public keys: Enc for the boxes that carry
// its shares, Mask for the pairwise masks.
type Keys struct {
	ID        uint64
	Enc, Mask [32]byte
}

// Box is one party's sealed shares for another.
type Box struct {
	From, To uint64
	Sealed   []byte
}

// Masked is a party's masked input.
type Masked struct {
	ID uint64
	Y  []uint32
}

// Share is one share of party Of's secret.
type Share struct {
	Of    uint64
	Share []byte
}

// Reveal is a survivor's answer to the list of survivors: its shares of
// the survivors' self-mask seeds and of the dropped parties' mask keys.
type Reveal struct {
	ID   uint64
	Self []Share
	Mask []Share
}

// PartyError names a party whose message broke the protocol.
type PartyError struct {
	Party  uint64
	Reason string
}

func (e *PartyError) Error() string {
	return fmt.Sprintf("secagg: party %d: %s", e.Party, e.Reason)
}

// sortedIDs returns the keys of m in increasing order.
func sortedIDs[V any](m map[uint64]V) []uint64 {
	ids := make([]uint64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// ScaleFor is the fixed-point scale at which the sum of n inputs, each
// value clipped to [−clip, clip], fits bits bits (two's complement) without
// wrapping. It fails on a non-positive clip or n, or where bits cannot hold
// n values of at least one unit.
func ScaleFor(n int, clip float64, bits int) (float64, error) {
	if n < 1 || !(clip > 0) || math.IsInf(clip, 0) || bits < 8 || bits > 32 {
		return 0, fmt.Errorf("secagg: no scale for %d inputs clipped to %g in %d bits", n, clip, bits)
	}
	top := math.Ldexp(1, bits-1) - 1 // the largest magnitude the sum may reach
	scale := math.Floor((top - float64(n)) / (float64(n) * clip))
	if scale < 1/clip {
		return 0, fmt.Errorf("secagg: %d bits cannot hold the sum of %d inputs", bits, n)
	}
	return scale, nil
}

// Encode writes x as fixed-point integers modulo 2^bits: each value
// clipped to [−clip, clip], times scale, rounded to the nearest integer
// (two's complement, low bits kept). dst and x must have the same length;
// NaN is refused.
func Encode(dst []uint32, x []float32, clip, scale float64, bits int) error {
	if len(dst) != len(x) {
		return errors.New("secagg: Encode lengths differ")
	}
	low := uint32(uint64(1)<<bits - 1)
	for i, v := range x {
		f := float64(v)
		if math.IsNaN(f) {
			return fmt.Errorf("secagg: NaN at %d", i)
		}
		f = max(-clip, min(clip, f))
		dst[i] = uint32(int32(math.Round(f*scale))) & low
	}
	return nil
}

// Decode turns a sum of Encode's integers (modulo 2^bits) back into
// floats: each value sign-extended from bits bits and divided by scale.
func Decode(dst []float32, sum []uint32, scale float64, bits int) error {
	if len(dst) != len(sum) {
		return errors.New("secagg: Decode lengths differ")
	}
	sh := 32 - bits
	for i, v := range sum {
		dst[i] = float32(float64(int32(v<<sh)>>sh) / scale)
	}
	return nil
}
