package node

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/verify"
)

// HeldOutOptions configure how the aggregator measures the held-out loss of
// every contribution (verify.HeldOut: the loss on a slice of the worker's
// assigned data at θr and at θr − Step·Δ), which screening uses when the
// round closes. Measurements run off the round's state machine and lock,
// as contributions arrive. The zero value takes the defaults.
type HeldOutOptions struct {
	// Evaluators is how many contributions are measured at once, each
	// evaluator with its own model and a pool of AggregatorOptions.Threads
	// threads. Default: 2 on machines with 8 or more CPUs, else 1.
	// Negative: no measurement (contributions are screened on norms,
	// similarities and copies only).
	Evaluators int
	// Batches is the number of held-out batches (of the run's batch size)
	// per measurement; default 2.
	Batches int
	// Wait bounds how long a round that could close waits for
	// measurements still queued or running (diloco.Aggregator.HeldOutWait);
	// then it closes with what was measured. Default 3 s.
	Wait time.Duration
	// Queue bounds the contributions waiting for an evaluator; one that
	// arrives at a full queue is not measured. Default 64.
	Queue int
}

// withDefaults fills in the zero fields.
func (o HeldOutOptions) withDefaults() HeldOutOptions {
	if o.Evaluators == 0 {
		o.Evaluators = 1
		if runtime.GOMAXPROCS(0) >= 8 {
			o.Evaluators = 2
		}
	}
	if o.Batches <= 0 {
		o.Batches = 2
	}
	if o.Wait <= 0 {
		o.Wait = 3 * time.Second
	}
	if o.Queue <= 0 {
		o.Queue = 64
	}
	return o
}

// screener measures held-out losses for an aggregator node and reports
// each closed round's screening.
type screener struct {
	a     *Aggregator
	jobs  chan heldOutJob
	done  chan struct{} // closed by close: queued jobs are dropped
	wg    sync.WaitGroup
	pools []*kernels.Pool
	busy  atomic.Int64 // nanoseconds spent measuring held-out losses

	// Guarded by a.mu: closed once close began; theta is a copy of the
	// weights of round (with hash), shared by that round's jobs.
	closed bool
	round  int
	hash   diloco.Hash
	theta  []float32
}

// heldOutJob is one contribution to measure.
type heldOutJob struct {
	id      string
	round   int
	theta   []float32 // the round's weights (read-only)
	payload []byte
}

// startScreener prepares a's held-out evaluators on the run's training
// text (the data workers are assigned from) and starts them; the round's
// state machine then waits up to o.Wait for their losses.
func startScreener(a *Aggregator) (*screener, error) {
	o := a.opts.HeldOut.withDefaults()
	s := &screener{a: a, done: make(chan struct{}), round: -1}
	if o.Evaluators < 0 {
		return s, nil
	}
	cfg := a.agg.Cfg
	train, _ := corpus.Split(a.opts.Text, 0.9)
	ids := cfg.Encode(train)
	var hos []*verify.HeldOut
	for i := 0; i < o.Evaluators; i++ {
		pool := kernels.NewPool(a.opts.Threads)
		s.pools = append(s.pools, pool)
		ho, err := verify.NewHeldOutTokens(cfg.Model, ids, cfg.Batch, o.Batches, cfg.Seed, pool)
		if err != nil {
			s.closePools()
			return nil, fmt.Errorf("held-out screening: %v", err)
		}
		hos = append(hos, ho)
	}
	s.jobs = make(chan heldOutJob, o.Queue)
	a.agg.HeldOutWait = o.Wait
	for _, ho := range hos {
		s.wg.Add(1)
		go s.evaluate(ho)
	}
	return s, nil
}

