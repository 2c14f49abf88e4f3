package verify

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/vecmath"
)

// CurrentPath names the kernel path this process computes on: the SGEMM
// and the vector kernels' implementations ("avx512/avx512", say). Two
// machines on the same path train bitwise alike; across paths results
// differ by rounding, which training amplifies.
func CurrentPath() string { return kernels.Impl() + "/" + vecmath.Impl() }

// DefaultTolerance is the largest relative L2 distance between a decoded
// contribution and its recomputation on another kernel path that passes.
// See the package documentation for the measured drift it leaves a margin
// over.
const DefaultTolerance = 0.01

// Reason is the outcome of a verification: Passed or why it failed.
type Reason uint8

const (
	// Passed: the contribution is what its worker's committed inputs give.
	Passed Reason = iota
	// BadReveal: the revealed start state does not hash to the committed one.
	BadReveal
	// BrokenChain: the committed start state is not the worker's previous
	// committed end state (nor, for a worker that has just joined, the
	// zero state).
	BrokenChain
	// BadState: the revealed start state is not one an honest worker can
	// hold (it does not decode, or holds impossible values), so the round
	// cannot be recomputed from it.
	BadState
	// Malformed: the submitted payload does not decode to the model's
	// size, or the claimed tokens are not a whole number of a round's
	// inner steps.
	Malformed
	// PayloadMismatch: the payload differs from the recomputation: at all
	// on the same kernel path, beyond the tolerance across paths.
	PayloadMismatch
	// EndStateMismatch: on the same kernel path, the committed end state
	// differs from the recomputation's.
	EndStateMismatch

	maxReason = EndStateMismatch
)

var reasonNames = [...]string{"passed", "bad-reveal", "broken-chain", "bad-state", "malformed", "payload-mismatch", "end-state-mismatch"}

// String names the reason.
func (r Reason) String() string {
	if r > maxReason {
		return fmt.Sprintf("reason(%d)", uint8(r))
	}
	return reasonNames[r]
}

// Claim is what a worker committed to and revealed for one contribution.
type Claim struct {
	Round   int
	Worker  string
	Path    string // the kernel path the worker declares (its CurrentPath)
	Payload []byte // the payload as submitted
	// Start and End are the committed digests of the worker's local state
	// before and after the round's training.
	Start, End Digest
	// Revealed is the digest of the start state the worker revealed
	// (computed by the verifier from the revealed bytes).
	Revealed Digest
	// WantStart is what Start must be: the End the worker committed with
	// its previous contribution, or the zero state's digest for a worker
	// that has just joined.
	WantStart Digest
}

// Recomputation is a verifier's rerun of a claimed round.
type Recomputation struct {
	Path    string // the verifier's kernel path
	Payload []byte
	End     Digest // digest of the recomputed end state
}

// Verdict is the outcome of verifying one contribution, with its evidence:
// a value for the ledger (see MarshalBinary).
type Verdict struct {
	Round    int
	Worker   string
	Reason   Reason
	SamePath bool // the recomputation ran on the worker's declared path
	// Submitted and Recomputed are the payload digests (Recomputed zero
	// when the round was not recomputed).
	Submitted, Recomputed Digest
	// Distance is the relative L2 distance between the decoded payloads
	// (0 when bitwise equal; +Inf when the recomputation is zero and the
	// submission is not); Tolerance the cross-path bound applied (0 on the
	// same path, where only equality passes).
	Distance, Tolerance float64
	// Claimed and Found are the state digests a state failure is about:
	// BadReveal: the committed start and the revealed one; BrokenChain:
	// the committed start and the expected one; EndStateMismatch: the
	// committed end and the recomputed one. Zero otherwise.
	Claimed, Found Digest
}

// Passed reports whether the contribution passed.
func (v Verdict) Passed() bool { return v.Reason == Passed }

// Judge compares recomputations with claims. It keeps two decode buffers
// of the model's size. A Judge is not safe for concurrent use.
type Judge struct {
	tolerance float64
	sub, rec  []float32
}

// NewJudge returns a judge of contributions of n values with cross-path
// tolerance tol (relative L2; DefaultTolerance is measured for the demo
// model). It fails when tol is negative or not finite.
func NewJudge(n int, tol float64) (*Judge, error) {
	if !(tol >= 0) || math.IsInf(tol, 0) {
		return nil, fmt.Errorf("verify: tolerance must be finite and not negative, got %v", tol)
	}
	if n < 0 {
		return nil, fmt.Errorf("verify: contributions of %d values", n)
	}
	return &Judge{tolerance: tol, sub: make([]float32, n), rec: make([]float32, n)}, nil
}

