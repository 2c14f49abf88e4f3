package experiment

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/node"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/verify"
)

// AdversaryOptions configure the trust experiment (Adversaries).
type AdversaryOptions struct {
	// Config is the run of both arms (the demo's, 100 rounds, in `cairn
	// experiment adversaries`); its DataHash is set from Text.
	Config diloco.RunConfig
	Text   []byte
	// Honest is the number of honest workers (default 4). They have the
	// same identities, and so the same data streams, in both arms.
	Honest int
	// Kinds are the adversaries of the adversarial arm, one worker each
	// (nil: AdversaryKinds()). A copier copies honest worker 0.
	Kinds []string
	// P is the probability with which the validator recomputes each
	// contribution (default 0.1); it adds verify's default suspects.
	P float64
	// NoValidation runs both arms without a validator: the aggregator
	// settles every round unchecked (a baseline: nothing is caught).
	NoValidation bool
	// Slow slows one honest worker of the adversarial arm (the last one
	// run in this process) to a third of its honest peers' speed: after
	// every inner step it sleeps until the step has taken three times
	// theirs (twice its own without peers in this process). The report
	// says in how many rounds it still contributed. It is ignored with
	// Processes: the peers run elsewhere, at their paths' speeds.
	Slow bool
	// Ledger are the chain's rules (nil: node.DefaultLedgerParams); every
	// worker starts with node.LocalStake bonded.
	Ledger *node.LedgerParams
	// Processes, when set, runs honest workers 1..Honest-1 as worker
	// processes on mixed kernel paths (see Processes).
	Processes *Processes
	// Threads evaluate the final weights (0: all cores).
	Threads int
	// EvalBatches bounds the aggregator's validation after every round
	// (default 20; the final losses use the whole validation split).
	EvalBatches int
	Log         *slog.Logger
	// Progress, when set, is told which arm runs and how far it got.
	Progress func(arm string, done, total int)
	// OnCaught, when set, is told (from one goroutine, as rounds are
	// settled) when an adversary of the adversarial arm gets its first
	// failed verdict.
	OnCaught func(AdversaryReport)
}

// The arms of the experiment, as Progress names them.
const (
	ArmHonest      = "honest"
	ArmAdversarial = "adversarial"
)

// Adversaries runs the trust experiment: (a) the honest workers alone and
// (b) the same honest workers with one adversary of each kind, both with
// the ledger staked and (unless NoValidation) the aggregator validating at
// probability P, on the same configuration and seed; and reports what
// became of each adversary (first cheat, first failed verdict, slashed,
// paid after detection), the honest workers slashed, whether every round's
// rewards add up to the emission, the final validation loss of both arms
// and the verification overhead (the validator's and the screening's
// compute over the workers'). It fails on bad options (an unknown kind, no honest worker,
// P outside (0, 1], processes without a binary), when a run fails, and
// when ctx ends.
func Adversaries(ctx context.Context, o AdversaryOptions) (*AdversaryResult, error) {
	if o.Honest == 0 {
		o.Honest = 4
	}
	if o.Honest < 1 {
		return nil, fmt.Errorf("need at least one honest worker, got %d", o.Honest)
	}
	if o.Kinds == nil {
		o.Kinds = AdversaryKinds()
	}
	if o.P == 0 {
		o.P = verify.DefaultSampleOptions().P
	}
	if !(o.P > 0 && o.P <= 1) {
		return nil, fmt.Errorf("the verification probability must be in (0, 1], got %g", o.P)
	}
	if o.EvalBatches == 0 {
		o.EvalBatches = 20
	}
	cfg := o.Config
	cfg.DataHash = node.DataHash(o.Text)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cast, err := NewCast(cfg, o.Kinds, cfg.Seed+uint64(o.Honest))
	if err != nil {
		return nil, err
	}
	var procs *processSet
	if o.Processes != nil {
		if procs, err = o.Processes.open(cfg.Seed, o.Honest); err != nil {
			return nil, err
		}
		defer procs.close()
	}

	// (a) The honest workers alone.
	hon, err := o.runArm(ctx, ArmHonest, cfg, procs, nil, nil)
	if err != nil {
		return nil, err
	}
	// (b) The same with the adversaries, worker 0 posting its
	// contributions for the copier.
	var slow *slowdown
	if o.Slow && o.Processes == nil {
		slow = &slowdown{ctx: ctx, factor: 3}
	}
	adv, err := o.runArm(ctx, ArmAdversarial, cfg, procs, cast, slow)
	if err != nil {
		return nil, err
	}
	pool := kernels.NewPool(o.Threads)
	defer pool.Close()
	_, val := corpus.Split(o.Text, 0.9)
	for _, a := range []*armRun{hon, adv} {
		if a.valLoss, err = evaluate(cfg.Model, a.res.Weights, val, cfg.Batch, pool); err != nil {
			return nil, err
		}
	}
	res := &AdversaryResult{P: o.P, Validated: !o.NoValidation, Honest: o.Honest, Rounds: cfg.Rounds,
		HonestArm: hon.report(ArmHonest), AdversarialArm: adv.report(ArmAdversarial)}
	res.Adversaries = cast.Reports(adv.adversaries, adv.res.Ledger)
	if slow != nil {
		sr := adv.slowReport()
		res.Slow = &sr
	}
	return res, nil
}

