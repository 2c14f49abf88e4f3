package diloco

import (
	"context"
	"slices"
	"testing"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/kernels"
)

// TestOverlapState: with overlap the local state carries the worker's last
// contribution (decoded) and its round; it encodes, hashes and decodes
// with them, and a decoder refuses a last round outside the run.
func TestOverlapState(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	cfg.OverlapSteps = 1
	z := ZeroState(cfg)
	if len(z.Ahead) != cfg.Model.NumParams() || z.AheadRound != -1 {
		t.Fatalf("zero state: %d ahead values, round %d", len(z.Ahead), z.AheadRound)
	}
	s := z.Clone()
	s.Ahead[3], s.AheadRound = 0.25, 1
	b, err := s.MarshalBinary()
	if err != nil || len(b) != StateSize(cfg) {
		t.Fatalf("encoding: %d bytes, %v; want %d", len(b), err, StateSize(cfg))
	}
	got, err := UnmarshalState(b, cfg)
	if err != nil || got.Ahead[3] != 0.25 || got.AheadRound != 1 || got.Hash() != s.Hash() {
		t.Fatalf("decoded %v, ahead[3] %v, round %d", err, got.Ahead[3], got.AheadRound)
	}
	if s.Hash() == z.Hash() {
		t.Fatal("the last contribution does not change the state's hash")
	}
	plain := tinyCfg(compress.Int8)
	if _, err := UnmarshalState(b, plain); err == nil {
		t.Fatal("an overlapped run's state was accepted by a run without overlap")
	}
	if err := s.Check(plain); err == nil {
		t.Fatal("Check passed a state with a last contribution in a run without overlap")
	}
	o := StateSize(cfg) - 4*cfg.Model.NumParams() - aheadTrailer
	b[o] = byte(cfg.Rounds + 2)
	if _, err := UnmarshalState(b, cfg); err == nil {
		t.Fatal("a last contribution beyond the run's rounds was accepted")
	}
}

// TestOverlapEagerStart: with overlap a contribution to round 1 starts
// from θ0 less the worker's own round-0 contribution and takes θ1 (await,
// called once, after OverlapSteps steps) by moving its weights by θ1 less
// that stand-in. When the stand-in is exact the result is bitwise what a
// worker without overlap, in the same local state, sends from θ1; when it
// is not, the move changes the result; and Recompute, given θ0, gives the
// same payload and end state as the worker.
func TestOverlapEagerStart(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	cfg.OverlapSteps = 2
	pool := kernels.NewPool(1)
	defer pool.Close()
	theta0 := InitialWeights(cfg)
	mk := func(c RunConfig) *Worker {
		w, err := NewWorker("w", c, testTrain(), pool)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.SetWeights(0, theta0, HashWeights(0, theta0)); err != nil {
			t.Fatal(err)
		}
		return w
	}
	w := mk(cfg)
	p0, _, err := w.Train(context.Background(), cfg.InnerSteps, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := w.State()
	own := make([]float32, len(theta0))
	if err := compress.Decode(p0, own); err != nil {
		t.Fatal(err)
	}
	if st.AheadRound != 0 || !slices.Equal(st.Ahead, own) || !w.Eager(1) || w.Eager(2) {
		t.Fatalf("after round 0 the state holds round %d's contribution (equal: %v)", st.AheadRound, slices.Equal(st.Ahead, own))
	}
	exact := make([]float32, len(theta0))
	for i := range exact {
		exact[i] = theta0[i] - own[i]
	}
	var events []string
	await := func(th []float32) func(context.Context) ([]float32, error) {
		return func(context.Context) ([]float32, error) {
			events = append(events, "await")
			return th, nil
		}
	}
	step := func(i int, _ float32) { events = append(events, "step") }
	p1, _, err := w.TrainAhead(context.Background(), 1, theta0, await(exact), cfg.InnerSteps, step)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"step", "step", "await", "step"}; !slices.Equal(events, want) {
		t.Fatalf("events %v, want %v", events, want)
	}
	plain := cfg
	plain.OverlapSteps = 0
	v := mk(plain)
	vs := st.Clone()
	vs.Ahead, vs.AheadRound = nil, -1
	if err := v.SetState(vs); err != nil {
		t.Fatal(err)
	}
	q1, _, err := v.TrainAhead(context.Background(), 1, nil, await(exact), cfg.InnerSteps, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(p1) != string(q1) {
		t.Fatal("with an exact stand-in, round 1 with overlap differs from round 1 trained from θ1")
	}

	// A stand-in that is not exact: the move to θ1 matters, and
	// Recompute agrees with the worker bitwise.
	other := slices.Clone(exact)
	for i := range other {
		other[i] += 1e-3
	}
	if err := w.SetState(st); err != nil {
		t.Fatal(err)
	}
	r1, _, err := w.TrainAhead(context.Background(), 1, theta0, await(other), cfg.InnerSteps, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(r1) == string(p1) {
		t.Fatal("θ1 did not change the contribution")
	}
	end := w.State().Hash()
	rc, err := NewRecomputer(cfg, testTrain(), pool)
	if err != nil {
		t.Fatal(err)
	}
	rp, rend, err := rc.Recompute(context.Background(), "w", 1, other, theta0, st, cfg.InnerSteps)
	if err != nil || string(rp) != string(r1) || rend.Hash() != end {
		t.Fatalf("recomputation: %v, payload equal %v, end equal %v", err, string(rp) == string(r1), rend.Hash() == end)
	}
	if _, _, err := rc.Recompute(context.Background(), "w", 1, other, nil, st, cfg.InnerSteps); err == nil {
		t.Fatal("an eager start was recomputed without the weights of the round before")
	}
}
