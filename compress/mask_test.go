package compress

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/vecmath"
)

func mustMask(t testing.TB, k, chunk, nbits int) Codec {
	t.Helper()
	c, err := MaskCodec(k, chunk, nbits)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// maskPositions returns the positions chunk c of length clen sends.
func maskPositions(seed uint64, c, clen, k int) []int {
	var s maskSampler
	s.start(seed, c, clen, k)
	var out []int
	for j, ok := s.next(); ok; j, ok = s.next() {
		out = append(out, j)
	}
	return out
}

func TestParseMask(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"mask", "mask:1024/4096:2", ""},
		{"mask:100/400", "mask:100/400:2", ""},
		{"mask:007/64:1", "mask:7/64:1", ""},
		{"mask:0/64", "", "k 0 out of range"},
		{"mask:65/64", "", "k 65 out of range"},
		{"mask:8/64:3", "", "bits 3"},
		{"mask:8", "", "want mask, mask:K/CHUNK"},
		{"masks", "", "unknown codec"},
	} {
		c, err := ParseCodec(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseCodec(%q) = %q, %v; want error containing %q", tc.in, c, err, tc.err)
			}
			continue
		}
		if err != nil || string(c) != tc.want || !c.Masked() {
			t.Errorf("ParseCodec(%q) = %q, %v (masked %v); want %q", tc.in, c, err, c.Masked(), tc.want)
		}
		if k, chunk, _, ok := c.Sparse(); !ok || k < 1 || chunk < k {
			t.Errorf("%s: Sparse() = %d, %d, %v", c, k, chunk, ok)
		}
	}
	if TopK.Masked() || Int8.Masked() {
		t.Error("topk or int8 reported as masked")
	}
}

// TestMaskRoundTrip checks that a payload sends exactly the positions its
// seed draws, each quantised as top-k's values are, that the residual holds
// the rest, and that the size is the layout's.
func TestMaskRoundTrip(t *testing.T) {
	for _, tc := range []struct{ k, chunk, nbits, n int }{
		{1024, 4096, 2, 10000}, {3, 10, 1, 25}, {10, 10, 2, 35}, {5, 64, 2, 3},
	} {
		c := mustMask(t, tc.k, tc.chunk, tc.nbits)
		e := NewEncoder(c, tc.n)
		e.SetMaskSeed(42)
		x := gaussian(tc.n, 1, 7)
		p := mustEncode(t, e, x)
		if int64(len(p)) != MaxEncodedSize(c, tc.n) {
			t.Errorf("%s n=%d: payload %d bytes, MaxEncodedSize %d", c, tc.n, len(p), MaxEncodedSize(c, tc.n))
		}
		if seed, err := MaskSeed(p); err != nil || seed != 42 {
			t.Errorf("%s: MaskSeed = %d, %v", c, seed, err)
		}
		if got, n, err := DecodedSize(p); err != nil || got != c || n != tc.n {
			t.Errorf("DecodedSize = %s, %d, %v", got, n, err)
		}
		out := mustDecode(t, p, tc.n)
		for lo, ci := 0, 0; lo < tc.n; lo, ci = lo+tc.chunk, ci+1 {
			hi := min(lo+tc.chunk, tc.n)
			pos := maskPositions(42, ci, hi-lo, tc.k)
			if len(pos) != min(tc.k, hi-lo) {
				t.Fatalf("chunk %d: %d positions, want %d", ci, len(pos), min(tc.k, hi-lo))
			}
			sent := map[int]bool{}
			for _, j := range pos {
				sent[lo+j] = true
			}
			mags := map[float32]bool{}
			for i := lo; i < hi; i++ {
				if !sent[i] {
					if out[i] != 0 || e.Residual()[i] != x[i] {
						t.Fatalf("%s: unsent value %d decodes to %v, residual %v (x %v)", c, i, out[i], e.Residual()[i], x[i])
					}
					continue
				}
				if out[i] == 0 || math.Signbit(float64(out[i])) != math.Signbit(float64(x[i])) {
					t.Fatalf("%s: value %d = %v, x %v", c, i, out[i], x[i])
				}
				mags[float32(math.Abs(float64(out[i])))] = true
				if r := e.Residual()[i]; r != x[i]-out[i] {
					t.Fatalf("%s: residual %d = %v, want %v", c, i, r, x[i]-out[i])
				}
			}
			if len(mags) > tc.nbits {
				t.Fatalf("%s chunk %d: %d magnitudes with %d bits", c, ci, len(mags), tc.nbits)
			}
		}
	}
}

