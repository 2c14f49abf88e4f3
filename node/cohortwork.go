package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/dp"
	"github.com/cairnlabs/cairn/secagg"
	"github.com/cairnlabs/cairn/wire"
)

// inCohorts reports whether this worker contributes only through
// secure-aggregation cohorts: it trains on private data in a run with
// secure aggregation. Its Δ never leaves it in the clear.
func (w *Worker) inCohorts() bool {
	cfg := w.w.Cfg
	return w.opts.PrivateData != nil && cfg.Private != nil && cfg.Private.SecAgg != nil
}

// errCohort is the end of this worker's part in a round's cohort: the
// cohort failed, or refused a message. The worker follows the run.
type errCohort struct{ error }

// cohortClient is a member's side of a round's cohort.
type cohortClient struct {
	w        *Worker
	round    int
	session  string
	deadline time.Time // of the round: no phase waits past it and the cohort's wait
}

// call sends one request, with blob after it when not nil, and reads the
// reply and, when the reply is ready and limit positive, a blob of at
// most limit bytes. A refusal or a failed cohort is an errCohort.
func (c *cohortClient) call(ctx context.Context, step string, blob []byte, limit int64, extra func(*cohortRequest)) (cohortReply, []byte, error) {
	req := cohortRequest{Round: c.round, Session: c.session, Step: step}
	if extra != nil {
		extra(&req)
	}
	s, err := c.w.request(ctx, c.w.aggID, ProtoSecAgg, kindCohort, req, controlTimeout)
	if err != nil {
		return cohortReply{}, nil, err
	}
	defer s.Close()
	if blob != nil {
		s.allow(wire.EncodedBlobSize(int64(len(blob))), serveBase, serveMinRate)
		werr := wire.WriteBlob(s, blob)
		if werr == nil {
			werr = s.CloseWrite()
		}
		s.allow(0, controlTimeout, serveMinRate)
		if werr != nil {
			// A refusal may be waiting all the same.
			var r cohortReply
			if err := wire.ReadJSON(s, kindCohortReply, maxControl, &r); err != nil {
				return cohortReply{}, nil, cohortErr(err)
			}
			return cohortReply{}, nil, werr
		}
	}
	var r cohortReply
	if err := wire.ReadJSON(s, kindCohortReply, maxControl, &r); err != nil {
		return r, nil, cohortErr(err)
	}
	if r.Failed != "" {
		return r, nil, errCohort{fmt.Errorf("the cohort failed: %s", r.Failed)}
	}
	var b []byte
	if r.Ready && limit > 0 {
		s.allow(wire.EncodedBlobSize(limit), aggFetchBase, aggFetchMinRate)
		if b, err = wire.ReadBlob(s, limit); err != nil {
			return r, nil, err
		}
	}
	return r, b, nil
}

// cohortErr makes a refusal an errCohort; other errors are the link's.
func cohortErr(err error) error {
	var re *wire.RemoteError
	if errors.As(err, &re) {
		return errCohort{fmt.Errorf("refused: %s", re.Msg)}
	}
	return err
}

// await asks step until its answer is ready, at most until the round's
// deadline plus the cohort's wait.
func (c *cohortClient) await(ctx context.Context, step string, limit int64) (cohortReply, []byte, error) {
	end := c.deadline.Add(cohortWait(c.w.w.Cfg) + 5*time.Second)
	for {
		r, b, err := c.call(ctx, step, nil, limit, nil)
		if err != nil || r.Ready {
			return r, b, err
		}
		if time.Now().After(end) {
			return r, nil, errCohort{fmt.Errorf("the cohort's %s step never closed", r.Phase)}
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return r, nil, err
		}
	}
}

