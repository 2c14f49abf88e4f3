package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/metrics"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/verify"
	"github.com/cairnlabs/cairn/wire"
)

// ValidationOptions configure the aggregator's validator.
type ValidationOptions struct {
	// Sample chooses the contributions recomputed besides the excluded
	// ones and those of workers already caught: each with probability
	// P, drawn from the hash of the block that recorded the round's
	// result, plus the most suspicious by screening (zero value:
	// verify.DefaultSampleOptions()).
	Sample verify.SampleOptions
	// Tolerance is the cross-kernel-path bound on the distance between a
	// contribution and its recomputation (0: verify.DefaultTolerance).
	Tolerance float64
	// Threads are the validator's own compute threads (0: 1).
	Threads int
}

// ValidatorStats say what the aggregator's validator did.
type ValidatorStats struct {
	Checked int // contributions recomputed (or found unrevealed)
	// Screened are the private contributions judged by screening alone.
	Screened int
	Failed   int           // of Checked and Screened, the ones that failed
	Busy     time.Duration // time spent recomputing and judging
	// Screening is the time spent measuring every contribution's
	// held-out loss (the screening every run does, validated or not).
	Screening time.Duration
}

// validation is the Settler of an aggregator that validates its rounds.
// The node tells it each round's weights when the round starts (weights)
// and the round's contributions when it closes (closed); when the chain
// has recorded the round's result, Settle draws the contributions to
// recompute with the result block's hash as beacon (fixed only after
// every commit of the round) and verifies them in the background, one
// round after another, answering with the verdicts once all are in.
//
// What is recomputed: the beacon's draw with probability Sample.P, the
// most suspicious by screening, every contribution screening excluded or
// the state machine refused for its payload after its commit was
// recorded (to slash it: an exclusion alone is not evidence), and every
// contribution of a worker that failed before (so a caught worker is paid
// nothing after it is caught). A contribution nobody recomputed is
// Unchecked: paid when it was aggregated.
type validation struct {
	cfg    diloco.RunConfig
	opts   ValidationOptions
	v      *Validator
	pool   *kernels.Pool
	commit func(round uint64) (ledger.RoundInfo, error) // the chain's record of a round
	log    *slog.Logger
	met    *metrics.Registry
	ctx    context.Context
	stop   context.CancelFunc
	jobs   chan *roundCase
	done   chan struct{}

	mu      sync.Mutex
	stopped bool              // jobs is closed
	thetas  map[int][]float32 // θ of rounds that may still be validated
	cases   map[uint64]*roundCase
	caught  map[string]bool // workers that failed a verdict
	stats   ValidatorStats

	// caughtLag, when positive (a member's validator), makes "caught
	// before" the chain's record rather than the validator's memory: the
	// workers failed in the rounds settled by the time round r closed,
	// those at least caughtLag (the settlement lag) before r, so that
	// every checker of r draws the same contributions whatever rounds it
	// checked itself. Read and written by the work goroutine only.
	caughtLag     uint64
	ledgerCaught  map[string]bool
	caughtThrough uint64 // rounds below it are in ledgerCaught
}

// roundCase is a closed round awaiting its verdicts.
type roundCase struct {
	round     uint64
	theta     []float32
	prev      []float32         // θ of the round before, with overlap
	payloads  map[string][]byte // by worker peer ID: every contribution the round took or refused for its payload
	screening []verify.Screening
	judged    map[string]bool   // taken by the round: accepted or excluded
	excluded  map[string]string // not aggregated, and why: always recomputed
	// screened is what screening says of each contribution the round
	// took, for those whose commits turn out private (judgePrivate).
	screened map[string]privateCase

	started  bool
	rec      ledger.RoundRecord
	beacon   ledger.Hash
	verdicts []ledger.Verdict // when done
	done     bool
}

