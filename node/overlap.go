package node

import (
	"context"
	"errors"
	"time"

	"github.com/cairnlabs/cairn/diloco"
)

// In a run with overlap (diloco.RunConfig.OverlapSteps) a worker that has
// built its contribution to round r starts training round r+1 at once, in
// the background (an aheadJob), from θr less its own contribution, and
// only then uploads, polls and downloads; the job takes θr+1 when the run
// loop has it (feedAhead), by its overlap step. All ledger bookkeeping
// stays on the run loop: the job only trains, and nothing else touches the
// worker's local state while it runs.

// aheadJob is one round's training running in the background.
type aheadJob struct {
	round  int
	cancel context.CancelFunc
	done   chan struct{}
	// theta, once set by the run loop (feedAhead), holds the round's
	// weights, and ready is closed.
	ready chan struct{}
	theta []float32
	// The local state it trained from: the start state its commit names
	// and a reveal hands out.
	start     diloco.LocalState
	startHash diloco.Hash
	// Set when done.
	payload []byte
	tokens  int
	err     error
}

// launchAhead starts training the contribution to round in the background
// for want inner steps; prev are the weights of round-1 when the
// contribution starts from a stand-in (nil otherwise). The local state it
// starts from is the worker's current one, whatever the chain holds: the
// caller has reconciled it or just built a commit that ends in it. The
// job gets the round's weights from feedAhead; the time it waits for them
// is not compute.
func (w *Worker) launchAhead(ctx context.Context, round int, prev []float32, want int) {
	j := &aheadJob{round: round, done: make(chan struct{}), ready: make(chan struct{}), start: w.spare}
	w.spare = diloco.LocalState{}
	j.startHash = w.stateHash()
	w.w.StateTo(&j.start)
	if prev != nil {
		w.aheadPrev = append(w.aheadPrev[:0], prev...)
		prev = w.aheadPrev
	}
	jctx, cancel := context.WithCancel(ctx)
	j.cancel = cancel
	w.ahead = j
	var waited time.Duration
	await := func(ctx context.Context) ([]float32, error) {
		t := time.Now()
		defer func() { waited += time.Since(t) }()
		select {
		case <-j.ready:
			return j.theta, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	go func() {
		defer close(j.done)
		began := time.Now()
		j.payload, j.tokens, j.err = w.w.TrainAhead(jctx, round, prev, await, want, func(i int, loss float32) {
			w.met.Gauge("cairn_train_loss", "loss of the last inner step").Set(float64(loss))
			if w.opts.OnStep != nil {
				w.opts.OnStep(round, i, loss)
			}
		})
		w.mu.Lock()
		w.stats.Compute += time.Since(began) - waited
		w.mu.Unlock()
	}()
	w.feedAhead()
}

// feedAhead hands the background job its round's weights once the worker
// holds them, and stops a job the run has left behind.
func (w *Worker) feedAhead() {
	j := w.ahead
	if j == nil || j.theta != nil || w.w.Round() < j.round {
		return
	}
	if w.w.Round() > j.round {
		w.stopAhead()
		return
	}
	w.aheadTheta = append(w.aheadTheta[:0], w.w.Weights()...)
	j.theta = w.aheadTheta
	close(j.ready)
}

// ensureAhead starts training round in the background if nothing is
// training, round is in the run, this worker has not committed to it yet,
// and it holds the weights of round-1 that an eager start needs.
func (w *Worker) ensureAhead(ctx context.Context, round int) {
	if w.ahead != nil || round >= w.w.Cfg.Rounds || w.led.recorded > round {
		return
	}
	var prev []float32
	if w.w.Eager(round) {
		switch p, _, ok := w.w.Previous(); {
		case w.w.Round() == round-1:
			prev = w.w.Weights()
		case ok && w.w.Round() == round:
			prev = p
		default:
			return
		}
	}
	w.launchAhead(ctx, round, prev, w.wantSteps(round))
}

// wantSteps is how many inner steps the worker trains for round: H, or
// what its Behaviour says.
func (w *Worker) wantSteps(round int) int {
	want := w.w.Cfg.InnerSteps
	if b := w.opts.Behaviour; b != nil {
		want = min(max(b.Steps(round, want), 1), want)
	}
	return want
}

// awaitAhead waits for the background job to finish and takes it (ctx
// ending cancels it and returns ctx's error).
func (w *Worker) awaitAhead(ctx context.Context) (*aheadJob, error) {
	j := w.ahead
	select {
	case <-j.done:
	case <-ctx.Done():
		w.stopAhead()
		return nil, ctx.Err()
	}
	w.ahead = nil
	if j.err == nil {
		w.led.curValid = false // trained: the local state moved on
	}
	return j, nil
}

// stopAhead cancels the background job, if any, waits for it and puts
// the local state back to where the job started (a job that failed left
// it there itself).
func (w *Worker) stopAhead() {
	j := w.ahead
	if j == nil {
		return
	}
	j.cancel()
	<-j.done
	w.ahead = nil
	if j.err == nil {
		if err := w.setState(j.start, j.startHash); err != nil {
			w.log.Error("cannot roll the local state back", "err", err)
		}
	}
	w.spare = j.start
}

// trainOverlapped answers Train for round in a run with overlap. It takes
// the background job for the round (starting one now if none runs: a
// single step for a worker the round does not wait for), commits to the
// result, starts the next round in the background and then submits. A
// worker whose contribution starts from the weights of the round before,
// which it does not hold (it fetched the round's weights since), skips
// the round.
func (w *Worker) trainOverlapped(ctx context.Context, round int, left time.Duration, waited bool) error {
	deadline := time.Now().Add(left)
	if j := w.ahead; j != nil && j.round != round {
		w.stopAhead()
	}
	if w.led.recorded == round+1 {
		// The chain holds this worker's commit to the round (its
		// contribution was refused after it was recorded).
		return sleepCtx(ctx, committedWait)
	}
	if w.ahead == nil {
		if err := w.reconcile(ctx); err != nil {
			return err
		}
		var prev []float32
		if w.w.Eager(round) {
			p, _, ok := w.w.Previous()
			if !ok {
				return w.skipRound(ctx, round, errors.New("it starts from the weights of the round before, which this worker no longer holds"), deadline)
			}
			prev = p
		}
		want := w.wantSteps(round)
		if !waited {
			want = 1
		}
		w.launchAhead(ctx, round, prev, want)
	}
	w.feedAhead()
	j, err := w.awaitAhead(ctx)
	if err != nil {
		return err
	}
	if j.err != nil {
		w.spare = j.start
		return w.skipRound(ctx, round, j.err, deadline)
	}
	payload, tokens, _ := w.trained(round, j.payload, j.tokens)
	commit, raw, err := w.commitTo(round, payload, tokens, j.startHash)
	if err != nil {
		return errPermanent{err}
	}
	// The start state to keep for a reveal, or to roll back to.
	if w.spare.M == nil && !w.led.startValid {
		w.spare = w.led.start
	}
	w.led.start, w.led.startHash, w.led.startValid = j.start, j.startHash, true
	c := &contribution{round: round, hash: w.w.Hash(), tokens: tokens, payload: payload, commit: commit, raw: raw}
	w.pending = c
	w.ensureAhead(ctx, round+1) // trains while the contribution uploads
	if err := w.submit(ctx, c); err != nil {
		return err
	}
	w.pending = nil
	return nil
}

// sleepCtx waits d or until ctx ends (its error).
func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(max(d, 0)):
		return nil
	}
}
