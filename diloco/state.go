package diloco

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"math"

	"github.com/cairnlabs/cairn/compress"
)

// LocalState is what a worker carries from one round to the next besides
// the global weights: the inner AdamW moments, the number of AdamW updates
// taken (which sets AdamW's bias correction), and the int8 encoder's
// error-feedback residual. With the run configuration, the worker id, the
// round and θr it fixes the worker's contribution bit for bit on one kernel
// path, which is what lets anyone recompute (and so verify) it.
//
// A worker that has just joined has the zero state: M, V and Residual all
// zero and Step 0 (see ZeroState).
type LocalState struct {
	M, V     []float32 // AdamW first and second moments, one per parameter
	Step     int       // AdamW updates taken
	Residual []float32 // int8 error feedback, one per parameter; empty for fp32
	// Ahead, in a run with overlap (empty otherwise), is the decoded
	// payload of the worker's last contribution, to round AheadRound (-1:
	// none yet). A contribution to round r = AheadRound+1 trains from the
	// weights of round r-1 less Ahead: the worker's own last step stands
	// in for the aggregate it has not received yet (an eager update).
	Ahead      []float32
	AheadRound int
}

// StateDomain starts the canonical encoding of a LocalState, so that its
// hash can never be confused with the hash of anything else.
const StateDomain = "cairn/diloco/local-state/v1\n"

// stateHeader is the encoding's size before the values: the domain, then
// n, step and the residual's length as uint64s.
const stateHeader = len(StateDomain) + 24

// ZeroState is the local state of a worker that has just joined run cfg.
func ZeroState(cfg RunConfig) LocalState {
	n := cfg.Model.NumParams()
	s := LocalState{M: make([]float32, n), V: make([]float32, n), AheadRound: -1}
	if hasResidual(cfg.Codec) {
		s.Residual = make([]float32, n)
	}
	if cfg.Overlapped() {
		s.Ahead = make([]float32, n)
	}
	return s
}

// aheadTrailer is the size of the encoding's overlap trailer before its
// values: AheadRound+1 as a uint64.
const aheadTrailer = 8

// Hash is the state's canonical hash: SHA-256 of its canonical encoding
// (see MarshalBinary), computed without building that encoding.
func (s LocalState) Hash() Hash {
	d := sha256.New()
	var b [4096]byte
	s.putHeader(b[:stateHeader])
	d.Write(b[:stateHeader])
	for _, x := range [][]float32{s.M, s.V, s.Residual} {
		writeFloats(d, b[:], x)
	}
	if len(s.Ahead) > 0 {
		binary.LittleEndian.PutUint64(b[:], uint64(s.AheadRound+1))
		d.Write(b[:aheadTrailer])
		writeFloats(d, b[:], s.Ahead)
	}
	var h Hash
	d.Sum(h[:0])
	return h
}

func (s LocalState) putHeader(b []byte) {
	copy(b, StateDomain)
	o := len(StateDomain)
	binary.LittleEndian.PutUint64(b[o:], uint64(len(s.M)))
	binary.LittleEndian.PutUint64(b[o+8:], uint64(s.Step))
	binary.LittleEndian.PutUint64(b[o+16:], uint64(len(s.Residual)))
}

// writeFloats writes x to d as little-endian float32 bits, through buf.
func writeFloats(d hash.Hash, buf []byte, x []float32) {
	for len(x) > 0 {
		n := min(len(x), len(buf)/4)
		for i, v := range x[:n] {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
		}
		d.Write(buf[:4*n])
		x = x[n:]
	}
}

// MarshalBinary returns the state's canonical encoding, whose SHA-256 is
// its Hash. All integers and floats are little-endian:
//
//	offset   size  field
//	0        28    StateDomain, "cairn/diloco/local-state/v1\n"
//	28       8     n, the number of parameters (uint64)
//	36       8     step, AdamW updates taken (uint64)
//	44       8     r, the residual's length: n for int8, 0 for fp32 (uint64)
//	52       4n    M as float32 bits
//	52+4n    4n    V as float32 bits
//	52+8n    4r    the residual as float32 bits
//
// and in a run with overlap (a state with Ahead) a trailer:
//
//	52+8n+4r 8     AheadRound+1 (uint64)
//	60+8n+4r 4n    Ahead as float32 bits
//
// It fails when the state is not well formed (see Check).
func (s LocalState) MarshalBinary() ([]byte, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	size := stateHeader + 4*(2*len(s.M)+len(s.Residual))
	if len(s.Ahead) > 0 {
		size += aheadTrailer + 4*len(s.Ahead)
	}
	b := make([]byte, size)
	s.putHeader(b)
	o := stateHeader
	put := func(x []float32) {
		for _, v := range x {
			binary.LittleEndian.PutUint32(b[o:], math.Float32bits(v))
			o += 4
		}
	}
	put(s.M)
	put(s.V)
	put(s.Residual)
	if len(s.Ahead) > 0 {
		binary.LittleEndian.PutUint64(b[o:], uint64(s.AheadRound+1))
		o += aheadTrailer
		put(s.Ahead)
	}
	return b, nil
}

// StateSize is the length of the canonical encoding of a local state of
// run cfg.
func StateSize(cfg RunConfig) int {
	n := cfg.Model.NumParams()
	r := 0
	if hasResidual(cfg.Codec) {
		r = n
	}
	size := stateHeader + 4*(2*n+r)
	if cfg.Overlapped() {
		size += aheadTrailer + 4*n
	}
	return size
}

