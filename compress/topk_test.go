package compress

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/vecmath"
)

// topkParams are the parameter sets the top-k tests run over.
var topkParams = []struct{ k, chunk, bits int }{
	{64, 4096, 2}, {64, 4096, 1}, {3, 10, 2}, {3, 10, 1}, {1, 1, 2}, {1, 1, 1},
	{7, 7, 1}, {7, 7, 2}, {16, 512, 2}, {100, 1000, 2}, {2, 65536, 1},
}

var topkLengths = []int{0, 1, 9, 10, 11, 1000, 4097, 10000}

func mustTopK(t testing.TB, k, chunk, nbits int) Codec {
	t.Helper()
	c, err := TopKCodec(k, chunk, nbits)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseTopK(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Codec
	}{
		{"topk", TopK},
		{"topk:64/4096", TopK},
		{"topk:64/4096:2", TopK},
		{"topk:064/04096:02", TopK},
		{"topk:1/1:1", "topk:1/1:1"},
		{"topk:32/4096", "topk:32/4096:2"},
		{"topk:65536/65536:1", "topk:65536/65536:1"},
	} {
		got, err := ParseCodec(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseCodec(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		if again, err := ParseCodec(string(got)); err != nil || again != got {
			t.Errorf("ParseCodec(%q) = %q, %v: canonical spelling not a fixed point", got, again, err)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"topk:0/4096", "k 0 out of range"},
		{"topk:4097/4096", "k 4097 out of range [1, chunk size 4096]"},
		{"topk:1/0", "chunk size 0 out of range"},
		{"topk:1/65537", "chunk size 65537 out of range [1, 65536]"},
		{"topk:1/999999999", "chunk size 999999999"},
		{"topk:1/4096:3", "bits 3, want 1 or 2"},
		{"topk:1/4096:0", "bits 0"},
		{"topk:", "want topk"},
		{"topk:64", "want topk"},
		{"topk:64/", "want topk"},
		{"topk:/4096", "want topk"},
		{"topk:64/4096:", "want topk"},
		{"topk:64/4096:2:1", "want topk"},
		{"topk:64:4096", "want topk"},
		{"topk:-1/4096", "want topk"},
		{"topk:+1/4096", "want topk"},
		{"topk: 64/4096", "want topk"},
		{"topk:64/4096:2 ", "want topk"},
		{"topk:1/1234567890", "want topk"},
		{"topk::", "want topk"},
		{"topkk", "unknown codec"},
		{"TOPK", "unknown codec"},
	} {
		got, err := ParseCodec(tc.in)
		if err == nil {
			t.Errorf("ParseCodec(%q) = %q, want an error", tc.in, got)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "compress: ") || strings.Contains(msg, "\n") ||
			!strings.Contains(msg, fmt.Sprintf("%q", tc.in)) || !strings.Contains(msg, tc.want) {
			t.Errorf("ParseCodec(%q) error %q: want one line naming the value and containing %q", tc.in, msg, tc.want)
		}
		if _, _, _, ok := Codec(tc.in).Sparse(); ok {
			t.Errorf("Codec(%q).Sparse() ok", tc.in)
		}
	}

	if k, chunk, nb, ok := Codec("topk:32/1024").Sparse(); !ok || k != 32 || chunk != 1024 || nb != 2 {
		t.Errorf("Sparse = %d, %d, %d, %v", k, chunk, nb, ok)
	}
	if k, chunk, nb, ok := TopK.Sparse(); !ok || k != DefaultTopK || chunk != DefaultTopKChunk || nb != DefaultTopKBits {
		t.Errorf("TopK.Sparse = %d, %d, %d, %v", k, chunk, nb, ok)
	}
	for _, c := range []Codec{FP32, Int8, ""} {
		if _, _, _, ok := c.Sparse(); ok {
			t.Errorf("%q.Sparse() ok", c)
		}
	}
	if c, err := TopKCodec(5, 100, 1); err != nil || c != "topk:5/100:1" {
		t.Errorf("TopKCodec = %q, %v", c, err)
	}
	_, err := TopKCodec(0, 100, 1)
	checkErr(t, err, "k 0 out of range")

	// Every spelling works wherever a codec is taken.
	for _, s := range []Codec{"topk", "topk:64/4096", TopK} {
		e := NewEncoder(s, 10)
		if e.Codec() != TopK || len(e.Residual()) != 10 || e.Beta() != 1 {
			t.Errorf("NewEncoder(%q): codec %q, residual %d, beta %v", s, e.Codec(), len(e.Residual()), e.Beta())
		}
		if MaxEncodedSize(s, 100) != MaxEncodedSize(TopK, 100) || MaxEncodedSize(s, 100) == 0 {
			t.Errorf("MaxEncodedSize(%q) = %d", s, MaxEncodedSize(s, 100))
		}
	}
	for _, c := range []Codec{"topk:0/1", "topk:", "topk:2/1"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewEncoder(%q) did not panic", c)
				}
			}()
			NewEncoder(c, 1)
		}()
	}
	if MaxEncodedSize("topk:0/1", 5) != 0 {
		t.Error("bound for an invalid top-k codec")
	}
}

// refTopK returns the indices, increasing, of the k largest |y[j]|, ties
// going to the lower index.
func refTopK(y []float32, k int) []int {
	idx := make([]int, len(y))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		ya, yb := math.Abs(float64(y[a])), math.Abs(float64(y[b]))
		switch {
		case ya > yb:
			return -1
		case ya < yb:
			return 1
		}
		return a - b
	})
	idx = idx[:k]
	slices.Sort(idx)
	return idx
}

func signbit(v float32) bool { return math.Float32bits(v)>>31 != 0 }

