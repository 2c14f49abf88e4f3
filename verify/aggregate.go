package verify

import (
	"fmt"
	"math"
	"slices"
)

// AggregateOptions set the robust aggregation rule.
type AggregateOptions struct {
	// ClipMultiple bounds each contribution's L2 norm to this multiple of
	// the median norm of the round's contributions (a contribution above
	// the bound is scaled down onto it). It must be positive.
	ClipMultiple float64
	// Trim is the fraction of contributions dropped at each end of every
	// coordinate before averaging, in [0, 0.5). See Trimmed.
	Trim float64
	// Sparse averages each coordinate over the contributions that sent
	// it (a non-zero value there), as SparseLoCo does with top-k
	// contributions: a plain mean would shrink a coordinate that one
	// worker in k sent k-fold, and trimming would drop it. It requires
	// Trim 0; the norm clip still bounds every contribution.
	Sparse bool
}

// DefaultAggregateOptions clip to twice the median norm (honest
// contributions of one round of the demo model are within 5% of their
// median; see the package documentation) and trim 20% at each end.
func DefaultAggregateOptions() AggregateOptions {
	return AggregateOptions{ClipMultiple: 2, Trim: 0.2}
}

// Validate reports, in one line, what is wrong with o.
func (o AggregateOptions) Validate() error {
	if !(o.ClipMultiple > 0) || math.IsInf(o.ClipMultiple, 0) {
		return fmt.Errorf("verify: clip multiple must be positive and finite, got %v", o.ClipMultiple)
	}
	if !(o.Trim >= 0 && o.Trim < 0.5) {
		return fmt.Errorf("verify: trim fraction must be in [0, 0.5), got %v", o.Trim)
	}
	if o.Sparse && o.Trim != 0 {
		return fmt.Errorf("verify: sparse aggregation does not trim, got trim fraction %v", o.Trim)
	}
	return nil
}

// Trimmed is the number of values dropped at each end of every coordinate
// when k contributions are aggregated with trim fraction trim: none for
// trim 0 or k <= 2 (where the rule is a clipped weighted mean), otherwise
// floor(trim·k) but at least 1 and at most (k−1)/2, so that at least one
// value is kept (k = 3 gives the median, k = 4 the mean of the middle two,
// k = 5 to 9 drop one value at each end for trim 0.2, k = 10 two).
func Trimmed(k int, trim float64) int {
	if trim <= 0 || k <= 2 {
		return 0
	}
	b := max(1, int(math.Floor(trim*float64(k))))
	return min(b, (k-1)/2)
}

// AggregateStats describe one aggregation. Its slices belong to the
// Aggregator and are overwritten by its next call.
type AggregateStats struct {
	Norms  []float64 // L2 norm of each contribution, before clipping
	Median float64   // the lower median of Norms
	Bound  float64   // ClipMultiple·Median: the largest norm after clipping
	Scales []float64 // the factor each contribution was scaled by (1: not clipped)
	Trim   int       // values dropped at each end of every coordinate
}

// Aggregator combines the round's decoded contributions robustly: norm
// clipping to a multiple of the median norm, then a coordinate-wise
// trimmed, weighted mean. Its result depends only on the contributions,
// their weights and their order, bit for bit on every platform: each
// output value is a fixed sequence of correctly rounded float64 operations
// (no fused multiply-adds) in a fixed order. After the first call with a
// given number of contributions it allocates nothing. An Aggregator is not
// safe for concurrent use.
type Aggregator struct {
	opts   AggregateOptions
	norms  []float64
	sorted []float64
	scales []float64
	// Scratch for one block of coordinates, contribution-major.
	block   []float32 // clipped values
	keys    []uint64  // their order keys; allKey once dropped
	ext     []uint64  // the extreme key of each coordinate
	drop    []int     // the contributions dropped as largest, b per coordinate
	sum, ws []float64 // weighted sums and weights of the kept values
}

// blockSize is the number of coordinates combined at a time: the block's
// values and keys (12 bytes each) stay in a 32 KiB L1 cache for k up to
// about 10 (and in L2 far beyond).
const blockSize = 256

// NewAggregator returns an aggregator with options o, or an error when o
// is invalid.
func NewAggregator(o AggregateOptions) (*Aggregator, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return &Aggregator{opts: o}, nil
}

// Options are the aggregator's options.
func (a *Aggregator) Options() AggregateOptions { return a.opts }

