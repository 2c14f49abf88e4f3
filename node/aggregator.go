package node

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnlabs/cairn/checkpoint"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/metrics"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/train"
	"github.com/cairnlabs/cairn/wire"
	"github.com/libp2p/go-libp2p/core/crypto"
)

// StateFile is the aggregator's durable state inside its data directory.
const StateFile = "aggregator.safetensors"

// AggregatorOptions configure an aggregator node.
type AggregatorOptions struct {
	DataDir string   // identity key, durable state, final model
	Listen  []string // multiaddrs; default p2p.DefaultListen
	// Transport, when set, is used instead of a libp2p host made from the
	// identity in DataDir and Listen.
	Transport Transport
	// Config starts a new run; a data directory with saved state resumes
	// that run instead (and Config is ignored).
	Config diloco.RunConfig
	// Init, when set, are the weights a new run starts from (else the
	// run seed's initialisation).
	Init []float32
	Text []byte // the run's text: its last 10% is the validation split
	// EvalBatches bounds the validation batches run after every round
	// (0: the whole validation split).
	EvalBatches int
	Threads     int // for evaluation (and each held-out evaluator)
	Grace       time.Duration
	// StartWith, when above the run's quorum, holds a new run's first
	// round until that many workers are present, for at most StartWait
	// (default a minute) after the aggregator starts; then the quorum
	// suffices (see diloco.Aggregator.StartWith).
	StartWith int
	StartWait time.Duration
	// HeldOut configures the held-out loss measured for every
	// contribution's screening (zero value: the defaults).
	HeldOut HeldOutOptions
	// Limits bound what identities can cost the aggregator (zero fields:
	// diloco.DefaultLimits).
	Limits diloco.Limits
	// Admit, when set, decides whether an identity may take part (see
	// diloco.Aggregator.Admit), after the run's admission by stake;
	// nil adds nothing to it.
	Admit func(id string) error

	// The run's ledger (DataDir/ledger.db), which the aggregator hosts.
	// Ledger are its rules, used when the chain is created (a data
	// directory that holds a chain keeps its own); nil takes
	// DefaultLedgerParams. A MinStake of 0 makes an open run: every
	// identity with an ed25519 key takes part, staked or not. Otherwise
	// only identities with at least MinStake bonded take part.
	Ledger *LedgerParams
	// Accounts are funded (balance) and staked at the chain's creation.
	Accounts []ledger.GenesisAccount
	// BlockInterval is the least time between the blocks the clock loop
	// makes of workers' transactions (default 1 s); a round's result and
	// its settlement get their blocks at once.
	BlockInterval time.Duration
	// ChainRPC, if set, records the run on a CometBFT network of the
	// ledger through this validator's RPC address ('cairn chain start')
	// instead of the chain in DataDir; the aggregator's identity must be
	// one of the chain's authorities. Ledger and Accounts are then unused:
	// the chain's genesis set them.
	ChainRPC string
	// Settler judges closed rounds for their settlement; nil settles
	// each round as soon as its result is recorded, every contribution
	// Unchecked (SettleUnchecked).
	Settler Settler
	// Key is the node's identity when Transport is set (nil: the key in
	// DataDir); it signs the chain's blocks, results and settlements.
	Key crypto.PrivKey
	// Validation, when set, makes the aggregator the run's validator: it
	// recomputes a sample of every round's contributions (and every
	// contribution screening excluded, and every one from a worker caught
	// before) from the start states their workers reveal, and settles the
	// round with the verdicts: failed contributions are not paid and
	// their workers are slashed. It replaces Settler.
	Validation *ValidationOptions

	Metrics *metrics.Registry // nil: a private registry
	Log     *slog.Logger      // nil: discard
	OnRound func(RoundInfo)   // after every closed round, from one goroutine
}