// checkTopK checks one top-k encoding of y (the encoder's input plus its
// decayed residual before the call) against the documented rules: the
// chosen entries are the top min(k, len) of every chunk, nothing else
// decodes to anything but +0 and keeps all of y as residual, the chosen
// ones keep their sign and take one of the chunk's levels, which are
// means of the chosen magnitudes assigned to them (1 bit: one mean; 2
// bits: a low and a high bin split by magnitude), and their residual is
// y - decoded. It returns the sum of squared errors of the chosen values.
func checkTopKEncoding(t *testing.T, k, chunk, nbits int, y, dec, residual []float32) float64 {
	t.Helper()
	var sse float64
	for lo := 0; lo < len(y); lo += chunk {
		hi := min(lo+chunk, len(y))
		sel := refTopK(y[lo:hi], min(k, hi-lo))
		chosen := map[int]bool{}
		var amin, amax float64 = math.Inf(1), 0
		var sum float64
		for _, j := range sel {
			chosen[lo+j] = true
			a := math.Abs(float64(y[lo+j]))
			amin, amax = min(amin, a), max(amax, a)
			sum += a
		}
		levels := map[float32][]float64{} // level -> magnitudes
		for i := lo; i < hi; i++ {
			if !chosen[i] {
				if math.Float32bits(dec[i]) != 0 {
					t.Fatalf("value %d not chosen but decodes to %g", i, dec[i])
				}
				if math.Float32bits(residual[i]) != math.Float32bits(y[i]) {
					t.Fatalf("value %d not chosen: residual %g, want y = %g", i, residual[i], y[i])
				}
				continue
			}
			if signbit(dec[i]) != signbit(y[i]) {
				t.Fatalf("value %d: decoded %g, y %g: sign flipped", i, dec[i], y[i])
			}
			if want := y[i] - dec[i]; math.Float32bits(residual[i]) != math.Float32bits(want) {
				t.Fatalf("value %d: residual %g, want y - decoded = %g", i, residual[i], want)
			}
			l := float32(math.Abs(float64(dec[i])))
			levels[l] = append(levels[l], math.Abs(float64(y[i])))
			e := float64(dec[i]) - float64(y[i])
			sse += e * e
			if math.Abs(e) > amax-amin {
				t.Fatalf("value %d: decoded %g, y %g: error above the chunk's magnitude spread %g", i, dec[i], y[i], amax-amin)
			}
		}
		if len(levels) > nbits {
			t.Fatalf("chunk at %d: %d distinct levels for %d bits", lo, len(levels), nbits)
		}
		if nbits == 1 {
			if want := float32(sum / float64(len(sel))); len(sel) > 0 {
				if _, ok := levels[want]; !ok {
					t.Fatalf("chunk at %d: levels %v, want the mean magnitude %g", lo, levels, want)
				}
			}
		}
		// Each level is the float32 mean of the magnitudes assigned to it,
		// and the bins do not overlap.
		var ls []float32
		for l, as := range levels {
			var s float64
			for _, a := range as {
				s += a
			}
			// The encoder sums in index order; the order differs here, so
			// allow the float64 rounding of the sum.
			if m := s / float64(len(as)); math.Abs(float64(l)-m) > 1e-6*m+float64(math.Nextafter32(l, math.MaxFloat32)-l) {
				t.Fatalf("chunk at %d: level %g is not the mean %g of its %d magnitudes", lo, l, m, len(as))
			}
			ls = append(ls, l)
		}
		if len(ls) == 2 {
			a, b := levels[min(ls[0], ls[1])], levels[max(ls[0], ls[1])]
			if slices.Max(a) > slices.Min(b) {
				t.Fatalf("chunk at %d: low bin up to %g, high bin from %g", lo, slices.Max(a), slices.Min(b))
			}
		}
	}
	return sse
}

// wantTopKSize is the documented size of the top-k payload of y: the
// header, the levels, the codes, and the Rice codes of the indices of
// each chunk's top min(k, length) values, padded once to a byte.
func wantTopKSize(k, chunk, nbits int, y []float32) int {
	return topkSizeOf(len(y), k, chunk, nbits, func(lo, hi int) []int { return refTopK(y[lo:hi], min(k, hi-lo)) })
}

// topkSizeOf is the documented size of a top-k payload of n values whose
// chunk [lo, hi) sends the indices idx(lo, hi).
func topkSizeOf(n, k, chunk, nbits int, idx func(lo, hi int) []int) int {
	var m, total, idxBits int
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		m++
		total += min(k, hi-lo)
		idxBits += riceLen(hi-lo, idx(lo, hi))
	}
	return 17 + 4*nbits*m + (total*nbits+7)/8 + (idxBits+7)/8
}

// decayed returns float32(beta*r[i]) + x[i].
func decayed(beta float32, r, x []float32) []float32 {
	y := make([]float32, len(x))
	for i := range y {
		y[i] = float32(beta*r[i]) + x[i]
	}
	return y
}

func TestTopKRoundTrip(t *testing.T) {
	for _, pr := range topkParams {
		c := mustTopK(t, pr.k, pr.chunk, pr.bits)
		for _, in := range inputs {
			for _, n := range topkLengths {
				t.Run(fmt.Sprintf("%s/%s/%d", c, in.name, n), func(t *testing.T) {
					e := NewEncoder(c, n)
					for round := range 3 {
						x := in.gen(n)
						if round > 0 {
							if in.name == "huge" {
								break // x + residual overflows
							}
							x = gaussian(n, 0.1, uint64(round))
						}
						y := decayed(1, e.Residual(), x)
						p := mustEncode(t, e, x)
						if want := wantTopKSize(pr.k, pr.chunk, pr.bits, y); len(p) != want || int64(len(p)) > MaxEncodedSize(c, n) {
							t.Fatalf("payload of %d bytes, want %d (MaxEncodedSize %d)", len(p), want, MaxEncodedSize(c, n))
						}
						if gc, gn, err := DecodedSize(p); gc != c || gn != n || err != nil {
							t.Fatalf("DecodedSize = %q, %d, %v", gc, gn, err)
						}
						dec := mustDecode(t, p, n)
						checkTopKEncoding(t, pr.k, pr.chunk, pr.bits, y, dec, e.Residual())
						testDecodeAdd(t, p, n)
					}
				})
			}
		}
	}
}

// TestTopKTieBreak: equal magnitudes go to the lower index, whatever their
// sign.
func TestTopKTieBreak(t *testing.T) {
	x := []float32{1, -1, 2, 1, -2, 1, 1, 0, -1, 1}
	e := NewEncoder("topk:4/10:1", len(x))
	dec := mustDecode(t, mustEncode(t, e, x), len(x))
	// Chosen: 2, -2 (indices 2, 4), then the lowest-index ±1: 0 and 1.
	var got []int
	for i, v := range dec {
		if v != 0 {
			got = append(got, i)
		}
	}
	if !slices.Equal(got, []int{0, 1, 2, 4}) {
		t.Fatalf("chosen %v (decoded %v), want [0 1 2 4]", got, dec)
	}
	// All zero: the first k entries are sent, as +0, and nothing changes.
	z := make([]float32, 10)
	e = NewEncoder("topk:3/5:2", 10)
	p := mustEncode(t, e, z)
	for i, v := range mustDecode(t, p, 10) {
		if math.Float32bits(v) != 0 || math.Float32bits(e.Residual()[i]) != 0 {
			t.Fatalf("zeros: value %d decodes to %g, residual %g", i, v, e.Residual()[i])
		}
	}
	want := rawTopK(10, 3, 5, 2, []topkChunk{
		{levels: []float32{0, 0}, idx: []int{0, 1, 2}, codes: []int{0, 0, 0}},
		{levels: []float32{0, 0}, idx: []int{0, 1, 2}, codes: []int{0, 0, 0}},
	}, nil)
	if !bytes.Equal(p, want) {
		t.Fatalf("zeros: payload\n%x\nwant\n%x", p, want)
	}
}