// Aggregate writes into out the robust aggregate of deltas (the round's
// decoded contributions, in the round's canonical order, each of len(out)
// values) weighted by weights (token counts, say):
//
//  1. Each contribution's L2 norm ‖Δi‖ is computed in float64; the bound is
//     ClipMultiple times their lower median, and contribution i is scaled
//     by si = min(1, bound/‖Δi‖), each value rounded to float32
//     (float32(float64(Δij)·si)). A bound of 0 (most contributions are
//     zero) scales every contribution to zero.
//  2. For every coordinate j, the Trimmed(k, Trim) smallest and as many
//     largest clipped values are dropped (ties broken by order: of equal
//     values the earlier contribution counts as smaller), and out[j] is the
//     weighted mean of the rest: Σ wi·vij / Σ wi over the kept i, summed in
//     float64 in contribution order and rounded to float32 once.
//
// With one or two contributions (or Trim 0) this is the clipped weighted
// mean. With Sparse, step 2 keeps, for every coordinate, the contributions
// whose clipped value there is not zero, and a coordinate none of them
// sent is 0. It fails, leaving out unspecified, when there are no
// contributions, a contribution's length differs from len(out), a weight
// is not positive and finite, or a value is not finite (screening should
// have rejected those contributions).
func (a *Aggregator) Aggregate(out []float32, deltas [][]float32, weights []float64) (AggregateStats, error) {
	k := len(deltas)
	if k == 0 {
		return AggregateStats{}, fmt.Errorf("verify: no contributions to aggregate")
	}
	if len(weights) != k {
		return AggregateStats{}, fmt.Errorf("verify: %d weights for %d contributions", len(weights), k)
	}
	n := len(out)
	for i, d := range deltas {
		if len(d) != n {
			return AggregateStats{}, fmt.Errorf("verify: contribution %d has %d values, want %d", i, len(d), n)
		}
		if w := weights[i]; !(w > 0) || math.IsInf(w, 0) {
			return AggregateStats{}, fmt.Errorf("verify: contribution %d has weight %v, want positive and finite", i, w)
		}
	}
	a.grow(k)
	for i, d := range deltas {
		a.norms[i] = Norm(d)
		if math.IsInf(a.norms[i], 0) || math.IsNaN(a.norms[i]) {
			return AggregateStats{}, fmt.Errorf("verify: contribution %d holds a value that is not finite", i)
		}
	}
	copy(a.sorted, a.norms)
	slices.Sort(a.sorted)
	st := AggregateStats{Norms: a.norms, Median: a.sorted[(k-1)/2], Scales: a.scales, Trim: Trimmed(k, a.opts.Trim)}
	st.Bound = a.opts.ClipMultiple * st.Median
	for i, nrm := range a.norms {
		a.scales[i] = 1
		if nrm > st.Bound {
			a.scales[i] = st.Bound / nrm // 0 when the bound is 0
		}
	}
	for j0 := 0; j0 < n; j0 += blockSize {
		m := min(blockSize, n-j0)
		for i, d := range deltas {
			clipInto(a.block[i*blockSize:i*blockSize+m], d[j0:j0+m], a.scales[i])
		}
		a.combine(out[j0:j0+m], weights, st.Trim)
	}
	return st, nil
}

func (a *Aggregator) grow(k int) {
	if cap(a.norms) < k {
		a.norms = make([]float64, k)
		a.sorted = make([]float64, k)
		a.scales = make([]float64, k)
		a.block = make([]float32, k*blockSize)
		a.keys = make([]uint64, k*blockSize)
		a.drop = make([]int, k*blockSize)
	}
	if a.ext == nil {
		a.ext = make([]uint64, blockSize)
		a.sum = make([]float64, blockSize)
		a.ws = make([]float64, blockSize)
	}
	a.norms, a.sorted, a.scales = a.norms[:k], a.sorted[:k], a.scales[:k]
}

// clipInto writes src scaled by s to dst, each value rounded to float32
// (and unchanged when s is 1).
func clipInto(dst, src []float32, s float64) {
	if s == 1 {
		copy(dst, src)
		return
	}
	for j, v := range src {
		dst[j] = float32(float64(v) * s)
	}
}

// orderKey maps a finite float32 to a uint32 that orders like it (-0
// before +0), shifted up to leave the low 32 bits for the contribution's
// index: keys are distinct, and equal values order by index.
func orderKey(v float32, i int) uint64 {
	b := math.Float32bits(v)
	b ^= uint32(int32(b)>>31) | 1<<31 // negative: all bits flipped; else the sign bit set
	return uint64(b)<<32 | uint64(i)
}

