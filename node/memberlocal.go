package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cairnlabs/cairn/chain"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/train"
)

// MembersLocalOptions configure RunMembersLocal.
type MembersLocalOptions struct {
	Config  diloco.RunConfig
	Text    []byte
	Members int
	// Validators of the run's CometBFT network (default: one per member,
	// at most 4).
	Validators int
	// CommitWindow of the chain's member rounds (default 2 s).
	CommitWindow time.Duration
	DataDir      string // "" for a temporary one
	EvalBatches  int
	Ledger       *LedgerParams // nil: DefaultLedgerParams
	Log          *slog.Logger
	// OnRound is told of each round once every member has finished it.
	OnRound func(MembersRound)
	// OnChain, when set, is given the run's first validator once the
	// chain runs (to read its ledger for a live view, say).
	OnChain func(*chain.Node)
	// Checks, when set, turns on member checks (every member recomputes
	// the contributions its rounds' beacons and screening choose, and a
	// majority of their verdicts settles each round) with these options.
	Checks *ValidationOptions
	// Committee, with Checks, has only this many of each round's members
	// (the round's beacon picks them) check it (0: every member).
	Committee int
	// Behaviours make members cheat, by index (nil: honest).
	Behaviours []Behaviour
}

// MembersRound is a round of a run without an aggregator.
type MembersRound struct {
	Round int
	Hash  diloco.Hash
	// Agreed is how many members computed Hash and saw the chain close
	// the round with it.
	Agreed int
	// Contributions is how many contributions the round aggregated.
	Contributions int
	ValLoss       float64
	// Uploaded and Downloaded are the contribution bytes (swarm pieces)
	// all members sent and took in so far.
	Uploaded, Downloaded int64
	Took                 time.Duration
	// Workers are those whose contributions the round aggregated, and
	// Tokens what they trained on.
	Workers []string
	Tokens  int
}

// MembersResult summarises RunMembersLocal.
type MembersResult struct {
	Rounds  []MembersRound
	Weights []float32
	Hash    diloco.Hash
	Wall    time.Duration
	// PerMember is each member's swarm traffic.
	PerMember []SwarmStats
	ChainID   string
	// Chain is every round as the first validator's ledger holds it at
	// the end: result, commits, verdicts, the members' votes.
	Chain []ledger.RoundInfo
}

// SwarmStats is one member's contribution traffic and, with member
// checks, its validator's work: contributions recomputed and the time
// spent on them.
type SwarmStats struct {
	ID                   string
	Uploaded, Downloaded int64
	Recomputed           int
	CheckBusy            time.Duration
}