// TestTopKFormat decodes a payload built by hand from the documented
// format.
func TestTopKFormat(t *testing.T) {
	// Bit by bit: n = 16, k = 2, chunks of 8, 1 bit, so b = log2(8/2) = 2.
	// Chunk 0 sends indices 3 and 6: Rice codes of 3 (no one bits, the
	// zero, then 3 = 1,1 LSB first) and of 6-3-1 = 2 (0, then 0,1); chunk
	// 1 sends 0 and 7: codes of 0 (0, 0,0) and of 7-0-1 = 6 (one 1 for
	// 6>>2 = 1, the 0, then 2 = 0,1). The index bits in order are
	// 011 001 000 1001 and 3 zero bits of padding: bytes 0x26, 0x12. The
	// codes (signs) 1,0 and 0,1 are the byte 0x09.
	lit := []byte{
		'C', 'Z', 1, 3, 16, 0, 0, 0, 2, 0, 0, 0, 8, 0, 0, 0, 1,
		0, 0, 0, 0x3f, // chunk 0 level 0.5
		0, 0, 0, 0x40, // chunk 1 level 2
		0x09,       // codes
		0x26, 0x12, // indices
	}
	if raw := rawTopK(16, 2, 8, 1, []topkChunk{
		{levels: []float32{0.5}, idx: []int{3, 6}, codes: []int{1, 0}},
		{levels: []float32{2}, idx: []int{0, 7}, codes: []int{0, 1}},
	}, nil); !bytes.Equal(raw, lit) {
		t.Fatalf("rawTopK\n%x\nwant\n%x", raw, lit)
	}
	got := mustDecode(t, lit, 16)
	wantLit := make([]float32, 16)
	wantLit[3], wantLit[6], wantLit[8], wantLit[15] = -0.5, 0.5, 2, -2
	if !slices.Equal(got, wantLit) {
		t.Fatalf("decoded %v, want %v", got, wantLit)
	}
	// Per chunk at most 2*(1+2) + (8-2)>>2 = 7 index bits.
	if MaxEncodedSize("topk:2/8:1", 16) != 17+8+1+2 {
		t.Fatalf("MaxEncodedSize %d", MaxEncodedSize("topk:2/8:1", 16))
	}

	// n = 250, chunks of 100, k = 4: the last chunk has 50 values.
	p := rawTopK(250, 4, 100, 2, []topkChunk{
		{levels: []float32{0.5, 2}, idx: []int{1, 5, 17, 99}, codes: []int{0, 1, 2, 3}},
		{levels: []float32{0, 0}, idx: []int{0, 1, 2, 3}, codes: []int{2, 0, 3, 1}},
		{levels: []float32{1, 1}, idx: []int{0, 10, 20, 49}, codes: []int{3, 0, 1, 2}},
	}, nil)
	// Chunks 0 and 1 have b = log2(100/4 = 25) = 4: chunk 0's values 1, 3,
	// 11, 81 take 4*5 bits plus 81>>4 = 5 one bits, chunk 1's four zeros
	// 4*5 bits; chunk 2 has b = log2(50/4 = 12) = 3, values 0, 9, 9, 28:
	// 4*4 bits plus 0+1+1+3 one bits. 25+20+21 = 66 bits, 9 bytes; 12
	// 2-bit codes, 3 bytes. The bound has 26, 26 and 16+(50-4)>>3 = 21
	// bits: 10 bytes.
	if len(p) != 17+3*8+3+9 || MaxEncodedSize("topk:4/100", 250) != 17+3*8+3+10 {
		t.Fatalf("payload of %d bytes, MaxEncodedSize %d", len(p), MaxEncodedSize("topk:4/100", 250))
	}
	want := make([]float32, 250)
	want[1], want[5], want[17], want[99] = 0.5, 2, -0.5, -2
	want[100] = float32(math.Copysign(0, -1))
	want[102] = float32(math.Copysign(0, -1))
	want[200], want[210], want[220], want[249] = -1, 1, 1, -1
	got = mustDecode(t, p, 250)
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("value %d = %g, want %g", i, got[i], want[i])
		}
	}
	testDecodeAdd(t, p, 250)

	// 1 bit: the code is the sign.
	p = rawTopK(5, 2, 3, 1, []topkChunk{
		{levels: []float32{3}, idx: []int{0, 2}, codes: []int{1, 0}},
		{levels: []float32{0.25}, idx: []int{0, 1}, codes: []int{0, 1}},
	}, nil)
	got = mustDecode(t, p, 5)
	if !slices.Equal(got, []float32{-3, 0, 3, 0.25, -0.25}) {
		t.Fatalf("1-bit: decoded %v", got)
	}
	testDecodeAdd(t, p, 5)
}

// TestTopKTwoBits: the 2-bit codebook is never worse than 1 bit (Lloyd
// refinement only lowers the squared error) and, on Gaussian data, much
// better.
func TestTopKTwoBits(t *testing.T) {
	const n = 1 << 16
	for _, in := range inputs[:2] {
		x := in.gen(n)
		var sse [3]float64
		for _, nb := range []int{1, 2} {
			e := NewEncoder(mustTopK(t, 64, 4096, nb), n)
			dec := mustDecode(t, mustEncode(t, e, x), n)
			sse[nb] = checkTopKEncoding(t, 64, 4096, nb, x, dec, e.Residual())
		}
		t.Logf("%s: squared error of the sent values, 1 bit %.4g, 2 bits %.4g", in.name, sse[1], sse[2])
		if sse[2] > sse[1]*(1+1e-6) || in.name == "gauss" && sse[2] > sse[1]/2 {
			t.Errorf("%s: 2-bit squared error %g, 1-bit %g", in.name, sse[2], sse[1])
		}
	}
}

