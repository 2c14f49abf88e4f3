package compress

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/vecmath"
)

var testLengths = []int{0, 1, 1023, 1024, 1025, 100000}

// gaussian returns n values drawn from N(0, sigma^2).
func gaussian(n int, sigma float64, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * sigma)
	}
	return x
}

// mixture returns n values, each drawn from N(0, small^2) with probability
// 0.9 and from N(0, large^2) otherwise.
func mixture(n int, small, large float64, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 2))
	x := make([]float32, n)
	for i := range x {
		s := small
		if r.Float64() < 0.1 {
			s = large
		}
		x[i] = float32(r.NormFloat64() * s)
	}
	return x
}

// inputs are the kinds of vectors the int8 tests run over.
var inputs = []struct {
	name string
	gen  func(n int) []float32
}{
	{"gauss", func(n int) []float32 { return gaussian(n, 1, uint64(n)) }},
	{"mixture", func(n int) []float32 { return mixture(n, 1e-4, 1e-2, uint64(n)) }},
	{"zeros", func(n int) []float32 { return make([]float32, n) }},
	{"tiny", func(n int) []float32 { return gaussian(n, 1e-42, uint64(n)) }}, // subnormal
	{"huge", func(n int) []float32 {
		x := gaussian(n, 1e37, uint64(n))
		for i := 0; i < n; i += 700 {
			x[i] = math.MaxFloat32
			if i%1400 == 0 {
				x[i] = -math.MaxFloat32
			}
		}
		return x
	}},
	{"sparse", func(n int) []float32 {
		x := make([]float32, n)
		for i := 0; i < n; i += 997 {
			x[i] = float32(i%13) - 6
		}
		return x
	}},
}

func mustEncode(t testing.TB, e *Encoder, x []float32) []byte {
	t.Helper()
	p, err := e.Encode(x)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return p
}

func mustDecode(t testing.TB, p []byte, n int) []float32 {
	t.Helper()
	out := make([]float32, n)
	if err := Decode(p, out); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return out
}

// scalesOf returns the chunk size and chunk scales of an int8 payload.
func scalesOf(t testing.TB, p []byte) (int, []float32) {
	t.Helper()
	n := int(binary.LittleEndian.Uint32(p[4:8]))
	c := int(binary.LittleEndian.Uint32(p[8:12]))
	s := make([]float32, (n+c-1)/c)
	for i := range s {
		s[i] = math.Float32frombits(binary.LittleEndian.Uint32(p[12+4*i:]))
	}
	return c, s
}

// rawInt8 builds an int8 payload by hand: header with n and chunk, the
// given scales, then q flate-compressed (BestSpeed, to differ from the
// encoder's level), then tail.
func rawInt8(n, chunk int, scales []float32, q []byte, tail []byte) []byte {
	var b bytes.Buffer
	b.Write([]byte{'C', 'Z', version, codecInt8})
	b.Write(binary.LittleEndian.AppendUint32(nil, uint32(n)))
	b.Write(binary.LittleEndian.AppendUint32(nil, uint32(chunk)))
	for _, s := range scales {
		b.Write(binary.LittleEndian.AppendUint32(nil, math.Float32bits(s)))
	}
	w, _ := flate.NewWriter(&b, flate.BestSpeed)
	w.Write(q)
	w.Close()
	b.Write(tail)
	return b.Bytes()
}

// rawFP32 builds an fp32 payload by hand from bit patterns.
func rawFP32(n int, bits []uint32) []byte {
	p := []byte{'C', 'Z', version, codecFP32}
	p = binary.LittleEndian.AppendUint32(p, uint32(n))
	for _, v := range bits {
		p = binary.LittleEndian.AppendUint32(p, v)
	}
	return p
}

