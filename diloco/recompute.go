package diloco

import (
	"context"
	"fmt"

	"github.com/cairnlabs/cairn/kernels"
)

// Recomputer re-runs other workers' rounds to verify their contributions.
// It is a Worker whose identity, weights and local state are set for each
// recomputation, so a recomputation runs exactly the code a worker runs
// (Worker.Train), not a copy of it: on the same kernel path it gives
// bitwise the submitted payload and end state. It keeps its buffers
// between calls. A Recomputer is not safe for concurrent use.
type Recomputer struct {
	w *Worker
}

// NewRecomputer prepares recomputations of run cfg's rounds on the run's
// training data (the same bytes the workers train on).
func NewRecomputer(cfg RunConfig, trainData []byte, pool *kernels.Pool) (*Recomputer, error) {
	w, err := NewWorker("", cfg, trainData, pool)
	if err != nil {
		return nil, err
	}
	return &Recomputer{w: w}, nil
}

// Recompute runs worker id's training of round from the round's global
// weights theta (and, in a run with overlap where the start state's last
// contribution is to round-1, from prev, the weights of round-1, until
// the overlap steps are done; see RunConfig.OverlapSteps) and the
// worker's revealed start state, for steps inner
// steps (the number its claimed tokens imply), and returns the compressed
// pseudo-gradient and the worker's end state; hash the state with
// LocalState.Hash to compare it with the worker's commitment. The returned
// state is the Recomputer's own buffer, overwritten by the next call (Clone
// it to keep it).
//
// It fails, in one line, when theta does not fit the model, round is
// outside the run, steps is outside [1, H], the start state does not fit
// the run or claims more inner steps than the run has had before round
// (see LocalState.Check) or a last contribution not before round, prev is
// needed and missing, training diverges, or ctx is done. Whoever
// checked the start state against the worker's commitment must pass
// exactly the revealed state.
func (r *Recomputer) Recompute(ctx context.Context, id string, round int, theta, prev []float32, start LocalState, steps int) (payload []byte, end LocalState, err error) {
	w := r.w
	cfg := w.Cfg
	if len(theta) != len(w.theta) {
		return nil, LocalState{}, fmt.Errorf("weights have %d values, the model %d", len(theta), len(w.theta))
	}
	if round < 0 || round >= cfg.Rounds {
		return nil, LocalState{}, fmt.Errorf("round %d is outside the run's rounds [0, %d)", round, cfg.Rounds)
	}
	if start.Step > round*cfg.InnerSteps {
		return nil, LocalState{}, fmt.Errorf("start state has taken %d inner steps, more than the %d before round %d", start.Step, round*cfg.InnerSteps, round)
	}
	if start.AheadRound >= round {
		return nil, LocalState{}, fmt.Errorf("start state's last contribution is to round %d, not before round %d", start.AheadRound, round)
	}
	if err := w.SetState(start); err != nil {
		return nil, LocalState{}, err
	}
	w.ID = id
	w.inner.Stream = Stream(id)
	payload, _, err = w.TrainAhead(ctx, round, prev, func(context.Context) ([]float32, error) { return theta, nil }, steps, nil)
	if err != nil {
		return nil, LocalState{}, err
	}
	return payload, w.localState(), nil
}

// Recompute is a one-off Recomputer.Recompute: it builds the model and
// optimiser for one recomputation and returns an end state of its own.
func Recompute(ctx context.Context, cfg RunConfig, trainData []byte, pool *kernels.Pool, id string, round int, theta, prev []float32, start LocalState, steps int) (payload []byte, end LocalState, err error) {
	r, err := NewRecomputer(cfg, trainData, pool)
	if err != nil {
		return nil, LocalState{}, err
	}
	return r.Recompute(ctx, id, round, theta, prev, start, steps)
}
