package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/metrics"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/store"
	"github.com/cairnlabs/cairn/synth"
	"github.com/cairnlabs/cairn/wire"
	"github.com/libp2p/go-libp2p/core/crypto"
)

// ProtoJob is a generation job's protocol: a worker asks for a batch of
// problems and returns their solutions; the coordinator re-verifies each
// (synth.Verify), pays the verified ones and slashes the wrong ones on
// its chain, and keeps the verified ones as the job's dataset.
const ProtoJob = "/cairn/generate/1.0.0"

const (
	kindJobReq uint8 = 0x70 + iota
	kindJobReply
)

// JobOptions configure a generation job's coordinator.
type JobOptions struct {
	DataDir string
	Listen  []string
	// Transport and Key, when set, are used instead of a libp2p host made
	// from the identity in DataDir.
	Transport  Transport
	Key        crypto.PrivKey
	Difficulty synth.Difficulty
	Seed       uint64
	// PerBatch is the problems of one batch (default 8, at most 64).
	PerBatch int
	// Reward is paid for each verified sample (default 100 units).
	Reward uint64
	// Ledger and Accounts set the job's chain when it is created: its
	// rules (a worker needs Ledger.MinStake to take part, and a wrong
	// sample slashes SlashBasisPoints of its stake) and its funded or
	// staked identities. Default: DefaultLedgerParams, no accounts.
	Ledger   *LedgerParams
	Accounts []ledger.GenesisAccount
	// BlockInterval is how often the verdicts go on the chain (default 1 s).
	BlockInterval time.Duration
	Metrics       *metrics.Registry
	Log           *slog.Logger
}

// jobRequest asks for batch Batch (its problems follow from the job's
// seed, the worker and the batch: a worker may ask for any batch) or,
// with Solutions, answers it (one text per problem, "" for none).
type jobRequest struct {
	Batch     uint64   `json:"batch"`
	Solutions []string `json:"solutions,omitempty"`
}

// JobReply describes the job and a batch's problems, or judges a batch's
// solutions: verified (paid), wrong (slashed), unanswered, and seen
// before (neither, again).
type JobReply struct {
	Difficulty synth.Difficulty `json:"difficulty"`
	PerBatch   int              `json:"per_batch"`
	Reward     uint64           `json:"reward"`
	ChainID    string           `json:"chain_id"`
	Problems   []synth.Problem  `json:"problems,omitempty"`
	Verified   int              `json:"verified,omitempty"`
	Wrong      int              `json:"wrong,omitempty"`
	Unanswered int              `json:"unanswered,omitempty"`
	Seen       int              `json:"seen,omitempty"`
	Reasons    []string         `json:"reasons,omitempty"` // of the wrong ones
}

// JobProblems are the problems of batch b for worker (a pure function of
// the job's seed, the worker's key and b).
func JobProblems(seed uint64, worker ledger.PubKey, b uint64, perBatch int, d synth.Difficulty) ([]synth.Problem, error) {
	h := sha256.Sum256(append(append([]byte("cairn job batch\n"), worker[:]...), binary.BigEndian.AppendUint64(nil, b)...))
	stream := seed ^ binary.BigEndian.Uint64(h[:])
	ps := make([]synth.Problem, perBatch)
	for k := range ps {
		p, _, err := synth.Generate(stream, k, d)
		if err != nil {
			return nil, err
		}
		ps[k] = p
	}
	return ps, nil
}

// Job is a running generation job's coordinator.
type Job struct {
	opts  JobOptions
	tr    Transport
	lock  *p2p.DirLock
	store *store.SampleStore
	led   *LedgerHost
	log   *slog.Logger
	met   *metrics.Registry

	mu      sync.Mutex
	judged  map[[32]byte]bool // samples judged (verified ones are also in the store)
	pending []pendingSample
	stats   JobStats

	stop, done chan struct{}
}

type pendingSample struct {
	n     uint64 // in the store
	entry ledger.SampleEntry
}

// JobStats count a job's verdicts since it started.
type JobStats struct {
	Held, Verified, Wrong, OnChain int
}