func TestParseCodec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Codec
		ok   bool
	}{
		{"fp32", FP32, true},
		{"int8", Int8, true},
		{"", "", false},
		{"FP32", "", false},
		{"int4", "", false},
		{" int8", "", false},
	} {
		got, err := ParseCodec(tc.in)
		if tc.ok {
			if err != nil || got != tc.want {
				t.Errorf("ParseCodec(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("ParseCodec(%q) = %q, want error", tc.in, got)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "compress: ") || strings.Contains(msg, "\n") ||
			!strings.Contains(msg, fmt.Sprintf("%q", tc.in)) || !strings.Contains(msg, "fp32") || !strings.Contains(msg, "int8") {
			t.Errorf("ParseCodec(%q) error %q should be one line naming the value and the valid codecs", tc.in, msg)
		}
	}
}

func TestNewEncoderPanics(t *testing.T) {
	for _, tc := range []struct {
		c Codec
		n int
	}{{"int4", 1}, {"", 0}, {Int8, -1}, {FP32, -5}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewEncoder(%q, %d) did not panic", tc.c, tc.n)
				}
			}()
			NewEncoder(tc.c, tc.n)
		}()
	}
	if e := NewEncoder(FP32, 3); e.Codec() != FP32 || e.Residual() != nil {
		t.Errorf("FP32 encoder: codec %q residual %v", e.Codec(), e.Residual())
	}
	if e := NewEncoder(Int8, 3); e.Codec() != Int8 || len(e.Residual()) != 3 {
		t.Errorf("Int8 encoder: codec %q residual %v", e.Codec(), e.Residual())
	}
}

func TestFP32RoundTrip(t *testing.T) {
	special := []float32{0, float32(math.Copysign(0, -1)), 1e-45, -1e-45, 1.17e-38, math.MaxFloat32, -math.MaxFloat32, 1, -2.5}
	for _, n := range append(testLengths, len(special)) {
		x := gaussian(n, 3, uint64(n))
		if n == len(special) {
			x = special
		}
		e := NewEncoder(FP32, n)
		p := mustEncode(t, e, x)
		if len(p) != 8+4*n {
			t.Errorf("n=%d: payload %d bytes, want %d", n, len(p), 8+4*n)
		}
		got := mustDecode(t, p, n)
		for i := range x {
			if math.Float32bits(got[i]) != math.Float32bits(x[i]) {
				t.Fatalf("n=%d: value %d = %v, want %v", n, i, got[i], x[i])
			}
		}
		if c, m, err := DecodedSize(p); c != FP32 || m != n || err != nil {
			t.Errorf("DecodedSize = %q, %d, %v", c, m, err)
		}
	}
}

// checkQuantised checks one int8 encoding of y (the encoder's input plus
// its residual before the call): the scales are absmax/127 rounded up (or
// capped), every decoded value is within scale/2 of y, and the new
// residual is exactly y - decoded.
func checkQuantised(t *testing.T, p []byte, y, dec, residual []float32) {
	t.Helper()
	chunk, scales := scalesOf(t, p)
	if chunk != ChunkSize {
		t.Fatalf("chunk size %d, want %d", chunk, ChunkSize)
	}
	for c, s := range scales {
		lo, hi := c*chunk, min((c+1)*chunk, len(y))
		var absmax float32
		for _, v := range y[lo:hi] {
			absmax = max(absmax, float32(math.Abs(float64(v))))
		}
		exact := float64(absmax) / 127
		if absmax == 0 && s != 0 || float64(s) < exact && s != maxScale ||
			s != 0 && float64(math.Nextafter32(s, 0)) >= exact {
			t.Fatalf("chunk %d: scale %g for absmax %g", c, s, absmax)
		}
		for i := lo; i < hi; i++ {
			err := math.Abs(float64(dec[i]) - float64(y[i]))
			// scale/2 in exact arithmetic, plus the float32 rounding of
			// q*scale (and the clamp when the scale is capped).
			tol := float64(s)/2 + math.Abs(float64(dec[i]))*0x1p-23
			if err > tol {
				t.Fatalf("value %d: decoded %g, input %g, error %g > %g (scale %g)", i, dec[i], y[i], err, tol, s)
			}
			if residual != nil {
				if want := y[i] - dec[i]; math.Float32bits(residual[i]) != math.Float32bits(want) && residual[i] != want {
					t.Fatalf("value %d: residual %g, want %g", i, residual[i], want)
				}
			}
		}
	}
}