// newValidation starts the validator of a run: its own pool of threads,
// recomputing on trainData (the run's first 90%) with the reveals fetch
// gives (see transportReveals).
func newValidation(cfg diloco.RunConfig, o ValidationOptions, trainData []byte, fetch RevealFetcher,
	commit func(uint64) (ledger.RoundInfo, error), log *slog.Logger, met *metrics.Registry) (*validation, error) {
	if o.Sample == (verify.SampleOptions{}) {
		o.Sample = verify.DefaultSampleOptions()
	}
	if o.Threads < 1 {
		o.Threads = 1
	}
	pool := kernels.NewPool(o.Threads)
	v, err := NewValidator(cfg, trainData, pool, fetch, o.Tolerance)
	if err != nil {
		pool.Close()
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	val := &validation{cfg: cfg, opts: o, v: v, pool: pool, commit: commit, log: log, met: met, ctx: ctx, stop: stop,
		jobs: make(chan *roundCase, 64), done: make(chan struct{}),
		thetas: map[int][]float32{}, cases: map[uint64]*roundCase{}, caught: map[string]bool{}}
	go val.work()
	return val, nil
}

// close stops the validator; a round in progress is abandoned.
func (val *validation) close() {
	val.stop()
	val.mu.Lock()
	if val.stopped {
		val.mu.Unlock()
		return
	}
	val.stopped = true
	close(val.jobs)
	val.mu.Unlock()
	<-val.done
	val.pool.Close()
}

// Stats reports what the validator did so far.
func (val *validation) Stats() ValidatorStats {
	val.mu.Lock()
	defer val.mu.Unlock()
	return val.stats
}

// weights records θ of round, the weights its contributions train from
// (with overlap, those to round+1 may start from them too).
func (val *validation) weights(round int, theta []float32) {
	val.mu.Lock()
	defer val.mu.Unlock()
	val.thetas[round] = append([]float32(nil), theta...)
}

// closed records a closed round: its screening and every contribution it
// took (payloads by worker).
func (val *validation) closed(res *diloco.RoundResult, payloads map[string][]byte) {
	val.mu.Lock()
	defer val.mu.Unlock()
	// With overlap a round's contributions may start from the weights of
	// the round before: the next round needs this round's.
	theta, prev := val.thetas[res.Round], val.thetas[res.Round-1]
	for r := range val.thetas {
		if r < res.Round || (r == res.Round && !val.cfg.Overlapped()) {
			delete(val.thetas, r)
		}
	}
	if theta == nil || (val.cfg.Overlapped() && res.Round > 0 && prev == nil) {
		return // the round began before a restart: it is settled unchecked
	}
	c := &roundCase{round: uint64(res.Round), theta: theta, prev: prev, payloads: payloads,
		screening: res.Screening, judged: map[string]bool{}, excluded: map[string]string{}, screened: map[string]privateCase{}}
	flags := map[string]verify.Flag{}
	for _, s := range res.Screening {
		flags[s.Worker] = s.Flags
	}
	for _, a := range res.Accepted {
		if a.Members != nil { // a cohort's sum: its members are private
			for _, m := range a.Members {
				c.screened[m] = privateCase{accepted: true, screened: true, cohort: len(a.Members), c: a, flags: flags[a.Worker]}
			}
			continue
		}
		c.judged[a.Worker] = true
		c.screened[a.Worker] = privateCase{accepted: true, screened: true, c: a, flags: flags[a.Worker]}
	}
	for _, e := range res.Excluded {
		if e.Members != nil {
			for _, m := range e.Members {
				c.screened[m] = privateCase{screened: true, cohort: len(e.Members), c: e.Contribution, flags: flags[e.Worker] | e.Flags}
			}
			continue
		}
		c.judged[e.Worker] = true
		c.excluded[e.Worker] = "excluded by screening"
		c.screened[e.Worker] = privateCase{screened: true, c: e.Contribution, flags: flags[e.Worker] | e.Flags}
	}
	for id := range payloads {
		if !c.judged[id] {
			c.excluded[id] = "refused for its payload"
			c.screened[id] = privateCase{refused: true}
		}
	}
	val.cases[c.round] = c
}

// Settle answers for the round rec records, from block b. A round the
// validator has nothing on (it closed before the node restarted) is
// settled at once, every contribution Unchecked.
func (val *validation) Settle(rec ledger.RoundRecord, beacon ledger.Hash) ([]ledger.Verdict, bool, error) {
	val.mu.Lock()
	c := val.cases[rec.Round]
	if c == nil {
		val.mu.Unlock()
		return SettleUnchecked{}.Settle(rec, beacon)
	}
	defer val.mu.Unlock()
	if !c.started {
		if val.stopped {
			return nil, false, fmt.Errorf("the validator is stopped")
		}
		c.rec, c.beacon = rec, beacon // before the hand-over: the worker goroutine reads them
		select {
		case val.jobs <- c:
			c.started = true
		default: // queue full: handed over when asked again
		}
		return nil, false, nil
	}
	if !c.done {
		return nil, false, nil
	}
	delete(val.cases, rec.Round)
	return c.verdicts, true, nil
}

// work verifies the rounds handed over by Settle, in order.
func (val *validation) work() {
	defer close(val.done)
	for c := range val.jobs {
		vs, err := val.judge(c)
		val.mu.Lock()
		if err != nil {
			c.started = false // the next Settle hands it over again
			val.log.Warn("validating a round", "round", c.round, "err", err)
		} else {
			c.verdicts, c.done = vs, true
		}
		val.mu.Unlock()
		if val.ctx.Err() != nil {
			return
		}
	}
}

// judge verifies round c's chosen contributions and returns the
// settlement's verdicts: one per accepted contribution (Passed, Failed or
// Unchecked) and one per rejected contribution it recomputed (Failed, or
// Unchecked when it passed: it was not aggregated, so it is not paid).
func (val *validation) judge(c *roundCase) ([]ledger.Verdict, error) {
	info, err := val.commit(c.round)
	if err != nil {
		return nil, err
	}
	commits := map[ledger.PubKey]ledger.CommitRecord{}
	for _, cr := range info.Commits {
		commits[cr.Worker] = cr
	}
	picks, err := verify.Sample(c.beacon[:], int(c.round), c.screening, val.opts.Sample)
	if err != nil {
		return nil, err
	}
	check := map[string]string{} // worker -> why it is recomputed
	for _, p := range picks {
		check[p.Worker] = map[bool]string{true: "drawn", false: "suspicious"}[p.Random]
	}
	caught, err := val.caughtBefore(c.round)
	if err != nil {
		return nil, err
	}
	val.mu.Lock()
	for w := range c.payloads {
		if why, ok := c.excluded[w]; ok {
			check[w] = why
		} else if caught[w] {
			check[w] = "caught before"
		}
	}
	val.mu.Unlock()

	type entry struct {
		key      ledger.PubKey
		accepted bool
	}
	var entries []entry
	for _, a := range c.rec.Accepted {
		entries = append(entries, entry{a.Worker, true})
	}
	for _, r := range c.rec.Rejected {
		entries = append(entries, entry{r.Worker, false})
	}
	slices.SortFunc(entries, func(a, b entry) int { return bytes.Compare(a.key[:], b.key[:]) })
	zero := diloco.ZeroState(val.cfg).Hash()
	var verdicts []ledger.Verdict
	for _, e := range entries {
		id := p2p.PeerIDOf(e.key)
		why, chosen := check[id]
		payload, have := c.payloads[id]
		cr, committed := commits[e.key]
		if committed && cr.Private && val.cfg.Private != nil {
			p := c.screened[id]
			p.accepted = p.accepted && e.accepted // as the chain recorded it
			v, ok, err := judgePrivate(e.key, p, *val.cfg.Private)
			if err != nil {
				return nil, err
			}
			if ok {
				val.judgedPrivate(c.round, id, v)
				verdicts = append(verdicts, v)
			}
			continue
		}
		if !chosen || !have || !committed {
			if e.accepted {
				verdicts = append(verdicts, ledger.Verdict{Worker: e.key, Outcome: ledger.Unchecked})
			}
			continue
		}
		want := diloco.Hash(cr.StartState)
		if cr.Fresh {
			want = zero
		}
		chk := Check{Round: int(c.round), Theta: c.theta, Prev: c.prev, Worker: id, Payload: payload, Tokens: int(cr.Tokens), Path: cr.Kernel,
			Start: diloco.Hash(cr.StartState), End: diloco.Hash(cr.EndState), WantStart: want}
		before := val.v.Busy
		v, err := val.v.Verify(val.ctx, chk)
		if err != nil {
			return nil, err
		}
		val.mu.Lock()
		val.stats.Checked++
		val.stats.Busy += val.v.Busy - before
		if !v.Passed() {
			val.stats.Failed++
			val.caught[id] = true
		}
		val.mu.Unlock()
		val.met.Counter("cairn_verified_total", "contributions recomputed by the validator").Add(1)
		if v.Passed() {
			val.log.Info("contribution verified", "round", c.round, "worker", shortID(id), "why", why, "same_path", v.SamePath, "distance", v.Distance)
			if e.accepted {
				verdicts = append(verdicts, ledger.Verdict{Worker: e.key, Outcome: ledger.Passed})
			} else {
				verdicts = append(verdicts, ledger.Verdict{Worker: e.key, Outcome: ledger.Unchecked, Reason: "recomputed and passed; not aggregated"})
			}
			continue
		}
		val.met.Counter("cairn_verification_failures_total", "contributions that failed verification").Add(1)
		val.log.Warn("contribution failed verification", "round", c.round, "worker", shortID(id), "why", why,
			"reason", v.Reason.String(), "distance", v.Distance)
		evidence, err := v.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("the verdict on %s's contribution does not encode: %v", id, err)
		}
		verdicts = append(verdicts, ledger.Verdict{Worker: e.key, Outcome: ledger.Failed,
			Reason: ledgerReason(fmt.Sprintf("%s (%s; distance %.3g)", v.Reason, why, v.Distance)), Evidence: evidence})
	}
	return verdicts, nil
}

