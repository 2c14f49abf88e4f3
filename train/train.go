// Package train runs the training loop of one model on one machine: batch
// sampling, forward and backward, gradient clipping, AdamW with the
// learning-rate schedule, validation, and checkpoints that resume bitwise.
package train

import (
	"encoding/json"
	"fmt"
	"math"
	"os"

	"github.com/cairnlabs/cairn/checkpoint"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/optim"
)

// Options are the hyperparameters of a run. They are saved in checkpoints,
// so a resumed run continues with the same ones.
type Options struct {
	Model       gpt.Config `json:"model"`
	Batch       int        `json:"batch"`
	Steps       int        `json:"steps"`
	LR          float64    `json:"lr"`
	MinLR       float64    `json:"min_lr"`
	Warmup      int        `json:"warmup"`
	DecaySteps  int        `json:"decay_steps"`
	Beta1       float64    `json:"beta1"`
	Beta2       float64    `json:"beta2"`
	Eps         float64    `json:"eps"`
	WeightDecay float64    `json:"weight_decay"`
	GradClip    float64    `json:"grad_clip"`
	Seed        uint64     `json:"seed"`
	EvalBatches int        `json:"eval_batches"` // 0: every full window of the validation data
}

// NanoGPTCPU is nanoGPT's CPU configuration for tiny shakespeare: 4 layers,
// 4 heads, width 128, block 64, batch 12, 2000 iterations, lr 1e-3 with 100
// warm-up steps and cosine decay to 1e-4, betas 0.9/0.99, weight decay 0.1,
// gradient clip 1.0.
func NanoGPTCPU() Options {
	return Options{
		Model: gpt.DefaultConfig(128, 4, 4, 64), Batch: 12, Steps: 2000,
		LR: 1e-3, MinLR: 1e-4, Warmup: 100, DecaySteps: 2000,
		Beta1: 0.9, Beta2: 0.99, Eps: 1e-8, WeightDecay: 0.1, GradClip: 1.0, Seed: 1337,
	}
}

// Validate reports the first problem with o, in one line.
func (o Options) Validate() error {
	if err := o.Model.Validate(); err != nil {
		return err
	}
	switch {
	case o.Batch < 1:
		return fmt.Errorf("batch size must be positive, got %d", o.Batch)
	case o.Steps < 0:
		return fmt.Errorf("steps must not be negative, got %d", o.Steps)
	case !(o.LR > 0) || o.MinLR < 0:
		return fmt.Errorf("learning rates must be positive, got lr %g min_lr %g", o.LR, o.MinLR)
	case o.Warmup < 0:
		return fmt.Errorf("warm-up steps must not be negative, got %d", o.Warmup)
	case o.Beta1 < 0 || o.Beta1 >= 1 || o.Beta2 < 0 || o.Beta2 >= 1:
		return fmt.Errorf("betas must be in [0, 1), got %g and %g", o.Beta1, o.Beta2)
	case o.EvalBatches < 0:
		return fmt.Errorf("eval batches must not be negative, got %d", o.EvalBatches)
	}
	return o.Model.ValidateBatch(o.Batch)
}

// Schedule is the run's learning-rate schedule.
func (o Options) Schedule() optim.Schedule {
	return optim.Schedule{LR: o.LR, MinLR: o.MinLR, Warmup: o.Warmup, DecaySteps: o.DecaySteps}
}

// Trainer trains one model. Step is the number of completed steps; the
// batch of step s is a function of (Seed, Stream, s) only.
type Trainer struct {
	Opts  Options
	Model *gpt.Model
	Opt   *optim.AdamW
	Step  int
	// Stream selects the data stream batches are drawn from (0 for a
	// single node; DiLoCo workers each have their own).
	Stream uint64

	// Meta is added to the model file's metadata on Save (a tokenizer,
	// say).
	Meta map[string]string

	train, val      []int32
	sampler         *corpus.Sampler
	inputs, targets []int32
}

// Result of one training step.
type StepResult struct {
	Loss     float32
	LR       float64
	GradNorm float64
}

// ParamGroups splits a model's parameters for AdamW: with decayAll every
// tensor gets weight decay (as torch.optim.AdamW(model.parameters())
// does), otherwise only matrices and embeddings (nanoGPT's recipe).
func ParamGroups(c gpt.Config, decayAll bool) []optim.Group {
	var groups []optim.Group
	for _, t := range c.Layout() {
		groups = append(groups, optim.Group{Offset: t.Offset, Size: t.Size(), Decay: decayAll || t.Matrix()})
	}
	return groups
}