// UnmarshalState decodes a local state of run cfg from its canonical
// encoding, as revealed by a worker (untrusted). It checks the length
// against what cfg implies before allocating, and refuses, in one line, a
// wrong domain or sizes, a negative or impossible step count, and values
// that no honest worker can hold (see Check).
func UnmarshalState(b []byte, cfg RunConfig) (LocalState, error) {
	if want := StateSize(cfg); len(b) != want {
		return LocalState{}, fmt.Errorf("local state is %d bytes, want %d for this run", len(b), want)
	}
	if string(b[:len(StateDomain)]) != StateDomain {
		return LocalState{}, fmt.Errorf("local state does not start with %q", StateDomain)
	}
	o := len(StateDomain)
	n := cfg.Model.NumParams()
	hn := binary.LittleEndian.Uint64(b[o:])
	step := binary.LittleEndian.Uint64(b[o+8:])
	hr := binary.LittleEndian.Uint64(b[o+16:])
	wantR := uint64(0)
	if hasResidual(cfg.Codec) {
		wantR = uint64(n)
	}
	if hn != uint64(n) || hr != wantR {
		return LocalState{}, fmt.Errorf("local state holds %d parameters and %d residuals, want %d and %d", hn, hr, n, wantR)
	}
	if maxStep := uint64(cfg.Rounds) * uint64(cfg.InnerSteps); step > maxStep {
		return LocalState{}, fmt.Errorf("local state has taken %d inner steps, more than the run's %d", step, maxStep)
	}
	s := LocalState{M: make([]float32, n), V: make([]float32, n), Step: int(step), AheadRound: -1}
	if wantR > 0 {
		s.Residual = make([]float32, n)
	}
	o = stateHeader
	get := func(x []float32) {
		for i := range x {
			x[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[o:]))
			o += 4
		}
	}
	get(s.M)
	get(s.V)
	get(s.Residual)
	if cfg.Overlapped() {
		ar := binary.LittleEndian.Uint64(b[o:])
		if ar > uint64(cfg.Rounds) {
			return LocalState{}, fmt.Errorf("local state's last contribution is to round %d, outside the run's %d rounds", int64(ar)-1, cfg.Rounds)
		}
		s.AheadRound = int(ar) - 1
		o += aheadTrailer
		s.Ahead = make([]float32, n)
		get(s.Ahead)
	}
	if err := s.check(); err != nil {
		return LocalState{}, err
	}
	return s, nil
}

// Check reports, in one line, the first thing that makes s a state no
// honest worker of run cfg can hold: wrong lengths, a negative step count,
// non-finite values or a negative second moment.
func (s LocalState) Check(cfg RunConfig) error {
	n := cfg.Model.NumParams()
	wantR := 0
	if hasResidual(cfg.Codec) {
		wantR = n
	}
	if len(s.M) != n || len(s.V) != n || len(s.Residual) != wantR {
		return fmt.Errorf("local state has %d, %d and %d values, want %d moments each and %d residuals", len(s.M), len(s.V), len(s.Residual), n, wantR)
	}
	wantA := 0
	if cfg.Overlapped() {
		wantA = n
	}
	if len(s.Ahead) != wantA {
		return fmt.Errorf("local state holds %d values of its last contribution, want %d (overlap %v)", len(s.Ahead), wantA, cfg.Overlapped())
	}
	return s.check()
}

func (s LocalState) check() error {
	if len(s.V) != len(s.M) || (len(s.Residual) != 0 && len(s.Residual) != len(s.M)) {
		return fmt.Errorf("local state has %d, %d and %d values: moments and residual must have one per parameter", len(s.M), len(s.V), len(s.Residual))
	}
	if len(s.Ahead) != 0 && len(s.Ahead) != len(s.M) {
		return fmt.Errorf("local state has %d values of its last contribution for %d parameters", len(s.Ahead), len(s.M))
	}
	if s.Step < 0 || s.AheadRound < -1 {
		return fmt.Errorf("local state has a negative step count %d or round %d", s.Step, s.AheadRound)
	}
	for _, p := range []struct {
		name string
		x    []float32
	}{{"first moment", s.M}, {"second moment", s.V}, {"residual", s.Residual}, {"last contribution", s.Ahead}} {
		for i, v := range p.x {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("local state: %s %d is %v", p.name, i, v)
			}
		}
	}
	for i, v := range s.V {
		if v < 0 {
			return fmt.Errorf("local state: second moment %d is negative (%v)", i, v)
		}
	}
	return nil
}

// Clone returns a deep copy of s.
func (s LocalState) Clone() LocalState {
	var c LocalState
	c.copyFrom(s)
	return c
}

// copyFrom makes s a copy of src, reusing s's buffers when they are large
// enough.
func (s *LocalState) copyFrom(src LocalState) {
	s.M = append(s.M[:0], src.M...)
	s.V = append(s.V[:0], src.V...)
	s.Step, s.AheadRound = src.Step, src.AheadRound
	s.Residual = copyOrNil(s.Residual, src.Residual)
	s.Ahead = copyOrNil(s.Ahead, src.Ahead)
}

// copyOrNil is a copy of src in dst's buffer, or nil for an empty src.
func copyOrNil(dst, src []float32) []float32 {
	if len(src) == 0 {
		return nil
	}
	return append(dst[:0], src...)
}

// hasResidual reports whether codec c keeps an error-feedback residual
// (every codec but FP32).
func hasResidual(c compress.Codec) bool { return c != compress.FP32 }
