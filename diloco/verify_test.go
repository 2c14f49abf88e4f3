package diloco_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/vecmath"
	"github.com/cairnlabs/cairn/verify"
)

// setPath selects a kernel path for both the SGEMM and the vector kernels
// (process-global; the tests of this package do not run in parallel) and
// restores the previous one when the test ends.
func setPath(t testing.TB, name string) {
	t.Helper()
	k, v := kernels.Impl(), vecmath.Impl()
	t.Cleanup(func() { kernels.SetImpl(k); vecmath.SetImpl(v) })
	if err := kernels.SetImpl(name); err != nil {
		t.Fatal(err)
	}
	if err := vecmath.SetImpl(name); err != nil {
		t.Fatal(err)
	}
}

// paths are the kernel paths this CPU runs, fastest first.
func paths() []string {
	var ps []string
	for _, p := range kernels.Impls() {
		if slices.Contains(vecmath.Impls(), p) {
			ps = append(ps, p)
		}
	}
	return ps
}

// scenario is a DiLoCo run of honest workers, brought to a round at which
// their contributions are verified.
type scenario struct {
	cfg     diloco.RunConfig
	train   []byte
	pool    *kernels.Pool
	ids     []string
	workers []*diloco.Worker
	round   int
	theta   []float32           // θ of the round
	prev    [][]byte            // the previous round's payloads (nil at round 0)
	start   []diloco.LocalState // each worker's start state in the round
	payload [][]byte            // each worker's contribution of the round
	end     []diloco.Hash
	delta   [][]float32 // decoded payloads
	trainT  time.Duration
}

// newScenario runs rounds [0, round) with k honest workers on the current
// kernel path (the outer step is plain averaging), then has each train
// round `round`.
func newScenario(t testing.TB, cfg diloco.RunConfig, k, round int, pool *kernels.Pool) *scenario {
	t.Helper()
	train, _ := corpus.Split(corpus.TinyShakespeare(), 0.9)
	s := &scenario{cfg: cfg, train: train, pool: pool, round: round}
	s.theta = diloco.InitialWeights(cfg)
	n := len(s.theta)
	for i := 0; i < k; i++ {
		id := fmt.Sprintf("worker-%d", i)
		w, err := diloco.NewWorker(id, cfg, train, pool)
		if err != nil {
			t.Fatal(err)
		}
		s.ids, s.workers = append(s.ids, id), append(s.workers, w)
	}
	for r := 0; ; r++ {
		h := diloco.HashWeights(r, s.theta)
		s.start, s.payload, s.end, s.delta = nil, nil, nil, nil
		for _, w := range s.workers {
			if err := w.SetWeights(r, s.theta, h); err != nil {
				t.Fatal(err)
			}
			s.start = append(s.start, w.State())
			t0 := time.Now()
			p, _, err := w.Train(context.Background(), cfg.InnerSteps, nil)
			if err != nil {
				t.Fatal(err)
			}
			s.trainT += time.Since(t0)
			d := make([]float32, n)
			if err := compress.Decode(p, d); err != nil {
				t.Fatal(err)
			}
			s.payload, s.end, s.delta = append(s.payload, p), append(s.end, w.StateHash()), append(s.delta, d)
		}
		if r == round {
			s.trainT /= time.Duration(k * (round + 1))
			return s
		}
		s.prev = s.payload
		mean := make([]float32, n)
		for _, d := range s.delta {
			vecmath.Axpy(1/float32(k), d, mean)
		}
		for i := range s.theta {
			s.theta[i] -= mean[i]
		}
	}
}

// claim is worker i's claim for the scenario's round with payload p.
func (s *scenario) claim(i int, p []byte, path string) verify.Claim {
	st := verify.Digest(s.start[i].Hash())
	return verify.Claim{Round: s.round, Worker: s.ids[i], Path: path, Payload: p,
		Start: st, End: verify.Digest(s.end[i]), Revealed: st, WantStart: st}
}

