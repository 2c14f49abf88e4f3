package diloco

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/kernels"
)

// roundRecord is one round of a worker: its weights, start state, payload
// and end-state hash.
type roundRecord struct {
	theta   []float32
	start   LocalState
	payload []byte
	end     Hash
}

// trainRounds returns a worker of cfg that has trained rounds [0, rounds)
// alone (each round's update being its own contribution), and its records.
func trainRounds(t *testing.T, cfg RunConfig, id string, rounds int, pool *kernels.Pool) (*Worker, []roundRecord) {
	t.Helper()
	w, err := NewWorker(id, cfg, testTrain(), pool)
	if err != nil {
		t.Fatal(err)
	}
	theta := InitialWeights(cfg)
	if err := w.SetWeights(0, theta, HashWeights(0, theta)); err != nil {
		t.Fatal(err)
	}
	var recs []roundRecord
	for r := 0; r < rounds; r++ {
		rec := roundRecord{theta: slices.Clone(w.Weights()), start: w.State()}
		p, _, err := w.Train(context.Background(), cfg.InnerSteps, nil)
		if err != nil {
			t.Fatal(err)
		}
		rec.payload, rec.end = p, w.StateHash()
		recs = append(recs, rec)
		next := slices.Clone(w.Weights())
		if err := applyUpdate(next, make([]float32, len(next)), p); err != nil {
			t.Fatal(err)
		}
		if err := w.ApplyUpdate(p, HashWeights(r+1, next)); err != nil {
			t.Fatal(err)
		}
	}
	return w, recs
}

func testTrain() []byte {
	train, _ := corpus.Split(corpus.TinyShakespeare()[:20000], 0.9)
	return train
}

// TestStateEncoding: the canonical encoding round-trips, its SHA-256 is the
// state's hash, a fresh worker holds the zero state, and the layout is the
// documented one.
func TestStateEncoding(t *testing.T) {
	for _, codec := range []compress.Codec{compress.Int8, compress.FP32, "topk:8/256:2"} {
		cfg := tinyCfg(codec)
		pool := kernels.NewPool(1)
		defer pool.Close()
		fresh, err := NewWorker("w", cfg, testTrain(), pool)
		if err != nil {
			t.Fatal(err)
		}
		if fresh.StateHash() != ZeroState(cfg).Hash() {
			t.Fatalf("%s: a fresh worker's state is not the zero state", codec)
		}
		w, _ := trainRounds(t, cfg, "w", 2, pool)
		s := w.State()
		if s.Step != 2*cfg.InnerSteps {
			t.Fatalf("%s: step %d after two rounds of %d", codec, s.Step, cfg.InnerSteps)
		}
		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != StateSize(cfg) {
			t.Fatalf("%s: encoding is %d bytes, StateSize says %d", codec, len(b), StateSize(cfg))
		}
		if Hash(sha256.Sum256(b)) != s.Hash() || s.Hash() != w.StateHash() {
			t.Fatalf("%s: the state's hash is not SHA-256 of its encoding", codec)
		}
		n := cfg.Model.NumParams()
		o := len(StateDomain)
		if string(b[:o]) != StateDomain || binary.LittleEndian.Uint64(b[o:]) != uint64(n) ||
			binary.LittleEndian.Uint64(b[o+8:]) != uint64(s.Step) ||
			math.Float32frombits(binary.LittleEndian.Uint32(b[52+4*n+4*3:])) != s.V[3] {
			t.Fatalf("%s: encoding does not follow the documented layout", codec)
		}
		got, err := UnmarshalState(b, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.M, s.M) || !slices.Equal(got.V, s.V) || !slices.Equal(got.Residual, s.Residual) || got.Step != s.Step {
			t.Fatalf("%s: state does not round-trip", codec)
		}
		if (codec != compress.FP32) != (len(s.Residual) == n) {
			t.Fatalf("%s: residual has %d values", codec, len(s.Residual))
		}
		// Every part of the state is in the hash.
		for name, mut := range map[string]func(*LocalState){
			"m": func(c *LocalState) { c.M[0] += 1 }, "v": func(c *LocalState) { c.V[n-1] += 1 },
			"step": func(c *LocalState) { c.Step++ },
		} {
			c := s.Clone()
			mut(&c)
			if c.Hash() == s.Hash() {
				t.Fatalf("%s: changing %s leaves the hash unchanged", codec, name)
			}
		}
		if codec != compress.FP32 {
			c := s.Clone()
			c.Residual[n/2] = 1
			if c.Hash() == s.Hash() {
				t.Fatal("changing the residual leaves the hash unchanged")
			}
		}
	}
}

