package verify

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// refAggregate is the rule of Aggregate written plainly: clip, then per
// coordinate sort all values by (value, index), drop b at each end and take
// the weighted mean of the rest in contribution order.
func refAggregate(deltas [][]float32, w []float64, o AggregateOptions) []float32 {
	k, n := len(deltas), len(deltas[0])
	norms := make([]float64, k)
	for i, d := range deltas {
		var s float64
		for _, v := range d {
			s += float64(v) * float64(v)
		}
		norms[i] = math.Sqrt(s)
	}
	sorted := slices.Clone(norms)
	slices.Sort(sorted)
	bound := o.ClipMultiple * sorted[(k-1)/2]
	clipped := make([][]float32, k)
	for i, d := range deltas {
		s := 1.0
		if norms[i] > bound {
			s = bound / norms[i]
		}
		clipped[i] = make([]float32, n)
		for j, v := range d {
			clipped[i][j] = float32(float64(v) * s)
			if s == 1 {
				clipped[i][j] = v
			}
		}
	}
	b := Trimmed(k, o.Trim)
	out := make([]float32, n)
	idx := make([]int, k)
	for j := range out {
		for i := range idx {
			idx[i] = i
		}
		slices.SortFunc(idx, func(x, y int) int {
			vx, vy := clipped[x][j], clipped[y][j]
			switch {
			case vx < vy || (vx == vy && math.Signbit(float64(vx)) && !math.Signbit(float64(vy))):
				return -1
			case vx > vy || (vx == vy && !math.Signbit(float64(vx)) && math.Signbit(float64(vy))):
				return 1
			}
			return x - y
		})
		keep := make([]bool, k)
		for _, i := range idx[b : k-b] {
			keep[i] = true
		}
		var sum, ws float64
		for i := 0; i < k; i++ {
			if keep[i] {
				sum += float64(w[i] * float64(clipped[i][j]))
				ws += w[i]
			}
		}
		out[j] = float32(sum / ws)
	}
	return out
}

func gaussian(r *rand.Rand, n int, sigma float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * sigma)
	}
	return x
}

// honestRound returns k honest contributions: a shared signal plus
// per-worker noise of the same size, like the Δs of workers that start
// from the same weights and train on different data.
func honestRound(r *rand.Rand, k, n int) (signal []float32, deltas [][]float32) {
	signal = gaussian(r, n, 1e-3)
	for i := 0; i < k; i++ {
		d := gaussian(r, n, 1e-3)
		for j := range d {
			d[j] += signal[j]
		}
		deltas = append(deltas, d)
	}
	return signal, deltas
}

func weightedMean(deltas [][]float32, w []float64) []float32 {
	out := make([]float32, len(deltas[0]))
	var ws float64
	for _, x := range w {
		ws += x
	}
	for j := range out {
		var s float64
		for i, d := range deltas {
			s += w[i] * float64(d[j])
		}
		out[j] = float32(s / ws)
	}
	return out
}

func relDist(a, ref []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i]) - float64(ref[i])
		num += d * d
		den += float64(ref[i]) * float64(ref[i])
	}
	return math.Sqrt(num / den)
}