// TestMaskSeeds checks that encoders on one seed send the same positions
// whatever their data, that another seed sends other positions, and that
// over many seeds every position is sent about k/chunk of the time.
func TestMaskSeeds(t *testing.T) {
	const k, chunk, n = 64, 256, 512
	c := mustMask(t, k, chunk, 2)
	support := func(seed uint64, x []float32) []bool {
		e := NewEncoder(c, n)
		e.SetMaskSeed(seed)
		out := mustDecode(t, mustEncode(t, e, x), n)
		s := make([]bool, n)
		for i, v := range out {
			s[i] = v != 0
		}
		return s
	}
	a, b, o := support(9, gaussian(n, 1, 1)), support(9, gaussian(n, 3, 2)), support(10, gaussian(n, 1, 1))
	same, differ := 0, 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("seed 9: position %d sent for one input and not another", i)
		}
		if a[i] && o[i] {
			same++
		}
		if a[i] != o[i] {
			differ++
		}
	}
	if differ == 0 || same > 2*k*n/chunk*k/chunk {
		t.Errorf("seeds 9 and 10 share %d of %d positions (differ at %d)", same, 2*k, differ)
	}
	// Uniformity: 4,000 seeds, each position expects 1,000 draws (sd ~27).
	count := make([]int, chunk)
	for seed := range uint64(4000) {
		for _, j := range maskPositions(seed, 3, chunk, k) {
			count[j]++
		}
	}
	for j, m := range count {
		if m < 850 || m > 1150 {
			t.Fatalf("position %d drawn %d times of 4000, want about 1000", j, m)
		}
	}
}

// TestMaskErrorFeedback checks that with beta = 1 nothing is lost: the
// decoded sum over rounds plus the residual equals the sum of the inputs,
// and that a position not sent for rounds carries its accumulated value.
func TestMaskErrorFeedback(t *testing.T) {
	const n = 3000
	c := mustMask(t, 300, 1000, 2)
	e := NewEncoder(c, n)
	sum, dec := make([]float64, n), make([]float32, n)
	for r := range 20 {
		x := gaussian(n, 1, uint64(r))
		for i, v := range x {
			sum[i] += float64(v)
		}
		e.SetMaskSeed(uint64(r))
		if err := DecodeAdd(mustEncode(t, e, x), 1, dec); err != nil {
			t.Fatal(err)
		}
	}
	for i := range sum {
		if d := float64(dec[i]) + float64(e.Residual()[i]) - sum[i]; math.Abs(d) > 1e-4 {
			t.Fatalf("value %d: decoded %v + residual %v != sum %v", i, dec[i], e.Residual()[i], sum[i])
		}
	}
}

func TestMaskDeterminism(t *testing.T) {
	c := mustMask(t, 100, 400, 2)
	x := gaussian(1000, 1, 3)
	enc := func() []byte {
		e := NewEncoder(c, 1000)
		if err := e.SetBeta(0.95); err != nil {
			t.Fatal(err)
		}
		e.SetMaskSeed(77)
		mustEncode(t, e, x)
		return mustEncode(t, e, x)
	}
	if a, b := enc(), enc(); string(a) != string(b) {
		t.Fatal("two encoders with the same state and seed wrote different payloads")
	}
}

// rawMask builds a mask payload by hand; levels has nbits values per chunk
// and codes the code section.
func rawMask(n, k, chunk, nbits int, seed uint64, levels []float32, codes []byte) []byte {
	p := make([]byte, headerMask, headerMask+4*len(levels)+len(codes))
	putHeader(p, codecMask, n)
	binary.LittleEndian.PutUint32(p[8:], uint32(k))
	binary.LittleEndian.PutUint32(p[12:], uint32(chunk))
	p[16] = byte(nbits)
	binary.LittleEndian.PutUint64(p[17:], seed)
	for _, l := range levels {
		p = binary.LittleEndian.AppendUint32(p, math.Float32bits(l))
	}
	return append(p, codes...)
}