// armRun is one arm's run and what was measured around it.
type armRun struct {
	res     node.LocalResult
	valLoss float64
	// The peer IDs of the honest workers (worker 0 first) and of the
	// adversaries, in the order of the options.
	honest, adversaries []string
	remote              []node.WorkerStats // the worker processes', in honest order after worker 0
	slow                int                // the slowed worker's index in res.PerWorker, or -1
	slept               time.Duration
}

// runArm runs one arm: the honest workers (1..Honest-1 as processes with
// procs), the cast's adversaries (nil: none) after the honest workers run
// here, and the slowdown (nil: none) on the last honest worker run here.
func (o AdversaryOptions) runArm(ctx context.Context, arm string, cfg diloco.RunConfig, procs *processSet, cast *Cast, slow *slowdown) (*armRun, error) {
	local := o.Honest // honest workers run here
	if procs != nil {
		local = 1
	}
	behaviours := make([]node.Behaviour, local)
	if cast != nil {
		behaviours = cast.Behaviours(local)
	}
	run := &armRun{slow: -1}
	lo := node.LocalOptions{Config: cfg, Text: o.Text, Workers: len(behaviours), EvalBatches: o.EvalBatches, Log: o.Log,
		Ledger: o.Ledger, Behaviours: behaviours,
		OnRound: func(r node.RoundInfo) {
			if o.Progress != nil {
				o.Progress(arm, r.Round+1, cfg.Rounds)
			}
		}}
	if !o.NoValidation {
		s := verify.DefaultSampleOptions()
		s.P = o.P
		lo.Validation = &node.ValidationOptions{Sample: s}
	}
	if slow != nil {
		run.slow = local - 1
		slow.worker, slow.peers, slow.peerAt = local-1, map[int]bool{}, map[int]stepMark{}
		for i := range local - 1 {
			slow.peers[i] = true
		}
		lo.OnStep = slow.onStep
	}
	var know func(ids []string)
	if cast != nil && o.OnCaught != nil {
		know, lo.OnSettle = cast.Watch(o.OnCaught)
	}
	var started *processRun
	if procs != nil {
		lo.Remote = procs.ids
	}
	lo.OnStart = func(join string, ids []string) error {
		if know != nil {
			know(ids[local:])
		}
		if procs != nil {
			var err error
			started, err = procs.start(ctx, arm, join)
			return err
		}
		return nil
	}
	res, err := node.RunLocal(ctx, lo)
	if started != nil {
		stats, perr := started.wait(err == nil)
		if err == nil && perr != nil {
			err = perr
		}
		run.remote = stats
	}
	if err != nil {
		return nil, fmt.Errorf("%s run: %v", arm, err)
	}
	run.res = res
	accts := res.Ledger.Accounts
	if len(accts) != len(behaviours)+len(lo.Remote) {
		return nil, fmt.Errorf("%s run: the ledger reports %d workers, want %d", arm, len(accts), len(behaviours)+len(lo.Remote))
	}
	for i := range local {
		run.honest = append(run.honest, accts[i].ID)
	}
	for _, a := range accts[len(behaviours):] {
		run.honest = append(run.honest, a.ID)
	}
	for _, a := range accts[local:len(behaviours)] {
		run.adversaries = append(run.adversaries, a.ID)
	}
	if slow != nil {
		run.slept = slow.slept
	}
	return run, nil
}

// watched records the rounds in which an adversary's behaviour sent
// anything but the honest contribution it was given.
type watched struct {
	node.Behaviour
	mu     sync.Mutex
	cheats map[int]bool
}

// Forge forges as the adversary does, noting the rounds it cheated in.
func (w *watched) Forge(round int, honest []byte, tokens int) ([]byte, int) {
	p, claimed := w.Behaviour.Forge(round, honest, tokens)
	if claimed != tokens || !bytes.Equal(p, honest) {
		w.mu.Lock()
		w.cheats[round] = true
		w.mu.Unlock()
	}
	return p, claimed
}

func (w *watched) rounds() map[int]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := make(map[int]bool, len(w.cheats))
	for r := range w.cheats {
		m[r] = true
	}
	return m
}

// slowdown makes one worker compute at 1/factor of its honest peers'
// speed: after each inner step it sleeps until the step has taken factor
// times the peers' step (a moving average of the steps of the peers run in
// this process, timed between their consecutive steps). Without peers to
// time it sleeps factor-1 times its own step. A round's first step, which
// has no step before it to time, counts as long as the last one timed.
type slowdown struct {
	ctx    context.Context
	worker int          // the slowed worker's index
	peers  map[int]bool // its honest peers' indices
	factor float64

	mu       sync.Mutex
	peerAt   map[int]stepMark
	peerStep time.Duration // moving average of the peers' steps

	// The slowed worker's run loop's: the end of its last step (after its
	// sleep), its own last step's duration, and the time slept so far
	// (read after the run).
	last  stepMark
	step  time.Duration
	slept time.Duration
}