// TestAggregateMatchesReference: the fast selection gives bitwise the
// plainly written rule, for every k from 1 to 12, with ties, signed zeros
// and clipped contributions, and for a length that is not a multiple of
// the block.
func TestAggregateMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	n := 3*blockSize + 17
	for _, o := range []AggregateOptions{DefaultAggregateOptions(), {ClipMultiple: 1.1, Trim: 0.34}, {ClipMultiple: 3, Trim: 0}} {
		a, err := NewAggregator(o)
		if err != nil {
			t.Fatal(err)
		}
		for k := 1; k <= 12; k++ {
			_, deltas := honestRound(r, k, n)
			w := make([]float64, k)
			for i := range w {
				w[i] = float64(1 + r.IntN(100))
				deltas[i][i] = 0 // ties at zero, with both signs
				deltas[i][i+1] = float32(math.Copysign(0, -1))
				deltas[i][n-1] = 1e-3 // a tie across every contribution
			}
			deltas[k-1][5] *= 100 // makes its norm clip when k > 2
			out := make([]float32, n)
			st, err := a.Aggregate(out, deltas, w)
			if err != nil {
				t.Fatal(err)
			}
			want := refAggregate(deltas, w, o)
			for j := range out {
				if math.Float32bits(out[j]) != math.Float32bits(want[j]) {
					t.Fatalf("%+v k=%d: out[%d] = %v, reference %v", o, k, j, out[j], want[j])
				}
			}
			if st.Trim != Trimmed(k, o.Trim) || len(st.Norms) != k || st.Bound != o.ClipMultiple*st.Median {
				t.Fatalf("k=%d: stats %+v", k, st)
			}
		}
	}
}

func TestTrimmed(t *testing.T) {
	for _, tc := range []struct {
		k    int
		trim float64
		want int
	}{
		{1, 0.2, 0}, {2, 0.2, 0}, {3, 0.2, 1}, {4, 0.2, 1}, {5, 0.2, 1}, {9, 0.2, 1}, {10, 0.2, 2},
		{11, 0.2, 2}, {15, 0.2, 3}, {5, 0, 0}, {3, 0.49, 1}, {6, 0.49, 2}, {100, 0.49, 49}, {100, 0.1, 10},
	} {
		if got := Trimmed(tc.k, tc.trim); got != tc.want {
			t.Errorf("Trimmed(%d, %v) = %d, want %d", tc.k, tc.trim, got, tc.want)
		}
	}
}

// TestAggregateHonest: with only honest contributions, the robust
// aggregate stays close to their weighted mean, and with one or two it is
// the clipped weighted mean.
func TestAggregateHonest(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const n = 1 << 14
	a, _ := NewAggregator(DefaultAggregateOptions())
	for _, k := range []int{1, 2, 4, 5, 8, 10} {
		_, deltas := honestRound(r, k, n)
		w := make([]float64, k)
		for i := range w {
			w[i] = float64(3000 + 100*i) // unequal token counts
		}
		out := make([]float32, n)
		st, err := a.Aggregate(out, deltas, w)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range st.Scales {
			if s != 1 {
				t.Fatalf("k=%d: honest contribution %d was clipped by %v", k, i, s)
			}
		}
		// The mean of k honest contributions carries noise of σ/√k around
		// the signal; trimming adds a little more. Bound the difference at
		// a quarter of the signal.
		d := relDist(out, weightedMean(deltas, w))
		if k <= 2 && d > 1e-6 {
			t.Fatalf("k=%d: not the weighted mean (distance %g)", k, d)
		}
		t.Logf("k=%d: %.3f from the weighted mean", k, d)
		if d > 0.25 {
			t.Fatalf("k=%d: robust aggregate is %.3f (relative L2) from the honest weighted mean", k, d)
		}
	}
}