// RoundInfo reports a closed round.
type RoundInfo struct {
	Round        int // the round that closed; the weights are now Round+1's
	ValLoss      float64
	Contributors []string
	Missing      []string
	Active       int
	Sent, Recv   uint64 // bytes on the aggregator's streams so far
	UpdateBytes  int
	Took         time.Duration // from the round's opening to its close
	Resumed      bool          // the first report after a restart from saved state
	// Compute is the training time each contributor reported (self
	// reported: for display, never for pay).
	Compute map[string]time.Duration
	// TrainLoss is the mean of the last inner-step losses the accepted
	// contributors reported (0: none reported).
	TrainLoss float64
	// Result is the state machine's report of the round: contributions
	// accepted and excluded (with reasons), every one's screening, the
	// clipping (nil in a Resumed report).
	Result *diloco.RoundResult
}

// Aggregator is a running aggregator node.
type Aggregator struct {
	opts      AggregatorOptions
	tr        Transport
	lock      *p2p.DirLock // on DataDir, until Close
	log       *slog.Logger
	statePath string
	counter   wire.Counter
	met       *metrics.Registry

	led *aggLedger // the run's chain

	// With secure aggregation: the round's cohort, and the workers that
	// said they train on private data (at most maxPrivatePeers).
	cohort       *cohortRun
	privatePeers map[string]bool

	mu  sync.Mutex
	agg *diloco.Aggregator
	// commits are the commits recorded with contributions to the current
	// round, by worker, and their order of arrival.
	commits     map[string]*roundCommit
	commitOrder []string
	holding     bool            // a round's close waits for a settlement (logged once)
	told        map[string]bool // workers told the run is finished
	// finalSettled: every round of the finished run is settled; until
	// then a poll is answered Wait, not Finished.
	finalSettled bool
	changed      chan struct{} // closed and replaced when the state changes
	resumed      bool
	blob         []byte      // the current weights, serialised for joiners
	blobHash     diloco.Hash // of blob
	serves       *serveLimit // downloads of the weights

	pool        *kernels.Pool
	model       *gpt.Model
	val         []byte
	valIDs      []int32      // val as the run's token ids, once encoded
	evals       chan evalJob // published rounds waiting for evaluation, in order
	evalsClosed bool         // guarded by mu
	idle        chan struct{}
	screen      *screener   // held-out losses of contributions, screening reports
	valid       *validation // the run's validator (nil: rounds settle unchecked)

	// Persistence: a closed round is saved (off the lock, retried) and
	// only then published. saveState is a.save unless a test replaces it;
	// a save that fails saveAttempts times, saveBackoff apart (doubling),
	// stops the node with fatal.
	saveState    func(*savedState) error
	saveAttempts int
	saveBackoff  time.Duration
	saving       sync.WaitGroup
	closing      chan struct{}
	failed       chan struct{} // closed with fatal set
	fatal        error         // guarded by mu
	// crashAfterSave, set by tests, makes persist stop after saving a
	// round, as though the process died there, and Close leave the
	// ledger's queue unflushed.
	crashAfterSave func(round int) bool
	crashed        atomic.Bool
	// dropAck, set by tests, makes serveSubmit reset the stream instead
	// of acknowledging a recorded contribution (a lost answer).
	dropAck func(from string, round int) bool
}

// evalJob is a published round that the background goroutine scores and
// reports, in order, off the protocol's path.
type evalJob struct {
	info  RoundInfo
	theta []float32
}