// TestQuantize compares quantize with round-half-away-from-zero of the
// float64 quotient (math.Round), which is exact for float32 operands.
func TestQuantize(t *testing.T) {
	ref := func(y, s float32) int8 {
		return int8(max(-127, min(127, math.Round(float64(y)/float64(s)))))
	}
	check := func(y, s float32) {
		if got, want := quantize(y, s), ref(y, s); got != want {
			t.Fatalf("quantize(%g, %g) = %d, want %d", y, s, got, want)
		}
	}
	r := rand.New(rand.NewPCG(1, 1))
	for range 1000000 {
		s := float32(r.ExpFloat64()) * float32(math.Ldexp(1, r.IntN(200)-150))
		if s == 0 || !finite(s) {
			continue
		}
		q := float32(r.IntN(255) - 127)
		// Exact half-integers, their float32 neighbours and random points.
		y := (q + 0.5) * s
		check(y, s)
		check(math.Nextafter32(y, 0), s)
		check(math.Nextafter32(y, 2*y), s)
		check(-y, s)
		check(float32(r.NormFloat64())*s*40, s)
	}
	for _, tc := range [][2]float32{{2.5, 1}, {-2.5, 1}, {0.5, 1}, {-0.5, 1}, {0.49999997, 1}, {127.5, 1}, {-1000, 1}, {1.5, 3}, {1e-45, 2e-45}, {3e-45, 2e-45}} {
		check(tc[0], tc[1])
	}
}

func TestInt8Error(t *testing.T) {
	for _, in := range inputs {
		for _, n := range testLengths {
			t.Run(fmt.Sprintf("%s/%d", in.name, n), func(t *testing.T) {
				x := in.gen(n)
				e := NewEncoder(Int8, n)
				p := mustEncode(t, e, x)
				dec := mustDecode(t, p, n)
				checkQuantised(t, p, x, dec, e.Residual())
				if c, m, err := DecodedSize(p); c != Int8 || m != n || err != nil {
					t.Errorf("DecodedSize = %q, %d, %v", c, m, err)
				}
				if in.name == "zeros" {
					for i := range dec {
						if dec[i] != 0 || e.Residual()[i] != 0 {
							t.Fatalf("zeros: value %d decodes to %g, residual %g", i, dec[i], e.Residual()[i])
						}
					}
				}
			})
		}
	}
}

func TestInt8ErrorFeedback(t *testing.T) {
	const rounds = 200
	for _, in := range inputs {
		if in.name == "huge" {
			continue // k*x overflows float32
		}
		t.Run(in.name, func(t *testing.T) {
			n := 3000
			x := in.gen(n)
			e := NewEncoder(Int8, n)
			acc := make([]float64, n) // running sum of decoded payloads
			dec := make([]float32, n)
			y := make([]float32, n)
			maxScale := make([]float64, n) // largest scale seen per element
			for k := 1; k <= rounds; k++ {
				for i := range y {
					y[i] = x[i] + e.Residual()[i]
				}
				p := mustEncode(t, e, x)
				if err := Decode(p, dec); err != nil {
					t.Fatal(err)
				}
				checkQuantised(t, p, y, dec, e.Residual())
				chunk, scales := scalesOf(t, p)
				for i := range acc {
					acc[i] += float64(dec[i])
					maxScale[i] = max(maxScale[i], float64(scales[i/chunk]))
				}
				// sum(decoded) = k*x - residual up to float32 rounding of
				// x+residual, so it stays within one half step of k*x.
				for i := range acc {
					drift := float64(k) * (math.Abs(float64(x[i])) + maxScale[i]) * 0x1p-22
					if d := math.Abs(acc[i] - float64(k)*float64(x[i])); d > maxScale[i]/2*(1+1e-6)+drift {
						t.Fatalf("round %d value %d: |sum - k*x| = %g > scale/2 = %g", k, i, d, maxScale[i]/2)
					}
				}
			}
		})
	}
}

func TestDeterminism(t *testing.T) {
	for _, c := range []Codec{FP32, Int8} {
		for _, n := range testLengths {
			x := mixture(n, 1e-3, 1e-1, 7)
			a, b := NewEncoder(c, n), NewEncoder(c, n)
			for round := range 3 {
				pa, pb := mustEncode(t, a, x), mustEncode(t, b, x)
				if !bytes.Equal(pa, pb) {
					t.Fatalf("%s n=%d round %d: encoders disagree", c, n, round)
				}
			}
			// Restoring a persisted residual reproduces the stream.
			if c == Int8 {
				r := bytes.Clone(float32Bytes(a.Residual()))
				pa := mustEncode(t, a, x)
				fresh := NewEncoder(c, n)
				copy(fresh.Residual(), bytesFloat32(r))
				if pf := mustEncode(t, fresh, x); !bytes.Equal(pa, pf) {
					t.Fatalf("n=%d: restored encoder differs", n)
				}
			}
		}
	}
}