// TestAggregatePoisoned: one bad contribution among four honest ones (and
// two among eight) moves the robust aggregate little from the honest
// mean, while it moves the plain mean a lot.
func TestAggregatePoisoned(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const n = 1 << 14
	a, _ := NewAggregator(DefaultAggregateOptions())
	kinds := []struct {
		name   string
		poison func(honest []float32) []float32
	}{
		{"noise", func(h []float32) []float32 { return gaussian(r, len(h), 1e-2) }},
		{"x50", func(h []float32) []float32 { return scaled(h, 50) }},
		{"negated", func(h []float32) []float32 { return scaled(h, -1) }},
		{"zeros", func(h []float32) []float32 { return make([]float32, len(h)) }},
		{"huge", func(h []float32) []float32 {
			x := make([]float32, len(h))
			for i := range x {
				x[i] = float32(math.MaxFloat32 / 2 * float64(1-2*(i%2)))
			}
			return x
		}},
	}
	for _, honestK := range []int{4, 8} {
		bad := honestK / 4
		for _, kind := range kinds {
			_, honest := honestRound(r, honestK, n)
			w := slices.Repeat([]float64{1}, honestK+bad)
			hmean := weightedMean(honest, w[:honestK])
			all := slices.Clone(honest)
			for b := 0; b < bad; b++ {
				// Poison the mean of the honest contributions: the
				// strongest version of each attack.
				all = slices.Insert(all, 1+2*b, kind.poison(hmean))
			}
			out := make([]float32, n)
			if _, err := a.Aggregate(out, all, w); err != nil {
				t.Fatal(err)
			}
			robust := relDist(out, hmean)
			plain := relDist(weightedMean(all, w), hmean)
			// A trimmed mean with a fraction ε of bad values is biased by
			// at most about ε times the spread of the good ones, whatever
			// the bad values are. Here the honest contributions spread
			// about as much as their mean is long; the poison must move
			// the aggregate by less than half their spread.
			sp := spread(honest) / float64(Norm(hmean))
			if robust > 0.5*sp {
				t.Errorf("%d honest + %d %s: robust aggregate is %.3f from the honest mean, more than half the honest spread %.3f (plain mean %.3g)", honestK, bad, kind.name, robust, sp, plain)
			}
			t.Logf("%d honest + %d %-8s robust %.3f  plain mean %.3g  (honest spread %.3f)", honestK, bad, kind.name, robust, plain, sp)
		}
	}
}

// spread is the L2 norm over coordinates of the standard deviation of
// the contributions' values.
func spread(deltas [][]float32) float64 {
	var s float64
	k := float64(len(deltas))
	for j := range deltas[0] {
		var sum, sq float64
		for _, d := range deltas {
			sum += float64(d[j])
			sq += float64(d[j]) * float64(d[j])
		}
		s += sq/k - (sum/k)*(sum/k)
	}
	return math.Sqrt(s)
}

func scaled(x []float32, s float32) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = s * v
	}
	return y
}