// caughtBefore is the set of workers whose contributions round r
// recomputes for having failed before: the validator's own findings, or
// with caughtLag the workers failed on the chain in the rounds up to
// r−caughtLag (all settled when r closed). It fails if the chain cannot
// be read or one of those rounds is not settled.
func (val *validation) caughtBefore(r uint64) (map[string]bool, error) {
	if val.caughtLag == 0 {
		val.mu.Lock()
		defer val.mu.Unlock()
		return maps.Clone(val.caught), nil
	}
	if val.ledgerCaught == nil {
		val.ledgerCaught = map[string]bool{}
	}
	for ; val.caughtThrough+val.caughtLag <= r; val.caughtThrough++ {
		k := val.caughtThrough
		info, err := val.commit(k)
		if err != nil {
			return nil, fmt.Errorf("reading round %d's verdicts: %v", k, err)
		}
		if info.Status != "settled" {
			return nil, fmt.Errorf("round %d is %s, not settled, though round %d has closed", k, info.Status, r)
		}
		for _, v := range info.Verdicts {
			if v.Outcome == ledger.Failed {
				val.ledgerCaught[p2p.PeerIDOf(v.Worker)] = true
			}
		}
	}
	return val.ledgerCaught, nil
}

// judgedPrivate counts and logs a verdict on a private contribution.
func (val *validation) judgedPrivate(round uint64, id string, v ledger.Verdict) {
	val.mu.Lock()
	val.stats.Screened++
	if v.Outcome == ledger.Failed {
		val.stats.Failed++
		val.caught[id] = true
	}
	val.mu.Unlock()
	val.met.Counter("cairn_private_judged_total", "private contributions judged by screening").Add(1)
	if v.Outcome == ledger.Failed {
		val.met.Counter("cairn_verification_failures_total", "contributions that failed verification").Add(1)
		val.log.Warn("private contribution failed screening", "round", round, "worker", shortID(id), "reason", v.Reason)
		return
	}
	val.log.Info("private contribution judged", "round", round, "worker", shortID(id), "outcome", v.Outcome.String(), "reason", v.Reason)
}