// StartJob opens (or creates) the job in o.DataDir and serves it.
func StartJob(o JobOptions) (*Job, error) {
	if o.DataDir == "" {
		return nil, errors.New("the job needs a data directory")
	}
	if o.Difficulty == (synth.Difficulty{}) {
		o.Difficulty = synth.DefaultDifficulty
	}
	if err := o.Difficulty.Validate(); err != nil {
		return nil, err
	}
	if o.PerBatch <= 0 {
		o.PerBatch = 8
	}
	if o.PerBatch > 64 {
		return nil, fmt.Errorf("batches of %d problems, at most 64", o.PerBatch)
	}
	if o.Reward == 0 {
		o.Reward = 100
	}
	j := &Job{opts: o, log: o.Log, met: o.Metrics, judged: map[[32]byte]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	if j.log == nil {
		j.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if j.met == nil {
		j.met = metrics.NewRegistry()
	}
	var err error
	if j.lock, err = p2p.LockDir(o.DataDir); err != nil {
		return nil, err
	}
	fail := func(err error) (*Job, error) {
		j.closeParts()
		return nil, err
	}
	key := o.Key
	if key == nil {
		if key, err = p2p.LoadIdentity(o.DataDir); err != nil {
			return fail(err)
		}
	}
	lkey, err := p2p.LedgerKey(key)
	if err != nil {
		return fail(err)
	}
	if j.store, err = store.OpenSamples(filepath.Join(o.DataDir, store.SamplesFileName)); err != nil {
		return fail(err)
	}
	j.tr = o.Transport
	if j.tr == nil {
		if j.tr, err = p2p.NewTransport(key, o.Listen); err != nil {
			return fail(err)
		}
	}
	var g *ledger.Genesis
	if !fileExists(filepath.Join(o.DataDir, store.FileName)) {
		p := DefaultLedgerParams()
		if o.Ledger != nil {
			p = *o.Ledger
		}
		if g, err = RunGenesis("cairn generation job\n"+j.tr.ID(), ledger.KeyOf(lkey), o.Accounts, p); err != nil {
			return fail(err)
		}
	}
	if j.led, err = OpenLedgerHost(LedgerHostOptions{DataDir: o.DataDir, Genesis: g, Key: lkey, BlockInterval: o.BlockInterval, Log: j.log}); err != nil {
		return fail(err)
	}
	err = j.store.Each(func(s store.Sample) error {
		h := s.Hash()
		j.judged[h] = true
		if s.Wrong {
			j.stats.Wrong++
		} else {
			j.stats.Held++
		}
		if !j.store.OnChain(s.N) {
			e := ledger.SampleEntry{Hash: h, Worker: s.Worker, Verified: !s.Wrong}
			if e.Verified {
				e.Reward = o.Reward
			}
			j.pending = append(j.pending, pendingSample{s.N, e})
		}
		return nil
	})
	if err != nil {
		return fail(fmt.Errorf("the sample file: %v", err))
	}
	j.led.Serve(j.tr)
	j.tr.Handle(ProtoJob, j.serve)
	go j.clock()
	j.log.Info("generation job listening", "addrs", j.tr.Addrs(), "samples", j.stats.Held, "difficulty", o.Difficulty, "chain", j.led.Info().ChainID)
	return j, nil
}

// ID is the coordinator's peer ID.
func (j *Job) ID() string { return j.tr.ID() }

// Addrs are its full multiaddrs.
func (j *Job) Addrs() []string { return j.tr.Addrs() }

// Ledger is the job's chain.
func (j *Job) Ledger() *LedgerHost { return j.led }

// Samples is the job's dataset.
func (j *Job) Samples() *store.SampleStore { return j.store }

// Stats reports the job's verdicts.
func (j *Job) Stats() JobStats {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.stats
}

// serve answers one request: a batch's problems, or the verdicts on its
// solutions. A worker without the chain's minimum stake is refused: a
// wrong sample must cost it something.
func (j *Job) serve(ns wire.NetStream, from string) {
	defer ns.Close()
	s := newProgress(ns, ns, serveStall, time.Now().Add(controlTimeout))
	var req jobRequest
	if err := wire.ReadJSON(s, kindJobReq, maxControl, &req); err != nil {
		wire.WriteError(s, err.Error())
		return
	}
	reply, err := j.answer(from, &req)
	if err != nil {
		j.log.Warn("job request refused", "peer", from, "err", err)
		wire.WriteError(s, err.Error())
		return
	}
	wire.WriteJSON(s, kindJobReply, reply)
}

func (j *Job) answer(from string, req *jobRequest) (JobReply, error) {
	o := j.opts
	reply := JobReply{Difficulty: o.Difficulty, PerBatch: o.PerBatch, Reward: o.Reward, ChainID: j.led.Info().ChainID}
	worker, err := p2p.AccountOf(from)
	if err != nil {
		return reply, err
	}
	staked := func() error {
		if min := j.led.Info().MinStake; min > 0 {
			acct, err := j.led.be.Account(worker)
			if err != nil {
				return err
			}
			if acct.Stake < min {
				return fmt.Errorf("%s has a stake of %d on the job's chain, below its minimum of %d: a wrong sample must cost its worker", from, acct.Stake, min)
			}
		}
		return nil
	}
	problems, err := JobProblems(o.Seed, worker, req.Batch, o.PerBatch, o.Difficulty)
	if err != nil {
		return reply, err
	}
	if req.Solutions == nil {
		if err := staked(); err != nil {
			return reply, err
		}
		reply.Problems = problems
		return reply, nil
	}
	if len(req.Solutions) != len(problems) {
		return reply, fmt.Errorf("%d solutions for a batch of %d problems", len(req.Solutions), len(problems))
	}
	for k, text := range req.Solutions {
		if len(text) > synth.MaxSolution {
			return reply, fmt.Errorf("solution %d has %d bytes, more than %d", k, len(text), synth.MaxSolution)
		}
	}
	// A batch judged before is answered as seen whatever the worker's
	// stake now (its verdicts may have slashed it meanwhile); anything
	// new needs the stake.
	j.mu.Lock()
	fresh := false
	for k, text := range req.Solutions {
		if text != "" && !j.judged[store.SampleHash(worker, problems[k].Prompt(), text)] {
			fresh = true
		}
	}
	j.mu.Unlock()
	if fresh {
		if err := staked(); err != nil {
			return reply, err
		}
	}
	now := time.Now()
	j.mu.Lock()
	defer j.mu.Unlock()
	for k, text := range req.Solutions {
		if text == "" {
			reply.Unanswered++
			continue
		}
		p := problems[k]
		h := store.SampleHash(worker, p.Prompt(), text)
		if j.judged[h] {
			reply.Seen++
			continue
		}
		if _, err := synth.Verify(p, text); err != nil {
			// Kept, so that the slashing survives a restart before the
			// next block.
			n, serr := j.store.Put(store.Sample{Prompt: p.Prompt(), Solution: text, Worker: worker, At: now, Wrong: true})
			if serr != nil && !errors.Is(serr, store.ErrHeld) {
				return reply, fmt.Errorf("the job could not store a verdict: %v", serr)
			}
			j.judged[h] = true
			if serr == nil {
				j.pending = append(j.pending, pendingSample{n, ledger.SampleEntry{Hash: h, Worker: worker}})
			}
			j.stats.Wrong++
			reply.Wrong++
			reply.Reasons = append(reply.Reasons, fmt.Sprintf("problem %d: %v", k, err))
			j.met.Counter("cairn_job_samples_wrong_total", "samples that failed re-verification").Add(1)
			continue
		}
		n, err := j.store.Put(store.Sample{Prompt: p.Prompt(), Solution: text, Worker: worker, At: now})
		if err != nil && !errors.Is(err, store.ErrHeld) {
			return reply, fmt.Errorf("the job could not store a sample: %v", err)
		}
		j.judged[h] = true
		if err == nil {
			j.pending = append(j.pending, pendingSample{n, ledger.SampleEntry{Hash: h, Worker: worker, Verified: true, Reward: o.Reward}})
			j.stats.Held++
		}
		j.stats.Verified++
		reply.Verified++
		j.met.Counter("cairn_job_samples_verified_total", "samples verified and paid").Add(1)
	}
	if reply.Wrong > 0 {
		j.log.Warn("wrong samples: the worker is slashed", "worker", shortID(from), "batch", req.Batch, "wrong", reply.Wrong)
	}
	return reply, nil
}

// clock puts the verdicts on the chain every block interval.
func (j *Job) clock() {
	defer close(j.done)
	t := time.NewTicker(j.led.interval)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-t.C:
			if err := j.record(); err != nil {
				j.log.Warn("recording verdicts on the chain", "err", err)
			}
		}
	}
}