// CheckStart checks a claim's start state before anyone recomputes it:
// the revealed state must hash to the committed one, and that must be the
// state the worker's previous contribution ended with (or the zero state
// of a joiner). It returns the failing verdict and false, or a zero
// Verdict and true.
func (j *Judge) CheckStart(c Claim) (Verdict, bool) {
	v := Verdict{Round: c.Round, Worker: c.Worker, Submitted: PayloadDigest(c.Payload)}
	switch {
	case c.Revealed != c.Start:
		v.Reason, v.Claimed, v.Found = BadReveal, c.Start, c.Revealed
	case c.Start != c.WantStart:
		v.Reason, v.Claimed, v.Found = BrokenChain, c.Start, c.WantStart
	default:
		return Verdict{}, true
	}
	return v, false
}

// RefuseState is the verdict on a claim whose revealed start state could
// not be recomputed from because no honest worker can hold it (it does not
// decode, or the recomputation refused it).
func RefuseState(c Claim) Verdict {
	return Verdict{Round: c.Round, Worker: c.Worker, Reason: BadState, Submitted: PayloadDigest(c.Payload), Found: c.Revealed}
}

// Judge returns the verdict on claim c given the recomputation r of its
// round from its revealed start state. The start checks of CheckStart come
// first. On the same kernel path the payload must be bitwise the
// recomputed one (byte-identical, or decoding to bitwise identical values:
// compress/flate's output may differ between Go releases) and the
// committed end state must be the recomputed one; across paths the decoded
// payloads must be within the tolerance (relative L2, Distance), and the
// end state is not compared (it drifts like the payload; the worker's next
// contribution is recomputed from it). It returns an error, and no
// verdict, only when the recomputation itself does not decode to the
// judge's size: a fault of the verifier, not of the worker (on the same
// path, identical payloads are not decoded at all).
func (j *Judge) Judge(c Claim, r Recomputation) (Verdict, error) {
	if v, ok := j.CheckStart(c); !ok {
		return v, nil
	}
	v := Verdict{Round: c.Round, Worker: c.Worker, SamePath: c.Path == r.Path,
		Submitted: PayloadDigest(c.Payload), Recomputed: PayloadDigest(r.Payload)}
	if v.SamePath && v.Submitted == v.Recomputed {
		// The common case needs no decoding.
		if c.End != r.End {
			v.Reason, v.Claimed, v.Found = EndStateMismatch, c.End, r.End
		}
		return v, nil
	}
	if err := compress.Decode(r.Payload, j.rec); err != nil {
		return Verdict{}, fmt.Errorf("verify: the recomputation does not decode: %v", err)
	}
	if err := compress.Decode(c.Payload, j.sub); err != nil {
		v.Reason = Malformed
		return v, nil
	}
	v.Distance = Distance(j.sub, j.rec)
	if v.SamePath {
		switch {
		case !bitwiseEqual(j.sub, j.rec):
			v.Reason = PayloadMismatch
		case c.End != r.End:
			v.Reason, v.Claimed, v.Found = EndStateMismatch, c.End, r.End
		}
		return v, nil
	}
	v.Tolerance = j.tolerance
	if !(v.Distance <= j.tolerance) {
		v.Reason = PayloadMismatch
	}
	return v, nil
}