// cohortConfig checks the cohort the aggregator put this worker in and
// returns its secagg round, this worker's party and the fixed-point
// scale: the members sorted and distinct, this worker one of them, the
// session the one of this run, round, weights and members, the threshold
// the run's rule.
func (w *Worker) cohortConfig(round int, hash diloco.Hash, info *cohortInfo) (secagg.Config, uint64, float64, error) {
	cfg := w.w.Cfg
	n := len(info.Members)
	if n < cfg.Private.SecAgg.MinCohort || n > diloco.MaxCohort || !slices.IsSorted(info.Members) || len(slices.Compact(slices.Clone(info.Members))) != n {
		return secagg.Config{}, 0, 0, fmt.Errorf("a cohort of %d members, not sorted and distinct or not within %d to %d", n, cfg.Private.SecAgg.MinCohort, diloco.MaxCohort)
	}
	me := slices.Index(info.Members, w.tr.ID())
	if me < 0 {
		return secagg.Config{}, 0, 0, errors.New("this worker is not among the cohort's members")
	}
	session := cohortSession(w.led.client.Info().ChainID, round, hash, info.Members)
	if hex.EncodeToString(session[:]) != info.Session {
		return secagg.Config{}, 0, 0, errors.New("the cohort's session is not this run's, round's, weights' and members'")
	}
	sc := cohortConfig(cfg, session, n)
	if info.Threshold != sc.Threshold {
		return secagg.Config{}, 0, 0, fmt.Errorf("the cohort's threshold is %d, the run's rule gives %d", info.Threshold, sc.Threshold)
	}
	scale, err := secagg.ScaleFor(n, cfg.Private.SecAgg.Clip, cfg.Private.SecAgg.Bits)
	if err != nil {
		return secagg.Config{}, 0, 0, err
	}
	return sc, uint64(me + 1), scale, nil
}

// trainInCohort is a private worker's round in a run with secure
// aggregation: it advertises its keys and shares its secrets with the
// cohort (through the aggregator), trains, sends its Δ masked with its
// commit to the masked bytes, and reveals its shares for the survivors.
// Without a cohort it sits the round out: its Δ never leaves it in the
// clear. A cohort that fails or refuses it ends its part in the round
// (logged); the worker follows the run.
func (w *Worker) trainInCohort(ctx context.Context, left time.Duration, waited bool, info *cohortInfo) error {
	w.mu.Lock()
	round, hash := w.w.Round(), w.w.Hash()
	w.mu.Unlock()
	deadline := time.Now().Add(left)
	if info == nil {
		w.log.Info("no secure-aggregation cohort for this worker this round: sitting it out", "round", round)
		return sleepCtx(ctx, min(left, committedWait))
	}
	if w.led.recorded == round+1 {
		return sleepCtx(ctx, committedWait)
	}
	if err := w.reconcile(ctx); err != nil {
		return err
	}
	err := w.cohortRound(ctx, round, hash, deadline, waited, info)
	var ec errCohort
	if errors.As(err, &ec) {
		w.log.Warn("secure-aggregation cohort: this worker's part in the round ends", "round", round, "err", ec.error)
		return nil
	}
	return err
}