// TestUnmarshalStateRefusals: a revealed state is untrusted; each
// malformation is refused with its reason.
func TestUnmarshalStateRefusals(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	n := cfg.Model.NumParams()
	good, err := ZeroState(cfg).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	put := func(off int, v float32) func([]byte) []byte {
		return func(b []byte) []byte { binary.LittleEndian.PutUint32(b[off:], math.Float32bits(v)); return b }
	}
	for _, tc := range []struct {
		name, want string
		mut        func([]byte) []byte
	}{
		{"empty", "0 bytes", func([]byte) []byte { return nil }},
		{"truncated", "want", func(b []byte) []byte { return b[:len(b)-1] }},
		{"trailing", "want", func(b []byte) []byte { return append(b, 0) }},
		{"domain", "does not start", func(b []byte) []byte { b[0] = 'x'; return b }},
		{"params", "parameters", func(b []byte) []byte { binary.LittleEndian.PutUint64(b[28:], uint64(n+1)); return b }},
		{"residual length", "residuals", func(b []byte) []byte { binary.LittleEndian.PutUint64(b[44:], 0); return b }},
		{"steps", "more than the run", func(b []byte) []byte { binary.LittleEndian.PutUint64(b[36:], math.MaxUint64); return b }},
		{"nan moment", "first moment 0 is NaN", put(52, float32(math.NaN()))},
		{"inf residual", "residual 1 is +Inf", put(52+8*n+4, float32(math.Inf(1)))},
		{"negative v", "second moment 2 is negative", put(52+4*n+8, -1)},
	} {
		_, err := UnmarshalState(tc.mut(slices.Clone(good)), cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	// fp32 runs have no residual: an int8 state does not fit them.
	if _, err := UnmarshalState(good, tinyCfg(compress.FP32)); err == nil {
		t.Error("an int8 run's state was accepted by an fp32 run")
	}
}

func FuzzUnmarshalState(f *testing.F) {
	cfg, over := tinyCfg(compress.Int8), tinyCfg(compress.Int8)
	over.OverlapSteps = 1
	good, _ := ZeroState(cfg).MarshalBinary()
	f.Add(false, good)
	f.Add(false, []byte(StateDomain))
	good, _ = ZeroState(over).MarshalBinary()
	f.Add(true, good)
	f.Fuzz(func(t *testing.T, overlap bool, b []byte) {
		cfg := cfg
		if overlap {
			cfg = over
		}
		s, err := UnmarshalState(b, cfg)
		if err != nil {
			return
		}
		if s.Check(cfg) != nil {
			t.Fatal("decoded a state that fails Check")
		}
		re, err := s.MarshalBinary()
		if err != nil || string(re) != string(b) {
			t.Fatal("a decoded state does not re-encode to the same bytes")
		}
	})
}

// TestSetStateResumes: a worker restored from another's state continues
// bitwise where that one would have, and SetState refuses states that do
// not fit the run without changing the worker.
func TestSetStateResumes(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	pool := kernels.NewPool(2)
	defer pool.Close()
	_, recs := trainRounds(t, cfg, "alice", 3, pool)
	w, err := NewWorker("alice", cfg, testTrain(), pool)
	if err != nil {
		t.Fatal(err)
	}
	r := recs[2]
	if err := w.SetWeights(2, r.theta, HashWeights(2, r.theta)); err != nil {
		t.Fatal(err)
	}
	if err := w.SetState(r.start); err != nil {
		t.Fatal(err)
	}
	p, _, err := w.Train(context.Background(), cfg.InnerSteps, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(p) != string(r.payload) || w.StateHash() != r.end {
		t.Fatal("a worker restored from a saved state did not continue bitwise")
	}
	before := w.StateHash()
	bad := r.start.Clone()
	bad.V[1] = float32(math.NaN())
	short := r.start.Clone()
	short.M = short.M[1:]
	for _, s := range []LocalState{bad, short, ZeroState(tinyCfg(compress.FP32))} {
		if err := w.SetState(s); err == nil {
			t.Fatal("SetState accepted a state that does not fit the run")
		}
	}
	if w.StateHash() != before {
		t.Fatal("a refused SetState changed the worker's state")
	}
}

// TestTrainRollsBack: a round stopped part-way leaves the local state as it
// was, so the worker's next start state is still its last committed end
// state.
func TestTrainRollsBack(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	pool := kernels.NewPool(1)
	defer pool.Close()
	w, _ := trainRounds(t, cfg, "alice", 1, pool)
	before := w.StateHash()
	ctx, cancel := context.WithCancel(context.Background())
	steps := 0
	_, _, err := w.Train(ctx, cfg.InnerSteps, func(int, float32) { steps++; cancel() })
	if err == nil || steps != 1 {
		t.Fatalf("cancelled round: err %v after %d steps", err, steps)
	}
	if w.StateHash() != before {
		t.Fatal("a cancelled round changed the local state")
	}
	// And the worker still trains the round as if nothing had happened.
	_, recs := trainRounds(t, cfg, "alice", 2, pool)
	p, _, err := w.Train(context.Background(), cfg.InnerSteps, nil)
	if err != nil || string(p) != string(recs[1].payload) {
		t.Fatalf("after a cancelled round the worker's contribution changed (err %v)", err)
	}
}

// TestRecomputeBitwise: recomputing any round of a worker from the round's
// weights and its revealed start state gives bitwise its payload and
// end-state hash (on another thread count too), for full and short rounds
// and every codec (the sparse one with error-feedback decay too);
// recomputing with anything changed does not.
func TestRecomputeBitwise(t *testing.T) {
	sparse := tinyCfg("topk:8/256:2")
	sparse.FeedbackDecay = 0.95
	for _, cfg := range []RunConfig{tinyCfg(compress.Int8), tinyCfg(compress.FP32), tinyCfg("topk:16/512:1"), sparse} {
		codec := cfg.Codec
		pool := kernels.NewPool(2)
		defer pool.Close()
		_, recs := trainRounds(t, cfg, "alice", 3, pool)
		one := kernels.NewPool(1)
		defer one.Close()
		rc, err := NewRecomputer(cfg, testTrain(), one)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		// Backwards, so that nothing the Recomputer kept from one
		// recomputation can stand in for the revealed state of the next.
		for r := len(recs) - 1; r >= 0; r-- {
			rec := recs[r]
			p, end, err := rc.Recompute(ctx, "alice", r, rec.theta, nil, rec.start, cfg.InnerSteps)
			if err != nil {
				t.Fatal(err)
			}
			if string(p) != string(rec.payload) || end.Hash() != rec.end {
				t.Fatalf("%s round %d: recomputation differs from the worker's contribution", codec, r)
			}
		}
		rec := recs[2]
		// A short round: the worker trains 1 step and claims its tokens.
		w, err := NewWorker("alice", cfg, testTrain(), pool)
		if err != nil {
			t.Fatal(err)
		}
		w.SetWeights(2, rec.theta, HashWeights(2, rec.theta))
		w.SetState(rec.start)
		ps, _, err := w.Train(ctx, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		p, end, err := Recompute(ctx, cfg, testTrain(), one, "alice", 2, rec.theta, nil, rec.start, 1)
		if err != nil || string(p) != string(ps) || end.Hash() != w.StateHash() {
			t.Fatalf("%s: a short round does not recompute bitwise (%v)", codec, err)
		}
		// Anything else changed gives another payload.
		for name, f := range map[string]func() ([]byte, LocalState, error){
			"id": func() ([]byte, LocalState, error) {
				return rc.Recompute(ctx, "bob", 2, rec.theta, nil, rec.start, cfg.InnerSteps)
			},
			"round": func() ([]byte, LocalState, error) {
				return rc.Recompute(ctx, "alice", 1, rec.theta, nil, recs[1].start, cfg.InnerSteps)
			},
			"state": func() ([]byte, LocalState, error) {
				return rc.Recompute(ctx, "alice", 2, rec.theta, nil, ZeroState(cfg), cfg.InnerSteps)
			},
			"steps": func() ([]byte, LocalState, error) {
				return rc.Recompute(ctx, "alice", 2, rec.theta, nil, rec.start, cfg.InnerSteps-1)
			},
			"theta": func() ([]byte, LocalState, error) {
				return rc.Recompute(ctx, "alice", 2, recs[1].theta, nil, rec.start, cfg.InnerSteps)
			},
		} {
			p, _, err := f()
			if err != nil {
				t.Fatal(err)
			}
			if string(p) == string(rec.payload) {
				t.Fatalf("%s: recomputing with another %s gave the same payload", codec, name)
			}
		}
	}
}

// TestRecomputeRefusals: recomputation inputs come from untrusted reveals
// and claims; each impossible one is refused with its reason.
func TestRecomputeRefusals(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	pool := kernels.NewPool(1)
	defer pool.Close()
	rc, err := NewRecomputer(cfg, testTrain(), pool)
	if err != nil {
		t.Fatal(err)
	}
	theta := InitialWeights(cfg)
	zero := ZeroState(cfg)
	ahead := ZeroState(cfg)
	ahead.Step = cfg.InnerSteps + 1
	bad := ZeroState(cfg)
	bad.V[0] = -1
	ctx := context.Background()
	for _, tc := range []struct {
		name, want string
		round      int
		theta      []float32
		start      LocalState
		steps      int
	}{
		{"short weights", "weights have", 0, theta[1:], zero, 1},
		{"negative round", "outside the run", -1, theta, zero, 1},
		{"round past the run", "outside the run", cfg.Rounds, theta, zero, 1},
		{"no steps", "1 to 3 inner steps", 0, theta, zero, 0},
		{"too many steps", "1 to 3 inner steps", 0, theta, zero, cfg.InnerSteps + 1},
		{"state ahead of the run", "more than the 3 before round 1", 1, theta, ahead, 1},
		{"impossible state", "negative", 1, theta, bad, 1},
		{"state of another run", "want", 1, theta, ZeroState(tinyCfg(compress.FP32)), 1},
	} {
		_, _, err := rc.Recompute(ctx, "alice", tc.round, tc.theta, nil, tc.start, tc.steps)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	// A refusal does not spoil the next recomputation.
	p1, _, err := rc.Recompute(ctx, "alice", 0, theta, nil, zero, 2)
	if err != nil {
		t.Fatal(err)
	}
	p2, _, _ := Recompute(ctx, cfg, testTrain(), pool, "alice", 0, theta, nil, zero, 2)
	if string(p1) != string(p2) {
		t.Fatal("a Recomputer that refused inputs recomputes differently")
	}
}