func bitwiseEqual(a, b []float32) bool {
	for i, x := range a {
		if math.Float32bits(x) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// Distance is the relative L2 distance ‖got − want‖ / ‖want‖, in float64:
// 0 when both are zero, +Inf when only want is. It panics if the lengths
// differ.
func Distance(got, want []float32) float64 {
	if len(got) != len(want) {
		panic(fmt.Sprintf("verify: Distance of %d and %d values", len(got), len(want)))
	}
	var num, den float64
	for i, w := range want {
		d := float64(got[i]) - float64(w)
		num += d * d
		den += float64(w) * float64(w)
	}
	switch {
	case num == 0:
		return 0
	case den == 0:
		return math.Inf(1)
	}
	return math.Sqrt(num / den)
}

// VerdictDomain starts a verdict's encoding.
const VerdictDomain = "cairn/verify/verdict/v1\n"

// MaxWorkerLen is the longest worker id a verdict encodes, in bytes.
const MaxWorkerLen = 256

// MarshalBinary encodes the verdict canonically for the ledger. All
// integers and floats are little-endian:
//
//	size  field
//	24    VerdictDomain
//	8     round (uint64)
//	2     w, the worker id's length (uint16, at most MaxWorkerLen)
//	w     the worker id
//	1     reason
//	1     same path (0 or 1)
//	32    submitted payload digest
//	32    recomputed payload digest
//	32    claimed state digest
//	32    found state digest
//	8     distance (float64 bits: not NaN, not negative; may be +Inf)
//	8     tolerance (float64 bits: finite, not negative)
//
// It fails for a negative round, a worker id longer than MaxWorkerLen,
// an unknown reason, or a distance or tolerance out of range.
func (v Verdict) MarshalBinary() ([]byte, error) {
	if err := v.check(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, verdictFixed+len(v.Worker))
	b = append(b, VerdictDomain...)
	b = binary.LittleEndian.AppendUint64(b, uint64(v.Round))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(v.Worker)))
	b = append(b, v.Worker...)
	same := byte(0)
	if v.SamePath {
		same = 1
	}
	b = append(b, byte(v.Reason), same)
	for _, d := range []Digest{v.Submitted, v.Recomputed, v.Claimed, v.Found} {
		b = append(b, d[:]...)
	}
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v.Distance))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v.Tolerance))
	return b, nil
}

// verdictFixed is the encoding's size without the worker id.
const verdictFixed = len(VerdictDomain) + 8 + 2 + 2 + 4*32 + 16

func (v Verdict) check() error {
	switch {
	case v.Round < 0:
		return fmt.Errorf("verify: verdict for negative round %d", v.Round)
	case len(v.Worker) > MaxWorkerLen:
		return fmt.Errorf("verify: worker id is %d bytes, more than %d", len(v.Worker), MaxWorkerLen)
	case v.Reason > maxReason:
		return fmt.Errorf("verify: unknown verdict reason %d", uint8(v.Reason))
	case !(v.Distance >= 0):
		return fmt.Errorf("verify: verdict distance %v is not a distance", v.Distance)
	case !(v.Tolerance >= 0) || math.IsInf(v.Tolerance, 0):
		return fmt.Errorf("verify: verdict tolerance %v is not finite and non-negative", v.Tolerance)
	}
	return nil
}

// UnmarshalVerdict decodes a verdict from its canonical encoding
// (untrusted bytes: sizes are checked before use, and anything that is not
// exactly an encoding MarshalBinary writes is refused in one line).
func UnmarshalVerdict(b []byte) (Verdict, error) {
	if len(b) < verdictFixed {
		return Verdict{}, fmt.Errorf("verify: verdict is %d bytes, shorter than the %d of an empty one", len(b), verdictFixed)
	}
	if string(b[:len(VerdictDomain)]) != VerdictDomain {
		return Verdict{}, fmt.Errorf("verify: verdict does not start with %q", VerdictDomain)
	}
	o := len(VerdictDomain)
	round := binary.LittleEndian.Uint64(b[o:])
	w := int(binary.LittleEndian.Uint16(b[o+8:]))
	o += 10
	if w > MaxWorkerLen {
		return Verdict{}, fmt.Errorf("verify: verdict worker id is %d bytes, more than %d", w, MaxWorkerLen)
	}
	if len(b) != verdictFixed+w {
		return Verdict{}, fmt.Errorf("verify: verdict is %d bytes, want %d for a %d-byte worker id", len(b), verdictFixed+w, w)
	}
	if round > math.MaxInt64 {
		return Verdict{}, fmt.Errorf("verify: verdict round %d out of range", round)
	}
	v := Verdict{Round: int(round), Worker: string(b[o : o+w])}
	o += w
	v.Reason = Reason(b[o])
	switch b[o+1] {
	case 0:
	case 1:
		v.SamePath = true
	default:
		return Verdict{}, fmt.Errorf("verify: verdict same-path byte is %d, want 0 or 1", b[o+1])
	}
	o += 2
	for _, d := range []*Digest{&v.Submitted, &v.Recomputed, &v.Claimed, &v.Found} {
		copy(d[:], b[o:o+32])
		o += 32
	}
	v.Distance = math.Float64frombits(binary.LittleEndian.Uint64(b[o:]))
	v.Tolerance = math.Float64frombits(binary.LittleEndian.Uint64(b[o+8:]))
	if err := v.check(); err != nil {
		return Verdict{}, err
	}
	return v, nil
}
