package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/metrics"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/store"
	"github.com/libp2p/go-libp2p/core/crypto"
)

// LocalOptions describe a whole network in one process: an aggregator and
// Workers workers, each with its own libp2p host on loopback.
type LocalOptions struct {
	Config      diloco.RunConfig
	Init        []float32 // initial weights; nil for the run seed's
	Text        []byte
	Workers     int
	DataDir     string // each node gets a subdirectory; "" for a temporary one
	EvalBatches int
	// LinkBytesPerSec throttles every worker's streams (0: unlimited).
	LinkBytesPerSec float64
	// LinkRTT adds a round-trip time to every worker's streams.
	LinkRTT time.Duration
	// LinkLoss emulates packet loss on every worker's link (see
	// WorkerOptions.LinkLoss).
	LinkLoss float64
	Metrics  *metrics.Registry // the aggregator's; nil for a private one
	Log      *slog.Logger
	OnRound  func(RoundInfo)
	// Ledger are the rules of the run's chain (nil: DefaultLedgerParams).
	// Every worker is funded at genesis with LocalStake (the minimum
	// stake, at least 1) bonded and a balance of 0, so what it holds at
	// the end beyond its stake is what it earned.
	Ledger *LedgerParams
	// Settler judges the rounds (nil: SettleUnchecked).
	Settler Settler
	// Validation makes the aggregator recompute contributions and settle
	// rounds by the verdicts (see AggregatorOptions.Validation).
	Validation *ValidationOptions
	// Behaviours make workers misbehave, by worker index (see
	// WorkerOptions.Behaviour): worker i is honest when i is beyond the
	// slice or Behaviours[i] is nil.
	Behaviours []Behaviour
	// OnStep, when set, is called after every inner step of every worker,
	// with the worker's index, from that worker's run loop (its training
	// waits for it).
	OnStep func(worker, round, step int, loss float32)
	// OnSettle, when set, is told about every round the run's chain
	// settles (its result, commits and verdicts), in order, from one
	// goroutine, within a fraction of a second of its block; the last
	// ones before RunLocal returns.
	OnSettle func(ledger.RoundInfo)
	// Remote are workers of the run that RunLocal does not start (worker
	// processes, say), by peer ID: staked at genesis as the local ones
	// are, and reported after them in LocalResult.Ledger.Accounts. Their
	// keys must be ed25519 (an ID that is not is an error). Starting and
	// stopping them is the caller's (OnStart); the first round waits
	// (up to a minute) until every worker, local and remote, is present,
	// and later rounds wait for them as for any participant.
	Remote []string
	// ChainValidators, if positive, runs the run's ledger on a CometBFT
	// network of that many validators on loopback, in this process, with
	// their homes under DataDir/chain (chain.Init's layout; a directory
	// that holds one resumes it): the aggregator records on the first
	// validator, and the workers send their transactions to the
	// validators in turn.
	ChainValidators int
	// OnStart, when set, is called once the aggregator listens and the
	// local workers are started, before the run: with the address workers
	// join at and the local workers' peer IDs, in worker order. An error
	// stops the run and is returned.
	OnStart func(join string, workers []string) error
	// OnAggregator, when set, is given the run's aggregator once it is
	// started (to read its ledger for a live view, say).
	OnAggregator func(*Aggregator)
}

// LocalStake is the stake each worker of a local run has bonded at
// genesis: the run's minimum stake, or 1 unit in an open run.
func LocalStake(p LedgerParams) uint64 { return max(p.MinStake, 1) }

// LocalAccount is a local worker's account on the run's chain at the
// end of the run.
type LocalAccount struct {
	ID      string // the worker's peer ID
	Account ledger.Account
	Reward  uint64 // paid by the settlements, over all rounds
	Rounds  int    // rounds in which it was paid
}

// LocalLedger summarises a local run's chain after the run, read from its
// file once the aggregator has closed it.
type LocalLedger struct {
	Path             string // the aggregator's ledger.db (gone after the run if LocalOptions.DataDir was "")
	ChainID          string
	EmissionPerRound uint64             // paid at each round's settlement
	Totals           ledger.Totals      // supply, minted, burned, open round, next round to settle, tip
	Accounts         []LocalAccount     // the workers', in worker order
	Rounds           []ledger.RoundInfo // every closed round: result, commits, verdicts
	// Privacy is the last privacy record of a run with differential
	// privacy (nil without).
	Privacy *ledger.PrivacyRecord
	// Invariants is ledger.CheckInvariants' verdict on the final state
	// (nil: the supply adds up); Verified is store.Verify's replay of the
	// file from its genesis (nil: intact), Report what it replayed.
	Invariants, Verified error
	Report               store.Report
	// Validators is the number of validators of the CometBFT network the
	// ledger ran on (0: the embedded chain). Verified is then the check
	// that they all hold the same block hash and app hash at every
	// height (chain.Compare); Report counts those blocks' transactions.
	Validators int
}