// TestTopKErrorFeedback: with beta = 1, the sum of the decoded payloads
// plus the residual equals the sum of the inputs, up to the float32
// rounding of y = x + residual and of residual = y - decoded; with a
// constant input, every coordinate is sent often enough that the residual
// stays bounded, so the mean decoded value converges to the input.
func TestTopKErrorFeedback(t *testing.T) {
	const rounds = 300
	for _, c := range []Codec{"topk:8/256:2", "topk:8/256:1", "topk:1/1:1", "topk:5/37"} {
		for _, constant := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/constant=%v", c, constant), func(t *testing.T) {
				const n = 3000
				e := NewEncoder(c, n)
				sumX := make([]float64, n)
				sumDec := make([]float64, n)
				tol := make([]float64, n)
				dec := make([]float32, n)
				x := gaussian(n, 1, 42)
				for round := range rounds {
					if !constant {
						x = gaussian(n, 1, uint64(round))
					}
					y := decayed(1, e.Residual(), x)
					p := mustEncode(t, e, x)
					if err := Decode(p, dec); err != nil {
						t.Fatal(err)
					}
					r := e.Residual()
					for i := range x {
						sumX[i] += float64(x[i])
						sumDec[i] += float64(dec[i])
						tol[i] += (math.Abs(float64(y[i])) + math.Abs(float64(r[i]))) * 0x1p-24
						if d := math.Abs(sumX[i] - sumDec[i] - float64(r[i])); d > tol[i]*1.001+1e-9 {
							t.Fatalf("round %d value %d: |sum x - sum decoded - residual| = %g > %g", round, i, d, tol[i])
						}
					}
				}
				if constant {
					// Each chunk sends k of its values per round, so a
					// value waits about chunk/k rounds: its residual stays
					// within (chunk/k)*max|x| (about a quarter of that
					// is seen).
					k, chunk, _, _ := c.Sparse()
					var xmax, rmax, errMean float64
					for i := range x {
						xmax = max(xmax, math.Abs(float64(x[i])))
						rmax = max(rmax, math.Abs(float64(e.Residual()[i])))
						errMean += math.Abs(sumDec[i]/rounds - float64(x[i]))
					}
					errMean /= n
					bound := float64(chunk) / float64(k) * xmax
					t.Logf("max |residual| %.3g (bound %.3g), mean |sum decoded/rounds - x| %.3g", rmax, bound, errMean)
					if rmax > bound || errMean > bound/rounds {
						t.Fatalf("max |residual| %g > %g or mean error %g", rmax, bound, errMean)
					}
				}
			})
		}
	}
}

func TestTopKBeta(t *testing.T) {
	const n = 2000
	c := Codec("topk:10/500:2")
	e := NewEncoder(c, n)
	for _, b := range []float32{-0.1, 1.01, float32(math.NaN()), float32(math.Inf(1))} {
		checkErr(t, e.SetBeta(b), "beta")
	}
	if e.Beta() != 1 {
		t.Fatalf("beta %v after failed SetBeta", e.Beta())
	}
	for _, other := range []Codec{FP32, Int8} {
		oe := NewEncoder(other, 3)
		checkErr(t, oe.SetBeta(0.95), "beta")
		if err := oe.SetBeta(1); err != nil || oe.Beta() != 1 {
			t.Errorf("%s: SetBeta(1) = %v", other, err)
		}
	}
	if err := e.SetBeta(0.5); err != nil || e.Beta() != 0.5 {
		t.Fatalf("SetBeta(0.5) = %v, beta %v", err, e.Beta())
	}
	x := gaussian(n, 1, 1)
	mustEncode(t, e, x)
	for round := range 5 {
		x := gaussian(n, 1, uint64(10+round))
		y := decayed(0.5, e.Residual(), x)
		dec := mustDecode(t, mustEncode(t, e, x), n)
		checkTopKEncoding(t, 10, 500, 2, y, dec, e.Residual())
	}
	// With zero input the residual decays geometrically (and shrinks
	// further by what is sent).
	norm := func() (s float64) {
		for _, v := range e.Residual() {
			s += float64(v) * float64(v)
		}
		return s
	}
	zero := make([]float32, n)
	for range 10 {
		before := norm()
		mustEncode(t, e, zero)
		if after := norm(); after > before/4*(1+1e-6) {
			t.Fatalf("residual norm² %g -> %g with beta 0.5", before, after)
		}
	}
	// beta = 0 forgets the residual: the payload is a fresh encoder's.
	if err := e.SetBeta(0); err != nil {
		t.Fatal(err)
	}
	pa := mustEncode(t, e, x)
	if pf := mustEncode(t, NewEncoder(c, n), x); !bytes.Equal(pa, pf) {
		t.Fatal("beta 0: payload differs from a fresh encoder's")
	}
}

func TestTopKDeterminism(t *testing.T) {
	for _, c := range []Codec{TopK, "topk:64/4096:1", "topk:3/10:2"} {
		for _, n := range []int{0, 1, 10000} {
			x := mixture(n, 1e-3, 1e-1, 7)
			a, b := NewEncoder(c, n), NewEncoder(c, n)
			a.SetBeta(0.95)
			b.SetBeta(0.95)
			for round := range 3 {
				pa, pb := mustEncode(t, a, x), mustEncode(t, b, x)
				if !bytes.Equal(pa, pb) {
					t.Fatalf("%s n=%d round %d: encoders disagree", c, n, round)
				}
			}
			// Restoring a persisted residual and beta reproduces the stream.
			r := bytes.Clone(float32Bytes(a.Residual()))
			pa := mustEncode(t, a, x)
			fresh := NewEncoder(c, n)
			fresh.SetBeta(0.95)
			copy(fresh.Residual(), bytesFloat32(r))
			if pf := mustEncode(t, fresh, x); !bytes.Equal(pa, pf) {
				t.Fatalf("%s n=%d: restored encoder differs", c, n)
			}
		}
	}
}

func TestTopKEncodeErrors(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	e := NewEncoder("topk:5/100", 2000)
	mustEncode(t, e, gaussian(2000, 1, 1)) // a non-zero residual
	_, err := e.Encode(make([]float32, 1999))
	checkErr(t, err, "1999")
	for _, bad := range []float32{nan, inf, -inf} {
		x := gaussian(2000, 1, 1)
		x[1500] = bad
		before := bytes.Clone(float32Bytes(e.Residual()))
		_, err := e.Encode(x)
		checkErr(t, err, "x[1500]")
		if !bytes.Equal(before, float32Bytes(e.Residual())) {
			t.Errorf("residual changed by a failed Encode")
		}
	}
	// x finite but x + residual overflows, late in the vector.
	e.Residual()[1999] = math.MaxFloat32
	before := bytes.Clone(float32Bytes(e.Residual()))
	x := gaussian(2000, 1, 2)
	x[1999] = math.MaxFloat32
	_, err = e.Encode(x)
	checkErr(t, err, "x[1999] + beta*residual[1999]")
	if !bytes.Equal(before, float32Bytes(e.Residual())) {
		t.Errorf("residual changed by a failed Encode")
	}
	// A non-finite residual is refused too.
	e.Residual()[3] = nan
	_, err = e.Encode(gaussian(2000, 1, 3))
	checkErr(t, err, "residual[3]")
}