// cohortRound runs the member's steps; see trainInCohort.
func (w *Worker) cohortRound(ctx context.Context, round int, hash diloco.Hash, deadline time.Time, waited bool, info *cohortInfo) error {
	sc, me, scale, err := w.cohortConfig(round, hash, info)
	if err != nil {
		return errCohort{fmt.Errorf("refusing the cohort: %v", err)}
	}
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return err
	}
	var work time.Duration // spent on the protocol's own computation
	t0 := time.Now()
	cl, keys, err := secagg.NewClient(sc, me, seed)
	work += time.Since(t0)
	if err != nil {
		return errCohort{err}
	}
	co := &cohortClient{w: w, round: round, session: info.Session, deadline: deadline}
	n := len(info.Members)
	if _, _, err := co.call(ctx, stepKeys, keys.Marshal(), 0, nil); err != nil {
		return err
	}
	_, kb, err := co.await(ctx, stepGetKeys, int64(n)*secagg.KeysSize)
	if err != nil {
		return err
	}
	ks, err := parseAll(kb, secagg.KeysSize, secagg.ParseKeys)
	if err != nil {
		return errCohort{fmt.Errorf("the cohort's keys: %v", err)}
	}
	t0 = time.Now()
	boxes, err := cl.ShareKeys(ks)
	work += time.Since(t0)
	if err != nil {
		return errCohort{err}
	}
	var bb []byte
	for _, b := range boxes {
		bb = append(bb, b.Marshal()...)
	}
	if _, _, err := co.call(ctx, stepBoxes, bb, 0, nil); err != nil {
		return err
	}
	_, mb, err := co.await(ctx, stepGetBoxes, int64(n-1)*secagg.BoxSize)
	if err != nil {
		return err
	}
	mine, err := parseAll(mb, secagg.BoxSize, secagg.ParseBox)
	if err != nil {
		return errCohort{fmt.Errorf("the boxes for this worker: %v", err)}
	}

	t, err := w.trainRound(ctx, time.Until(deadline), waited)
	if t == nil || err != nil {
		return err
	}
	t0 = time.Now()
	delta := make([]float32, sc.Dim)
	if err := compress.Decode(t.payload, delta); err != nil {
		return errCohort{fmt.Errorf("this worker's own Δ does not decode: %v", err)}
	}
	if d := w.w.Cfg.DP; d != nil {
		// Differential privacy: each member bounds its own Δ (the
		// aggregator never sees it to clip it) and the aggregator adds
		// the noise to the sum.
		if _, err := dp.Clip(delta, d.Clip); err != nil {
			return errCohort{err}
		}
	}
	x := make([]uint32, sc.Dim)
	sa := w.w.Cfg.Private.SecAgg
	if err := secagg.Encode(x, delta, sa.Clip, scale, sa.Bits); err != nil {
		return errCohort{err}
	}
	m, err := cl.MaskInput(x, mine)
	if err != nil {
		return errCohort{err}
	}
	blob := m.Marshal(sc)
	work += time.Since(t0)
	commit, raw, err := w.commitTo(t.round, blob, t.tokens, t.startHash)
	if err != nil {
		return errPermanent{fmt.Errorf("signing the commit of round %d: %v", t.round, err)}
	}
	c := &contribution{round: t.round, compute: time.Since(t.start), loss: t.loss, hash: t.hash, tokens: t.tokens, payload: blob, commit: commit, raw: raw, attempts: 1}
	w.sendingReveal(c)
	_, _, err = co.call(ctx, stepMasked, blob, 0, func(r *cohortRequest) {
		r.Tokens, r.Commit, r.ComputeMs, r.Loss = c.tokens, c.raw, c.compute.Milliseconds(), c.loss
	})
	if err != nil {
		var ec errCohort
		if errors.As(err, &ec) {
			w.mu.Lock()
			w.stats.Refused++
			w.mu.Unlock()
			w.submitted(c, false, false)
		} else {
			w.led.known = false
		}
		return err
	}
	w.submitted(c, true, true)
	w.mu.Lock()
	w.stats.Rounds++
	w.stats.Tokens += int64(c.tokens)
	w.mu.Unlock()
	w.updateMetrics(c.round)
	if w.cohortDrop != nil && w.cohortDrop(round) {
		return errPermanent{errors.New("test: dropped out after sending its masked input")}
	}

	r, _, err := co.await(ctx, stepGetSurvivors, 0)
	if err != nil {
		return err
	}
	t0 = time.Now()
	rev, err := cl.Unmask(r.Survivors)
	work += time.Since(t0)
	if err != nil {
		return errCohort{err}
	}
	if _, _, err := co.call(ctx, stepReveal, rev.Marshal(), 0, nil); err != nil {
		return err
	}
	if _, _, err := co.await(ctx, stepGetResult, 0); err != nil {
		return err
	}
	w.log.Info("secure-aggregation cohort summed", "round", round, "members", n, "survivors", len(r.Survivors),
		"protocol_work", work.Round(time.Millisecond), "training", c.compute.Round(time.Millisecond), "masked_bytes", len(blob))
	w.readBalance(ctx)
	return nil
}

// parseAll splits b into messages of size bytes and parses each.
func parseAll[T any](b []byte, size int, parse func([]byte) (T, error)) ([]T, error) {
	if len(b)%size != 0 {
		return nil, fmt.Errorf("%d bytes, not a multiple of %d", len(b), size)
	}
	var out []T
	for off := 0; off < len(b); off += size {
		v, err := parse(b[off : off+size])
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}