// transportReveals fetches reveals over tr (bytes counted in c). A reveal
// is asked for up to revealAttempts times, a while apart, so that a
// worker reconnecting or busy for a moment is not failed (and slashed)
// for one lost stream; only one that cannot be reached or refuses every
// time is.
func transportReveals(cfg diloco.RunConfig, tr Transport, c *wire.Counter, log *slog.Logger) RevealFetcher {
	return func(ctx context.Context, worker string, round int) ([]byte, error) {
		return retryReveal(ctx, revealAttempts, revealRetry, func(ctx context.Context) ([]byte, error) {
			ctx, cancel := context.WithTimeout(ctx, revealBase)
			defer cancel()
			return FetchReveal(ctx, tr, c, worker, round, cfg)
		}, func(attempt int, err error) {
			if log != nil {
				log.Warn("a reveal could not be fetched", "worker", worker, "round", round, "attempt", attempt, "of", revealAttempts, "err", err)
			}
		})
	}
}

// retryReveal calls once up to attempts times, waiting retry, 2·retry, ...
// between calls, until it succeeds or the worker answers with a final
// no: a refusal, or no reveal protocol at all. warn is told of each
// failed attempt. It returns the last error, or ctx's.
func retryReveal(ctx context.Context, attempts int, retry time.Duration, once func(context.Context) ([]byte, error), warn func(attempt int, err error)) ([]byte, error) {
	var err error
	for attempt := range attempts {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(retry * time.Duration(attempt)):
			}
		}
		var b []byte
		if b, err = once(ctx); err == nil {
			return b, nil
		}
		var re *wire.RemoteError
		if errors.As(err, &re) || strings.Contains(err.Error(), "protocols not supported") {
			return nil, err
		}
		warn(attempt+1, err)
	}
	return nil, err
}