// TestTopKSize: on Gaussian data the payload has exactly the documented
// size for the indices chosen, and these bytes per value (the figures of
// the package documentation and the README).
func TestTopKSize(t *testing.T) {
	const n = 1 << 20
	x := gaussian(n, 1, 1)
	p8 := mustEncode(t, NewEncoder(Int8, n), x)
	for _, tc := range []struct {
		c   Codec
		bpv string // bytes per value
	}{
		{TopK, "0.0206"},
		{"topk:128/4096:2", "0.0354"},
		{"topk:256/4096:2", "0.0609"},
		{"topk:64/4096:1", "0.0177"},
		{"topk:32/4096", "0.0123"},
		{"topk:1/1:1", "4.2500"},
	} {
		p := mustEncode(t, NewEncoder(tc.c, n), x)
		k, chunk, nbits, _ := tc.c.Sparse()
		want := wantTopKSize(k, chunk, nbits, x)
		if len(p) != want || int64(len(p)) > MaxEncodedSize(tc.c, n) {
			t.Errorf("%s: %d bytes, want %d (MaxEncodedSize %d)", tc.c, len(p), want, MaxEncodedSize(tc.c, n))
		}
		sent := n / chunk * k
		lay := layoutTopK(n, k, chunk, nbits)
		idxBits := float64(int64(len(p))-lay.idxOff) * 8 / float64(sent)
		t.Logf("%s: %d bytes (bound %d), %.4f bytes per value, %.3f per value sent, %.2f bits per index; int8 %.4f, %.1f times larger",
			tc.c, len(p), MaxEncodedSize(tc.c, n), float64(len(p))/n, float64(len(p))/float64(sent), idxBits, float64(len(p8))/n, float64(len(p8))/float64(len(p)))
		if got := fmt.Sprintf("%.4f", float64(len(p))/n); got != tc.bpv {
			t.Errorf("%s: %s bytes per value, want %s", tc.c, got, tc.bpv)
		}
	}
	// Last chunk shorter than k: two chunks of 100 with b = log2(10) = 3,
	// each at most 10*4 + (100-10)>>3 = 51 index bits, and 5 values all
	// sent with b = 0, 5 bits.
	if got, want := MaxEncodedSize("topk:10/100:2", 205), int64(17+3*8+(25*2+7)/8+(2*51+5+7)/8); got != want {
		t.Errorf("n=205: MaxEncodedSize %d, want %d", got, want)
	}
}

// TestTopKMaxEncodedSize encodes adversarial index patterns and checks
// that no payload exceeds MaxEncodedSize, that every chunk's indices at
// its end reach it exactly (the bound is tight) and that indices at its
// start give the least size.
func TestTopKMaxEncodedSize(t *testing.T) {
	// Each pattern returns the positions to make the largest in a chunk
	// of l values with k of them sent.
	patterns := []struct {
		name string
		f    func(l, k int, r *rand.Rand) []int
	}{
		{"end", func(l, k int, _ *rand.Rand) []int { return seq(l-k, l) }},
		{"start", func(l, k int, _ *rand.Rand) []int { return seq(0, k) }},
		{"even", func(l, k int, _ *rand.Rand) []int {
			idx := make([]int, k)
			for i := range idx {
				idx[i] = i * l / k
			}
			return idx
		}},
		// The first at 0, the rest at the end: one long gap.
		{"split", func(l, k int, _ *rand.Rand) []int { return append([]int{0}, seq(l-k+1, l)...) }},
		// Coded values 2^(b+1)-1: a run of one and every low bit set.
		{"stride", func(l, k int, _ *rand.Rand) []int {
			step := 2 << riceB(l, k)
			var idx []int
			for j := step - 1; j < l-k && len(idx) < k; j += step {
				idx = append(idx, j)
			}
			return append(idx, seq(l-(k-len(idx)), l)...)
		}},
		{"random", func(l, k int, r *rand.Rand) []int {
			idx := r.Perm(l)[:k]
			slices.Sort(idx)
			return idx
		}},
	}
	r := rand.New(rand.NewPCG(5, 5))
	for _, pr := range []struct{ k, chunk int }{
		{64, 4096}, {1, 4096}, {4096, 4096}, {4095, 4096}, {2048, 4096}, {100, 1000},
		{3, 10}, {7, 7}, {1, 1}, {5, 37}, {2, 65536}, {1000, 65536},
	} {
		for _, nbits := range []int{1, 2} {
			c := mustTopK(t, pr.k, pr.chunk, nbits)
			for _, last := range []int{0, 1, pr.k - 1, pr.k, pr.k + 1, pr.chunk - 1} {
				if last < 0 || last >= pr.chunk {
					continue
				}
				n := 2*pr.chunk + last
				for _, pt := range patterns {
					name, pat := pt.name, pt.f
					x := make([]float32, n)
					var chosen []int
					perChunk := map[int][]int{}
					for lo := 0; lo < n; lo += pr.chunk {
						l := min(pr.chunk, n-lo)
						idx := pat(l, min(pr.k, l), r)
						perChunk[lo] = idx
						for i, j := range idx {
							// Distinct magnitudes above the 1e-3 of the others.
							x[lo+j] = float32(1+i) * float32(1-2*(i&1))
							chosen = append(chosen, lo+j)
						}
						for j := range l {
							if x[lo+j] == 0 {
								x[lo+j] = 1e-3 * float32(r.Float64())
							}
						}
					}
					p := mustEncode(t, NewEncoder(c, n), x)
					lay := layoutTopK(int64(n), pr.k, pr.chunk, nbits)
					size := int64(len(p))
					want := topkSizeOf(n, pr.k, pr.chunk, nbits, func(lo, _ int) []int { return perChunk[lo] })
					if size > MaxEncodedSize(c, n) || size < lay.minSize || int(size) != want {
						t.Fatalf("%s n=%d %s: %d bytes, want %d in [%d, MaxEncodedSize %d]",
							c, n, name, size, want, lay.minSize, MaxEncodedSize(c, n))
					}
					if name == "end" && size != MaxEncodedSize(c, n) || name == "start" && size != lay.minSize {
						t.Fatalf("%s n=%d %s: %d bytes, bounds [%d, %d]", c, n, name, size, lay.minSize, MaxEncodedSize(c, n))
					}
					var got []int
					for i, v := range mustDecode(t, p, n) {
						if v != 0 {
							got = append(got, i)
						}
					}
					if !slices.Equal(got, chosen) {
						t.Fatalf("%s n=%d %s: decoded indices differ from the pattern", c, n, name)
					}
				}
			}
		}
	}
}

// seq returns lo, lo+1, ..., hi-1.
func seq(lo, hi int) []int {
	s := make([]int, 0, max(hi-lo, 0))
	for i := lo; i < hi; i++ {
		s = append(s, i)
	}
	return s
}