func TestMaskDecodeRejects(t *testing.T) {
	// n = 10, chunk 8, k 4, 2 bits: chunks of 8 and 2 send 4 + 2 values,
	// 12 bits of codes: 2 bytes, the top 4 bits padding.
	good := rawMask(10, 4, 8, 2, 5, []float32{1, 2, 0.5, 0.5}, []byte{0xff, 0x0f})
	if err := Decode(good, make([]float32, 10)); err != nil {
		t.Fatalf("hand-built payload rejected: %v", err)
	}
	for _, tc := range []struct {
		name string
		p    []byte
		n    int
		want string
	}{
		{"truncated header", good[:20], 10, "shorter than the 25-byte header"},
		{"truncated body", good[:len(good)-1], 10, "truncated"},
		{"trailing", append(append([]byte{}, good...), 0), 10, "trailing data"},
		{"padding", rawMask(10, 4, 8, 2, 5, []float32{1, 2, 0.5, 0.5}, []byte{0xff, 0x1f}), 10, "non-zero padding"},
		{"levels out of order", rawMask(10, 4, 8, 2, 5, []float32{2, 1, 0.5, 0.5}, []byte{0xff, 0x0f}), 10, "above high level"},
		{"negative level", rawMask(10, 4, 8, 2, 5, []float32{1, 2, -0.5, 0.5}, []byte{0xff, 0x0f}), 10, "invalid level"},
		{"NaN level", rawMask(10, 4, 8, 2, 5, []float32{float32(math.NaN()), 2, 0.5, 0.5}, []byte{0xff, 0x0f}), 10, "invalid level"},
		{"k above chunk", rawMask(10, 9, 8, 2, 5, nil, nil), 10, "k 9 out of range"},
		{"bits 3", rawMask(10, 4, 8, 3, 5, nil, nil), 10, "bits 3"},
		{"chunk too big", rawMask(10, 4, MaxTopKChunk+1, 2, 5, nil, nil), 10, "chunk size"},
		{"wrong n", good, 11, "output has length 11"},
	} {
		err := Decode(tc.p, make([]float32, tc.n))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "compress: ") {
			t.Errorf("%s: Decode error %v, want one containing %q", tc.name, err, tc.want)
		}
		if DecodeAdd(tc.p, 1, make([]float32, tc.n)) == nil {
			t.Errorf("%s: DecodeAdd accepts it", tc.name)
		}
	}
	if _, err := MaskSeed(mustEncode(t, NewEncoder(TopK, 10), gaussian(10, 1, 1))); err == nil || !strings.Contains(err.Error(), "not a random-mask codec") {
		t.Errorf("MaskSeed of a topk payload: %v", err)
	}
}

// TestMaskDecodeAdd checks that DecodeAdd is bitwise Decode then Axpy.
func TestMaskDecodeAdd(t *testing.T) {
	const n = 5000
	e := NewEncoder(mustMask(t, 500, 2048, 2), n)
	e.SetMaskSeed(3)
	p := mustEncode(t, e, gaussian(n, 1, 4))
	acc, ref := gaussian(n, 1, 5), gaussian(n, 1, 5)
	if err := DecodeAdd(p, 0.25, acc); err != nil {
		t.Fatal(err)
	}
	vecmath.Axpy(0.25, mustDecode(t, p, n), ref)
	for i := range acc {
		if math.Float32bits(acc[i]) != math.Float32bits(ref[i]) {
			t.Fatalf("value %d: DecodeAdd %v, Decode+Axpy %v", i, acc[i], ref[i])
		}
	}
}

// addMaskSeeds adds mask payloads to a fuzz corpus.
func addMaskSeeds(f *testing.F) {
	for _, c := range []Codec{"mask:1024/4096:2", "mask:3/10:1", "mask:5/5:2"} {
		for _, n := range []int{0, 1, 11, 1500} {
			e := NewEncoder(c, n)
			e.SetMaskSeed(uint64(n))
			f.Add(mustEncode(f, e, mixture(n, 1e-3, 1, uint64(n))))
		}
	}
	f.Add(rawMask(10, 4, 8, 2, 5, []float32{1, 2, 0.5, 0.5}, []byte{0xff, 0x0f}))
	f.Add(rawMask(250, 4, 100, 1, 1<<63, []float32{1, 2, 3}, make([]byte, 2)))
}

// checkMaskOutput checks a decoded mask payload: values only at the
// positions its seed draws, at most nbits magnitudes per chunk, and the
// payload exactly the layout's size.
func checkMaskOutput(t *testing.T, p []byte, c Codec, out []float32) {
	t.Helper()
	k, chunk, nbits, _ := c.Sparse()
	n := len(out)
	if lay := layoutMask(int64(n), k, chunk, nbits); int64(len(p)) != lay.size {
		t.Fatalf("accepted %s payload of %d bytes, want %d", c, len(p), lay.size)
	}
	seed, err := MaskSeed(p)
	if err != nil {
		t.Fatal(err)
	}
	for lo, ci := 0, 0; lo < n; lo, ci = lo+chunk, ci+1 {
		hi := min(lo+chunk, n)
		sent := map[int]bool{}
		for _, j := range maskPositions(seed, ci, hi-lo, k) {
			sent[lo+j] = true
		}
		mags := map[float32]bool{}
		for i := lo; i < hi; i++ {
			if out[i] != 0 {
				if !sent[i] {
					t.Fatalf("%s: value %d = %v is not in the mask", c, i, out[i])
				}
				mags[float32(math.Abs(float64(out[i])))] = true
			}
		}
		if len(mags) > nbits {
			t.Fatalf("%s chunk %d: %d magnitudes, %d bits", c, ci, len(mags), nbits)
		}
	}
}