// recompute reruns worker i's round on the current kernel path.
func (s *scenario) recompute(t testing.TB, i int, steps int) (verify.Recomputation, time.Duration) {
	t.Helper()
	rc, err := diloco.NewRecomputer(s.cfg, s.train, s.pool)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	p, end, err := rc.Recompute(context.Background(), s.ids[i], s.round, s.theta, nil, s.start[i], steps)
	if err != nil {
		t.Fatal(err)
	}
	return verify.Recomputation{Path: verify.CurrentPath(), Payload: p, End: verify.Digest(end.Hash())}, time.Since(t0)
}

// adversary is a cheating worker 0's payload for the scenario's round.
type adversary struct {
	name    string
	payload func(s *scenario) []byte
}

func encodeDelta(cfg diloco.RunConfig, d []float32) []byte {
	p, err := compress.NewEncoder(cfg.Codec, len(d)).Encode(d)
	if err != nil {
		panic(err)
	}
	return p
}

func mapDelta(d []float32, f func(i int, v float32) float32) []float32 {
	out := make([]float32, len(d))
	for i, v := range d {
		out[i] = f(i, v)
	}
	return out
}

var adversaries = []adversary{
	{"noise", func(s *scenario) []byte { // Gaussian noise with the honest Δ's norm
		r := rand.New(rand.NewPCG(1, 2))
		rms := verify.Norm(s.delta[0]) / math.Sqrt(float64(len(s.delta[0])))
		return encodeDelta(s.cfg, mapDelta(s.delta[0], func(int, float32) float32 { return float32(r.NormFloat64() * rms) }))
	}},
	{"x50", func(s *scenario) []byte {
		return encodeDelta(s.cfg, mapDelta(s.delta[0], func(_ int, v float32) float32 { return 50 * v }))
	}},
	{"zeros", func(s *scenario) []byte { return encodeDelta(s.cfg, make([]float32, len(s.delta[0]))) }},
	{"copier", func(s *scenario) []byte { // worker 1's contribution of the previous round
		if s.prev == nil {
			return nil
		}
		return s.prev[1]
	}},
	{"lazy", func(s *scenario) []byte { // H/5 inner steps, claiming H
		w, err := diloco.NewWorker(s.ids[0], s.cfg, s.train, s.pool)
		if err != nil {
			panic(err)
		}
		if err := w.SetWeights(s.round, s.theta, diloco.HashWeights(s.round, s.theta)); err != nil {
			panic(err)
		}
		if err := w.SetState(s.start[0]); err != nil {
			panic(err)
		}
		p, _, err := w.Train(context.Background(), max(1, s.cfg.InnerSteps/5), nil)
		if err != nil {
			panic(err)
		}
		return p
	}},
	{"negated", func(s *scenario) []byte {
		return encodeDelta(s.cfg, mapDelta(s.delta[0], func(_ int, v float32) float32 { return -v }))
	}},
	{"overflow", func(s *scenario) []byte { // int8 chunk scales at the decoder's maximum
		return encodeDelta(s.cfg, mapDelta(s.delta[0], func(i int, _ float32) float32 {
			return float32(math.Copysign(math.MaxFloat32, float64(1-2*(i%2))))
		}))
	}},
}

// fastCfg is a model small enough to train on every kernel path within a
// unit test, yet deep enough for the paths to round differently.
func fastCfg() diloco.RunConfig {
	c := diloco.DefaultConfig()
	c.Model = gpt.DefaultConfig(32, 2, 2, 32)
	c.Batch, c.InnerSteps, c.Rounds, c.Warmup = 4, 10, 5, 5
	return c
}

