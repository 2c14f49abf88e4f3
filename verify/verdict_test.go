package verify

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/compress"
)

func enc(t testing.TB, c compress.Codec, d []float32) []byte {
	t.Helper()
	p, err := compress.NewEncoder(c, len(d)).Encode(d)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestJudge: the verdict for each way a claim can match or miss its
// recomputation.
func TestJudge(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	const n = 3000
	honest := gaussian(r, n, 1e-3)
	rec := enc(t, compress.Int8, honest)
	decoded := make([]float32, n)
	if err := compress.Decode(rec, decoded); err != nil {
		t.Fatal(err)
	}
	near := scaled(decoded, 1.01) // 1% off: cross-path drift
	far := scaled(decoded, 1.2)
	start, end, other := Digest{1}, Digest{2}, Digest{3}
	claim := func(p []byte, path string) Claim {
		return Claim{Round: 4, Worker: "w", Path: path, Payload: p, Start: start, End: end, Revealed: start, WantStart: start}
	}
	recomp := Recomputation{Path: "avx2/avx2", Payload: rec, End: end}
	j, err := NewJudge(n, 0.05)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		c      Claim
		r      Recomputation
		want   Reason
		dist   func(float64) bool
		inVerd func(Verdict) bool
	}{
		{"bitwise", claim(rec, "avx2/avx2"), recomp, Passed, func(d float64) bool { return d == 0 }, nil},
		// Other bytes (another codec) but bitwise the same values: a
		// different Go release's flate output, say.
		{"same values", claim(enc(t, compress.FP32, decoded), "avx2/avx2"), recomp, Passed, func(d float64) bool { return d == 0 }, nil},
		{"same path 1% off", claim(enc(t, compress.FP32, near), "avx2/avx2"), recomp, PayloadMismatch, func(d float64) bool { return math.Abs(d-0.01) < 1e-4 }, nil},
		{"other path 1% off", claim(enc(t, compress.FP32, near), "avx512/avx512"), recomp, Passed, func(d float64) bool { return math.Abs(d-0.01) < 1e-4 },
			func(v Verdict) bool { return v.Tolerance == 0.05 && !v.SamePath }},
		{"other path 20% off", claim(enc(t, compress.FP32, far), "avx512/avx512"), recomp, PayloadMismatch, func(d float64) bool { return math.Abs(d-0.2) < 1e-4 }, nil},
		{"zeros", claim(enc(t, compress.Int8, make([]float32, n)), "avx512/avx512"), recomp, PayloadMismatch, func(d float64) bool { return d == 1 }, nil},
		{"malformed", claim(rec[:len(rec)-1], "avx2/avx2"), recomp, Malformed, func(d float64) bool { return d == 0 }, nil},
		{"wrong size", claim(enc(t, compress.Int8, honest[1:]), "avx2/avx2"), recomp, Malformed, func(d float64) bool { return d == 0 }, nil},
		{"end state", func() Claim { c := claim(rec, "avx2/avx2"); c.End = other; return c }(), recomp, EndStateMismatch, func(d float64) bool { return d == 0 },
			func(v Verdict) bool { return v.Claimed == other && v.Found == end }},
		{"end state across paths", func() Claim { c := claim(rec, "generic/generic"); c.End = other; return c }(), recomp, Passed, func(d float64) bool { return d == 0 }, nil},
		{"reveal", func() Claim { c := claim(rec, "avx2/avx2"); c.Revealed = other; return c }(), recomp, BadReveal, func(d float64) bool { return d == 0 },
			func(v Verdict) bool { return v.Claimed == start && v.Found == other && v.Recomputed == Digest{} }},
		{"chain", func() Claim { c := claim(rec, "avx2/avx2"); c.WantStart = other; return c }(), recomp, BrokenChain, func(d float64) bool { return d == 0 },
			func(v Verdict) bool { return v.Claimed == start && v.Found == other }},
	} {
		v, err := j.Judge(tc.c, tc.r)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if v.Reason != tc.want || !tc.dist(v.Distance) || (tc.inVerd != nil && !tc.inVerd(v)) {
			t.Errorf("%s: %s distance %v, want %s (%+v)", tc.name, v.Reason, v.Distance, tc.want, v)
		}
		if v.Round != 4 || v.Worker != "w" || v.Submitted != PayloadDigest(tc.c.Payload) {
			t.Errorf("%s: verdict does not identify the claim: %+v", tc.name, v)
		}
		if _, ok := j.CheckStart(tc.c); ok != (tc.want != BadReveal && tc.want != BrokenChain) {
			t.Errorf("%s: CheckStart says %v", tc.name, ok)
		}
	}
	// A recomputation that does not decode is the verifier's fault.
	if _, err := j.Judge(claim(rec, "avx2/avx2"), Recomputation{Path: "avx2/avx2", Payload: rec[:20]}); err == nil {
		t.Error("judged against a recomputation that does not decode")
	}
	if v := RefuseState(claim(rec, "x")); v.Reason != BadState || v.Found != start || v.Passed() {
		t.Errorf("refused state: %+v", v)
	}
	if _, err := NewJudge(n, -1); err == nil {
		t.Error("negative tolerance accepted")
	}
	if _, err := NewJudge(n, math.NaN()); err == nil {
		t.Error("NaN tolerance accepted")
	}
}

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		got, want []float32
		d         float64
	}{
		{[]float32{1, 2}, []float32{1, 2}, 0},
		{[]float32{0, 0}, []float32{0, 0}, 0},
		{[]float32{1, 0}, []float32{0, 0}, math.Inf(1)},
		{[]float32{0, 0}, []float32{3, 4}, 1},
		{[]float32{-3, -4}, []float32{3, 4}, 2},
		{[]float32{3, 4.5}, []float32{3, 4}, 0.1},
		{[]float32{math.MaxFloat32, -math.MaxFloat32}, []float32{1, 1}, math.MaxFloat32}, // ‖(M−1, −M−1)‖/‖(1, 1)‖ ≈ M
	} {
		if d := Distance(tc.got, tc.want); math.Abs(d-tc.d) > 1e-12*math.Max(1, tc.d) && d != tc.d {
			t.Errorf("Distance(%v, %v) = %v, want %v", tc.got, tc.want, d, tc.d)
		}
	}
}