// stepMark is when a worker's step ended.
type stepMark struct {
	at       time.Time
	round, i int
}

// follows reports whether step i of round comes right after m.
func (m stepMark) follows(round, i int) bool { return !m.at.IsZero() && m.round == round && m.i+1 == i }

// slowAlpha is the weight of the newest of the peers' steps.
const slowAlpha = 0.1

func (s *slowdown) onStep(worker, round, i int, _ float32) {
	now := time.Now()
	if worker != s.worker {
		if !s.peers[worker] {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if m := s.peerAt[worker]; m.follows(round, i) {
			d := now.Sub(m.at)
			if s.peerStep == 0 {
				s.peerStep = d
			} else {
				s.peerStep = time.Duration(slowAlpha*float64(d) + (1-slowAlpha)*float64(s.peerStep))
			}
		}
		s.peerAt[worker] = stepMark{now, round, i}
		return
	}
	if s.last.follows(round, i) {
		s.step = now.Sub(s.last.at)
	}
	s.mu.Lock()
	ref := s.peerStep
	s.mu.Unlock()
	d := time.Duration((s.factor - 1) * float64(s.step))
	if ref > 0 {
		d = time.Duration(s.factor*float64(ref)) - s.step
	}
	if d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
		}
		s.slept += time.Since(now)
	}
	s.last = stepMark{time.Now(), round, i}
}

// Cast is one adversary of each of a list of kinds for a local run: the
// behaviours of its workers (honest worker 0 posts its contributions on a
// board for the copier) and what became of the adversaries, read from the
// run's chain.
type Cast struct {
	kinds []string
	advs  []*watched
	board *Board
}

// NewCast makes the adversaries of kinds for run cfg, the i-th with
// randomness seed+i. It fails on an unknown kind.
func NewCast(cfg diloco.RunConfig, kinds []string, seed uint64) (*Cast, error) {
	c := &Cast{kinds: append([]string(nil), kinds...), board: NewBoard()}
	for i, kind := range kinds {
		b, err := NewAdversary(kind, cfg, seed+uint64(i), c.board)
		if err != nil {
			return nil, err
		}
		c.advs = append(c.advs, &watched{Behaviour: b, cheats: map[int]bool{}})
	}
	return c, nil
}

// Kinds are the adversaries' kinds, in order.
func (c *Cast) Kinds() []string { return append([]string(nil), c.kinds...) }

// Behaviours are the behaviours of a local run's workers
// (node.LocalOptions.Behaviours) whose first honest workers are honest,
// worker 0 posting its contributions for the copier, and whose next
// workers are the adversaries, in order.
func (c *Cast) Behaviours(honest int) []node.Behaviour {
	bs := make([]node.Behaviour, max(honest, 1), max(honest, 1)+len(c.advs))
	bs[0] = Recorder{Board: c.board}
	for _, a := range c.advs {
		bs = append(bs, a)
	}
	return bs
}

// Reports reads what became of each adversary from a run's chain, given
// their peer IDs in order (the cheats are those of the cast's last run).
func (c *Cast) Reports(ids []string, ll node.LocalLedger) []AdversaryReport {
	var out []AdversaryReport
	for i, a := range c.advs {
		id := ""
		if i < len(ids) {
			id = ids[i]
		}
		out = append(out, adversaryReport(c.kinds[i], id, ll, a.rounds()))
	}
	return out
}

// Watch returns the hooks of a run that tell caught about each adversary
// when its first failed verdict is settled (during the run, from
// node.LocalOptions.OnSettle's goroutine): know, to call with the
// adversaries' peer IDs in order before the run (from
// node.LocalOptions.OnStart), and settled, the run's OnSettle.
func (c *Cast) Watch(caught func(AdversaryReport)) (know func(ids []string), settled func(ledger.RoundInfo)) {
	w := &catchWatch{cast: c, f: caught}
	return w.know, w.settled
}

// catchWatch tells f about adversaries as their first failed verdicts
// are settled. know is called before the run, settled during it, from one
// goroutine.
type catchWatch struct {
	cast *Cast
	f    func(AdversaryReport)

	ids  []string              // the adversaries' peer IDs
	keys map[ledger.PubKey]int // adversary index by account
	seen map[int]bool
	ll   node.LocalLedger // the rounds settled so far
}

func (c *catchWatch) know(ids []string) {
	c.ids, c.keys, c.seen = ids, map[ledger.PubKey]int{}, map[int]bool{}
	for i, id := range ids {
		if k, err := p2p.AccountOf(id); err == nil && i < len(c.cast.advs) {
			c.keys[k] = i
		}
	}
}

func (c *catchWatch) settled(ri ledger.RoundInfo) {
	c.ll.Rounds = append(c.ll.Rounds, ri)
	for _, v := range ri.Verdicts {
		i, ok := c.keys[v.Worker]
		if v.Outcome != ledger.Failed || !ok || c.seen[i] {
			continue
		}
		c.seen[i] = true
		c.f(adversaryReport(c.cast.kinds[i], c.ids[i], c.ll, c.cast.advs[i].rounds()))
	}
}