// TestVerifyAcrossPaths: honest contributions pass verification when
// recomputed on the same kernel path (bitwise: distance 0, same end state)
// and on every other path this CPU has (within DefaultTolerance), and
// every adversary's payload fails on the same path and across paths;
// forged start states fail before anyone recomputes.
func TestVerifyAcrossPaths(t *testing.T) {
	ps := paths()
	setPath(t, ps[0])
	pool := kernels.NewPool(2)
	defer pool.Close()
	s := newScenario(t, fastCfg(), 3, 1, pool)
	n := len(s.theta)
	j, err := verify.NewJudge(n, verify.DefaultTolerance)
	if err != nil {
		t.Fatal(err)
	}
	home := verify.CurrentPath()
	same, _ := s.recompute(t, 0, s.cfg.InnerSteps)
	for i := range s.ids {
		r, _ := s.recompute(t, i, s.cfg.InnerSteps)
		v, err := j.Judge(s.claim(i, s.payload[i], home), r)
		if err != nil {
			t.Fatal(err)
		}
		if !v.Passed() || !v.SamePath || v.Distance != 0 || v.Recomputed != v.Submitted {
			t.Fatalf("worker %d on its own path: %+v", i, v)
		}
	}
	if len(ps) == 1 {
		t.Logf("this CPU has only the %s path: no cross-path recomputation", ps[0])
	}
	for _, p := range ps[1:] {
		setPath(t, p)
		for i := range s.ids {
			r, _ := s.recompute(t, i, s.cfg.InnerSteps)
			v, err := j.Judge(s.claim(i, s.payload[i], home), r)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("worker %d trained on %s, recomputed on %s: distance %.3g", i, home, verify.CurrentPath(), v.Distance)
			if !v.Passed() || v.SamePath {
				t.Fatalf("honest worker %d fails across paths (%s vs %s): %s, distance %.3g > %g", i, home, r.Path, v.Reason, v.Distance, v.Tolerance)
			}
		}
	}
	setPath(t, ps[0])
	for _, a := range adversaries {
		p := a.payload(s)
		for _, path := range []string{home, "elsewhere"} {
			v, err := j.Judge(s.claim(0, p, path), same)
			if err != nil {
				t.Fatal(err)
			}
			if v.Reason != verify.PayloadMismatch || !(v.Distance > 2*verify.DefaultTolerance) {
				t.Errorf("%s (worker's path %s): %s, distance %.3g", a.name, path, v.Reason, v.Distance)
			}
		}
	}
	// A worker that reveals another start state than it committed, or
	// committed one that is not where its last round ended.
	c := s.claim(0, s.payload[0], home)
	c.Revealed = verify.Digest(diloco.ZeroState(s.cfg).Hash())
	if v, _ := j.Judge(c, same); v.Reason != verify.BadReveal || v.Found != c.Revealed || v.Claimed != c.Start {
		t.Errorf("forged reveal: %+v", v)
	}
	c = s.claim(0, s.payload[0], home)
	c.WantStart = verify.Digest(diloco.ZeroState(s.cfg).Hash())
	if v, _ := j.Judge(c, same); v.Reason != verify.BrokenChain {
		t.Errorf("broken chain: %+v", v)
	}
	// An honest payload with a forged end state.
	c = s.claim(0, s.payload[0], home)
	c.End = verify.Digest(s.end[1])
	if v, _ := j.Judge(c, same); v.Reason != verify.EndStateMismatch || v.Found != same.End {
		t.Errorf("forged end state: %+v", v)
	}
}

// TestMeasureVerification measures, on the demo model, what the verify
// package's thresholds rest on: the drift between kernel paths after H
// inner steps, the distances of the adversaries' payloads from the
// recomputation, their screening scores, and the cost of a recomputation
// and of screening. It takes minutes, so it runs only with
// CAIRN_MEASURE_VERIFY=1 (round numbers to measure, comma-separated, in
// CAIRN_MEASURE_ROUNDS; default "0,10,40" of a 100-round run):
//
//	CAIRN_MEASURE_VERIFY=1 go test ./diloco -run TestMeasureVerification -v -timeout 1h
func TestMeasureVerification(t *testing.T) {
	if os.Getenv("CAIRN_MEASURE_VERIFY") == "" {
		t.Skip("set CAIRN_MEASURE_VERIFY=1 to measure (minutes)")
	}
	rounds := "0,10,40"
	if r := os.Getenv("CAIRN_MEASURE_ROUNDS"); r != "" {
		rounds = r
	}
	cfg := diloco.DefaultConfig()
	cfg.Rounds = 100 // the length of cairn experiment diloco, which sets the inner learning-rate schedule
	for _, f := range strings.Split(rounds, ",") {
		var r int
		if _, err := fmt.Sscan(f, &r); err != nil {
			t.Fatal(err)
		}
		measureRound(t, cfg, r)
	}
}