// TestAggregateRefusals: each malformed input is refused with its reason.
func TestAggregateRefusals(t *testing.T) {
	a, _ := NewAggregator(DefaultAggregateOptions())
	good := [][]float32{{1, 2}, {3, 4}}
	for _, tc := range []struct {
		name   string
		out    []float32
		deltas [][]float32
		w      []float64
		want   string
	}{
		{"none", make([]float32, 2), nil, nil, "no contributions"},
		{"weights", make([]float32, 2), good, []float64{1}, "1 weights for 2"},
		{"length", make([]float32, 3), good, []float64{1, 1}, "has 2 values, want 3"},
		{"zero weight", make([]float32, 2), good, []float64{1, 0}, "weight 0"},
		{"nan weight", make([]float32, 2), good, []float64{math.NaN(), 1}, "weight NaN"},
		{"inf weight", make([]float32, 2), good, []float64{1, math.Inf(1)}, "weight +Inf"},
		{"nan value", make([]float32, 2), [][]float32{{1, 2}, {float32(math.NaN()), 4}}, []float64{1, 1}, "contribution 1 holds a value that is not finite"},
		{"inf value", make([]float32, 2), [][]float32{{float32(math.Inf(-1)), 2}, {3, 4}}, []float64{1, 1}, "contribution 0 holds"},
	} {
		_, err := a.Aggregate(tc.out, tc.deltas, tc.w)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	for _, o := range []AggregateOptions{{ClipMultiple: 0, Trim: 0.2}, {ClipMultiple: math.NaN()}, {ClipMultiple: math.Inf(1)},
		{ClipMultiple: 2, Trim: 0.5}, {ClipMultiple: 2, Trim: -0.1}, {ClipMultiple: 2, Trim: math.NaN()}, {ClipMultiple: 2, Trim: 0.2, Sparse: true}} {
		if _, err := NewAggregator(o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}

// TestAggregateZeroMedian: when most contributions are zero the bound is
// zero and the aggregate is zero: a majority of free-riders gives no
// update, not the update of the one that remains.
func TestAggregateZeroMedian(t *testing.T) {
	a, _ := NewAggregator(DefaultAggregateOptions())
	out := []float32{9, 9}
	st, err := a.Aggregate(out, [][]float32{{0, 0}, {0, 0}, {1, -1}}, []float64{1, 1, 1})
	if err != nil {
		t.Fatal(err)
	}
	if out[0] != 0 || out[1] != 0 || st.Scales[2] != 0 {
		t.Fatalf("aggregate %v, scales %v", out, st.Scales)
	}
}

// TestAggregateNoAllocs: steady state allocates nothing.
func TestAggregateNoAllocs(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	_, deltas := honestRound(r, 6, 5000)
	w := slices.Repeat([]float64{1}, 6)
	out := make([]float32, 5000)
	a, _ := NewAggregator(DefaultAggregateOptions())
	if allocs := testing.AllocsPerRun(5, func() {
		if _, err := a.Aggregate(out, deltas, w); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Fatalf("Aggregate allocates %v times per call", allocs)
	}
}

// BenchmarkAggregate: one round of the size of a 1M-parameter model with
// ten contributions (trim 0.2: two dropped at each end of every
// coordinate), and with five.
func BenchmarkAggregate(b *testing.B) {
	for _, k := range []int{5, 10} {
		b.Run(map[int]string{5: "k=5", 10: "k=10"}[k], func(b *testing.B) {
			r := rand.New(rand.NewPCG(9, 10))
			const n = 1 << 20
			_, deltas := honestRound(r, k, n)
			w := slices.Repeat([]float64{1}, k)
			out := make([]float32, n)
			a, _ := NewAggregator(DefaultAggregateOptions())
			b.SetBytes(int64(4 * n * k))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := a.Aggregate(out, deltas, w); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestAggregateSparse: with Sparse each coordinate is the weighted mean of
// the clipped values of the contributions that sent it, 0 where none did;
// a coordinate one worker of four sent keeps its value (a plain mean would
// quarter it, the trimmed mean drop it), and the norm clip still bounds a
// huge contribution.
func TestAggregateSparse(t *testing.T) {
	a, err := NewAggregator(AggregateOptions{ClipMultiple: 2, Sparse: true})
	if err != nil {
		t.Fatal(err)
	}
	deltas := [][]float32{
		{1, 0, 0, 2, 0},
		{0, 0, 3, 2, 0},
		{1, 0, 0, 0, 1},
		{3, 0, 0, 0, 1},
	}
	w := []float64{1, 1, 1, 2}
	out := make([]float32, 5)
	if _, err := a.Aggregate(out, deltas, w); err != nil {
		t.Fatal(err)
	}
	// Norms: sqrt5, sqrt13, sqrt2, sqrt10; lower median sqrt5, bound
	// 2·sqrt5 = sqrt20: nobody clipped.
	want := []float32{float32((1 + 1 + 2*3) / 4.0), 0, 3, 2, float32((1 + 2*1) / 3.0)}
	if !slices.Equal(out, want) {
		t.Fatalf("sparse aggregate %v, want %v", out, want)
	}
	// A poisoned contribution is clipped onto the bound before averaging.
	deltas[1] = []float32{0, 0, 1000, 0, 0}
	st, err := a.Aggregate(out, deltas, w)
	if err != nil {
		t.Fatal(err)
	}
	if st.Scales[1] >= 1 || out[2] > float32(st.Bound)+1e-4 {
		t.Fatalf("the poisoned coordinate aggregates to %v (bound %v, scale %v)", out[2], st.Bound, st.Scales[1])
	}
}