// TestTopKRice decodes hand-built payloads of random index sets, from
// every index to none left out, over chunk lengths and k that give every
// Rice parameter from 0 to 16 and unary runs longer than 64 bits.
func TestTopKRice(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for range 300 {
		chunk := 1 + r.IntN(MaxTopKChunk)
		if r.IntN(3) == 0 {
			chunk = 1 + r.IntN(64)
		}
		k := 1 + r.IntN(chunk)
		if r.IntN(2) == 0 {
			k = 1 + r.IntN(min(chunk, 8))
		}
		n := chunk*r.IntN(3) + r.IntN(chunk+1)
		var chunks []topkChunk
		want := make([]float32, n)
		for lo := 0; lo < n; lo += chunk {
			l := min(chunk, n-lo)
			kc := min(k, l)
			var idx []int
			switch r.IntN(3) {
			case 0:
				idx = seq(l-kc, l)
			case 1:
				idx = append(seq(0, kc-1), l-1)
			default:
				idx = r.Perm(l)[:kc]
				slices.Sort(idx)
			}
			codes := make([]int, kc)
			for i, j := range idx {
				codes[i] = r.IntN(2)
				want[lo+j] = float32(1 - 2*codes[i])
			}
			chunks = append(chunks, topkChunk{levels: []float32{1}, idx: idx, codes: codes})
		}
		p := rawTopK(n, k, chunk, 1, chunks, nil)
		c := mustTopK(t, k, chunk, 1)
		if int64(len(p)) > MaxEncodedSize(c, n) {
			t.Fatalf("%s n=%d: %d bytes above MaxEncodedSize %d", c, n, len(p), MaxEncodedSize(c, n))
		}
		if got := mustDecode(t, p, n); !slices.Equal(got, want) {
			t.Fatalf("%s n=%d: decoded values differ", c, n)
		}
	}
}

// topkChunk is one chunk of a hand-built top-k payload.
type topkChunk struct {
	levels []float32
	idx    []int
	codes  []int
}

// bitList collects bits in order; bytes packs them LSB-first (bit i of
// the list is bit i%8 of byte i/8), padding with pad.
type bitList []bool

func (l *bitList) add(v, w int) {
	for b := range w {
		*l = append(*l, v>>b&1 == 1)
	}
}

func (l bitList) bytes(pad bool) []byte {
	for len(l)%8 != 0 {
		l = append(l, pad)
	}
	out := make([]byte, len(l)/8)
	for i, b := range l {
		if b {
			out[i/8] |= 1 << (i % 8)
		}
	}
	return out
}

// riceB is the documented Rice parameter of a chunk of l values with k
// indices: the largest b with 2^b <= l/k (integer division).
func riceB(l, k int) int {
	b := 0
	for 1<<(b+1) <= l/k {
		b++
	}
	return b
}

// addRice appends the Rice code of v with parameter b: v>>b one bits, a
// zero bit, then the low b bits of v.
func (l *bitList) addRice(v, b int) {
	for range v >> b {
		*l = append(*l, true)
	}
	*l = append(*l, false)
	l.add(v, b)
}

// riceLen is the number of bits of the Rice codes of a chunk of l values
// with the given increasing indices.
func riceLen(l int, idx []int) int {
	b, prev, total := riceB(l, len(idx)), -1, 0
	for _, j := range idx {
		total += 1 + b + (j-prev-1)>>b
		prev = j
	}
	return total
}

// rawTopK builds a top-k payload by hand from the documented format: the
// header, the levels, the codes, then per chunk the Rice codes of its
// first index and of each later one's gap minus one (the chunk's length
// follows from n). opts.padIdx and opts.padCode set the padding bits,
// opts.idx replaces the whole index section, opts.tail is appended.
func rawTopK(n, k, chunk, nbits int, chunks []topkChunk, opts *rawOpts) []byte {
	if opts == nil {
		opts = &rawOpts{}
	}
	p := []byte{'C', 'Z', version, codecTopK}
	p = binary.LittleEndian.AppendUint32(p, uint32(n))
	p = binary.LittleEndian.AppendUint32(p, uint32(k))
	p = binary.LittleEndian.AppendUint32(p, uint32(chunk))
	p = append(p, byte(nbits))
	var idx, codes bitList
	for i, c := range chunks {
		for _, l := range c.levels {
			p = binary.LittleEndian.AppendUint32(p, math.Float32bits(l))
		}
		l := min(chunk, n-i*chunk)
		b := riceB(l, min(k, l))
		prev := -1
		for _, j := range c.idx {
			idx.addRice(j-prev-1, b)
			prev = j
		}
		for _, code := range c.codes {
			codes.add(code, nbits)
		}
	}
	p = append(p, codes.bytes(opts.padCode)...)
	if opts.idx != nil {
		p = append(p, opts.idx...)
	} else {
		p = append(p, idx.bytes(opts.padIdx)...)
	}
	return append(p, opts.tail...)
}

type rawOpts struct {
	padIdx, padCode bool
	idx             []byte
	tail            []byte
}

// goodChunks is a valid payload body for n = 250, k = 4, chunk = 100,
// 2 bits; each test case edits a copy.
func goodChunks() []topkChunk {
	return []topkChunk{
		{levels: []float32{0.5, 2}, idx: []int{1, 5, 17, 99}, codes: []int{0, 1, 2, 3}},
		{levels: []float32{1, 1}, idx: []int{0, 1, 2, 3}, codes: []int{2, 0, 3, 1}},
		{levels: []float32{0, 1e30}, idx: []int{0, 10, 20, 49}, codes: []int{3, 0, 1, 2}},
	}
}