func measureRound(t *testing.T, cfg diloco.RunConfig, round int) {
	ps := paths()
	setPath(t, ps[0])
	pool := kernels.NewPool(0)
	defer pool.Close()
	const k = 4
	s := newScenario(t, cfg, k, round, pool)
	n := len(s.theta)
	home := verify.CurrentPath()
	t.Logf("round %d, %d honest workers on %s, %d parameters, H=%d; one worker round takes %v", round, k, home, n, cfg.InnerSteps, s.trainT.Round(time.Millisecond))
	j, _ := verify.NewJudge(n, verify.DefaultTolerance)

	// Drift: every honest worker's round recomputed on every path.
	recs := map[string][]verify.Recomputation{}
	for _, p := range ps {
		setPath(t, p)
		var total time.Duration
		for i := range s.ids {
			r, d := s.recompute(t, i, cfg.InnerSteps)
			recs[p] = append(recs[p], r)
			total += d
		}
		t.Logf("recomputing one round on %s takes %v (%.2fx a worker round on %s)", p, (total / k).Round(time.Millisecond), float64(total/k)/float64(s.trainT), home)
	}
	setPath(t, ps[0])
	a, b := make([]float32, n), make([]float32, n)
	dist := func(p, q []byte) float64 {
		if err := compress.Decode(p, a); err != nil {
			t.Fatal(err)
		}
		if err := compress.Decode(q, b); err != nil {
			t.Fatal(err)
		}
		return verify.Distance(a, b)
	}
	var worst float64
	for x := 0; x < len(ps); x++ {
		for y := x; y < len(ps); y++ {
			var ds []string
			for i := range s.ids {
				d := dist(recs[ps[x]][i].Payload, recs[ps[y]][i].Payload)
				if x != y {
					worst = max(worst, d)
				} else if d != 0 || recs[ps[x]][i].End != recs[ps[y]][i].End {
					t.Errorf("recomputation on %s is not bitwise", ps[x])
				}
				ds = append(ds, fmt.Sprintf("%.3g", d))
			}
			if x != y {
				t.Logf("drift %s vs %s after H=%d: relative L2 %s", ps[x], ps[y], cfg.InnerSteps, strings.Join(ds, " "))
			}
		}
	}
	for i := range s.ids {
		v, _ := j.Judge(s.claim(i, s.payload[i], home), recs[ps[0]][i])
		if !v.Passed() || v.Distance != 0 {
			t.Errorf("worker %d does not recompute bitwise on its own path: %+v", i, v)
		}
	}
	t.Logf("largest cross-path drift %.3g; tolerance %g (%.0fx margin)", worst, verify.DefaultTolerance, verify.DefaultTolerance/worst)
	t.Logf("honest worker 0 vs honest worker 1 (another worker's data): %.3g", dist(s.payload[1], s.payload[0]))

	// Adversaries: distance from the recomputation, and screening among
	// the honest contributions with held-out losses.
	ho, err := verify.NewHeldOut(cfg.Model, s.train, cfg.Batch, 2, cfg.Seed, pool)
	if err != nil {
		t.Fatal(err)
	}
	prior := map[verify.Digest]verify.Origin{}
	for i, p := range s.prev {
		prior[verify.PayloadDigest(p)] = verify.Origin{Worker: s.ids[i], Round: round - 1}
	}
	contrib := func(i int, p []byte) verify.Contribution {
		d := make([]float32, n)
		if err := compress.Decode(p, d); err != nil {
			t.Fatal(err)
		}
		ho.Step = 1
		_, afterFull, err := ho.Loss(s.theta, d, diloco.Stream(s.ids[i]), round)
		if err != nil {
			t.Fatal(err)
		}
		ho.Step = 0.25
		before, after, err := ho.Loss(s.theta, d, diloco.Stream(s.ids[i]), round)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("  %s: held-out gain of the whole Δ %+.4f, of a quarter (screened) %+.4f", s.ids[i], before-afterFull, before-after)
		return verify.Contribution{Worker: s.ids[i], Payload: verify.PayloadDigest(p), Delta: d, Measured: true, LossBefore: before, LossAfter: after}
	}
	t0 := time.Now()
	for i := range s.ids {
		d := make([]float32, n)
		compress.Decode(s.payload[i], d)
		ho.Loss(s.theta, d, diloco.Stream(s.ids[i]), round)
	}
	screenT := time.Since(t0) / k
	var honest []verify.Contribution
	for i := range s.ids {
		honest = append(honest, contrib(i, s.payload[i]))
	}
	t0 = time.Now()
	if _, err := verify.Screen(round, honest, prior, verify.DefaultScreenOptions()); err != nil {
		t.Fatal(err)
	}
	t.Logf("Screen of %d contributions (given their held-out losses) takes %v", k, time.Since(t0).Round(time.Microsecond))
	sc, err := verify.Screen(round, honest, prior, verify.DefaultScreenOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range sc {
		t.Logf("honest %s: norm %.4g ratio %.3f gain %+.4f similarity %.3f score %.3f %s", x.Worker, x.Norm, x.NormRatio, x.Gain, x.Similarity, x.Score, x.Flags)
	}
	t.Logf("screening one contribution (held-out loss of 2 batches before and after) takes %v (%.1f%% of a worker round)", screenT.Round(time.Millisecond), 100*float64(screenT)/float64(s.trainT))
	for _, adv := range adversaries {
		p := adv.payload(s)
		if p == nil {
			continue
		}
		v, _ := j.Judge(s.claim(0, p, home), recs[ps[0]][0])
		cs := slices.Clone(honest)
		cs[0] = contrib(0, p)
		sc, err := verify.Screen(round, cs, prior, verify.DefaultScreenOptions())
		if err != nil {
			t.Fatal(err)
		}
		x := sc[0]
		var hmax float64
		for _, h := range sc[1:] {
			hmax = max(hmax, h.Score)
		}
		t.Logf("%-8s distance %.3g (%s)  screening: norm ratio %.3g gain %+.4f similarity %.3f score %.3g %s (honest max %.3f)", adv.name, v.Distance, v.Reason, x.NormRatio, x.Gain, x.Similarity, x.Score, x.Flags, hmax)
	}
}

// TestRecomputerVerify: the validator's whole check, from the revealed
// bytes to the verdict, for an honest claim and for each way a claim can
// lie about its inputs.
func TestRecomputerVerify(t *testing.T) {
	pool := kernels.NewPool(2)
	defer pool.Close()
	s := newScenario(t, fastCfg(), 2, 1, pool)
	j, _ := verify.NewJudge(len(s.theta), verify.DefaultTolerance)
	rc, err := diloco.NewRecomputer(s.cfg, s.train, pool)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	full := s.cfg.TokensPerRound()
	reveal, err := s.start[0].MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	home := verify.CurrentPath()
	v, err := rc.Verify(ctx, j, s.claim(0, s.payload[0], home), s.theta, nil, reveal, full)
	if err != nil || !v.Passed() || v.Distance != 0 {
		t.Fatalf("honest claim: %+v, %v", v, err)
	}
	// A lazy worker claims all of its round's tokens for a fifth of the
	// steps.
	lazy := adversaries[slices.IndexFunc(adversaries, func(a adversary) bool { return a.name == "lazy" })].payload(s)
	if v, _ := rc.Verify(ctx, j, s.claim(0, lazy, home), s.theta, nil, reveal, full); v.Reason != verify.PayloadMismatch {
		t.Errorf("lazy claim: %+v", v)
	}
	// Another state revealed than committed.
	other, _ := diloco.ZeroState(s.cfg).MarshalBinary()
	if v, _ := rc.Verify(ctx, j, s.claim(0, s.payload[0], home), s.theta, nil, other, full); v.Reason != verify.BadReveal {
		t.Errorf("another state revealed: %+v", v)
	}
	// Tokens that are not whole inner steps, or too many.
	for _, tok := range []int{0, full - 1, full + s.cfg.TokensPerStep()} {
		if v, _ := rc.Verify(ctx, j, s.claim(0, s.payload[0], home), s.theta, nil, reveal, tok); v.Reason != verify.Malformed {
			t.Errorf("%d tokens: %+v", tok, v)
		}
	}
	// A committed state that no honest worker holds: it decodes to a
	// negative second moment, or does not decode at all.
	for name, b := range map[string][]byte{
		"negative moment": func() []byte {
			bad := s.start[0].Clone()
			bad.V[0] = -1
			b, _ := bad.MarshalBinary()
			return b
		}(),
		"truncated": reveal[:len(reveal)-4],
	} {
		c := s.claim(0, s.payload[0], home)
		c.Start = verify.Digest(sha256.Sum256(b))
		c.WantStart = c.Start
		if v, _ := rc.Verify(ctx, j, c, s.theta, nil, b, full); v.Reason != verify.BadState {
			t.Errorf("%s: %+v", name, v)
		}
	}
	// Faults of the verifier are errors, not verdicts.
	if _, err := rc.Verify(ctx, j, s.claim(0, s.payload[0], home), s.theta[1:], nil, reveal, full); err == nil {
		t.Error("short weights gave a verdict")
	}
	c := s.claim(0, s.payload[0], home)
	c.Round = s.cfg.Rounds
	if _, err := rc.Verify(ctx, j, c, s.theta, nil, reveal, full); err == nil {
		t.Error("a round past the run gave a verdict")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := rc.Verify(cancelled, j, s.claim(0, s.payload[0], home), s.theta, nil, reveal, full); err == nil {
		t.Error("a cancelled verification gave a verdict")
	}
}

// TestMeasureVerifyCost times, alternately and on the same kernel path, a
// worker's round and its recomputation on the demo model, and the other
// costs of verification per contribution (state hashes, screening with
// held-out losses, judging), and prints the overhead at p = 10%. Opt-in
// like TestMeasureVerification:
//
//	CAIRN_MEASURE_VERIFY=1 go test ./diloco -run TestMeasureVerifyCost -v
func TestMeasureVerifyCost(t *testing.T) {
	if os.Getenv("CAIRN_MEASURE_VERIFY") == "" {
		t.Skip("set CAIRN_MEASURE_VERIFY=1 to measure (a minute)")
	}
	cfg := diloco.DefaultConfig()
	cfg.Rounds = 100
	pool := kernels.NewPool(0)
	defer pool.Close()
	train, _ := corpus.Split(corpus.TinyShakespeare(), 0.9)
	theta := diloco.InitialWeights(cfg)
	h := diloco.HashWeights(0, theta)
	n := len(theta)
	w, err := diloco.NewWorker("worker-0", cfg, train, pool)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := diloco.NewRecomputer(cfg, train, pool)
	if err != nil {
		t.Fatal(err)
	}
	ho2, err := verify.NewHeldOut(cfg.Model, train, cfg.Batch, 2, cfg.Seed, pool)
	if err != nil {
		t.Fatal(err)
	}
	ho1, err := verify.NewHeldOut(cfg.Model, train, cfg.Batch, 1, cfg.Seed, pool)
	if err != nil {
		t.Fatal(err)
	}
	j, _ := verify.NewJudge(n, verify.DefaultTolerance)
	zero := diloco.ZeroState(cfg)
	reveal, _ := zero.MarshalBinary()
	const reps = 7
	var trainT, recT, verT, hashT, decT, held1T, held2T, judgeT, crossT []time.Duration
	ctx := context.Background()
	for i := 0; i < reps; i++ {
		if err := w.SetWeights(0, theta, h); err != nil {
			t.Fatal(err)
		}
		if err := w.SetState(zero); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		p, _, err := w.Train(ctx, cfg.InnerSteps, nil)
		if err != nil {
			t.Fatal(err)
		}
		trainT = append(trainT, time.Since(t0))
		t0 = time.Now()
		end := w.StateHash()
		hashT = append(hashT, time.Since(t0))

		t0 = time.Now()
		rp, rend, err := rc.Recompute(ctx, "worker-0", 0, theta, nil, zero, cfg.InnerSteps)
		if err != nil {
			t.Fatal(err)
		}
		recT = append(recT, time.Since(t0))
		zh, rh := verify.Digest(zero.Hash()), verify.Digest(rend.Hash())
		t0 = time.Now()
		v, err := j.Judge(verify.Claim{Round: 0, Worker: "worker-0", Path: verify.CurrentPath(), Payload: p,
			Start: zh, End: verify.Digest(end), Revealed: zh, WantStart: zh},
			verify.Recomputation{Path: verify.CurrentPath(), Payload: rp, End: rh})
		if err != nil || !v.Passed() {
			t.Fatalf("%+v %v", v, err)
		}
		judgeT = append(judgeT, time.Since(t0))

		t0 = time.Now()
		c := verify.Claim{Round: 0, Worker: "worker-0", Path: verify.CurrentPath(), Payload: p,
			Start: zh, End: verify.Digest(end), WantStart: zh}
		if v, err := rc.Verify(ctx, j, c, theta, nil, reveal, cfg.TokensPerRound()); err != nil || !v.Passed() {
			t.Fatalf("%+v %v", v, err)
		}
		verT = append(verT, time.Since(t0))

		// Across paths the judge decodes both payloads and compares them.
		t0 = time.Now()
		if v, err := j.Judge(verify.Claim{Round: 0, Worker: "worker-0", Path: "elsewhere", Payload: p, End: verify.Digest(end)},
			verify.Recomputation{Path: verify.CurrentPath(), Payload: rp}); err != nil || !v.Passed() {
			t.Fatalf("%+v %v", v, err)
		}
		crossT = append(crossT, time.Since(t0))

		d := make([]float32, n)
		t0 = time.Now()
		if err := compress.Decode(p, d); err != nil {
			t.Fatal(err)
		}
		decT = append(decT, time.Since(t0))
		for _, x := range []struct {
			ho *verify.HeldOut
			t  *[]time.Duration
		}{{ho1, &held1T}, {ho2, &held2T}} {
			t0 = time.Now()
			if _, _, err := x.ho.Loss(theta, d, diloco.Stream("worker-0"), 0); err != nil {
				t.Fatal(err)
			}
			*x.t = append(*x.t, time.Since(t0))
		}
	}
	med := func(x []time.Duration) time.Duration { slices.Sort(x); return x[len(x)/2] }
	tr := med(trainT)
	frac := func(d time.Duration) string {
		return fmt.Sprintf("%v (%.2f%% of a worker round)", d.Round(time.Microsecond), 100*float64(d)/float64(tr))
	}
	t.Logf("medians of %d on %s, %d threads:", reps, verify.CurrentPath(), pool.Threads())
	t.Logf("worker round (H=%d): %v", cfg.InnerSteps, tr.Round(time.Millisecond))
	t.Logf("recomputation: %s; fastest of each: %v and %v (%.3fx)", frac(med(recT)), trainT[0].Round(time.Millisecond), recT[0].Round(time.Millisecond), float64(recT[0])/float64(trainT[0]))
	t.Logf("Recomputer.Verify (reveal decode and hash, recomputation, judge): %s", frac(med(verT)))
	t.Logf("hash of the worker's state: %s", frac(med(hashT)))
	t.Logf("judging on the same path (equal bytes): %s; across paths (decode both, compare): %s", frac(med(judgeT)), frac(med(crossT)))
	t.Logf("decoding a contribution (the aggregator does anyway): %s", frac(med(decT)))
	for _, x := range []struct {
		b int
		t []time.Duration
	}{{1, held1T}, {2, held2T}} {
		held := med(x.t)
		t.Logf("held-out loss of one contribution, %d batch(es) of %d, before and after: %s", x.b, cfg.Batch, frac(held))
		over := 0.1*float64(med(verT)) + float64(held) + float64(med(hashT))
		t.Logf("  verification overhead at p = 10%%: 0.1 x Verify + held-out loss + one state hash per round = %.1f%% of the training compute", 100*over/float64(tr))
	}
}