// LocalResult summarises a local run.
type LocalResult struct {
	Rounds    int
	Wall      time.Duration
	BytesSent uint64 // by all nodes, on DiLoCo streams
	// WorkerSent and WorkerRecv are the workers' bytes up and down, summed.
	WorkerSent, WorkerRecv uint64
	Weights                []float32
	Compute                time.Duration // summed over workers: time inside inner steps
	WorkerWall             time.Duration // summed over workers: time from start to finish
	Tokens                 int64         // trained on, over all workers
	Contributed            int           // contributions accepted
	PerWorker              []WorkerStats
	Ledger                 LocalLedger
	// Validator is what the aggregator's validator did (only the
	// screening time without LocalOptions.Validation).
	Validator ValidatorStats
}

// Utilisation is the share of the workers' wall time spent computing.
func (r LocalResult) Utilisation() float64 {
	if r.WorkerWall == 0 {
		return 0
	}
	return r.Compute.Seconds() / r.WorkerWall.Seconds()
}

func seedBytes(seed uint64, i int) [32]byte {
	var b [32]byte
	binary.LittleEndian.PutUint64(b[:], seed)
	binary.LittleEndian.PutUint64(b[8:], uint64(i))
	copy(b[16:], "cairn/local/key")
	return b
}

// localStragglers is how long RunLocal lets its workers run after the
// aggregator finished and told them so, before it stops them. Those it
// did not tell (identities it refuses, such as workers slashed below the
// minimum stake, which cannot learn the run is over) are stopped at once.
const localStragglers = 2 * time.Second

