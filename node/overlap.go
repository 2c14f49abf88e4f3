package node

import (
	"context"
	"time"

	"github.com/cairnlabs/cairn/diloco"
)

// In a run with overlap (diloco.RunConfig.Overlap) a contribution to
// round r trains from the weights of round r−1, so a worker need not wait
// for round r's weights: as soon as it has built its contribution to
// round r it starts training round r+1 in the background (an aheadJob)
// and only then uploads, polls and downloads the update. All ledger
// bookkeeping stays on the run loop: the job only trains, and nothing
// else touches the worker's local state while it runs.

// aheadJob is one round's training running in the background.
type aheadJob struct {
	round  int
	base   diloco.Hash // of the weights it trains from
	want   int         // inner steps
	cancel context.CancelFunc
	done   chan struct{}
	// The local state it trained from: the start state its commit names
	// and a reveal hands out.
	start     diloco.LocalState
	startHash diloco.Hash
	// Set when done.
	payload []byte
	tokens  int
	err     error
}

// launchAhead starts training the contribution to round from base (the
// weights of the round's base round, with hash baseHash) for want inner
// steps in the background. The local state it starts from is the
// worker's current one, whatever the chain holds: the caller has
// reconciled it or just built a commit that ends in it.
func (w *Worker) launchAhead(ctx context.Context, round int, base []float32, baseHash diloco.Hash, want int) {
	j := &aheadJob{round: round, base: baseHash, want: want, done: make(chan struct{}), start: w.spare}
	w.spare = diloco.LocalState{}
	j.startHash = w.stateHash()
	w.w.StateTo(&j.start)
	w.aheadBase = append(w.aheadBase[:0], base...)
	jctx, cancel := context.WithCancel(ctx)
	j.cancel = cancel
	w.ahead = j
	go func() {
		defer close(j.done)
		began := time.Now()
		j.payload, j.tokens, j.err = w.w.TrainFrom(jctx, round, w.aheadBase, want, func(i int, loss float32) {
			w.met.Gauge("cairn_train_loss", "loss of the last inner step").Set(float64(loss))
			if w.opts.OnStep != nil {
				w.opts.OnStep(round, i, loss)
			}
		})
		w.mu.Lock()
		w.stats.Compute += time.Since(began)
		w.mu.Unlock()
	}()
}

// ensureAhead starts training round in the background if nothing is
// training, round is in the run, this worker has not committed to it yet
// and it holds the weights the round trains from.
func (w *Worker) ensureAhead(ctx context.Context, round int) {
	if w.ahead != nil || round >= w.w.Cfg.Rounds || w.led.recorded > round {
		return
	}
	base, hash, ok := w.w.Base(round)
	if !ok {
		return
	}
	w.launchAhead(ctx, round, base, hash, w.wantSteps(round))
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

// trainOverlapped answers Train for round in a run with overlap: the
// contribution trains from the weights with hash base (the previous
// round's). It takes the background job for the round (starting one now
// if none runs: a single step for a worker the round does not wait for),
// commits to the result, starts the next round in the background and then
// submits. A worker that does not hold the round's base weights (it
// joined or resynchronised since) skips the round and trains the next.
func (w *Worker) trainOverlapped(ctx context.Context, round int, base diloco.Hash, left time.Duration, waited bool) error {
	deadline := time.Now().Add(left)
	if j := w.ahead; j != nil && (j.round != round || j.base != base) {
		if j.round == round+1 {
			// Already training the next round: this one is skipped.
			return sleepCtx(ctx, committedWait)
		}
		w.stopAhead()
	}
	if w.led.recorded == round+1 {
		// The chain holds this worker's commit to the round (its
		// contribution was refused after it was recorded).
		w.ensureAhead(ctx, round+1)
		return sleepCtx(ctx, committedWait)
	}
	if w.ahead == nil {
		if err := w.reconcile(ctx); err != nil {
			return err
		}
		b, bh, ok := w.w.Base(round)
		if !ok || bh != base {
			w.log.Info("not holding the weights this round trains from; training the next round", "round", round)
			w.ensureAhead(ctx, round+1)
			return sleepCtx(ctx, committedWait)
		}
		want := w.wantSteps(round)
		if !waited {
			want = 1
		}
		w.launchAhead(ctx, round, b, bh, want)
	}
	j, err := w.awaitAhead(ctx)
	if err != nil {
		return err
	}
	if j.err != nil {
		w.spare = j.start
		w.log.Warn("cannot train from the round's weights; skipping this round's contribution and following the run", "round", round, "err", j.err)
		w.mu.Lock()
		w.stats.Skipped++
		w.mu.Unlock()
		return sleepCtx(ctx, time.Until(deadline)+100*time.Millisecond)
	}
	payload, tokens := j.payload, j.tokens
	steps := tokens / w.w.Cfg.TokensPerStep()
	w.mu.Lock()
	w.stats.Steps += steps
	w.mu.Unlock()
	w.met.Counter("cairn_inner_steps_total", "inner training steps").Add(float64(steps))
	if b := w.opts.Behaviour; b != nil {
		payload, tokens = b.Forge(round, payload, tokens)
		tokens = max(tokens, 0)
	}
	commit, raw, err := w.commitTo(round, payload, tokens, j.startHash)
	if err != nil {
		return errPermanent{err}
	}
	// The start state to keep for a reveal, or to roll back to.
	if w.spare.M == nil && !w.led.startValid {
		w.spare = w.led.start
	}
	w.led.start, w.led.startHash, w.led.startValid = j.start, j.startHash, true
	c := &contribution{round: round, hash: j.base, tokens: tokens, payload: payload, commit: commit, raw: raw}
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