// submitted queues the held-out measurement of a contribution the state
// machine has just taken; a.mu is held. It never blocks: with the queue
// full the contribution goes unmeasured (and the round waits for it at
// most the options' Wait).
func (s *screener) submitted(id string, round int, hash diloco.Hash, payload []byte) {
	if s.jobs == nil || s.closed {
		return
	}
	if s.theta == nil || s.round != round || s.hash != hash {
		// A fresh copy per round: jobs of the last round may still read
		// the old one.
		s.theta, s.round, s.hash = slices.Clone(s.a.agg.Weights()), round, hash
	}
	select {
	case s.jobs <- heldOutJob{id: id, round: round, theta: s.theta, payload: payload}:
	default:
		s.a.met.Counter("cairn_heldout_skipped_total", "contributions not measured: the held-out queue was full").Add(1)
		s.a.log.Warn("held-out queue full: contribution screened without its loss", "peer", id, "round", round)
	}
}

// evaluate measures queued contributions with ho and hands each loss to
// the state machine (which may close the round on it).
func (s *screener) evaluate(ho *verify.HeldOut) {
	defer s.wg.Done()
	var delta []float32
	for job := range s.jobs {
		select {
		case <-s.done:
			continue
		default:
		}
		s.a.mu.Lock()
		stale := s.a.agg.Round() != job.round || s.a.agg.Phase() == diloco.Unpublished
		s.a.mu.Unlock()
		if stale {
			continue // the round closed before its turn came
		}
		if delta == nil {
			delta = make([]float32, len(job.theta))
		}
		start := time.Now()
		var before, after float64
		err := compress.Decode(job.payload, delta)
		if err == nil {
			before, after, err = ho.Loss(job.theta, delta, diloco.Stream(job.id), job.round)
		}
		s.busy.Add(int64(time.Since(start)))
		if err != nil { // Submit decoded it: a fault here is the node's
			s.a.log.Error("held-out loss", "peer", job.id, "round", job.round, "err", err)
			continue
		}
		digest := verify.PayloadDigest(job.payload)
		s.a.mu.Lock()
		err = s.a.agg.SetHeldOut(job.id, job.round, digest, before, after)
		if err == nil {
			s.a.tickLocked(time.Now())
		}
		s.a.mu.Unlock()
		if err != nil {
			s.a.log.Debug("held-out loss not used", "peer", job.id, "round", job.round, "err", err)
			continue
		}
		s.a.met.Counter("cairn_heldout_measured_total", "contributions whose held-out loss was measured").Add(1)
		s.a.log.Debug("held-out loss", "peer", job.id, "round", job.round, "before", before, "after", after, "took", time.Since(start))
	}
}

// report logs a closed round's exclusions and flags and counts them; a.mu
// is held.
func (s *screener) report(res *diloco.RoundResult) {
	for _, x := range res.Excluded {
		s.a.log.Warn("contribution excluded", "round", res.Round, "peer", x.Worker, "reason", x.Reason)
	}
	flagged, unmeasured := 0, 0
	for _, sc := range res.Screening {
		if sc.Flags != 0 {
			flagged++
			s.a.log.Info("contribution flagged", "round", res.Round, "peer", sc.Worker, "flags", sc.Flags.String(),
				"score", fmt.Sprintf("%.3g", sc.Score), "norm_ratio", fmt.Sprintf("%.3g", sc.NormRatio))
		}
	}
	for _, c := range res.Accepted {
		if !c.Measured {
			unmeasured++
		}
	}
	for _, x := range res.Excluded {
		if !x.Measured {
			unmeasured++
		}
	}
	s.a.met.Counter("cairn_contributions_excluded_total", "contributions left out of the aggregate by screening").Add(float64(len(res.Excluded)))
	s.a.met.Counter("cairn_contributions_flagged_total", "contributions screening found suspicious").Add(float64(flagged))
	if unmeasured > 0 && s.jobs != nil {
		s.a.log.Info("round closed without some held-out losses", "round", res.Round, "unmeasured", unmeasured)
	}
}

// close stops the evaluators (dropping queued work) and frees their
// pools; a.mu must not be held.
func (s *screener) close() {
	s.a.mu.Lock()
	if s.closed {
		s.a.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	if s.jobs != nil {
		close(s.jobs)
	}
	s.a.mu.Unlock()
	s.wg.Wait()
	s.closePools()
}

func (s *screener) closePools() {
	for _, p := range s.pools {
		p.Close()
	}
	s.pools = nil
}
