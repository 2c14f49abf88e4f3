package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/metrics"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/tokenizer"
	"github.com/cairnlabs/cairn/wire"
	"github.com/libp2p/go-libp2p/core/crypto"
)

// WorkerOptions configure a worker node.
type WorkerOptions struct {
	DataDir string   // identity key
	Listen  []string // multiaddrs (peers fetch weights here); default p2p.DefaultListen
	// Transport, when set, is used instead of a libp2p host made from the
	// identity in DataDir and Listen.
	Transport Transport
	// Key is the node's identity when Transport is set (nil: the key in
	// DataDir); it signs the worker's ledger transactions, so it must be
	// the identity the transport runs under.
	Key     crypto.PrivKey
	Join    string // the aggregator's full multiaddr
	Text    []byte // the run's text; its first 90% trains
	Threads int
	Pool    *kernels.Pool // optional; else one of Threads threads
	// LinkBytesPerSec emulates the worker's link: every stream it uses is
	// throttled to this rate each way (0: unlimited).
	LinkBytesPerSec float64
	// LinkRTT emulates the link's round-trip time: every request-response
	// turn on the worker's streams waits it (0: none).
	LinkRTT time.Duration
	// LinkLoss emulates packet loss on the link: each piece of a transfer
	// that loses a packet stalls for a retransmission timeout (see
	// wire.Link).
	LinkLoss float64
	Metrics  *metrics.Registry
	Log      *slog.Logger
	// OnStep is called after every inner step, from the run loop (the
	// round's training waits for it).
	OnStep func(round, step int, loss float32)
	// Behaviour, when set, makes the worker misbehave (see Behaviour):
	// for the experiments and the demo's adversaries. Nil is honest.
	Behaviour Behaviour
	// ChainRPC, if set, is the RPC address of a validator of the run's
	// chain when it runs as a CometBFT network: the worker sends its
	// transactions and reads its account there rather than through the
	// aggregator (the chain must be the one the aggregator names).
	ChainRPC string
	// Tokenizer is the BPE tokenizer of a run that trains on token ids
	// (the run's config names it; nil for a byte-level run).
	Tokenizer *tokenizer.Tokenizer
	// PrivateData, when set, is text only this worker holds: it trains
	// its inner steps on all of it instead of the run's assigned data
	// (Text is then not needed), and commits to its contributions as
	// private (ledger.CommitTx.Private). Nobody can recompute them: the
	// run's validator judges them by their effect on the public held-out
	// loss, and the run must take private contributions
	// (diloco.RunConfig.Private).
	PrivateData []byte
	// AdmissionPatience is how long the worker keeps asking a run that
	// refuses to admit its identity (its stake below the run's minimum,
	// slashed or never bonded) before Run gives up with the reason
	// (default 30s: time for a stake just bonded to reach the ledger).
	AdmissionPatience time.Duration
}

// Worker is a running worker node.
type Worker struct {
	opts    WorkerOptions
	tr      Transport
	lock    *p2p.DirLock // on DataDir, until Close
	log     *slog.Logger
	aggID   string // the aggregator's identity, once connected
	counter wire.Counter
	up      *wire.Limiter
	down    *wire.Limiter
	pool    *kernels.Pool
	ownPool bool
	met     *metrics.Registry

	mu sync.Mutex // guards w's weights against the state server
	w  *diloco.Worker
	// served is the worker's current weights serialised for peers, built
	// by the run loop (the only writer of the weights) outside mu and
	// shared by every request for them; guarded by mu.
	served *servedWeights
	serves *serveLimit

	// Fetching from peers: how long a read may wait, and the time allowed
	// for a transfer (base plus its size at minRate).
	peerStall, peerBase time.Duration
	peerMinRate         float64

	linkSeed uint64 // of the emulated link's losses

	pending *contribution
	// With overlap: the round training in the background, the copy of
	// the weights of the round before and of its round that it trains from,
	// and a spare start-state buffer.
	ahead                 *aheadJob
	aheadPrev, aheadTheta []float32
	spare                 diloco.LocalState

	stats WorkerStats
	pace  pace // the run loop's
	// cohortDrop, in tests, makes the worker drop out of its cohort after
	// sending its masked input in the rounds it says.
	cohortDrop func(round int) bool
	led        workLedger // the run's chain, as this worker sees it
}