func sampleVerdicts() []Verdict {
	return []Verdict{
		{},
		{Round: 7, Worker: "12D3KooWworker", Reason: PayloadMismatch, SamePath: true, Submitted: Digest{1}, Recomputed: Digest{2}, Distance: 0.37},
		{Round: math.MaxInt64, Worker: strings.Repeat("w", MaxWorkerLen), Reason: EndStateMismatch, Claimed: Digest{3}, Found: Digest{4}, Distance: math.Inf(1), Tolerance: 0.05},
		{Round: 1, Worker: "é", Reason: BadState, Found: Digest{31: 9}},
	}
}

// TestVerdictEncoding: verdicts round-trip through the documented layout.
func TestVerdictEncoding(t *testing.T) {
	for _, v := range sampleVerdicts() {
		b, err := v.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		got, err := UnmarshalVerdict(b)
		if err != nil {
			t.Fatal(err)
		}
		if got != v {
			t.Fatalf("round trip: %+v, want %+v", got, v)
		}
		o := len(VerdictDomain)
		w := len(v.Worker)
		if len(b) != verdictFixed+w || binary.LittleEndian.Uint64(b[o:]) != uint64(v.Round) || string(b[o+10:o+10+w]) != v.Worker ||
			Reason(b[o+10+w]) != v.Reason || math.Float64frombits(binary.LittleEndian.Uint64(b[len(b)-16:])) != v.Distance {
			t.Fatalf("%+v: encoding does not follow the documented layout", v)
		}
	}
	for _, bad := range []Verdict{
		{Round: -1}, {Worker: strings.Repeat("w", MaxWorkerLen+1)}, {Reason: maxReason + 1},
		{Distance: math.NaN()}, {Distance: -1}, {Tolerance: math.Inf(1)}, {Tolerance: -0.1},
	} {
		if _, err := bad.MarshalBinary(); err == nil {
			t.Errorf("encoded %+v", bad)
		}
	}
}

// TestUnmarshalVerdictRefusals: each malformation is refused with its
// reason.
func TestUnmarshalVerdictRefusals(t *testing.T) {
	good, _ := sampleVerdicts()[1].MarshalBinary()
	w := len(sampleVerdicts()[1].Worker)
	o := len(VerdictDomain)
	mut := func(f func(b []byte) []byte) []byte {
		b := append([]byte(nil), good...)
		return f(b)
	}
	for _, tc := range []struct {
		name, want string
		b          []byte
	}{
		{"empty", "shorter", nil},
		{"domain", "does not start", mut(func(b []byte) []byte { b[3] ^= 1; return b })},
		{"truncated", "want", mut(func(b []byte) []byte { return b[:len(b)-1] })},
		{"trailing", "want", mut(func(b []byte) []byte { return append(b, 0) })},
		{"long worker", "more than 256", mut(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[o+8:], 300); return b })},
		{"round", "out of range", mut(func(b []byte) []byte { binary.LittleEndian.PutUint64(b[o:], 1<<63); return b })},
		{"reason", "unknown verdict reason", mut(func(b []byte) []byte { b[o+10+w] = 200; return b })},
		{"same path", "same-path byte is 2", mut(func(b []byte) []byte { b[o+11+w] = 2; return b })},
		{"nan distance", "not a distance", mut(func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[len(b)-16:], math.Float64bits(math.NaN()))
			return b
		})},
		{"inf tolerance", "tolerance", mut(func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[len(b)-8:], math.Float64bits(math.Inf(1)))
			return b
		})},
	} {
		_, err := UnmarshalVerdict(tc.b)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

func FuzzUnmarshalVerdict(f *testing.F) {
	for _, v := range sampleVerdicts() {
		b, _ := v.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := UnmarshalVerdict(b)
		if err != nil {
			return
		}
		re, err := v.MarshalBinary()
		if err != nil || string(re) != string(b) {
			t.Fatalf("a decoded verdict does not re-encode to its bytes: %v", err)
		}
	})
}

func TestReasonString(t *testing.T) {
	if PayloadMismatch.String() != "payload-mismatch" || Reason(99).String() != "reason(99)" {
		t.Fatal(PayloadMismatch.String(), Reason(99).String())
	}
}