// StartAggregator locks the data directory (failing at once if another
// node holds it), loads or creates the run's state and starts listening.
func StartAggregator(o AggregatorOptions) (_ *Aggregator, err error) {
	var lock *p2p.DirLock
	if o.DataDir != "" {
		if lock, err = p2p.LockDir(o.DataDir); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				lock.Close()
			}
		}()
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewRegistry()
	}
	if o.Grace == 0 {
		o.Grace = time.Second
	}
	statePath := filepath.Join(o.DataDir, StateFile)
	agg, resumed, saved, err := loadOrCreate(statePath, o.Config, o.Init)
	if err != nil {
		return nil, err
	}
	agg.Grace, agg.Limits = o.Grace, o.Limits
	if o.StartWith > 0 {
		if o.StartWait <= 0 {
			o.StartWait = time.Minute
		}
		agg.StartWith, agg.StartBy = o.StartWith, time.Now().Add(o.StartWait)
	}
	agg.CohortWait = cohortWait(agg.Cfg) + 2*time.Second
	cfg := agg.Cfg
	if resumed && !o.Config.Same(cfg) {
		o.Log.Warn("resuming the run saved in the data directory: its configuration, not this one, applies", "state", statePath)
	}
	if h := DataHash(o.Text); h != cfg.DataHash {
		return nil, fmt.Errorf("the run was started on data with hash %s, this text hashes to %s", cfg.DataHash, h)
	}
	if cfg.Private != nil && (o.Validation == nil || o.HeldOut.Evaluators < 0) {
		return nil, errors.New("a run that takes private contributions must validate its rounds with held-out screening: private contributions are settled by their held-out loss")
	}
	_, val := corpus.Split(o.Text, 0.9)
	if len(val) < cfg.Model.BlockSize+1 {
		return nil, fmt.Errorf("validation data has %d bytes, shorter than the context of %d plus one", len(val), cfg.Model.BlockSize)
	}
	key := o.Key
	if key == nil {
		if key, err = p2p.LoadIdentity(o.DataDir); err != nil {
			return nil, err
		}
	}
	lkey, err := p2p.LedgerKey(key)
	if err != nil {
		return nil, fmt.Errorf("the aggregator's identity cannot sign the run's ledger: %v", err)
	}
	h := o.Transport
	if h == nil {
		if h, err = p2p.NewTransport(key, o.Listen); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			h.Close()
		}
	}()
	led, err := openAggLedger(o, lkey, h.ID(), cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			led.close()
		}
	}()
	if err = led.sync(agg.Round(), saved, time.Now); err != nil {
		return nil, err
	}
	agg.Admit = func(id string) error {
		if err := led.admit(id); err != nil {
			return err
		}
		if o.Admit != nil {
			return o.Admit(id)
		}
		return nil
	}
	pool := kernels.NewPool(o.Threads)
	m, err := gpt.New(cfg.Model, pool)
	if err != nil {
		pool.Close()
		return nil, err
	}
	a := &Aggregator{opts: o, tr: h, lock: lock, log: o.Log, statePath: statePath, met: o.Metrics, led: led,
		agg: agg, commits: map[string]*roundCommit{}, privatePeers: map[string]bool{}, told: map[string]bool{}, changed: make(chan struct{}), resumed: resumed, pool: pool, model: m, val: val,
		evals: make(chan evalJob, 1024), idle: make(chan struct{}), serves: newServeLimit(2, 8),
		saveAttempts: 8, saveBackoff: 250 * time.Millisecond, closing: make(chan struct{}), failed: make(chan struct{})}
	a.saveState = a.save
	if a.screen, err = startScreener(a); err != nil {
		h.Close()
		pool.Close()
		return nil, err
	}
	if o.Validation != nil {
		train, _ := corpus.Split(o.Text, 0.9)
		if a.valid, err = newValidation(cfg, *o.Validation, train, transportReveals(cfg, h, &a.counter, a.log), led.host.Round, a.log, a.met); err != nil {
			a.screen.close()
			pool.Close()
			return nil, err
		}
		a.valid.weights(agg.Round(), agg.Weights())
		led.drive.Lock()
		led.settler = a.valid
		led.drive.Unlock()
	}
	go a.evaluator()
	led.host.Serve(h)
	h.Handle(ProtoJoin, a.handle(ProtoJoin, a.serveJoin))
	h.Handle(ProtoPoll, a.handle(ProtoPoll, a.servePoll))
	h.Handle(ProtoSubmit, a.handle(ProtoSubmit, a.serveSubmit))
	h.Handle(ProtoState, a.handle(ProtoState, a.serveState))
	if cfg.Private != nil && cfg.Private.SecAgg != nil {
		h.Handle(ProtoSecAgg, a.handle(ProtoSecAgg, a.serveCohort))
	}
	h.OnDisconnect(func(p string) {
		a.mu.Lock()
		a.agg.Leave(p)
		a.tickLocked(time.Now())
		a.mu.Unlock()
	})
	a.met.Gauge("cairn_round", "current DiLoCo round").Set(float64(agg.Round()))
	info := led.info
	a.log.Info("aggregator listening", "addrs", h.Addrs(), "round", agg.Round(), "of", cfg.Rounds, "resumed", resumed)
	a.log.Info("ledger", "chain", info.ChainID, "min_stake", info.MinStake, "emission_per_round", info.EmissionPerRound,
		"settlement_lag", info.SettlementLag, "height", led.height.Load(), "file", led.path)
	return a, nil
}