func TestTopKDecodeRejects(t *testing.T) {
	good := rawTopK(250, 4, 100, 2, goodChunks(), nil)
	mustDecode(t, good, 250)
	enc := mustEncode(t, NewEncoder(TopK, 10000), gaussian(10000, 1, 1))
	set := func(p []byte, off int, v uint32) []byte {
		p = bytes.Clone(p)
		binary.LittleEndian.PutUint32(p[off:], v)
		return p
	}
	setByte := func(p []byte, off int, v byte) []byte {
		p = bytes.Clone(p)
		p[off] = v
		return p
	}
	edit := func(f func(c []topkChunk)) []byte {
		c := goodChunks()
		f(c)
		return rawTopK(250, 4, 100, 2, c, nil)
	}
	level := func(c, l int, v float32) []byte {
		return edit(func(ch []topkChunk) { ch[c].levels[l] = v })
	}
	index := func(c, e, v int) []byte {
		return edit(func(ch []topkChunk) { ch[c].idx[e] = v })
	}
	// n = 5, k = 2, chunk = 3, 1 bit: b = 0, so the index codes are 0, 10
	// (index 2 after 0), 0, 0 (5 bits, 1 byte); 4 codes of 1 bit (padding
	// in the code byte).
	oneBit := func(l0, l1 float32, opts *rawOpts) []byte {
		return rawTopK(5, 2, 3, 1, []topkChunk{
			{levels: []float32{l0}, idx: []int{0, 2}, codes: []int{1, 0}},
			{levels: []float32{l1}, idx: []int{0, 1}, codes: []int{0, 1}},
		}, opts)
	}
	mustDecode(t, oneBit(1, 2, nil), 5)
	zeros := mustDecode(t, rawTopK(250, 4, 100, 2, goodChunks(), &rawOpts{idx: make([]byte, 7)}), 250)
	for i, v := range zeros { // chunk 2 has level 0, decoding to ±0
		if chosen := i%100 < 4; !chosen && math.Float32bits(v) != 0 || chosen && i < 200 && v == 0 {
			t.Fatalf("all-zero index section: value %d = %g", i, v)
		}
	}
	negZero := float32(math.Copysign(0, -1))

	for _, tc := range []struct {
		name    string
		payload []byte
		n       int
		want    string
	}{
		{"short header", good[:16], 250, "shorter than the 17-byte header"},
		{"k 0", set(good, 8, 0), 250, "k 0 out of range"},
		{"k > chunk", set(good, 8, 101), 250, "k 101 out of range [1, chunk size 100]"},
		{"k 2^32-1", set(good, 8, math.MaxUint32), 250, "k 4294967295 out of range"},
		{"chunk 0", set(good, 12, 0), 250, "chunk size 0 out of range"},
		{"chunk too large", set(set(good, 12, MaxTopKChunk+1), 8, 1), 250, "chunk size 65537 out of range"},
		{"chunk 2^32-1", set(good, 12, math.MaxUint32), 250, "chunk size 4294967295"},
		{"bits 0", setByte(good, 16, 0), 250, "bits 0, want 1 or 2"},
		{"bits 3", setByte(good, 16, 3), 250, "bits 3"},
		{"bits 255", setByte(good, 16, 255), 250, "bits 255"},
		{"n too small", good, 249, "250 values"},
		{"n too large", good, 251, "250 values"},
		{"header n mismatch", set(good, 4, 249), 250, "249 values"},
		{"header n shrunk", set(good, 4, 200), 200, "trailing data"},
		{"header n grown", set(good, 4, 400), 400, "truncated"},
		{"k changed", set(good, 8, 3), 250, "trailing data"},
		{"chunk changed", set(good, 12, 10), 250, "truncated"},
		{"bits changed", setByte(good, 16, 1), 250, "trailing data"},
		{"no body", good[:17], 250, "truncated"},
		{"truncated", good[:len(good)-1], 250, "truncated"},
		{"trailing byte", append(bytes.Clone(good), 0), 250, "trailing data"},
		{"encoder payload truncated", enc[:len(enc)-1], 10000, "truncated"},
		{"encoder payload trailing", append(bytes.Clone(enc), 1, 2), 10000, "trailing data"},
		{"level NaN", level(1, 0, float32(math.NaN())), 250, "chunk 1 has invalid level NaN"},
		{"level +Inf", level(2, 1, float32(math.Inf(1))), 250, "chunk 2 has invalid level +Inf"},
		{"level -Inf", level(0, 0, float32(math.Inf(-1))), 250, "chunk 0 has invalid level -Inf"},
		{"level negative", level(0, 1, -2), 250, "chunk 0 has invalid level -2"},
		{"level -0", level(2, 0, negZero), 250, "chunk 2 has invalid level -0"},
		{"levels out of order", level(0, 0, 3), 250, "chunk 0 has low level 3 above high level 2"},
		{"index outside chunk", index(0, 3, 100), 250, "chunk 0: index 100 outside the chunk's 100 values"},
		{"index outside last chunk", index(2, 3, 50), 250, "chunk 2: index 50 outside the chunk's 50 values"},
		// Gap 124 with b = 4: a run of 7 where the chunk leaves room for
		// gaps up to 100-4+3-2-1 = 96, runs up to 6.
		{"unary run too long", index(1, 3, 127), 250, "chunk 1: index code 3 of 4 has a unary run longer than 6"},
		{"no room after", edit(func(c []topkChunk) { c[0].idx = []int{1, 5, 99, 100} }), 250, "chunk 0: index 99 (code 2 of 4) leaves 0 positions for the 1 indices after it"},
		{"no room first", edit(func(c []topkChunk) { c[1].idx = []int{97, 98, 99, 100} }), 250, "chunk 1: index 97 (code 0 of 4) leaves 2 positions for the 3 indices after it"},
		{"fewer codes than k", edit(func(c []topkChunk) { c[2].idx, c[2].codes = []int{0, 10}, []int{3, 0} }), 250, "index section ends inside code 2 of chunk 2: truncated"},
		{"fewer chunks", rawTopK(250, 4, 100, 2, goodChunks()[:2], nil), 250, "truncated"},
		{"empty index section", rawTopK(250, 4, 100, 2, goodChunks(), &rawOpts{idx: []byte{}}), 250, "truncated"},
		{"index section all ones", rawTopK(250, 4, 100, 2, goodChunks(), &rawOpts{idx: bytes.Repeat([]byte{0xff}, 10)}), 250, "chunk 0: index code 0 of 4 has a unary run longer than 6"},
		// All zero bits are the codes of indices 0 to 3 in each chunk, 7
		// bytes; 3 more bytes are not.
		{"index section zeros", rawTopK(250, 4, 100, 2, goodChunks(), &rawOpts{idx: make([]byte, 10)}), 250, "trailing data"},
		// A run longer than 64 bits: 100 of 1000 have b = 3 and room for
		// gaps up to 900, runs up to 112.
		{"long unary run", rawTopK(1000, 100, 1000, 1, []topkChunk{{levels: []float32{1}, codes: make([]int, 100)}},
			&rawOpts{idx: bytes.Repeat([]byte{0xff}, (100*4+112+7)/8)}), 1000, "chunk 0: index code 0 of 100 has a unary run longer than 112"},
		{"index padding", rawTopK(250, 4, 100, 2, goodChunks(), &rawOpts{padIdx: true}), 250, "index section has non-zero padding bits"},
		{"index trailing byte", rawTopK(250, 4, 100, 2, goodChunks(), &rawOpts{tail: []byte{0}}), 250, "index section goes on after its last code: trailing data"},
		{"index trailing bytes", rawTopK(250, 4, 100, 2, goodChunks(), &rawOpts{tail: []byte{0, 0}}), 250, "want at most 37: trailing data"},
		{"1-bit level NaN", oneBit(float32(math.NaN()), 1, nil), 5, "chunk 0 has invalid level"},
		{"1-bit level negative", oneBit(1, -1, nil), 5, "chunk 1 has invalid level -1"},
		{"1-bit code padding", oneBit(1, 2, &rawOpts{padCode: true}), 5, "code section has non-zero padding bits"},
		{"1-bit trailing", oneBit(1, 2, &rawOpts{tail: []byte{0}}), 5, "trailing data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := make([]float32, tc.n)
			checkErr(t, Decode(tc.payload, out), tc.want)
			checkErr(t, DecodeAdd(tc.payload, 1, out), tc.want)
		})
	}
	// The code section of a 2-bit payload with 12 codes has no padding;
	// with 3 codes it has 2 bits of it.
	p := rawTopK(5, 3, 5, 2, []topkChunk{{levels: []float32{1, 2}, idx: []int{0, 1, 4}, codes: []int{3, 2, 1}}}, &rawOpts{padCode: true})
	checkErr(t, Decode(p, make([]float32, 5)), "code section has non-zero padding bits")

	// Every proper prefix of a valid payload is rejected.
	for _, p := range [][]byte{good, enc, oneBit(1, 2, nil), mustEncode(t, NewEncoder(TopK, 0), nil)} {
		n := int(binary.LittleEndian.Uint32(p[4:8]))
		out := make([]float32, n)
		for k := range len(p) {
			if err := Decode(p[:k], out); err == nil {
				t.Fatalf("prefix of %d of %d bytes accepted", k, len(p))
			}
		}
	}
	if c, n, err := DecodedSize(good[:17]); c != "topk:4/100:2" || n != 250 || err != nil {
		t.Errorf("DecodedSize = %q, %d, %v", c, n, err)
	}
	_, _, err := DecodedSize(good[:16])
	checkErr(t, err, "shorter")
	_, _, err = DecodedSize(set(good, 8, 0))
	checkErr(t, err, "k 0")
}