// No finite value has either key: below every key (for the search of the
// largest) and above every key (for the search of the smallest).
const (
	noKey  = 0
	allKey = math.MaxUint64
)

// combine computes the trimmed weighted mean of each of the m
// coordinates of the current block (contribution-major: value j of
// contribution i at block[i*blockSize+j]) into out.
//
// The b largest and b smallest values of a coordinate are found by b
// searches each for the largest and the smallest key, O(b·k), fast for the
// few contributions of a round. The keys are distinct, so the dropped set
// is unique, and since 2b < k the b largest and b smallest are disjoint.
// Every loop runs over the block's coordinates innermost, so the work of
// different coordinates overlaps and nothing branches on the data (the
// builtin min and max on uint64 compile to conditional moves). A dropped
// contribution has its weight masked to zero for that coordinate; adding
// its zero product and zero weight leaves the float64 sums exactly as if
// it were skipped (the sums start at +0 and never become −0), so each
// coordinate's sum is the kept contributions' in contribution order.
func (a *Aggregator) combine(out []float32, w []float64, b int) {
	k, m := len(w), len(out)
	vals, kb := a.block, a.keys
	if b > 0 {
		for i := 0; i < k; i++ {
			v, ks := vals[i*blockSize:i*blockSize+m], kb[i*blockSize:i*blockSize+m]
			for j, x := range v {
				ks[j] = orderKey(x, i)
			}
		}
		ext := a.ext[:m]
		for t := 0; t < b; t++ {
			copy(ext, kb[:m])
			for i := 1; i < k; i++ {
				ks := kb[i*blockSize : i*blockSize+m]
				e := ext[:len(ks)]
				for j, x := range ks {
					e[j] = max(e[j], x)
				}
			}
			d := a.drop[t*blockSize : t*blockSize+m]
			for j, x := range ext {
				d[j] = int(uint32(x))
				kb[d[j]*blockSize+j] = noKey
			}
		}
		// Those dropped as largest must not be found as smallest.
		for t := 0; t < b; t++ {
			for j, i := range a.drop[t*blockSize : t*blockSize+m] {
				kb[i*blockSize+j] = allKey
			}
		}
		for t := 0; t < b; t++ {
			copy(ext, kb[:m])
			for i := 1; i < k; i++ {
				ks := kb[i*blockSize : i*blockSize+m]
				e := ext[:len(ks)]
				for j, x := range ks {
					e[j] = min(e[j], x)
				}
			}
			for j, x := range ext {
				kb[int(uint32(x))*blockSize+j] = allKey
			}
		}
	}
	sum, ws := a.sum[:m], a.ws[:m]
	clear(sum)
	clear(ws)
	if a.opts.Sparse {
		for i := 0; i < k; i++ {
			for j, x := range vals[i*blockSize : i*blockSize+m] {
				if x != 0 {
					sum[j] += float64(w[i] * float64(x))
					ws[j] += w[i]
				}
			}
		}
		for j := range out {
			out[j] = 0
			if ws[j] > 0 {
				out[j] = float32(sum[j] / ws[j])
			}
		}
		return
	}
	for i := 0; i < k; i++ {
		v := vals[i*blockSize : i*blockSize+m]
		if b == 0 {
			for j, x := range v {
				sum[j] += float64(w[i] * float64(x))
				ws[j] += w[i]
			}
			continue
		}
		ks := kb[i*blockSize : i*blockSize+m]
		wbits := math.Float64bits(w[i])
		for j, x := range v {
			// keep is all ones unless the key is allKey (dropped).
			d := ks[j] + 1
			keep := -((d | -d) >> 63)
			wi := math.Float64frombits(wbits & keep)
			sum[j] += float64(wi * float64(x))
			ws[j] += wi
		}
	}
	for j := range out {
		out[j] = float32(sum[j] / ws[j])
	}
}

// Norm is the L2 norm of x in float64, the same on every platform: each
// square is exact in float64, the squares at indices ≡ l (mod 4) are summed
// in order into partial sum l, and the norm is sqrt((s0+s1)+(s2+s3)). It is
// +Inf or NaN when x holds a value that is not finite.
func Norm(x []float32) float64 { return math.Sqrt(dot(x, x)) }