// DataHash fingerprints a run's text, so that workers check they train on
// the same bytes.
func DataHash(text []byte) string {
	s := sha256.Sum256(text)
	return hex.EncodeToString(s[:])
}

// Addrs are the multiaddrs workers join with.
func (a *Aggregator) Addrs() []string { return a.tr.Addrs() }

// ID is the node's identity.
func (a *Aggregator) ID() string { return a.tr.ID() }

// Config is the run's configuration.
func (a *Aggregator) Config() diloco.RunConfig { return a.agg.Cfg }

// Ledger describes the run's chain the aggregator hosts (in
// DataDir/ledger.db).
func (a *Aggregator) Ledger() LedgerInfo { return a.led.info }

// LedgerHost is the run's ledger as this node holds it (read it with
// Totals, Round and AccountOf).
func (a *Aggregator) LedgerHost() *LedgerHost { return a.led.host }

// Counter counts the bytes on the aggregator's streams.
func (a *Aggregator) Counter() *wire.Counter { return &a.counter }

// Weights returns a copy of the current global weights and their round.
func (a *Aggregator) Weights() ([]float32, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]float32(nil), a.agg.Weights()...), a.agg.Round()
}

// Run drives the round clock until the run is finished (it then saves the
// final model as DataDir/model.safetensors and returns nil), ctx ends, or
// the round state cannot be saved (an error naming the file; the round
// that could not be saved was never published).
func (a *Aggregator) Run(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	if a.resumed {
		a.mu.Lock()
		a.evals <- evalJob{info: RoundInfo{Round: a.agg.Round() - 1, Resumed: true, Active: len(a.agg.Active())},
			theta: append([]float32(nil), a.agg.Weights()...)}
		a.mu.Unlock()
	}
	for {
		a.mu.Lock()
		a.tickLocked(time.Now())
		done := a.agg.Phase() == diloco.Done
		a.mu.Unlock()
		if !a.crashed.Load() {
			a.led.tick(time.Now())
		}
		if done {
			// let workers collect the last update before the host closes
			return a.finish(ctx)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.failed:
			a.mu.Lock()
			defer a.mu.Unlock()
			return a.fatal
		case <-t.C:
		}
	}
}

