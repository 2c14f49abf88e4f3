// Package bench measures training throughput the way the PyTorch anchor
// (shared/anchors/torch_lm_bench.py) does: full training steps (forward,
// backward, AdamW at lr 3e-3) on random windows of a text, timed after five
// warm-up steps, with the same FLOP formula.
package bench

import (
	"fmt"
	"time"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/optim"
	"github.com/cairnlabs/cairn/train"
)

// Config is the shape of a benchmark run; the flags of the anchor script.
type Config struct {
	D, Layers, Heads, Ctx, Batch, Steps, Threads int
	// Profile times every operation of the timed steps (see Result.Ops).
	// Timing adds a little to each step, so throughput is measured
	// without it.
	Profile bool
}

// Warmup is the number of untimed steps before the timed ones.
const Warmup = 5

// Result is a measured run.
type Result struct {
	Params     int
	Tokens     int // tokens in the timed steps
	Seconds    float64
	TokensPerS float64
	GFLOPs     float64 // per second, by the anchor's formula
	FirstLoss  float32
	LastLoss   float32
	// Ops is where the timed steps' time went, by kind of operation, the
	// most time first (with Config.Profile only).
	Ops []gpt.OpStat
}

// FLOPs is the anchor's count for one token of training: 6 per parameter
// plus 12·layers·ctx·d for attention, forward and backward.
func FLOPs(params int, c Config) float64 {
	return 6*float64(params) + 12*float64(c.Layers)*float64(c.Ctx)*float64(c.D)
}

// Run trains a fresh model on text for Warmup+Steps steps and times the
// last Steps. progress, when not nil, is called after every step.
func Run(c Config, text []byte, pool *kernels.Pool, progress func(step int, loss float32)) (Result, error) {
	cfg := gpt.DefaultConfig(c.D, c.Layers, c.Heads, c.Ctx)
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	if c.Batch < 1 || c.Steps < 1 {
		return Result{}, fmt.Errorf("batch and steps must be positive, got %d and %d", c.Batch, c.Steps)
	}
	m, err := gpt.New(cfg, pool)
	if err != nil {
		return Result{}, err
	}
	gpt.InitParams(cfg, m.Params, 0)
	s, err := corpus.NewSampler(text, c.Batch, c.Ctx, 0)
	if err != nil {
		return Result{}, err
	}
	// torch.optim.AdamW defaults on every parameter, as the anchor has it
	opt, err := optim.NewAdamW(len(m.Params), train.ParamGroups(cfg, true), 0.9, 0.999, 1e-8, 0.01, pool)
	if err != nil {
		return Result{}, err
	}
	in, tg := make([]int32, c.Batch*c.Ctx), make([]int32, c.Batch*c.Ctx)
	var res Result
	res.Params = len(m.Params)
	var prof *gpt.Profile
	if c.Profile {
		prof = gpt.NewProfile()
		m.SetProfile(prof)
	}
	var t0 time.Time
	for step := 0; step < c.Steps+Warmup; step++ {
		if step == Warmup {
			t0 = time.Now()
			if prof != nil {
				prof.Reset()
			}
		}
		s.Batch(0, uint64(step), in, tg)
		prof.Begin()
		m.ZeroGrad()
		prof.End("zero grad", 0)
		loss, err := m.Forward(in, tg, c.Batch, c.Ctx)
		if err != nil {
			return Result{}, err
		}
		if err := m.Backward(); err != nil {
			return Result{}, err
		}
		prof.Begin()
		opt.Update(m.Params, m.Grads, 3e-3)
		prof.End("adamw", 0)
		if step == 0 {
			res.FirstLoss = loss
		}
		res.LastLoss = loss
		if progress != nil {
			progress(step, loss)
		}
	}
	res.Seconds = time.Since(t0).Seconds()
	res.Tokens = c.Steps * c.Batch * c.Ctx
	res.TokensPerS = float64(res.Tokens) / res.Seconds
	res.GFLOPs = FLOPs(res.Params, c) * float64(res.Tokens) / res.Seconds / 1e9
	if prof != nil {
		res.Ops = prof.Ops()
	}
	return res, nil
}

// SgemmPeak measures the pool's rate on square products of size n, the
// best of reps, in GFLOP/s: the ceiling the profile's products are
// compared with.
func SgemmPeak(pool *kernels.Pool, n, reps int) float64 {
	a, b, c := make([]float32, n*n), make([]float32, n*n), make([]float32, n*n)
	for i := range a {
		a[i], b[i] = float32(i%7)-3, float32(i%5)-2
	}
	pool.Sgemm(false, false, n, n, n, a, n, b, n, c, n, false) // warm-up
	best := 0.0
	for range reps {
		t := time.Now()
		pool.Sgemm(false, false, n, n, n, a, n, b, n, c, n, false)
		best = max(best, 2*float64(n)*float64(n)*float64(n)/time.Since(t).Seconds()/1e9)
	}
	return best
}