// WorkerStats is where a worker's time and bytes went.
type WorkerStats struct {
	Start        time.Time
	Compute      time.Duration // inside inner steps
	Rounds       int           // contributions accepted
	Tokens       int64         // tokens of the accepted contributions
	Steps        int           // inner steps trained
	Refused      int
	Skipped      int // rounds not contributed to because training from the global weights failed
	Reconnects   int
	StateFetches int
	JoinRound    int // the round the aggregator was at when the worker first joined
	// Balance and Stake are the worker's account on the run's ledger as
	// last read (after each accepted contribution, and at the end).
	Balance, Stake uint64
	// Sent and Received are the bytes on the worker's DiLoCo streams
	// (contributions, updates, weights, cohort messages).
	Sent, Received uint64
}

// servedWeights are weights ready to hand to peers.
type servedWeights struct {
	round int
	hash  diloco.Hash
	blob  []byte
}

type contribution struct {
	round    int
	compute  time.Duration // time spent training it
	loss     float32       // its last inner step's loss
	hash     diloco.Hash
	tokens   int
	payload  []byte
	commit   ledger.CommitTx // the worker's commit to it
	raw      []byte          // signed
	attempts int             // submissions so far
}

// StartWorker locks the data directory, if any (failing at once if another
// node holds it: two nodes must not share an identity), and starts the
// worker's host; Run does the work.
func StartWorker(o WorkerOptions) (_ *Worker, err error) {
	if !(o.LinkLoss >= 0 && o.LinkLoss < 1) {
		return nil, fmt.Errorf("link loss %g: must be in [0, 1)", o.LinkLoss)
	}
	if o.Transport == nil {
		if _, err := p2p.ParseAddr(o.Join); err != nil {
			return nil, err
		}
	}
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
	key := o.Key
	if key == nil {
		if o.Transport != nil && o.DataDir == "" {
			return nil, errors.New("a worker needs its identity key (Key or DataDir) to sign its ledger transactions")
		}
		if key, err = p2p.LoadIdentity(o.DataDir); err != nil {
			return nil, err
		}
	}
	lkey, err := p2p.LedgerKey(key)
	if err != nil {
		return nil, fmt.Errorf("this identity cannot sign ledger transactions: %v", err)
	}
	h := o.Transport
	if h == nil {
		if h, err = p2p.NewTransport(key, o.Listen); err != nil {
			return nil, err
		}
	}
	if acct, aerr := p2p.AccountOf(h.ID()); aerr != nil || acct != ledger.KeyOf(lkey) {
		if o.Transport == nil {
			h.Close()
		}
		return nil, fmt.Errorf("the transport runs as %s, not as the identity key's %s", h.ID(), p2p.PeerIDOf(ledger.KeyOf(lkey)))
	}
	w := &Worker{opts: o, tr: h, lock: lock, log: o.Log.With("worker", shortID(h.ID())), pool: o.Pool, met: o.Metrics,
		serves: newServeLimit(2, 2), peerStall: peerFetchStall, peerBase: peerFetchBase, peerMinRate: peerFetchMinRate,
		led: workLedger{key: lkey, self: ledger.KeyOf(lkey), kernel: kernelName()}}
	if o.LinkBytesPerSec > 0 {
		w.peerMinRate = min(w.peerMinRate, o.LinkBytesPerSec/2)
	}
	w.linkSeed = uint64(rand.Int64())
	if w.pool == nil {
		w.pool, w.ownPool = kernels.NewPool(o.Threads), true
	}
	if o.LinkBytesPerSec > 0 {
		burst := int(o.LinkBytesPerSec / 50) // 20 ms of traffic
		w.up, w.down = wire.NewLimiter(o.LinkBytesPerSec, burst), wire.NewLimiter(o.LinkBytesPerSec, burst)
	}
	h.Handle(ProtoState, w.serveState)
	serveReveals(h, w.revealState, w.isValidator, &w.counter, w.log)
	return w, nil
}