// New starts a run from freshly initialised weights on the given data. It
// fails when the options are invalid or the data is shorter than one
// window of the model's context. val may be nil for a trainer that is
// never asked to evaluate.
func New(o Options, train, val []byte, pool *kernels.Pool) (*Trainer, error) {
	return NewTokens(o, corpus.Bytes(train), bytesOrNil(val), pool)
}

func bytesOrNil(b []byte) []int32 {
	if b == nil {
		return nil
	}
	return corpus.Bytes(b)
}

// NewTokens is New on token ids (a tokenizer's; every id must be below the
// model's vocabulary size).
func NewTokens(o Options, train, val []int32, pool *kernels.Pool) (*Trainer, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	m, err := gpt.New(o.Model, pool)
	if err != nil {
		return nil, err
	}
	gpt.InitParams(o.Model, m.Params, o.Seed)
	return newTrainer(o, m, train, val)
}

func newTrainer(o Options, m *gpt.Model, train, val []int32) (*Trainer, error) {
	T := o.Model.BlockSize
	s, err := corpus.NewTokenSampler(train, o.Batch, T, o.Seed)
	if err != nil {
		return nil, fmt.Errorf("training data: %v", err)
	}
	if val != nil && len(val) < T+1 {
		return nil, fmt.Errorf("validation data has %d tokens, shorter than the context of %d plus one", len(val), T)
	}
	for _, ids := range [][]int32{train, val} {
		for i, id := range ids {
			if id < 0 || int(id) >= o.Model.VocabSize {
				return nil, fmt.Errorf("token %d at %d is outside the model's vocabulary of %d", id, i, o.Model.VocabSize)
			}
		}
	}
	opt, err := optim.NewAdamW(len(m.Params), ParamGroups(o.Model, false), o.Beta1, o.Beta2, o.Eps, o.WeightDecay, m.Pool())
	if err != nil {
		return nil, err
	}
	n := o.Batch * T
	return &Trainer{Opts: o, Model: m, Opt: opt, train: train, val: val, sampler: s,
		inputs: make([]int32, n), targets: make([]int32, n)}, nil
}

// LastBatch returns the inputs and targets of the latest step (shared;
// overwritten by the next step).
func (t *Trainer) LastBatch() (inputs, targets []int32) { return t.inputs, t.targets }

// TokensPerStep is the number of tokens one step trains on.
func (t *Trainer) TokensPerStep() int { return t.Opts.Batch * t.Opts.Model.BlockSize }

// TrainStep runs one step: the batch of step t.Step, forward, backward,
// clipping, AdamW at the scheduled learning rate.
func (t *Trainer) TrainStep() (StepResult, error) {
	o := &t.Opts
	T := o.Model.BlockSize
	t.sampler.Batch(t.Stream, uint64(t.Step), t.inputs, t.targets)
	m := t.Model
	m.ZeroGrad()
	loss, err := m.Forward(t.inputs, t.targets, o.Batch, T)
	if err != nil {
		return StepResult{}, err
	}
	if err := m.Backward(); err != nil {
		return StepResult{}, err
	}
	norm := t.Opt.ClipGradNorm(m.Grads, o.GradClip)
	lr := o.Schedule().At(t.Step)
	t.Opt.Update(m.Params, m.Grads, lr)
	m.Balance() // a mixture of experts' balancing biases
	t.Step++
	if math.IsNaN(float64(loss)) || math.IsInf(float64(loss), 0) {
		return StepResult{Loss: loss, LR: lr, GradNorm: norm}, fmt.Errorf("step %d: loss is %v; training diverged", t.Step, loss)
	}
	return StepResult{Loss: loss, LR: lr, GradNorm: norm}, nil
}

// Evaluate returns the mean loss over the validation data, cut into
// consecutive windows of block-size tokens taken a batch at a time (at most
// EvalBatches batches when that is set; at least one batch, reusing windows
// when the data holds fewer than a batch).
func (t *Trainer) Evaluate() (float64, error) {
	if t.val == nil {
		return 0, fmt.Errorf("this trainer has no validation data")
	}
	return EvaluateTokens(t.Model, t.val, t.Opts.Batch, t.Opts.EvalBatches, t.inputs, t.targets)
}