func (a *Aggregator) finish(ctx context.Context) error {
	a.mu.Lock()
	a.stopEvalsLocked()
	a.mu.Unlock()
	<-a.idle // every round reported
	// The run's rewards are paid before it ends: wait for the Settler's
	// verdicts on the last rounds (the default settles them at once).
	for waited := false; a.led.settled.Load() < a.led.open.Load(); waited = true {
		err := a.led.settle(time.Now)
		if a.led.settled.Load() >= a.led.open.Load() {
			break
		}
		if !waited {
			a.log.Info("waiting for the settlement of the last rounds", "settled_below", a.led.settled.Load(), "rounds", a.led.open.Load(), "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(a.led.host.interval):
		}
	}
	a.mu.Lock()
	a.finalSettled = true
	close(a.changed) // the polls held waiting are answered Finished now
	a.changed = make(chan struct{})
	a.mu.Unlock()
	theta, _ := a.Weights()
	path := filepath.Join(a.opts.DataDir, checkpoint.ModelFile)
	meta := map[string]string{"diloco_round": strconv.Itoa(a.agg.Round())}
	if tok := a.agg.Cfg.Tok; tok != nil {
		maps.Copy(meta, tok.Metadata()) // the model carries its tokenizer
	}
	if err := checkpoint.SaveModel(path, a.agg.Cfg.Model, theta, meta); err != nil {
		return err
	}
	a.log.Info("run finished", "rounds", a.agg.Round(), "model", path)
	// Keep answering polls so that workers get the final update: until
	// every worker present has been told the run is over (and a moment
	// more, for their last ledger query), 2 s at most.
	linger := time.NewTimer(2 * time.Second)
	defer linger.Stop()
	var told time.Time
	for told.IsZero() || time.Since(told) < finishGrace {
		if told.IsZero() && a.allTold() {
			told = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-linger.C:
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// finishGrace is how long a finished run still answers once every worker
// knows it is over.
const finishGrace = 250 * time.Millisecond

// allTold reports whether every worker present has been told the run is
// finished.
func (a *Aggregator) allTold() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, id := range a.agg.Active() {
		if !a.told[id] {
			return false
		}
	}
	return true
}

// Close stops the node.
func (a *Aggregator) Close() error {
	err := a.tr.Close()
	a.mu.Lock()
	select {
	case <-a.closing:
	default:
		close(a.closing)
	}
	a.mu.Unlock()
	a.screen.close()
	a.saving.Wait()
	if a.valid != nil {
		a.valid.close()
	}
	a.mu.Lock()
	a.stopEvalsLocked()
	a.mu.Unlock()
	<-a.idle
	a.pool.Close()
	if a.crashed.Load() {
		a.led.host.Close() // a dead process flushes nothing
	} else if lerr := a.led.close(); err == nil {
		err = lerr
	}
	a.lock.Close()
	return err
}

// ValidatorStats reports what the aggregator's validator did (only the
// screening time when it runs none).
func (a *Aggregator) ValidatorStats() ValidatorStats {
	var st ValidatorStats
	if a.valid != nil {
		st = a.valid.Stats()
	}
	st.Screening = time.Duration(a.screen.busy.Load())
	return st
}

func (a *Aggregator) stopEvalsLocked() {
	if !a.evalsClosed {
		a.evalsClosed = true
		close(a.evals)
	}
}

// evaluator scores and reports published rounds in order.
func (a *Aggregator) evaluator() {
	defer close(a.idle)
	for job := range a.evals {
		job.info.ValLoss = a.evaluate(job.theta)
		a.report(job.info)
	}
}

// tickLocked advances the state machine; a closed round is handed to
// persist, which publishes it once it is durable. Pollers are woken on
// every change. a.mu is held.
func (a *Aggregator) tickLocked(now time.Time) {
	if a.agg.Phase() == diloco.Open && !a.led.mayClose(a.agg.Round()) {
		// The ledger refuses the result of round r until round
		// r-SettlementLag is settled: the round's contributions wait.
		if !a.holding {
			a.holding = true
			a.log.Info("round held open: the ledger waits for an earlier round's settlement", "round", a.agg.Round(),
				"unsettled", a.led.settled.Load())
		}
		return
	}
	a.holding = false
	start := time.Now()
	a.advanceCohortLocked(now)
	ev, err := a.agg.Tick(now)
	if err != nil {
		a.log.Error("round failed", "round", a.agg.Round(), "err", err)
	}
	if ev.Opened {
		a.log.Info("round open", "round", a.agg.Round(), "participants", len(a.agg.Active()), "deadline", a.agg.Deadline().Format(time.TimeOnly))
		a.formCohortLocked(now)
	}
	if ev.Reopened {
		a.log.Warn("round back to waiting for workers: too few contributions, and nobody is training for it in time", "round", a.agg.Round(), "have", a.agg.Submitted(), "quorum", a.agg.Cfg.Quorum)
	}
	if ev.Abandoned {
		for _, c := range a.commits {
			if c.accepted {
				c.accepted, c.refused = false, "dropped: the round's contributions could not be aggregated"
			}
		}
	}
	if c := a.cohort; c != nil && c.phase < phaseDone && (ev.Abandoned || ev.Closed != nil && ev.Closed.Round == c.round) {
		a.failCohortLocked(c, "the round closed before its sum was unmasked")
	}
	if ev.Closed != nil {
		a.log.Debug("round aggregated", "round", ev.Closed.Round, "took", time.Since(start))
		res := ev.Closed
		if a.valid != nil {
			payloads := map[string][]byte{}
			for id, c := range a.commits {
				if c.payload != nil {
					payloads[id] = c.payload
				}
			}
			a.valid.closed(res, payloads)
		}
		result, missing := resultOf(res, a.commits, a.commitOrder)
		if dp := a.agg.Cfg.DP; dp != nil {
			result.Privacy = ledger.NewPrivacyTx(uint64(res.Round), res.Epsilon, dp.Budget, dp.Delta)
		}
		if len(missing) > 0 {
			a.log.Error("contributions aggregated without a recorded commit", "round", res.Round, "workers", missing)
		}
		compute := map[string]time.Duration{}
		var lossSum float64
		var losses int
		for id, c := range a.commits {
			if c.compute > 0 {
				compute[id] = c.compute
			}
			if c.accepted && c.loss > 0 {
				lossSum += float64(c.loss)
				losses++
			}
		}
		clear(a.commits)
		a.commitOrder = a.commitOrder[:0]
		a.met.Gauge("cairn_round", "current DiLoCo round").Set(float64(a.agg.Round()))
		a.met.Counter("cairn_contributions_total", "contributions aggregated").Add(float64(len(res.Contributors)))
		info := RoundInfo{Round: res.Round, Contributors: res.Contributors, Missing: res.Missing,
			Active: a.agg.NumActive(), UpdateBytes: res.UpdateBytes, Took: res.Took, Compute: compute}
		if losses > 0 {
			info.TrainLoss = lossSum / float64(losses)
		}
		info.Result = res
		a.screen.report(res)
		st, err := a.stateLocked(result)
		if err != nil {
			a.log.Error("the round's ledger result does not encode", "round", res.Round, "err", err)
		}
		a.saving.Add(1)
		go a.persist(st, info, result)
	}
	if ev.Opened || ev.Reopened || ev.Abandoned || ev.Closed != nil {
		close(a.changed)
		a.changed = make(chan struct{})
	}
}

func (a *Aggregator) report(info RoundInfo) {
	info.Sent, info.Recv = a.counter.Sent(), a.counter.Received()
	a.met.Gauge("cairn_val_loss", "validation loss of the global weights").Set(info.ValLoss)
	a.met.Gauge("cairn_workers_active", "workers taking part").Set(float64(info.Active))
	a.met.Gauge("cairn_peers", "connected peers").Set(float64(a.tr.Peers()))
	a.met.Gauge("cairn_bytes_sent_total", "bytes sent on DiLoCo streams").Set(float64(info.Sent))
	a.met.Gauge("cairn_bytes_received_total", "bytes received on DiLoCo streams").Set(float64(info.Recv))
	if info.Resumed {
		a.log.Info("resumed from saved state", "round", info.Round+1, "val_loss", fmt.Sprintf("%.4f", info.ValLoss))
	} else {
		weights := ""
		if info.Result != nil {
			weights = info.Result.Hash.String()
		}
		attrs := []any{"round", info.Round, "val_loss", fmt.Sprintf("%.4f", info.ValLoss),
			"contributors", len(info.Contributors), "missing", len(info.Missing), "update_bytes", info.UpdateBytes, "weights", weights}
		if dp := a.agg.Cfg.DP; dp != nil && info.Result != nil {
			a.met.Gauge("cairn_dp_epsilon_spent", "differential privacy spent by the run so far (ε at the run's δ)").Set(info.Result.Epsilon)
			attrs = append(attrs, "epsilon", fmt.Sprintf("%.3f", info.Result.Epsilon), "epsilon_budget", dp.Budget)
		}
		a.log.Info("round closed", attrs...)
	}
	if a.opts.OnRound != nil {
		a.opts.OnRound(info)
	}
}

// evaluate is the validation loss of theta.
func (a *Aggregator) evaluate(theta []float32) float64 {
	cfg := a.agg.Cfg
	copy(a.model.Params, theta)
	n := cfg.Batch * cfg.Model.BlockSize
	if a.valIDs == nil {
		a.valIDs = cfg.Encode(a.val)
	}
	loss, err := train.EvaluateTokens(a.model, a.valIDs, cfg.Batch, a.opts.EvalBatches, make([]int32, n), make([]int32, n))
	if err != nil {
		a.log.Error("evaluation", "err", err)
		return math.NaN()
	}
	return loss
}

// handle wraps a stream handler: bytes are counted, reads and writes must
// make progress (a request's control messages get controlTimeout, a blob
// what the handler allows for its size), the stream is closed afterwards,
// and a handler error is sent back as a one-line refusal.
func (a *Aggregator) handle(proto string, serve func(s *progressStream, from string) error) func(wire.NetStream, string) {
	return func(ns wire.NetStream, from string) {
		defer ns.Close()
		s := newProgress(wire.CountStream(ns, &a.counter), ns, serveStall, time.Now().Add(controlTimeout))
		if err := serve(s, from); err != nil {
			a.log.Warn("request refused", "protocol", proto, "peer", from, "err", err)
			var re *refusal
			if errors.As(err, &re) {
				s.allow(0, serveStall, serveMinRate)
				wire.WriteError(s, re.msg)
			} else {
				ns.Reset()
			}
		}
	}
}

// notAdmitted starts the refusal a worker gets when the run's admission
// check refuses its identity (no stake, slashed below the minimum, not
// allowed): retrying does not change that, so the worker stops after
// WorkerOptions.AdmissionPatience.
const notAdmitted = "not admitted: "

// refusal is an error the peer is told about.
type refusal struct{ msg string }

func (r *refusal) Error() string { return r.msg }

func refuse(format string, args ...any) error { return &refusal{fmt.Sprintf(format, args...)} }

func (a *Aggregator) serveJoin(s *progressStream, from string) error {
	var req joinRequest
	if err := wire.ReadJSON(s, kindJoin, maxControl, &req); err != nil {
		return err
	}
	if req.Version != ProtocolVersion {
		return refuse("protocol version %d, the aggregator speaks %d", req.Version, ProtocolVersion)
	}
	a.mu.Lock()
	if err := a.awaitPublished(); err != nil {
		return err
	}
	round, hash := a.agg.Join(from, time.Now())
	active := a.agg.Active()
	cfg := a.agg.Cfg
	a.tickLocked(time.Now())
	a.mu.Unlock()
	peers := a.samplePeers(active, from)
	a.log.Info("worker joined", "peer", from, "round", round)
	return wire.WriteJSON(s, kindWelcome, welcome{Version: ProtocolVersion, Config: cfg, Round: round, Hash: hash.String(), Peers: peers,
		ChainID: a.led.info.ChainID, MinStake: a.led.info.MinStake})
}

// A welcome lists a random sample of the workers that hold the current
// weights, so that it fits in one control message however many there are:
// at most welcomePeers workers with at most welcomeAddrs addresses each,
// none longer than maxAddrLen (16·4·256 bytes, well within maxControl).
const (
	welcomePeers = 16
	welcomeAddrs = 4
	maxAddrLen   = 256
)

// samplePeers picks the welcome's peers among ids, leaving out the joiner.
func (a *Aggregator) samplePeers(ids []string, joiner string) []string {
	var peers []string
	picked := 0
	for _, i := range rand.Perm(len(ids)) {
		if picked == welcomePeers {
			break
		}
		if ids[i] == joiner {
			continue
		}
		took := 0
		for _, addr := range a.tr.AddrsOf(ids[i]) {
			if took == welcomeAddrs {
				break
			}
			if len(addr) <= maxAddrLen {
				peers = append(peers, addr)
				took++
			}
		}
		if took > 0 {
			picked++
		}
	}
	return peers
}

// maxPrivatePeers bounds the workers an aggregator remembers as private.
const maxPrivatePeers = 4096

// pollHold is how long a poll waits for news before answering "wait".
const pollHold = 15 * time.Second

func (a *Aggregator) servePoll(s *progressStream, from string) error {
	var req pollRequest
	if err := wire.ReadJSON(s, kindPoll, maxControl, &req); err != nil {
		return err
	}
	if req.Private {
		a.mu.Lock()
		if len(a.privatePeers) < maxPrivatePeers {
			a.privatePeers[from] = true
		}
		a.mu.Unlock()
	}
	hash, err := diloco.ParseHash(req.Hash)
	if err != nil {
		return refuse("%v", err)
	}
	hold := time.NewTimer(pollHold)
	defer hold.Stop()
	for {
		a.mu.Lock()
		r := a.agg.Poll(from, req.Round, hash, time.Now())
		before := a.changed
		a.tickLocked(time.Now()) // this poll may complete a quorum, say
		if a.changed != before {
			// The state moved on: answer from where it is now, or the
			// wait below would sleep through the change.
			r = a.agg.Poll(from, req.Round, hash, time.Now())
		}
		changed := a.changed
		if r.Action == diloco.Finished && !a.finalSettled {
			// Workers keep serving their reveals until the last rounds
			// are settled: a finished worker could not show a validator
			// its start state, and would fail verification for it.
			r.Action = diloco.Wait
		}
		if r.Action == diloco.Finished {
			a.told[from] = true
		}
		var co *cohortInfo
		if c := a.cohort; r.Action == diloco.Train && c != nil && c.round == r.Round && c.party[from] != 0 {
			co = &c.info
		}
		a.mu.Unlock()
		if r.Action == diloco.Refused {
			if r.Admission {
				return refuse("%s%s", notAdmitted, r.Reason)
			}
			return refuse("%s", r.Reason)
		}
		if r.Action != diloco.Wait {
			reply := pollReply{Action: r.Action.String(), Round: r.Round, Hash: r.Hash.String(), DeadlineMS: r.Deadline.Milliseconds(), Waited: r.Waited, Cohort: co}
			if err := wire.WriteJSON(s, kindReply, reply); err != nil {
				return err
			}
			if r.Action == diloco.Update {
				s.allow(int64(len(r.Update)), serveBase, serveMinRate)
				return wire.WriteBlob(s, r.Update)
			}
			return nil
		}
		select {
		case <-changed:
		case <-hold.C:
			return wire.WriteJSON(s, kindReply, pollReply{Action: diloco.Wait.String(), Round: r.Round, Hash: r.Hash.String()})
		}
	}
}

// serveState hands the current weights to a peer, at most twice per peer
// for one round's weights and to at most 8 peers at a time.
func (a *Aggregator) serveState(s *progressStream, from string) error {
	var req stateRequest
	if err := wire.ReadJSON(s, kindStateReq, maxControl, &req); err != nil {
		return err
	}
	a.mu.Lock()
	if err := a.awaitPublished(); err != nil {
		return err
	}
	round, hash := a.agg.Round(), a.agg.Hash()
	if req.Hash != "" && req.Hash != hash.String() {
		a.mu.Unlock()
		return refuse("no weights with hash %s here (round %d is %s)", req.Hash, round, hash)
	}
	release, err := a.serves.acquire(from, hash)
	if err != nil {
		a.mu.Unlock()
		return refuse("%v", err)
	}
	defer release()
	// Joiners of one round share one serialised copy of its weights.
	if a.blobHash != hash {
		a.blob, a.blobHash = floatsToBytes(a.agg.Weights()), hash
	}
	blob := a.blob
	a.mu.Unlock()
	if err := wire.WriteJSON(s, kindState, stateReply{Round: round, Hash: hash.String()}); err != nil {
		return err
	}
	s.allow(int64(len(blob)), serveBase, serveMinRate)
	return wire.WriteBlob(s, blob)
}

func floatsToBytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func bytesToFloats(b []byte, out []float32) {
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
}