// TestTopKAllocs checks that Encode allocates only the returned payload
// and that decoding does not allocate.
func TestTopKAllocs(t *testing.T) {
	const n = 100000
	x := gaussian(n, 1, 1)
	e := NewEncoder(TopK, n)
	p := mustEncode(t, e, x)
	out := make([]float32, n)
	if a := testing.AllocsPerRun(10, func() { e.Encode(x) }); a > 1 {
		t.Errorf("Encode makes %v allocations per call, want <= 1", a)
	}
	// (A garbage collection may empty the decoder pool once.)
	if a := testing.AllocsPerRun(10, func() { Decode(p, out) }); a > 0.5 {
		t.Errorf("Decode makes %v allocations per call", a)
	}
	if a := testing.AllocsPerRun(10, func() { DecodeAdd(p, 0.5, out) }); a > 0.5 {
		t.Errorf("DecodeAdd makes %v allocations per call", a)
	}
}

func FuzzDecodeSparse(f *testing.F) {
	for _, pr := range topkParams {
		c := mustTopK(f, pr.k, pr.chunk, pr.bits)
		for _, n := range []int{0, 1, 11, 1500} {
			e := NewEncoder(c, n)
			x := mixture(n, 1e-3, 1, uint64(n))
			mustEncode(f, e, x)
			f.Add(mustEncode(f, e, x))
		}
	}
	f.Add(rawTopK(250, 4, 100, 2, goodChunks(), nil))
	f.Add(rawTopK(5, 2, 3, 1, []topkChunk{
		{levels: []float32{1}, idx: []int{0, 2}, codes: []int{1, 0}},
		{levels: []float32{2}, idx: []int{0, 1}, codes: []int{0, 1}},
	}, nil))
	f.Add(rawTopK(250, 4, 100, 2, goodChunks(), &rawOpts{padIdx: true, tail: []byte{1}}))
	f.Add(rawTopK(250, 4, 100, 2, goodChunks(), &rawOpts{idx: make([]byte, 7)}))
	f.Add(rawTopK(250, 4, 100, 2, goodChunks(), &rawOpts{idx: bytes.Repeat([]byte{0xff}, 10)}))
	// A chunk's last 100 of 1000 (b = 3): the first code has a run of 112.
	f.Add(rawTopK(1000, 100, 1000, 1, []topkChunk{{levels: []float32{1}, idx: seq(900, 1000), codes: make([]int, 100)}}, nil))
	f.Add([]byte("CZ\x01\x03\x05\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00\x01"))
	addMaskSeeds(f)
	f.Fuzz(func(t *testing.T, p []byte) {
		c, n, err := DecodedSize(p)
		if err != nil || n > 1<<20 {
			n = 250
		}
		out, ok := fuzzDecode(t, p, n)
		if !ok {
			return
		}
		for i, v := range out {
			if !finite(v) {
				t.Fatalf("value %d = %v", i, v)
			}
		}
		if c.Masked() {
			checkMaskOutput(t, p, c, out)
		} else if k, chunk, nbits, ok := c.Sparse(); ok {
			if lay := layoutTopK(int64(n), k, chunk, nbits); int64(len(p)) < lay.minSize || int64(len(p)) > lay.maxSize {
				t.Fatalf("accepted %s payload of %d bytes, outside [%d, %d]", c, len(p), lay.minSize, lay.maxSize)
			}
			for lo := 0; lo < n; lo += chunk {
				hi := min(lo+chunk, n)
				nz := 0
				mags := map[float32]bool{}
				for _, v := range out[lo:hi] {
					if v != 0 {
						nz++
						mags[float32(math.Abs(float64(v)))] = true
					}
				}
				if nz > min(k, hi-lo) || len(mags) > nbits {
					t.Fatalf("chunk at %d: %d non-zeros with %d magnitudes, k %d, %d bits", lo, nz, len(mags), k, nbits)
				}
			}
		}
		acc := make([]float32, n)
		if err := DecodeAdd(p, 0.5, acc); err != nil {
			t.Fatalf("DecodeAdd rejects what Decode accepts: %v", err)
		}
		ref := make([]float32, n)
		vecmath.Axpy(0.5, out, ref)
		for i := range acc {
			if math.Float32bits(acc[i]) != math.Float32bits(ref[i]) {
				t.Fatalf("DecodeAdd value %d = %v, want %v", i, acc[i], ref[i])
			}
		}
	})
}

// TestSelectTopK compares the radix select with a sort, on values that
// tie or differ only in their low bytes so that every pass is exercised.
func TestSelectTopK(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	gens := map[string]func() uint32{
		"equal":     func() uint32 { return 0x3f800000 },
		"low byte":  func() uint32 { return 0x3f800000 | uint32(r.IntN(4)) },
		"two bytes": func() uint32 { return 0x3f800000 | uint32(r.IntN(3))<<8 | uint32(r.IntN(3)) },
		"spread":    func() uint32 { return uint32(r.IntN(0x7f800000)) },
		"zeros":     func() uint32 { return uint32(r.IntN(2)) * 0x40000000 },
		"subnormal": func() uint32 { return uint32(r.IntN(300)) },
	}
	for name, gen := range gens {
		for _, l := range []int{1, 2, 7, 100, 4096} {
			a := make([]uint32, l)
			y := make([]float32, l)
			for i := range a {
				a[i] = gen()
				y[i] = math.Float32frombits(a[i])
			}
			for _, k := range []int{1, 2, l / 3, l - 1, l} {
				if k < 1 || k > l {
					continue
				}
				got := selectTopK(a, k, nil, make([]uint32, l))
				want := refTopK(y, k)
				if len(got) != len(want) {
					t.Fatalf("%s l=%d k=%d: %d chosen, want %d", name, l, k, len(got), len(want))
				}
				for i := range got {
					if int(got[i]) != want[i] {
						t.Fatalf("%s l=%d k=%d: chosen %v, want %v", name, l, k, got, want)
					}
				}
			}
		}
	}
}
