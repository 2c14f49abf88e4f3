// Package experiment holds Cairn's measured comparisons. DiLoCoVsDDP trains
// the same model on equal tokens with DiLoCo over a loopback libp2p
// network and with synchronous data-parallel training, and reports
// validation loss, bytes communicated and wall time for each. Adversaries
// runs honest workers alone and then with one cheating worker of each
// kind (a Cast of NewAdversary behaviours) under the aggregator's
// validator, and reports what became of each cheat (caught when, slashed,
// paid after), the honest workers slashed, whether the rewards add up to
// the emission, the loss gap and the verification overhead.
package experiment

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/node"
	"github.com/cairnlabs/cairn/optim"
	"github.com/cairnlabs/cairn/train"
)

// Result is one arm of a comparison.
type Result struct {
	Name    string
	ValLoss float64
	Bytes   uint64
	Wall    time.Duration
	Tokens  int64
	Note    string
}

// Options of the DiLoCo-versus-DDP comparison.
type Options struct {
	Config diloco.RunConfig // the DiLoCo run; DDP uses its model, batch·Workers and inner optimizer
	// Init are the weights both arms start from (nil: the run seed's
	// initialisation). The DiLoCo paper starts from a pretrained model.
	Init    []float32
	Workers int
	Text    []byte
	Threads int
	Log     *slog.Logger
	// Progress, when set, is told what runs and how far it got.
	Progress func(arm string, done, total int)
}

// DiLoCoVsDDP runs both arms and returns their results, DiLoCo first.
func DiLoCoVsDDP(ctx context.Context, o Options) ([]Result, error) {
	cfg := o.Config
	cfg.DataHash = node.DataHash(o.Text)
	pool := kernels.NewPool(o.Threads)
	defer pool.Close()
	_, val := corpus.Split(o.Text, 0.9)

	lo, err := node.RunLocal(ctx, node.LocalOptions{Config: cfg, Init: o.Init, Text: o.Text, Workers: o.Workers, EvalBatches: 20, Log: o.Log,
		OnRound: func(r node.RoundInfo) {
			if o.Progress != nil {
				o.Progress("diloco", r.Round+1, cfg.Rounds)
			}
		}})
	if err != nil {
		return nil, fmt.Errorf("diloco: %v", err)
	}
	dl, err := evaluate(cfg.Model, lo.Weights, val, cfg.Batch, pool)
	if err != nil {
		return nil, err
	}
	res := []Result{{Name: fmt.Sprintf("DiLoCo k=%d H=%d %s", o.Workers, cfg.InnerSteps, cfg.Codec), ValLoss: dl,
		Bytes: lo.BytesSent, Wall: lo.Wall, Tokens: lo.Tokens,
		Note: fmt.Sprintf("loopback libp2p; worker compute utilisation %.1f%%", 100*lo.Utilisation())}}

	ddp, err := DDP(ctx, cfg, o.Init, o.Workers, o.Text, pool, func(step, total int) {
		if o.Progress != nil {
			o.Progress("ddp", step, total)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("ddp: %v", err)
	}
	return append(res, ddp), nil
}

// DDP trains cfg's model with synchronous data parallelism over k workers:
// every step each worker computes the gradient of its own batch of
// cfg.Batch sequences (the same data streams DiLoCo workers would draw),
// the gradients are averaged and AdamW takes one step, for Rounds·H steps:
// the tokens of the DiLoCo run. It runs in one process (averaging k
// equal-size batch gradients is the gradient of their union, computed here
// as one batch); the bytes reported are what k workers would exchange:
// each sends its fp32 gradient and receives the fp32 average every step.
// It starts from init (nil: the run seed's initialisation).
func DDP(ctx context.Context, cfg diloco.RunConfig, init []float32, k int, text []byte, pool *kernels.Pool, progress func(step, total int)) (Result, error) {
	trainData, val := corpus.Split(text, 0.9)
	T, B := cfg.Model.BlockSize, cfg.Batch
	m, err := gpt.New(cfg.Model, pool)
	if err != nil {
		return Result{}, err
	}
	if init == nil {
		init = diloco.InitialWeights(cfg)
	}
	copy(m.Params, init)
	opt, err := optim.NewAdamW(len(m.Params), train.ParamGroups(cfg.Model, false), cfg.Beta1, cfg.Beta2, cfg.Eps, cfg.WeightDecay, pool)
	if err != nil {
		return Result{}, err
	}
	samplers := make([]*corpus.Sampler, k)
	streams := make([]uint64, k)
	for i := range samplers {
		if samplers[i], err = corpus.NewSampler(trainData, B, T, cfg.Seed); err != nil {
			return Result{}, err
		}
		streams[i] = diloco.Stream(fmt.Sprintf("ddp-worker-%d", i))
	}
	in, tg := make([]int32, k*B*T), make([]int32, k*B*T)
	steps := cfg.Rounds * cfg.InnerSteps
	sched := cfg.InnerOptions().Schedule()
	start := time.Now()
	for s := 0; s < steps; s++ {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		for i, sm := range samplers {
			sm.Batch(streams[i], uint64(s), in[i*B*T:(i+1)*B*T], tg[i*B*T:(i+1)*B*T])
		}
		m.ZeroGrad()
		if _, err := m.Forward(in, tg, k*B, T); err != nil {
			return Result{}, err
		}
		if err := m.Backward(); err != nil {
			return Result{}, err
		}
		opt.ClipGradNorm(m.Grads, cfg.GradClip)
		opt.Update(m.Params, m.Grads, sched.At(s))
		if progress != nil {
			progress(s+1, steps)
		}
	}
	wall := time.Since(start)
	vl, err := evaluate(cfg.Model, m.Params, val, B, pool)
	if err != nil {
		return Result{}, err
	}
	n := uint64(len(m.Params))
	return Result{Name: fmt.Sprintf("DDP k=%d, fp32 gradients every step", k), ValLoss: vl,
		Bytes: 8 * n * uint64(k) * uint64(steps), Wall: wall, Tokens: int64(steps) * int64(k*B*T),
		Note: "one process; bytes = k·(4n up + 4n down) per step"}, nil
}

// evaluate is the loss of weights on the whole validation split.
func evaluate(c gpt.Config, weights []float32, val []byte, B int, pool *kernels.Pool) (float64, error) {
	m, err := gpt.New(c, pool)
	if err != nil {
		return 0, err
	}
	copy(m.Params, weights)
	n := B * c.BlockSize
	return train.Evaluate(m, val, B, 0, make([]int32, n), make([]int32, n))
}

// DDPBytes is what synchronous data parallelism over k workers would send
// for the tokens of a DiLoCo run: each worker's fp32 gradient up and the
// fp32 average down, every step.
func DDPBytes(cfg diloco.RunConfig, k int) uint64 {
	return 8 * uint64(cfg.Model.NumParams()) * uint64(k) * uint64(cfg.Rounds*cfg.InnerSteps)
}