// record puts the pending verdicts on the chain in one SamplesTx and one
// block (those the chain holds already are only noted).
func (j *Job) record() error {
	j.mu.Lock()
	batch := slices.Clone(j.pending[:min(len(j.pending), ledger.MaxSampleEntries)])
	j.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	slices.SortFunc(batch, func(a, b pendingSample) int { return bytes.Compare(a.entry.Hash[:], b.entry.Hash[:]) })
	hashes := make([]ledger.Hash, len(batch))
	ns := make([]uint64, len(batch))
	for i, p := range batch {
		hashes[i], ns[i] = p.entry.Hash, p.n
	}
	on, err := j.led.recordOnce("sample", hashes, time.Now(), func(keep []int) ledger.Body {
		tx := &ledger.SamplesTx{}
		for _, i := range keep {
			tx.Entries = append(tx.Entries, batch[i].entry)
		}
		return tx
	})
	if err != nil {
		return err
	}
	if err := j.store.MarkOnChain(ns); err != nil {
		return err
	}
	done := map[[32]byte]bool{}
	for _, p := range batch {
		done[p.entry.Hash] = true
	}
	j.mu.Lock()
	j.pending = slices.DeleteFunc(j.pending, func(p pendingSample) bool { return done[p.entry.Hash] })
	j.stats.OnChain += on
	j.mu.Unlock()
	return nil
}