func float32Bytes(x []float32) []byte {
	b := make([]byte, 0, 4*len(x))
	for _, v := range x {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func bytesFloat32(b []byte) []float32 {
	x := make([]float32, len(b)/4)
	for i := range x {
		x[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return x
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "compress: ") || strings.Contains(msg, "\n") || !strings.Contains(msg, want) {
		t.Fatalf("error %q: want one line starting with \"compress: \" containing %q", msg, want)
	}
}

func TestEncodeErrors(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, c := range []Codec{FP32, Int8} {
		e := NewEncoder(c, 2000)
		_, err := e.Encode(make([]float32, 1999))
		checkErr(t, err, "1999")
		for _, bad := range []float32{nan, inf, -inf} {
			x := gaussian(2000, 1, 1)
			x[1500] = bad
			before := bytes.Clone(float32Bytes(e.Residual()))
			_, err := e.Encode(x)
			checkErr(t, err, "x[1500]")
			if !bytes.Equal(before, float32Bytes(e.Residual())) {
				t.Errorf("%s: residual changed by a failed Encode", c)
			}
		}
	}
	// x finite but x + residual overflows.
	e := NewEncoder(Int8, 3)
	e.Residual()[2] = math.MaxFloat32
	_, err := e.Encode([]float32{0, 0, math.MaxFloat32})
	checkErr(t, err, "x[2] + residual[2]")
	if e.Residual()[2] != math.MaxFloat32 {
		t.Errorf("residual changed by a failed Encode")
	}
}

func TestDecodeRejects(t *testing.T) {
	x := gaussian(3000, 1, 3)
	good8 := mustEncode(t, NewEncoder(Int8, 3000), x)
	good32 := mustEncode(t, NewEncoder(FP32, 3000), x)
	_, scales := scalesOf(t, good8)
	q := make([]byte, 3000)
	for i := range q {
		q[i] = byte(int8(i%255 - 127))
	}
	set := func(p []byte, off int, v uint32) []byte {
		p = bytes.Clone(p)
		binary.LittleEndian.PutUint32(p[off:], v)
		return p
	}
	withScale := func(c int, s uint32) []byte { return set(good8, 12+4*c, s) }
	bad128 := bytes.Clone(q)
	bad128[2999] = 0x80
	// A decompression bomb: 64 MiB of zeros claims to be 3000 values.
	bomb := rawInt8(3000, ChunkSize, scales, make([]byte, 64<<20), nil)

	for _, tc := range []struct {
		name    string
		payload []byte
		n       int
		want    string
	}{
		{"empty", nil, 0, "shorter than"},
		{"short header", good8[:7], 3000, "shorter than"},
		{"short int8 header", good8[:11], 3000, "shorter than"},
		{"bad magic", append([]byte("XZ"), good8[2:]...), 3000, "magic"},
		{"bad version 0", append([]byte{'C', 'Z', 0}, good8[3:]...), 3000, "version"},
		{"bad version 2", append([]byte{'C', 'Z', 2}, good8[3:]...), 3000, "version"},
		{"bad codec 0", append([]byte{'C', 'Z', 1, 0}, good8[4:]...), 3000, "codec"},
		{"bad codec 3", append([]byte{'C', 'Z', 1, 3}, good8[4:]...), 3000, "codec"},
		{"int8 n too small", good8, 2999, "3000 values"},
		{"int8 n too large", good8, 3001, "3000 values"},
		{"fp32 n mismatch", good32, 1, "3000 values"},
		{"int8 header n mismatch", set(good8, 4, 2999), 3000, "2999 values"},
		{"n 2^32-1", set(good8, 4, math.MaxUint32), 3000, "4294967295 values"},
		{"chunk 0", set(good8, 8, 0), 3000, "chunk size 0"},
		{"chunk too large", set(good8, 8, MaxChunkSize+1), 3000, "chunk size"},
		{"chunk 2^32-1", set(good8, 8, math.MaxUint32), 3000, "chunk size"},
		{"fp32 truncated", good32[:len(good32)-1], 3000, "truncated"},
		{"fp32 no body", good32[:8], 3000, "truncated"},
		{"fp32 trailing", append(bytes.Clone(good32), 0), 3000, "trailing"},
		{"fp32 NaN", rawFP32(3, []uint32{0, 0x7fc00000, 0}), 3, "value 1 is not finite"},
		{"fp32 signalling NaN", rawFP32(3, []uint32{0, 0, 0x7f800001}), 3, "value 2 is not finite"},
		{"fp32 +Inf", rawFP32(2, []uint32{0x7f800000, 0}), 2, "value 0 is not finite"},
		{"fp32 -Inf", rawFP32(2, []uint32{0, 0xff800000}), 2, "value 1 is not finite"},
		{"int8 scales truncated", good8[:12+4*2], 3000, "truncated"},
		{"int8 no stream", good8[:12+4*3], 3000, "truncated"},
		{"int8 stream truncated", good8[:len(good8)-1], 3000, "flate"},
		{"int8 trailing byte", append(bytes.Clone(good8), 0), 3000, "trailing"},
		{"int8 trailing stream", rawInt8(3000, ChunkSize, scales, q, good8[12+12:]), 3000, "trailing"},
		{"scale NaN", withScale(1, 0x7fc00000), 3000, "chunk 1 has invalid scale"},
		{"scale +Inf", withScale(2, 0x7f800000), 3000, "chunk 2 has invalid scale"},
		{"scale -Inf", withScale(0, 0xff800000), 3000, "chunk 0 has invalid scale"},
		{"scale negative", withScale(1, math.Float32bits(-0.5)), 3000, "invalid scale"},
		{"scale -0", withScale(1, 0x80000000), 3000, "invalid scale"},
		{"scale overflows", withScale(1, math.Float32bits(math.Nextafter32(maxScale, math.MaxFloat32))), 3000, "invalid scale"},
		{"int8 -128", rawInt8(3000, ChunkSize, scales, bad128, nil), 3000, "value 2999 is -128"},
		{"stream short", rawInt8(3000, ChunkSize, scales, q[:2999], nil), 3000, "truncated or too short"},
		{"stream empty", rawInt8(3000, ChunkSize, scales, nil, nil), 3000, "truncated or too short"},
		{"stream long", rawInt8(3000, ChunkSize, scales, append(bytes.Clone(q), 0), nil), 3000, "more than 3000"},
		{"stream bomb", bomb, 3000, "more than 3000"},
		{"stream bomb n=0", rawInt8(0, ChunkSize, nil, make([]byte, 1<<20), nil), 0, "more than 0"},
		{"stream corrupt", append(bytes.Clone(good8[:12+12]), 0xff, 0xff, 0xff), 3000, "flate"},
		{"stream not final", append(bytes.Clone(good8[:12+12]), 0x00, 0x00, 0x00, 0xff, 0xff), 3000, "flate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := make([]float32, tc.n)
			checkErr(t, Decode(tc.payload, out), tc.want)
			checkErr(t, DecodeAdd(tc.payload, 1, out), tc.want)
		})
	}
	// A bad weight.
	for _, w := range []float32{float32(math.NaN()), float32(math.Inf(-1))} {
		checkErr(t, DecodeAdd(good8, w, make([]float32, 3000)), "weight")
	}
	// Every proper prefix of a valid payload is rejected.
	for _, p := range [][]byte{good8, good32, mustEncode(t, NewEncoder(Int8, 0), nil)} {
		n := int(binary.LittleEndian.Uint32(p[4:8]))
		out := make([]float32, n)
		for k := range len(p) {
			if err := Decode(p[:k], out); err == nil {
				t.Fatalf("prefix of %d of %d bytes accepted", k, len(p))
			}
		}
	}
}

func TestDecodedSize(t *testing.T) {
	p := mustEncode(t, NewEncoder(Int8, 77), gaussian(77, 1, 1))
	if c, n, err := DecodedSize(p[:12]); c != Int8 || n != 77 || err != nil {
		t.Errorf("DecodedSize = %q, %d, %v", c, n, err)
	}
	_, _, err := DecodedSize(p[:5])
	checkErr(t, err, "shorter")
	_, _, err = DecodedSize([]byte("CZ\x01\x09\x00\x00\x00\x00"))
	checkErr(t, err, "codec")
}

// TestOtherChunkSizes decodes hand-made payloads whose chunk size is not
// ChunkSize.
func TestOtherChunkSizes(t *testing.T) {
	const n = 2500
	q := make([]byte, n)
	for i := range q {
		q[i] = byte(int8(i%255 - 127))
	}
	for _, chunk := range []int{1, 3, 1000, 1024, 2047, 2500, 4096, MaxChunkSize} {
		m := (n + chunk - 1) / chunk
		scales := make([]float32, m)
		for c := range scales {
			scales[c] = float32(c%5) * 0.25
		}
		p := rawInt8(n, chunk, scales, q, nil)
		got := mustDecode(t, p, n)
		for i := range got {
			if want := float32(int8(q[i])) * scales[i/chunk]; got[i] != want {
				t.Fatalf("chunk %d: value %d = %g, want %g", chunk, i, got[i], want)
			}
		}
		testDecodeAdd(t, p, n)
	}
}

// testDecodeAdd checks that DecodeAdd equals Decode followed by
// vecmath.Axpy, bit for bit.
func testDecodeAdd(t *testing.T, p []byte, n int) {
	t.Helper()
	dec := mustDecode(t, p, n)
	for _, w := range []float32{1, 0.37, -2, 0} {
		out := gaussian(n, 5, 11)
		want := bytes.Clone(float32Bytes(out))
		ref := bytesFloat32(want)
		vecmath.Axpy(w, dec, ref)
		if err := DecodeAdd(p, w, out); err != nil {
			t.Fatalf("DecodeAdd: %v", err)
		}
		for i := range out {
			if math.Float32bits(out[i]) != math.Float32bits(ref[i]) {
				t.Fatalf("weight %g: value %d = %g, want %g", w, i, out[i], ref[i])
			}
		}
	}
}

func TestDecodeAdd(t *testing.T) {
	for _, c := range []Codec{FP32, Int8} {
		for _, n := range testLengths {
			e := NewEncoder(c, n)
			x := gaussian(n, 1, 5)
			mustEncode(t, e, x) // give the int8 encoder a residual
			testDecodeAdd(t, mustEncode(t, e, x), n)
		}
	}
}

func TestInt8Size(t *testing.T) {
	const n = 1 << 16
	for _, tc := range []struct {
		name string
		x    []float32
		max  float64 // bytes per value
	}{
		{"gauss", gaussian(n, 1, 1), 0.95},
		{"mixture", mixture(n, 1e-4, 1e-2, 1), 0.5},
		// Huffman codes spend at least one bit per value.
		{"zeros", make([]float32, n), 0.13},
	} {
		p := mustEncode(t, NewEncoder(Int8, n), tc.x)
		if bpv := float64(len(p)) / n; bpv > tc.max {
			t.Errorf("%s: %.3f bytes per value, want <= %.3f", tc.name, bpv, tc.max)
		}
	}
}

// TestAllocs checks that Encode allocates only the returned payload and
// that decoding allocates far less than its output (compress/flate's
// decoder allocates small link tables for each dynamic Huffman block).
func TestAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	const n = 100000
	x := gaussian(n, 1, 1)
	for _, c := range []Codec{FP32, Int8} {
		e := NewEncoder(c, n)
		p := mustEncode(t, e, x)
		out := make([]float32, n)
		if a := testing.AllocsPerRun(20, func() { e.Encode(x) }); a > 1 {
			t.Errorf("%s: Encode makes %v allocations per call, want <= 1", c, a)
		}
		for name, f := range map[string]func(){
			"Decode":    func() { Decode(p, out) },
			"DecodeAdd": func() { DecodeAdd(p, 0.5, out) },
		} {
			f()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for range 20 {
				f()
			}
			runtime.ReadMemStats(&after)
			if b := (after.TotalAlloc - before.TotalAlloc) / 20; b > n/4 {
				t.Errorf("%s: %s allocates %d bytes per call, want <= %d", c, name, b, n/4)
			} else {
				t.Logf("%s: %s allocates %d bytes per call", c, name, b)
			}
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, c := range []Codec{FP32, Int8} {
		for _, n := range []int{0, 1, 5, 1500} {
			f.Add(mustEncode(f, NewEncoder(c, n), gaussian(n, 1, uint64(n))))
		}
	}
	f.Add(rawInt8(5, 2, []float32{1, 0.5, 0}, []byte{1, 2, 3, 0x80, 5}, nil))
	f.Add(rawInt8(5, 1, []float32{1, 2, 3, 4, 5}, []byte{1, 2, 3, 4, 5}, []byte{0}))
	f.Add([]byte("CZ\x01\x01\x02\x00\x00\x00\x00\x00\x80\x7f\x00\x00\x00\x00"))
	f.Add([]byte("CZ\x01\x02\x01\x00\x00\x00\x01\x00\x00\x00"))
	f.Add([]byte("garbage"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		_, n, err := DecodedSize(p)
		if err != nil || n > 1<<20 {
			n = 5
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

// TestConcurrentDecode decodes from several goroutines at once (the
// decoders are pooled).
func TestConcurrentDecode(t *testing.T) {
	const n = 5000
	x := gaussian(n, 1, 9)
	p8 := mustEncode(t, NewEncoder(Int8, n), x)
	p32 := mustEncode(t, NewEncoder(FP32, n), x)
	want8 := mustDecode(t, p8, n)
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			out := make([]float32, n)
			for i := range 20 {
				p, want := p8, want8
				if (g+i)%2 == 1 {
					p, want = p32, x
				}
				if i%5 == 4 {
					// Interleave failures so that pooled decoders are
					// reused after errors.
					if Decode(p[:len(p)-1], out) == nil {
						errs <- fmt.Errorf("truncated payload accepted")
						return
					}
					continue
				}
				if err := Decode(p, out); err != nil {
					errs <- err
					return
				}
				for j := range out {
					if out[j] != want[j] {
						errs <- fmt.Errorf("goroutine %d: value %d = %g, want %g", g, j, out[j], want[j])
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestMaxEncodedSize: no payload the encoder writes exceeds the bound,
// whatever the data (incompressible uniform values are the worst case
// for Huffman coding), and the bound is tight on such data.
func TestMaxEncodedSize(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, n := range []int{0, 1, 1023, 1024, 65535, 65536, 3*65535 + 7, 1 << 20} {
		for _, gen := range []func() float32{
			func() float32 { return r.Float32()*2 - 1 },        // uniform: incompressible int8
			func() float32 { return float32(r.NormFloat64()) }, // Gaussian
			func() float32 { return 0 },                        // all zero
		} {
			x := make([]float32, n)
			for i := range x {
				x[i] = gen()
			}
			for _, c := range []Codec{FP32, Int8} {
				p, err := NewEncoder(c, n).Encode(x)
				if err != nil {
					t.Fatal(err)
				}
				bound := MaxEncodedSize(c, n)
				if int64(len(p)) > bound {
					t.Fatalf("%s n=%d: payload of %d bytes exceeds the bound %d", c, n, len(p), bound)
				}
				if c == FP32 && int64(len(p)) != bound {
					t.Fatalf("fp32 n=%d: %d bytes, bound %d", n, len(p), bound)
				}
			}
		}
		// Uniform data is stored: the bound is within a few bytes per block.
		x := make([]float32, n)
		for i := range x {
			x[i] = r.Float32()*2 - 1
		}
		p, _ := NewEncoder(Int8, n).Encode(x)
		if slack := MaxEncodedSize(Int8, n) - int64(len(p)); n > 0 && slack > 32 {
			t.Fatalf("int8 n=%d: bound %d is %d bytes above an incompressible payload", n, MaxEncodedSize(Int8, n), slack)
		}
	}
	if MaxEncodedSize("int4", 10) != 0 || MaxEncodedSize(Int8, -1) != 0 {
		t.Fatal("bound for an unknown codec or negative length")
	}
}

// fuzzDecode decodes p into n values; a refusal must be one line starting
// "compress: " and DecodeAdd must refuse p too. ok is false on a refusal.
func fuzzDecode(t *testing.T, p []byte, n int) (out []float32, ok bool) {
	t.Helper()
	out = make([]float32, n)
	if err := Decode(p, out); err != nil {
		if !strings.HasPrefix(err.Error(), "compress: ") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("bad error %q", err)
		}
		if DecodeAdd(p, 0.5, make([]float32, n)) == nil {
			t.Fatalf("DecodeAdd accepts what Decode rejects: %v", err)
		}
		return nil, false
	}
	return out, true
}