// RunMembersLocal runs a network without an aggregator on loopback: a
// CometBFT network with member rounds on the validators, and Members
// nodes (RunMember), each with its own libp2p host connected to every
// other. The members' identities derive from the run seed as RunLocal's
// workers' do, so the run trains on the same data as RunLocal with as
// many workers. It fails as soon as a member fails.
func RunMembersLocal(ctx context.Context, o MembersLocalOptions) (*MembersResult, error) {
	if o.Members < 1 {
		return nil, fmt.Errorf("need at least one member, got %d", o.Members)
	}
	if o.Validators <= 0 {
		o.Validators = min(o.Members, 4)
	}
	if o.CommitWindow <= 0 {
		o.CommitWindow = 2 * time.Second
	}
	dir := o.DataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "cairn-members-*")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	params := DefaultLedgerParams()
	if o.Ledger != nil {
		params = *o.Ledger
	}
	var keys []crypto.PrivKey
	var accts []ledger.GenesisAccount
	for i := range o.Members {
		key, _, err := crypto.GenerateEd25519Key(rand.NewChaCha8(seedBytes(o.Config.Seed, i)))
		if err != nil {
			return nil, err
		}
		lk, err := p2p.LedgerKey(key)
		if err != nil {
			return nil, err
		}
		keys = append(keys, key)
		accts = append(accts, ledger.GenesisAccount{Key: ledger.KeyOf(lk), Stake: LocalStake(params)})
	}
	// The authority only names the chain: in member rounds it closes
	// nothing.
	g, err := ChainGenesis(LedgerChainID(LedgerRunName(o.Config, p2p.PeerIDOf(accts[0].Key))), []ledger.PubKey{accts[0].Key}, accts, params)
	if err != nil {
		return nil, err
	}
	g.CommitWindow = int64(o.CommitWindow)
	g.MemberChecks = o.Checks != nil
	if g.MemberChecks && o.Committee > 0 {
		g.CheckCommittee = uint32(o.Committee)
	}
	if err := g.Validate(); err != nil {
		return nil, err
	}
	lc, err := startLocalChain(ctx, filepath.Join(dir, "chain"), o.Validators, g)
	if err != nil {
		return nil, err
	}
	defer lc.stop()
	if o.OnChain != nil {
		o.OnChain(lc.nodes[0])
	}

	var hosts []host.Host
	for _, k := range keys {
		h, err := p2p.NewHost(k, []string{"/ip4/127.0.0.1/tcp/0"})
		if err != nil {
			return nil, err
		}
		defer h.Close()
		hosts = append(hosts, h)
	}
	_, val := corpus.Split(o.Text, 0.9)
	trainText, _ := corpus.Split(o.Text, 0.9)
	eval, err := newEvaluator(o.Config, val, o.EvalBatches)
	if err != nil {
		return nil, err
	}
	defer eval.pool.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	res := &MembersResult{ChainID: g.ChainID, PerMember: make([]SwarmStats, o.Members)}
	var mu sync.Mutex
	type roundState struct {
		hashes  map[diloco.Hash]int
		done    int
		took    time.Duration
		workers []string
		tokens  int
	}
	rounds := map[int]*roundState{}
	stats := make([]func() SwarmStats, o.Members)
	errs := make([]error, o.Members)
	finals := make([]diloco.Hash, o.Members)
	threads := max(1, runtime.GOMAXPROCS(0)/o.Members)
	var wg sync.WaitGroup
	for i := range o.Members {
		var peers []peer.AddrInfo
		for j, h := range hosts {
			if j != i {
				peers = append(peers, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
			}
		}
		pool := kernels.NewPool(threads)
		defer pool.Close()
		mo := MemberOptions{Run: o.Config, Train: trainText, Key: keys[i], Host: hosts[i], Peers: peers,
			RPC: lc.nodes[i%len(lc.nodes)].RPC(), Pool: pool, Fetch: max(30*time.Second, 10*o.CommitWindow), Log: o.Log}
		if o.Checks != nil {
			mo.Checks = *o.Checks
		}
		if i < len(o.Behaviours) {
			mo.Behaviour = o.Behaviours[i]
		}
		mo.OnRound = func(r MemberRound) {
			mu.Lock()
			st := rounds[r.Round]
			if st == nil {
				st = &roundState{hashes: map[diloco.Hash]int{}}
				rounds[r.Round] = st
			}
			if r.Agreed {
				st.hashes[r.Hash]++
			}
			if len(r.Workers) > 0 {
				st.workers, st.tokens = r.Workers, r.Tokens
			}
			st.done++
			st.took = max(st.took, r.Took)
			last := st.done == o.Members
			mu.Unlock()
			if !last {
				return
			}
			mr := MembersRound{Round: r.Round, Took: st.took, Contributions: r.Accepted, Workers: st.workers, Tokens: st.tokens}
			for h, n := range st.hashes {
				if n > mr.Agreed {
					mr.Hash, mr.Agreed = h, n
				}
			}
			mu.Lock()
			for _, s := range stats {
				if s != nil {
					x := s()
					mr.Uploaded += x.Uploaded
					mr.Downloaded += x.Downloaded
				}
			}
			mu.Unlock()
			mr.ValLoss = eval.loss(r.Weights)
			mu.Lock()
			res.Rounds = append(res.Rounds, mr)
			res.Weights = append(res.Weights[:0], r.Weights...)
			mu.Unlock()
			if o.OnRound != nil {
				o.OnRound(mr)
			}
		}
		m := newMemberRun(mo)
		stats[i] = m.swarmStats
		wg.Add(1)
		go func() {
			defer wg.Done()
			finals[i], errs[i] = m.run(ctx)
			if errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	res.Wall = time.Since(start)
	// The first member to fail cancels the others: report its error, not
	// theirs.
	for i, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) && !strings.Contains(err.Error(), context.Canceled.Error()) {
			return res, fmt.Errorf("member %d: %w", i, err)
		}
	}
	for i, err := range errs {
		if err != nil {
			return res, fmt.Errorf("member %d: %w", i, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	for i := range o.Members {
		res.PerMember[i] = stats[i]()
		if finals[i] != finals[0] {
			return res, fmt.Errorf("member %d ends with weights %s, member 0 with %s", i, finals[i], finals[0])
		}
	}
	res.Hash = finals[0]
	// The members' last votes may be in a block the first validator has
	// not committed yet.
	if err := lc.catchUp(ctx); err != nil {
		return res, err
	}
	var lerr error
	lc.nodes[0].App().Ledger(func(l *ledger.Ledger) {
		if l == nil {
			lerr = errors.New("the local chain's application has no ledger")
			return
		}
		for r := range o.Config.Rounds {
			info, err := l.Round(uint64(r))
			if err != nil {
				lerr = err
				return
			}
			res.Chain = append(res.Chain, info)
		}
	})
	return res, lerr
}

// evaluator scores weights on the validation text.
type evaluator struct {
	mu      sync.Mutex
	m       *gpt.Model
	pool    *kernels.Pool
	val     []byte
	ids     []int32 // val as the run's token ids, once encoded
	batches int
	cfg     diloco.RunConfig
}

func newEvaluator(cfg diloco.RunConfig, val []byte, batches int) (*evaluator, error) {
	pool := kernels.NewPool(1)
	m, err := gpt.New(cfg.Model, pool)
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &evaluator{m: m, pool: pool, val: val, batches: batches, cfg: cfg}, nil
}

func (e *evaluator) loss(theta []float32) float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	copy(e.m.Params, theta)
	n := e.cfg.Batch * e.cfg.Model.BlockSize
	if e.ids == nil {
		e.ids = e.cfg.Encode(e.val)
	}
	l, err := train.EvaluateTokens(e.m, e.ids, e.cfg.Batch, e.batches, make([]int32, n), make([]int32, n))
	if err != nil {
		return math.NaN()
	}
	return l
}