// RunLocal runs a DiLoCo network on loopback until the run finishes. A
// worker the finished aggregator did not tell so (one the run refuses,
// say, after its stake was slashed) is stopped, as is one still running
// localStragglers later; its stats are those it had then.
func RunLocal(ctx context.Context, o LocalOptions) (LocalResult, error) {
	if o.Workers < 1 {
		return LocalResult{}, fmt.Errorf("need at least one worker, got %d", o.Workers)
	}
	dir := o.DataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "cairn-local-*")
		if err != nil {
			return LocalResult{}, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	threads := max(1, runtime.GOMAXPROCS(0)/o.Workers)
	loop := []string{"/ip4/127.0.0.1/tcp/0"}
	params := DefaultLedgerParams()
	if o.Ledger != nil {
		params = *o.Ledger
	}
	// Identities derived from the run seed give the workers the same data
	// streams, and the run the same result, every time. They are for this
	// simulation only: anyone can recompute them.
	var keys []crypto.PrivKey
	var accts []ledger.GenesisAccount
	for i := 0; i < o.Workers; i++ {
		key, _, err := crypto.GenerateEd25519Key(rand.NewChaCha8(seedBytes(o.Config.Seed, i)))
		if err != nil {
			return LocalResult{}, err
		}
		lk, err := p2p.LedgerKey(key)
		if err != nil {
			return LocalResult{}, err
		}
		keys = append(keys, key)
		accts = append(accts, ledger.GenesisAccount{Key: ledger.KeyOf(lk), Stake: LocalStake(params)})
	}
	for _, id := range o.Remote {
		k, err := p2p.AccountOf(id)
		if err != nil {
			return LocalResult{}, fmt.Errorf("remote worker %s: %v", id, err)
		}
		accts = append(accts, ledger.GenesisAccount{Key: k, Stake: LocalStake(params)})
	}
	aggDir := filepath.Join(dir, "aggregator")
	// With workers elsewhere (processes, slower to start than the local
	// ones), the first round waits for all of them: with rounds this
	// short, one that joined late would chase rounds that close without it.
	startWith := 0
	if len(o.Remote) > 0 {
		startWith = len(accts) // the local workers and the remote ones
	}
	var lc *localChain
	chainRPC := ""
	if o.ChainValidators > 0 {
		key, err := p2p.LoadIdentity(aggDir)
		if err != nil {
			return LocalResult{}, err
		}
		lk, err := p2p.LedgerKey(key)
		if err != nil {
			return LocalResult{}, err
		}
		self := ledger.KeyOf(lk)
		g, err := ChainGenesis(LedgerChainID(LedgerRunName(o.Config, p2p.PeerIDOf(self))), []ledger.PubKey{self}, accts, params)
		if err != nil {
			return LocalResult{}, err
		}
		if lc, err = startLocalChain(ctx, filepath.Join(dir, "chain"), o.ChainValidators, g); err != nil {
			return LocalResult{}, err
		}
		defer lc.stop()
		chainRPC = lc.nodes[0].RPC()
	}
	agg, err := StartAggregator(AggregatorOptions{DataDir: aggDir, Listen: loop, Config: o.Config, Init: o.Init,
		Text: o.Text, EvalBatches: o.EvalBatches, Threads: 1, Log: o.Log, Metrics: o.Metrics, OnRound: o.OnRound, Grace: 200 * time.Millisecond, StartWith: startWith,
		Ledger: &params, Accounts: accts, BlockInterval: 200 * time.Millisecond, Settler: o.Settler, Validation: o.Validation, ChainRPC: chainRPC})
	if err != nil {
		return LocalResult{}, err
	}
	if o.OnAggregator != nil {
		o.OnAggregator(agg)
	}
	aggOpen := true
	defer func() {
		if aggOpen {
			agg.Close()
		}
	}()
	var workers []*Worker
	for i, key := range keys {
		pool := kernels.NewPool(threads)
		defer pool.Close()
		wdir := filepath.Join(dir, fmt.Sprintf("worker%d", i))
		if err := p2p.SaveIdentity(wdir, key); err != nil {
			return LocalResult{}, err
		}
		wo := WorkerOptions{DataDir: wdir, Listen: loop,
			Join: agg.Addrs()[0], Text: o.Text, Tokenizer: o.Config.Tok, Pool: pool, LinkBytesPerSec: o.LinkBytesPerSec, LinkRTT: o.LinkRTT, LinkLoss: o.LinkLoss, Log: o.Log}
		if lc != nil {
			wo.ChainRPC = lc.nodes[i%len(lc.nodes)].RPC()
		}
		if i < len(o.Behaviours) {
			wo.Behaviour = o.Behaviours[i]
		}
		if o.OnStep != nil {
			wo.OnStep = func(round, step int, loss float32) { o.OnStep(i, round, step, loss) }
		}
		w, err := StartWorker(wo)
		if err != nil {
			return LocalResult{}, err
		}
		defer w.Close()
		workers = append(workers, w)
	}
	var ids []string
	for _, w := range workers {
		ids = append(ids, w.ID())
	}
	if o.OnStart != nil {
		if err := o.OnStart(agg.Addrs()[0], append([]string(nil), ids...)); err != nil {
			return LocalResult{}, err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	// Workers run until they learn the run is over; one that cannot (an
	// identity the run refuses, its stake slashed below the minimum) is
	// stopped when the aggregator finished without telling it, the
	// others a while after.
	wctx := make([]context.Context, len(workers))
	wcancel := make([]context.CancelFunc, len(workers))
	for i := range workers {
		wctx[i], wcancel[i] = context.WithCancel(ctx)
		defer wcancel[i]()
	}
	type ended struct {
		worker int // -1: the aggregator
		err    error
	}
	ends := make(chan ended, len(workers)+1)
	done := make([]time.Duration, len(workers))
	for i, w := range workers {
		go func() {
			err := w.Run(wctx[i])
			done[i] = time.Since(start)
			ends <- ended{i, err}
		}()
	}
	go func() { ends <- ended{-1, agg.Run(ctx)} }()
	settled := newSettleWatch(agg.led.host, o.OnSettle)
	var first error
	var stragglers <-chan time.Time
	finished := false
	for left := len(workers) + 1; left > 0; {
		var e ended
		select {
		case e = <-ends:
			left--
		case <-stragglers:
			for _, c := range wcancel {
				c()
			}
			stragglers = nil
			continue
		}
		switch {
		case e.worker < 0 && e.err == nil:
			finished = true
			stragglers = time.After(localStragglers)
			agg.mu.Lock()
			for i, w := range workers {
				if !agg.told[w.ID()] {
					wcancel[i]()
				}
			}
			agg.mu.Unlock()
		case e.err != nil && finished && e.worker >= 0 && wctx[e.worker].Err() != nil && ctx.Err() == nil:
			// Stopped after the run: not an error.
		case e.worker >= 0 && errors.Is(e.err, ErrNotAdmitted):
			// Slashed below the minimum stake (or never admitted): the
			// worker left the run, which goes on without it.
		case e.err != nil && first == nil:
			first = e.err
			cancel()
		}
	}
	settled.stop()
	if first != nil {
		return LocalResult{}, first
	}
	res := LocalResult{Wall: time.Since(start), BytesSent: agg.Counter().Sent()}
	res.Weights, res.Rounds = agg.Weights()
	for i, w := range workers {
		st := w.Stats()
		res.PerWorker = append(res.PerWorker, st)
		res.BytesSent += w.Counter().Sent()
		res.WorkerSent += w.Counter().Sent()
		res.WorkerRecv += w.Counter().Received()
		res.Compute += st.Compute
		res.WorkerWall += done[i]
		res.Contributed += st.Rounds
		res.Tokens += st.Tokens
	}
	res.Validator = agg.ValidatorStats()
	aggOpen = false
	if err := agg.Close(); err != nil {
		return res, err
	}
	if lc != nil {
		res.Ledger, err = lc.readLedger(ctx, append(ids, o.Remote...))
		return res, err
	}
	res.Ledger, err = readLocalLedger(filepath.Join(aggDir, store.FileName), append(ids, o.Remote...))
	return res, err
}

// readLocalLedger reads a closed chain's file: totals, the workers'
// accounts and rewards, every closed round, the invariants, and a replay
// from genesis. It fails only if the file cannot be opened.
func readLocalLedger(path string, ids []string) (LocalLedger, error) {
	s, err := store.OpenReadOnly(path)
	if err != nil {
		return LocalLedger{Path: path}, err
	}
	ll, err := summariseLedger(s.Ledger(), ids)
	ll.Path = path
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return ll, err
	}
	ll.Report, ll.Verified = store.Verify(path)
	return ll, nil
}

// summariseLedger reads a run's ledger: totals, the workers' accounts
// and rewards, every closed round, and the invariants.
func summariseLedger(l *ledger.Ledger, ids []string) (LocalLedger, error) {
	var ll LocalLedger
	var err error
	g := l.Genesis()
	ll.ChainID, ll.EmissionPerRound = g.ChainID, g.EmissionPerRound
	ll.Invariants = l.CheckInvariants()
	if ll.Totals, err = l.Totals(); err != nil {
		return ll, err
	}
	byKey := map[ledger.PubKey]*LocalAccount{}
	for _, id := range ids {
		k, err := p2p.AccountOf(id)
		if err != nil {
			return ll, err
		}
		a, err := l.Account(k)
		if err != nil {
			return ll, err
		}
		ll.Accounts = append(ll.Accounts, LocalAccount{ID: id, Account: a})
	}
	for i := range ll.Accounts {
		byKey[ll.Accounts[i].Account.Key] = &ll.Accounts[i]
	}
	for r := uint64(0); r < ll.Totals.OpenRound; r++ {
		ri, err := l.Round(r)
		if err != nil {
			return ll, err
		}
		for _, v := range ri.Verdicts {
			if a := byKey[v.Worker]; a != nil && v.Reward > 0 {
				a.Reward += v.Reward
				a.Rounds++
			}
		}
		ll.Rounds = append(ll.Rounds, ri)
	}
	if rec, ok, err := l.Privacy(); err != nil {
		return ll, err
	} else if ok {
		ll.Privacy = &rec
	}
	return ll, nil
}

// settleWatch tells a LocalOptions.OnSettle about the rounds the chain
// settles, polling the host's committed state.
type settleWatch struct {
	host *LedgerHost
	f    func(ledger.RoundInfo)
	next uint64 // the next round to tell about
	quit chan struct{}
	done chan struct{}
}

// settlePoll is how often a settleWatch looks at the chain.
const settlePoll = 100 * time.Millisecond

// newSettleWatch starts watching host for f; nil f watches nothing.
func newSettleWatch(host *LedgerHost, f func(ledger.RoundInfo)) *settleWatch {
	s := &settleWatch{host: host, f: f, quit: make(chan struct{}), done: make(chan struct{})}
	if f == nil {
		close(s.done)
		return s
	}
	go func() {
		defer close(s.done)
		t := time.NewTicker(settlePoll)
		defer t.Stop()
		for {
			select {
			case <-s.quit:
				return
			case <-t.C:
				s.tell()
			}
		}
	}()
	return s
}

// tell reports the rounds settled since the last call.
func (s *settleWatch) tell() {
	tot, err := s.host.Totals()
	if err != nil {
		return
	}
	for ; s.next < tot.NextSettle; s.next++ {
		ri, err := s.host.Round(s.next)
		if err != nil {
			return
		}
		s.f(ri)
	}
}

// stop ends the watch after telling about every round settled so far.
func (s *settleWatch) stop() {
	if s.f == nil {
		return
	}
	close(s.quit)
	<-s.done
	s.tell()
}