// Close records what is pending, then stops the node.
func (j *Job) Close() error {
	select {
	case <-j.stop:
		return nil
	default:
	}
	close(j.stop)
	<-j.done
	if err := j.record(); err != nil {
		j.log.Warn("recording verdicts at close", "err", err)
	}
	return j.closeParts()
}

func (j *Job) closeParts() error {
	var errs []error
	if j.tr != nil {
		errs = append(errs, j.tr.Close())
	}
	if j.led != nil {
		errs = append(errs, j.led.Close())
	}
	if j.store != nil {
		errs = append(errs, j.store.Close())
	}
	if j.lock != nil {
		errs = append(errs, j.lock.Close())
	}
	return errors.Join(errs...)
}

// JobClient is a worker's side of a generation job: it asks for batches
// and returns solutions over tr.
type JobClient struct {
	tr Transport
	to string // the coordinator's peer ID
}

// DialJob connects to the coordinator at the full multiaddr addr.
func DialJob(ctx context.Context, tr Transport, addr string) (*JobClient, error) {
	id, err := tr.Connect(ctx, addr)
	if err != nil {
		return nil, err
	}
	return &JobClient{tr: tr, to: id}, nil
}

// Batch asks for batch b's problems.
func (c *JobClient) Batch(ctx context.Context, b uint64) (JobReply, error) {
	return c.call(ctx, jobRequest{Batch: b})
}

// Submit returns batch b's solutions (one per problem, "" for none) and
// gets the verdicts.
func (c *JobClient) Submit(ctx context.Context, b uint64, solutions []string) (JobReply, error) {
	if solutions == nil {
		solutions = []string{}
	}
	return c.call(ctx, jobRequest{Batch: b, Solutions: solutions})
}

func (c *JobClient) call(ctx context.Context, req jobRequest) (JobReply, error) {
	ns, err := c.tr.Open(ctx, c.to, ProtoJob)
	if err != nil {
		return JobReply{}, err
	}
	defer ns.Close()
	s := newProgress(ns, ns, serveStall, time.Now().Add(controlTimeout))
	if err := wire.WriteJSON(s, kindJobReq, req); err != nil {
		return JobReply{}, err
	}
	var r JobReply
	err = wire.ReadJSON(s, kindJobReply, maxControl, &r)
	return r, err
}