// Evaluate returns the model's mean loss on data cut into consecutive
// windows of the model's block size, in batches of B; see Trainer.Evaluate.
// inputs and targets are scratch of B*BlockSize tokens.
func Evaluate(m *gpt.Model, data []byte, B, maxBatches int, inputs, targets []int32) (float64, error) {
	return EvaluateTokens(m, corpus.Bytes(data), B, maxBatches, inputs, targets)
}

// EvaluateTokens is Evaluate on token ids.
func EvaluateTokens(m *gpt.Model, data []int32, B, maxBatches int, inputs, targets []int32) (float64, error) {
	T := m.Config.BlockSize
	windows := (len(data) - 1) / T
	if windows < 1 {
		return 0, fmt.Errorf("evaluation data has %d tokens, shorter than the context of %d plus one", len(data), T)
	}
	batches := max(1, windows/B)
	if maxBatches > 0 {
		batches = min(batches, maxBatches)
	}
	var sum float64
	for bi := 0; bi < batches; bi++ {
		for b := 0; b < B; b++ {
			start := ((bi*B + b) % windows) * T
			copy(inputs[b*T:(b+1)*T], data[start:start+T])
			copy(targets[b*T:(b+1)*T], data[start+1:start+T+1])
		}
		loss, err := m.Forward(inputs, targets, B, T)
		if err != nil {
			return 0, err
		}
		sum += float64(loss)
	}
	return sum / float64(batches), nil
}

// state is what the optimizer file's metadata records about the run.
type state struct {
	Step    int     `json:"step"`
	Options Options `json:"options"`
}

// Save writes a checkpoint to dir (created if needed): the weights, and the
// optimizer moments with the run's step and options beside them. Each file
// is written atomically; both carry the step, so a pair torn by a crash
// between the two writes is detected on Resume.
func (t *Trainer) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	st, err := json.Marshal(state{Step: t.Step, Options: t.Opts})
	if err != nil {
		return err
	}
	mpath, opath := checkpoint.Paths(dir)
	if err := checkpoint.SaveOptimizer(opath, t.Opts.Model, checkpoint.Optimizer{M: t.Opt.M, V: t.Opt.V, Step: t.Opt.Step,
		Metadata: map[string]string{"train_state": string(st)}}); err != nil {
		return err
	}
	meta := map[string]string{"train_step": fmt.Sprint(t.Step)}
	for k, v := range t.Meta {
		meta[k] = v
	}
	return checkpoint.SaveModel(mpath, t.Opts.Model, t.Model.Params, meta)
}

// Resume continues the run saved in dir on the given data. steps > 0
// replaces the saved total number of steps. It fails, naming the file, on a
// missing, corrupt or inconsistent checkpoint.
func Resume(dir string, train, val []byte, steps int, pool *kernels.Pool) (*Trainer, error) {
	return ResumeTokens(dir, corpus.Bytes(train), bytesOrNil(val), steps, pool)
}

// ResumeTokens is Resume on token ids.
func ResumeTokens(dir string, train, val []int32, steps int, pool *kernels.Pool) (*Trainer, error) {
	mpath, opath := checkpoint.Paths(dir)
	ck, err := checkpoint.LoadModel(mpath)
	if err != nil {
		return nil, err
	}
	oc, err := checkpoint.LoadOptimizer(opath, ck.Config)
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal([]byte(oc.Metadata["train_state"]), &st); err != nil {
		return nil, fmt.Errorf("%s: train_state metadata: %v", opath, err)
	}
	if fmt.Sprint(st.Step) != ck.Metadata["train_step"] {
		return nil, fmt.Errorf("%s is at step %s but %s at step %d: the checkpoint was torn by an interrupted save", mpath, ck.Metadata["train_step"], opath, st.Step)
	}
	if st.Options.Model != ck.Config {
		return nil, fmt.Errorf("%s: model config differs from the one in %s", opath, mpath)
	}
	if steps > 0 {
		st.Options.Steps = steps
	}
	if err := st.Options.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %v", opath, err)
	}
	m, err := gpt.New(ck.Config, pool)
	if err != nil {
		return nil, err
	}
	copy(m.Params, ck.Params)
	t, err := newTrainer(st.Options, m, train, val)
	if err != nil {
		return nil, err
	}
	copy(t.Opt.M, oc.M)
	copy(t.Opt.V, oc.V)
	t.Opt.Step = oc.Step
	t.Step = st.Step
	return t, nil
}