func shortID(s string) string {
	if len(s) > 8 {
		return s[len(s)-8:]
	}
	return s
}

// ID is the worker's peer ID, its identity in the run.
func (w *Worker) ID() string { return w.tr.ID() }

// Addrs are the worker's multiaddrs.
func (w *Worker) Addrs() []string { return w.tr.Addrs() }

// Counter counts the bytes on the worker's streams.
func (w *Worker) Counter() *wire.Counter { return &w.counter }

// Stats reports where the worker's time went so far.
func (w *Worker) Stats() WorkerStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.stats
	st.Sent, st.Received = w.counter.Sent(), w.counter.Received()
	return st
}

// Close stops the node.
func (w *Worker) Close() error {
	if w.ownPool {
		w.pool.Close()
	}
	err := w.tr.Close()
	w.lock.Close()
	return err
}

// ErrNotAdmitted is what Run returns (wrapped, with the run's reason) when
// the run has refused to admit the worker's identity for longer than
// WorkerOptions.AdmissionPatience: its stake is below the run's minimum
// (never bonded, or slashed) or the run does not allow it.
var ErrNotAdmitted = errors.New("the run does not admit this worker")

// errPermanent marks errors that reconnecting cannot fix.
type errPermanent struct{ error }

// Run takes part in the run until it finishes (nil), ctx ends, a
// permanent error (wrong data, bad config), or the run stops admitting
// the worker (ErrNotAdmitted). Network failures are retried
// with backoff, re-joining and re-submitting a contribution that may not
// have arrived.
func (w *Worker) Run(ctx context.Context) error {
	w.mu.Lock()
	w.stats.Start = time.Now()
	w.mu.Unlock()
	const firstBackoff = 250 * time.Millisecond
	backoff := firstBackoff
	patience := w.opts.AdmissionPatience
	if patience <= 0 {
		patience = 30 * time.Second
	}
	var refusedSince time.Time // of the run's refusals to admit this identity, in a row
	for {
		began := time.Now()
		err := w.session(ctx)
		if err == nil || ctx.Err() != nil {
			if err == nil {
				return nil
			}
			return ctx.Err()
		}
		var pe errPermanent
		if errors.As(err, &pe) {
			return pe.error
		}
		if time.Since(began) > time.Minute {
			backoff = firstBackoff // that session worked for a while: a fresh failure
		}
		var re *wire.RemoteError
		remote := errors.As(err, &re)
		reason, notAdmittedNow := "", false
		if remote {
			reason, notAdmittedNow = strings.CutPrefix(re.Msg, notAdmitted)
		}
		if !notAdmittedNow {
			refusedSince = time.Time{}
		} else if refusedSince.IsZero() {
			refusedSince = time.Now()
		}
		switch {
		case notAdmittedNow && time.Since(refusedSince) >= patience:
			return fmt.Errorf("%w: %s", ErrNotAdmitted, reason)
		case notAdmittedNow:
			w.log.Warn("the run does not admit this worker; asking again", "reason", reason, "in", backoff,
				"gives up in", (patience - time.Since(refusedSince)).Round(time.Second))
		case remote:
			w.log.Warn("the aggregator refused this worker; retrying", "reason", re.Msg, "in", backoff)
		default:
			w.log.Warn("no connection to the aggregator; retrying", "err", err, "in", backoff)
		}
		w.mu.Lock()
		w.stats.Reconnects++
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff + time.Duration(rand.Int64N(int64(backoff)/2+1))):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// session is one connection's worth of work.
func (w *Worker) session(ctx context.Context) error {
	aggID, err := w.tr.Connect(ctx, w.opts.Join)
	if err != nil {
		return err
	}
	defer w.stopAhead()
	w.mu.Lock()
	w.aggID = aggID
	w.mu.Unlock()
	var wel welcome
	if err := w.call(ctx, w.aggID, ProtoJoin, kindJoin, joinRequest{Version: ProtocolVersion}, kindWelcome, &wel); err != nil {
		return err
	}
	hash, err := diloco.ParseHash(wel.Hash)
	if err != nil {
		return err
	}
	first := w.w == nil
	if err := w.setup(wel.Config); err != nil {
		return errPermanent{err}
	}
	if first {
		w.mu.Lock()
		w.stats.JoinRound = wel.Round
		w.mu.Unlock()
	}
	w.log.Info("joined", "round", wel.Round, "peers", len(wel.Peers), "chain", wel.ChainID, "min_stake", wel.MinStake)
	if err := w.connectLedger(ctx, &wel); err != nil {
		return err
	}
	if p := w.pending; p != nil && p.round == wel.Round && p.hash == hash {
		if err := w.submit(ctx, p); err != nil {
			return err
		}
	}
	w.pending = nil
	if err := w.ensureWeights(ctx, wel.Round, hash, wel.Peers); err != nil {
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		w.mu.Lock()
		req := pollRequest{Round: w.w.Round(), Hash: w.w.Hash().String(), Private: w.opts.PrivateData != nil}
		w.mu.Unlock()
		var reply pollReply
		s, err := w.request(ctx, w.aggID, ProtoPoll, kindPoll, req, controlTimeout)
		if err != nil {
			return err
		}
		err = wire.ReadJSON(s, kindReply, maxControl, &reply)
		if err != nil {
			s.Close()
			return err
		}
		action, ok := actionNames[reply.Action]
		if !ok {
			s.Close()
			return fmt.Errorf("aggregator answered unknown action %q", reply.Action)
		}
		rh, err := diloco.ParseHash(reply.Hash)
		if err != nil {
			s.Close()
			return err
		}
		switch action {
		case diloco.Wait:
			s.Close()
		case diloco.Finished:
			s.Close()
			w.log.Info("run finished", "round", reply.Round)
			w.finalBalance(ctx)
			return nil
		case diloco.Update:
			limit := maxUpdate(w.w.Cfg)
			s.allow(wire.EncodedBlobSize(limit), aggFetchBase, aggFetchMinRate)
			payload, err := wire.ReadBlob(s, limit)
			s.Close()
			if err != nil {
				return err
			}
			w.mu.Lock()
			err = w.w.ApplyUpdate(payload, rh)
			w.mu.Unlock()
			if err == nil {
				w.publishWeights()
			} else {
				w.log.Warn("update did not apply; fetching the weights", "err", err)
				if err := w.fetchState(ctx, reply.Round, rh, nil); err != nil {
					return err
				}
			}
		case diloco.Resync:
			s.Close()
			if err := w.fetchState(ctx, reply.Round, rh, nil); err != nil {
				return err
			}
		case diloco.Train:
			s.Close()
			left := time.Duration(reply.DeadlineMS) * time.Millisecond
			if w.inCohorts() {
				err = w.trainInCohort(ctx, left, reply.Waited, reply.Cohort)
			} else if w.w.Cfg.Overlapped() {
				err = w.trainOverlapped(ctx, reply.Round, left, reply.Waited)
			} else {
				err = w.trainAndSubmit(ctx, left, reply.Waited)
			}
			if err != nil {
				return err
			}
		}
	}
}

// setup creates the inner worker for the run's config on first join.
func (w *Worker) setup(cfg diloco.RunConfig) error {
	if cfg.Tokenizer != "" {
		cfg.Tok = w.opts.Tokenizer // the run's, if this node was given it: Validate checks
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("the aggregator's run config: %v", err)
	}
	if w.w != nil {
		if !w.w.Cfg.Same(cfg) {
			return fmt.Errorf("the aggregator's run config changed")
		}
		return nil
	}
	trainData, _ := corpus.Split(w.opts.Text, 0.9)
	if w.opts.PrivateData != nil {
		if cfg.Private == nil {
			return errors.New("this worker trains on private data, and the run takes no private contributions (its organiser did not enable them)")
		}
		if n := len(cfg.Encode(w.opts.PrivateData)); n < cfg.Model.BlockSize+1 {
			return fmt.Errorf("the private data has %d tokens, fewer than the run's context of %d plus one", n, cfg.Model.BlockSize)
		}
		trainData = w.opts.PrivateData
	} else if h := DataHash(w.opts.Text); h != cfg.DataHash {
		return fmt.Errorf("this worker's data (sha256 %s) is not the run's (sha256 %s)", h, cfg.DataHash)
	}
	dw, err := diloco.NewWorker(w.tr.ID(), cfg, trainData, w.pool)
	if err != nil {
		return err
	}
	w.led.zero = diloco.ZeroState(cfg).Hash()
	w.mu.Lock()
	w.w = dw
	w.mu.Unlock()
	return nil
}

// ensureWeights makes the worker hold the weights of round with hash:
// round 0 is computed from the seed, later rounds come from peers or the
// aggregator.
func (w *Worker) ensureWeights(ctx context.Context, round int, hash diloco.Hash, peers []string) error {
	w.mu.Lock()
	have := w.w.Round() == round && w.w.Hash() == hash
	computed := false
	if !have && round == 0 {
		have = w.w.SetWeights(0, diloco.InitialWeights(w.w.Cfg), hash) == nil
		computed = have
	}
	w.mu.Unlock()
	if computed {
		w.publishWeights()
	}
	if have {
		return nil
	}
	return w.fetchState(ctx, round, hash, peers)
}

// fetchState downloads the weights with hash, trying peers (in random
// order) before the aggregator, and checks them. A peer must keep up
// (peerStall, peerBase, peerMinRate): one that stalls or trickles costs
// seconds before the next is tried.
func (w *Worker) fetchState(ctx context.Context, round int, hash diloco.Hash, peers []string) error {
	peers = append([]string(nil), peers...)
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	var last error
	for i := 0; i <= len(peers); i++ {
		from := w.aggID // the aggregator is the last resort
		if i < len(peers) {
			id, err := w.tr.Connect(ctx, peers[i])
			if err != nil {
				last = err
				continue
			}
			if id == w.tr.ID() || id == w.aggID {
				continue
			}
			from = id
		}
		err := w.fetchFrom(ctx, from, round, hash, from != w.aggID)
		if err == nil {
			w.log.Info("fetched weights", "round", round, "from", shortID(from))
			w.mu.Lock()
			w.stats.StateFetches++
			w.mu.Unlock()
			return nil
		}
		last = err
		w.log.Debug("weights not fetched", "from", from, "err", err)
	}
	return fmt.Errorf("fetching the weights of round %d: %v", round, last)
}

// fetchFrom downloads the weights of round with hash from a peer (peer)
// or the aggregator, whose reads must make progress at the rates for
// either, and installs them if they hash right.
func (w *Worker) fetchFrom(ctx context.Context, from string, round int, hash diloco.Hash, peer bool) error {
	stall, base, rate := aggFetchStall, aggFetchBase, float64(aggFetchMinRate)
	if peer {
		stall, base, rate = w.peerStall, w.peerBase, w.peerMinRate
	}
	s, err := w.request(ctx, from, ProtoState, kindStateReq, stateRequest{Hash: hash.String()}, base)
	if err != nil {
		return err
	}
	defer s.Close()
	s.stall = stall
	var rep stateReply
	if err := wire.ReadJSON(s, kindState, maxControl, &rep); err != nil {
		return err
	}
	if rep.Round != round || rep.Hash != hash.String() {
		return fmt.Errorf("peer offers round %d (%s), want round %d", rep.Round, rep.Hash, round)
	}
	n := w.w.Cfg.Model.NumParams()
	blob := make([]byte, 4*n)
	s.allow(wire.EncodedBlobSize(int64(len(blob))), base, rate)
	if err := wire.ReadBlobInto(s, blob); err != nil {
		return err
	}
	theta := make([]float32, n)
	bytesToFloats(blob, theta)
	w.mu.Lock()
	err = w.w.SetWeights(round, theta, hash)
	w.mu.Unlock()
	if err != nil {
		return err
	}
	w.publishWeights()
	return nil
}

// publishWeights serialises the worker's current weights for the peers
// that ask for them. Only the run loop calls it, after it changed the
// weights: it is their only writer, so it reads them without the lock.
func (w *Worker) publishWeights() {
	round, hash := w.w.Round(), w.w.Hash()
	if round < 0 {
		return
	}
	sw := &servedWeights{round: round, hash: hash, blob: floatsToBytes(w.w.Weights())}
	w.mu.Lock()
	w.served = sw
	w.mu.Unlock()
	w.feedAhead() // a round training ahead may have waited for these
}

// committedWait is how long a worker told to train a round it has
// already committed to waits before it polls again.
const committedWait = 500 * time.Millisecond

// trainAndSubmit trains the current round and submits the contribution;
// left is the time the aggregator gave until the round's deadline, and
// waited whether the round waits for this worker. One it waits for trains
// as many of the H inner steps as fit before the deadline, leaving time to
// upload (see pace); one it does not wait for (a newcomer to a run whose
// workers have proven themselves, or one on probation) trains a single
// step, which it can send before the round closes, to prove itself. A
// round that cannot be trained from the global weights (a non-finite loss:
// the weights are poisoned) is skipped, not fatal: the worker logs it,
// waits out the round and keeps following the run. A worker with a
// Behaviour trains the steps it says and commits to and sends the
// contribution its Forge makes of the honest one; its local state, and so
// its commit's start and end, is what it really trained.
func (w *Worker) trainAndSubmit(ctx context.Context, left time.Duration, waited bool) error {
	t, err := w.trainRound(ctx, left, waited)
	if t == nil || err != nil {
		return err
	}
	commit, raw, err := w.commitTo(t.round, t.payload, t.tokens, t.startHash)
	if err != nil {
		return errPermanent{fmt.Errorf("signing the commit of round %d: %v", t.round, err)}
	}
	c := &contribution{round: t.round, compute: time.Since(t.start), loss: t.loss, hash: t.hash, tokens: t.tokens, payload: t.payload, commit: commit, raw: raw}
	w.pending = c
	if err := w.submit(ctx, c); err != nil {
		return err
	}
	w.pending = nil
	return nil
}

// trainedRound is a round's training, ready to commit to and send.
type trainedRound struct {
	round     int
	hash      diloco.Hash // the weights it trained from
	payload   []byte
	tokens    int
	startHash diloco.Hash // the local state it started from
	start     time.Time
	loss      float32 // the last inner step's
}

// trainRound trains the current round (within left, fitted to it when the
// round waits for this worker) and returns what to commit to and send. It
// returns nil and no error when there is nothing to send this round (the
// chain already holds a commit to it, or training from its weights failed
// and the round was waited out).
func (w *Worker) trainRound(ctx context.Context, left time.Duration, waited bool) (*trainedRound, error) {
	w.mu.Lock()
	round, hash := w.w.Round(), w.w.Hash()
	w.mu.Unlock()
	if w.led.recorded == round+1 {
		// The chain holds this worker's commit to the round (its
		// contribution was refused after the commit was recorded): it
		// would refuse a second one. Wait for the next round.
		return nil, sleepCtx(ctx, committedWait)
	}
	if err := w.reconcile(ctx); err != nil {
		return nil, err
	}
	// The state the round trains from: committed to, kept for a reveal,
	// and put back if the commit is not recorded.
	startHash := w.stateHash()
	w.w.StateTo(&w.led.start)
	w.led.startHash, w.led.startValid = startHash, true
	start := time.Now()
	deadline := start.Add(left)
	budget := w.pace.budget(left, maxPayload(w.w.Cfg), w.opts.LinkBytesPerSec)
	w.w.KeepTraining = func(done int) bool { return waited && w.pace.more(time.Since(start), budget) }
	last := start
	want := w.wantSteps(round)
	var lastLoss float32
	payload, tokens, err := w.w.Train(ctx, want, func(i int, loss float32) {
		lastLoss = loss
		w.met.Gauge("cairn_train_loss", "loss of the last inner step").Set(float64(loss))
		if w.opts.OnStep != nil {
			w.opts.OnStep(round, i, loss)
		}
		now := time.Now()
		w.pace.observeStep(now.Sub(last))
		last = now
	})
	w.w.KeepTraining = nil
	w.mu.Lock()
	w.stats.Compute += time.Since(start)
	w.mu.Unlock()
	if err == nil {
		w.led.curValid = false // trained: the local state moved on
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, w.skipRound(ctx, round, err, deadline)
	}
	payload, tokens, steps := w.trained(round, payload, tokens)
	if steps < want && waited {
		w.log.Debug("fitted the round to its deadline", "round", round, "steps", steps, "of", want, "left", left, "step", w.pace.step)
	}
	return &trainedRound{round: round, hash: hash, payload: payload, tokens: tokens, startHash: startHash, start: start, loss: lastLoss}, nil
}

// skipRound logs that round could not be trained from its weights
// (trainErr) and waits until the round is over: the aggregator would tell
// the worker to train it again.
func (w *Worker) skipRound(ctx context.Context, round int, trainErr error, deadline time.Time) error {
	w.log.Warn("cannot train from the round's weights; skipping this round's contribution and following the run", "round", round, "err", trainErr)
	w.mu.Lock()
	w.stats.Skipped++
	w.mu.Unlock()
	return sleepCtx(ctx, time.Until(deadline)+100*time.Millisecond)
}

// trained counts the inner steps of a round's training (payload, tokens)
// and returns what the worker commits to and sends: the training's, or
// its Behaviour's forgery of it (the local state, the commit's start and
// end, is what was really trained), and the steps trained.
func (w *Worker) trained(round int, payload []byte, tokens int) ([]byte, int, int) {
	steps := tokens / w.w.Cfg.TokensPerStep()
	w.mu.Lock()
	w.stats.Steps += steps
	w.mu.Unlock()
	w.met.Counter("cairn_inner_steps_total", "inner training steps").Add(float64(steps))
	if b := w.opts.Behaviour; b != nil {
		payload, tokens = b.Forge(round, payload, tokens)
		tokens = max(tokens, 0)
		w.log.Debug("the behaviour forged the contribution", "round", round, "steps", steps, "claimed_tokens", tokens)
	}
	return payload, tokens, steps
}

// submit sends a contribution with its commit. A refusal is logged and
// dropped (and the worker's ledger side told whether the commit was
// recorded); a network error is returned so that the session reconnects
// and tries again.
func (w *Worker) submit(ctx context.Context, c *contribution) error {
	c.attempts++
	if c.attempts == 1 {
		w.sendingReveal(c)
	}
	req := submitRequest{Round: c.round, Hash: c.hash.String(), Tokens: c.tokens, Commit: c.raw, ComputeMs: c.compute.Milliseconds(), Loss: c.loss}
	s, err := w.request(ctx, w.aggID, ProtoSubmit, kindSubmit, req, controlTimeout)
	if err != nil {
		return err
	}
	defer s.Close()
	s.allow(wire.EncodedBlobSize(int64(len(c.payload))), serveBase, serveMinRate)
	sent := time.Now()
	werr := wire.WriteBlob(s, c.payload)
	if werr == nil {
		werr = s.CloseWrite()
	}
	// The aggregator refuses on the header, before it reads the payload:
	// a refusal may be waiting even when the payload could not be sent.
	s.allow(0, controlTimeout, serveMinRate)
	var a ack
	err = wire.ReadJSON(s, kindAck, maxControl, &a)
	if werr != nil && err == nil && a.Round != c.round {
		err = werr
	}
	var re *wire.RemoteError
	if errors.As(err, &re) {
		w.log.Warn("contribution refused", "round", c.round, "reason", re.Msg)
		w.mu.Lock()
		w.stats.Refused++
		w.mu.Unlock()
		w.submitted(c, false, false)
		return nil
	}
	if err != nil {
		w.led.known = false
		return err
	}
	if a.Round != c.round {
		w.led.known = false
		return fmt.Errorf("the aggregator acknowledged round %d for a contribution to round %d", a.Round, c.round)
	}
	if a.Refused != "" {
		w.log.Warn("contribution refused after its commit was recorded", "round", c.round, "reason", a.Refused)
		w.mu.Lock()
		w.stats.Refused++
		w.mu.Unlock()
		w.submitted(c, true, false)
		return nil
	}
	w.submitted(c, true, true)
	w.pace.observeUpload(len(c.payload), time.Since(sent))
	w.mu.Lock()
	w.stats.Rounds++
	w.stats.Tokens += int64(c.tokens)
	w.mu.Unlock()
	w.updateMetrics(c.round)
	w.readBalance(ctx)
	w.log.Debug("contribution accepted", "round", c.round, "bytes", len(c.payload))
	return nil
}

func (w *Worker) updateMetrics(round int) {
	w.met.Gauge("cairn_round", "round of the last accepted contribution").Set(float64(round))
	w.met.Gauge("cairn_bytes_sent_total", "bytes sent on DiLoCo streams").Set(float64(w.counter.Sent()))
	w.met.Gauge("cairn_bytes_received_total", "bytes received on DiLoCo streams").Set(float64(w.counter.Received()))
	w.met.Gauge("cairn_peers", "connected peers").Set(float64(w.tr.Peers()))
}

// request opens a stream to p for proto and sends a JSON request; the
// caller reads the reply (within timeout, unless it allows a blob more)
// and closes the stream.
func (w *Worker) request(ctx context.Context, p, proto string, kind uint8, req any, timeout time.Duration) (*progressStream, error) {
	ns, err := w.tr.Open(ctx, p, proto)
	if err != nil {
		return nil, err
	}
	s := newProgress(w.wrap(ns), ns, timeout, time.Now().Add(timeout))
	if err := wire.WriteJSON(s, kind, req); err != nil {
		ns.Reset()
		return nil, err
	}
	return s, nil
}

// call is a request whose reply is one JSON message.
func (w *Worker) call(ctx context.Context, p, proto string, kind uint8, req any, replyKind uint8, reply any) error {
	s, err := w.request(ctx, p, proto, kind, req, time.Minute)
	if err != nil {
		return err
	}
	defer s.Close()
	return wire.ReadJSON(s, replyKind, maxControl, reply)
}

// wrap counts a stream's bytes and throttles it to the emulated link.
func (w *Worker) wrap(s wire.NetStream) wire.Stream {
	var ws wire.Stream = wire.CountStream(s, &w.counter)
	if w.up != nil || w.opts.LinkRTT > 0 || w.opts.LinkLoss > 0 {
		ws = wire.LimitStreamLink(ws, w.up, w.down, wire.Link{RTT: w.opts.LinkRTT, Loss: w.opts.LinkLoss, Seed: w.linkSeed})
	}
	return ws
}

// serveState hands the worker's current weights to a peer that asks for
// them by hash: the serialisation shared by all requests (built by the run
// loop, not under the lock), at most twice per peer for one set of weights
// and to two peers at a time; the peer must keep reading.
func (w *Worker) serveState(ns wire.NetStream, from string) {
	defer ns.Close()
	s := newProgress(w.wrap(ns), ns, serveStall, time.Now().Add(controlTimeout))
	var req stateRequest
	if err := wire.ReadJSON(s, kindStateReq, maxControl, &req); err != nil {
		ns.Reset()
		return
	}
	w.mu.Lock()
	sw := w.served
	w.mu.Unlock()
	if sw == nil || (req.Hash != "" && req.Hash != sw.hash.String()) {
		wire.WriteError(s, "no weights with that hash here")
		return
	}
	release, err := w.serves.acquire(from, sw.hash)
	if err != nil {
		wire.WriteError(s, err.Error())
		return
	}
	defer release()
	if wire.WriteJSON(s, kindState, stateReply{Round: sw.round, Hash: sw.hash.String()}) == nil {
		s.allow(int64(len(sw.blob)), serveBase, serveMinRate)
		wire.WriteBlob(s, sw.blob)
	}
}
