package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cairnlabs/cairn/chain"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/swarm"
	"github.com/cairnlabs/cairn/swarmnet"
)

// MemberOptions configure a node of a run without an aggregator: the
// chain (CometBFT, with member rounds in its genesis) schedules rounds and
// records commitments; contributions travel through the swarm; every
// member aggregates each round itself (diloco.Replica) and votes on the
// result.
type MemberOptions struct {
	Run   diloco.RunConfig
	Train []byte // the run's training text (its first 90%)
	Key   crypto.PrivKey
	Host  host.Host // the node's libp2p host, on which the swarm runs
	Peers []peer.AddrInfo
	RPC   string // a validator's RPC address (host:port)
	Pool  *kernels.Pool
	// Orphan: a contribution whose publisher was once a peer and has
	// gone, of which no peer holds a piece, is given up
	// after this long once every other contribution is in, rather than
	// at the fetch timeout (default 10 s).
	Orphan time.Duration
	// Fetch bounds how long the node waits for a round's contributions
	// once its commit window has passed (default 1 minute); a payload not
	// fetched by then is rejected as unavailable.
	Fetch time.Duration
	// Poll is how often the chain is read while waiting (default 200 ms).
	Poll  time.Duration
	Swarm swarmnet.Options
	// Find, if set, finds the run's other nodes (p2p.Discovery: a DHT,
	// through relays for nodes behind NAT); the node joins the swarm with
	// each one found that holds stake on the ledger.
	Find Finder
	// AwaitPeers, if positive, holds the first round until the node has
	// joined every other member staked at genesis in the swarm, or for at
	// most this long: a run starts with its members in touch.
	AwaitPeers time.Duration
	// Checks configure the node's validator in a run with member checks
	// (ledger.Genesis.MemberChecks; zero value: the defaults); ignored
	// otherwise.
	Checks ValidationOptions
	// Behaviour, if set, makes the member cheat (experiments and tests):
	// see Behaviour.
	Behaviour Behaviour
	Log       *slog.Logger
	OnRound   func(MemberRound)
}

func acceptedWorkers(res *diloco.RoundResult) []string {
	ws := make([]string, len(res.Accepted))
	for i, c := range res.Accepted {
		ws[i] = c.Worker
	}
	return ws
}

// lastRoundGrace is how long a member keeps serving after the last round
// once its voters have voted, for members that followed it.
const lastRoundGrace = 3 * time.Second

// Finder finds the other nodes of a run: Run reports each one found to
// found until ctx ends, looking often while fewer than want are known;
// Forget lets it report p again.
type Finder interface {
	Run(ctx context.Context, want int, found func(peer.AddrInfo))
	Forget(p peer.ID)
}

// MemberRound is one round as a member node saw it.
type MemberRound struct {
	Round    int
	Hash     diloco.Hash // θ(Round+1), as this node computed it
	Commits  int         // contributions committed to the round
	Accepted int
	Agreed   bool // the round closed with this node's result
	// Contributed: the node's commit made the round's window (else it
	// followed the round without contributing).
	Contributed bool
	Loss        float32
	Took        time.Duration
	// Weights are θ(Round+1), the node's own: valid during the call only.
	Weights []float32
	// Transfers are the pieces of contributions received so far, by
	// connection kind (direct or relayed).
	Transfers swarmnet.Transfers
	// Workers are the workers whose contributions the round aggregated
	// and Tokens what they trained on (known to a member that computed
	// the round itself; empty for one that followed it).
	Workers []string
	Tokens  int
}

// RunMember takes part in a run without an aggregator until its last
// round closes (and every member of that round has voted, or the fetch
// timeout has passed, serving its contributions meanwhile), and returns
// the final weights' hash. It fails when the
// chain refuses its transactions, when the chain's open round runs ahead
// of the node's (it fell behind), when a round closes with a result other
// than the node's own (its weights would differ from the majority's), or
// when ctx ends.
func RunMember(ctx context.Context, o MemberOptions) (diloco.Hash, error) {
	if o.Run.DP != nil {
		// Every member computes the aggregate: noise they all could
		// compute would be known to every member, which protects nothing.
		return diloco.Hash{}, errors.New("differential privacy needs an aggregator to draw the noise in secret: a run without one cannot have it")
	}
	if o.Run.Private != nil {
		// Nobody can recompute a private contribution, and without an
		// aggregator there is no validator to screen it alone, nor one to
		// relay a secure-aggregation cohort.
		return diloco.Hash{}, errors.New("private contributions need an aggregator to screen them (and to relay secure aggregation): a run without one cannot take them")
	}
	return newMemberRun(o).run(ctx)
}

func newMemberRun(o MemberOptions) *member {
	if o.Orphan <= 0 {
		o.Orphan = 10 * time.Second
	}
	if o.Fetch <= 0 {
		o.Fetch = time.Minute
	}
	if o.Poll <= 0 {
		o.Poll = 200 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &member{o: o}
}

// swarmStats is the member's contribution traffic so far.
func (m *member) swarmStats() SwarmStats {
	m.mu.Lock()
	sw, val := m.sw, m.val
	m.mu.Unlock()
	st := SwarmStats{ID: m.o.Host.ID().String()}
	if sw != nil {
		x := sw.Stats()
		st.Uploaded, st.Downloaded = x.Uploaded, x.Downloaded
	}
	if val != nil {
		x := val.Stats()
		st.Recomputed, st.CheckBusy = x.Checked, x.Busy
	}
	return st
}

func (m *member) run(ctx context.Context) (diloco.Hash, error) {
	o := m.o
	lk, err := p2p.LedgerKey(o.Key)
	if err != nil {
		return diloco.Hash{}, err
	}
	if m.rc, err = chain.Dial(o.RPC); err != nil {
		return diloco.Hash{}, err
	}
	if m.g, err = m.rc.Genesis(ctx); err != nil {
		return diloco.Hash{}, err
	}
	if !m.g.MemberRounds() {
		return diloco.Hash{}, errors.New("member run: the chain's genesis has no commit window: its rounds are closed by an authority (an aggregator run)")
	}
	if m.lc, err = NewChainLedgerClient(ctx, o.RPC, lk, m.g.ChainID); err != nil {
		return diloco.Hash{}, err
	}
	if o.Swarm.Log == nil {
		o.Swarm.Log = o.Log
	}
	sw := swarmnet.New(o.Host, o.Swarm)
	defer sw.Close()
	m.mu.Lock()
	m.sw = sw
	m.mu.Unlock()
	for _, p := range o.Peers {
		if err := sw.Connect(ctx, p); err != nil {
			o.Log.Warn("member: peer not reached", "peer", p.ID, "err", err)
		}
	}
	if o.Find != nil {
		fctx, stop := context.WithCancel(ctx)
		defer stop()
		go o.Find.Run(fctx, m.stakers()-1, func(info peer.AddrInfo) { go m.admit(fctx, info) })
	}
	if m.rep, err = diloco.NewReplica(o.Run, nil); err != nil {
		return diloco.Hash{}, err
	}
	m.self = o.Host.ID().String()
	if m.w, err = diloco.NewWorker(m.self, o.Run, o.Train, o.Pool); err != nil {
		return diloco.Hash{}, err
	}
	if err := m.w.SetWeights(0, m.rep.Weights(), m.rep.Hash()); err != nil {
		return diloco.Hash{}, err
	}
	m.zero = m.w.StateHash()
	o.Host.SetStreamHandler(ProtoMemberState, m.serveState)
	defer o.Host.RemoveStreamHandler(ProtoMemberState)
	o.Host.SetStreamHandler(ProtoMemberConfig, m.serveConfig)
	defer o.Host.RemoveStreamHandler(ProtoMemberConfig)
	if o.AwaitPeers > 0 {
		m.awaitPeers(ctx, o.AwaitPeers)
	}
	// Before the first round: are the others running the same run?
	for _, p := range sw.Peers() {
		m.checkConfig(ctx, p)
	}
	if err := m.configMismatch(); err != nil {
		return diloco.Hash{}, err
	}
	cctx, stopChecks := context.WithCancel(ctx)
	defer stopChecks()
	if m.g.MemberChecks {
		if err := m.startChecks(cctx); err != nil {
			return diloco.Hash{}, err
		}
		defer m.val.close()
		defer o.Host.RemoveStreamHandler(ProtoReveal)
	}
	m.checkCtx = cctx
	for !m.rep.Done() {
		if err := m.round(ctx); err != nil {
			return m.rep.Hash(), err
		}
	}
	// A slower member may still be fetching the last round's
	// contributions: keep serving them until every member of the round
	// has voted, for at most the fetch timeout.
	lctx, cancel := context.WithTimeout(ctx, o.Fetch)
	defer cancel()
	if err := AwaitVotes(lctx, m.rc, uint64(o.Run.Rounds-1), o.Poll); err != nil && ctx.Err() == nil {
		o.Log.Info("member: not every member of the last round voted", "waited", o.Fetch)
	}
	// A member that followed the last round without contributing is not
	// among its voters: give it a moment to take the final state.
	sleepCtx(lctx, min(lastRoundGrace, o.Fetch))
	if m.val != nil {
		// The last rounds settle only on their members' verdicts: keep
		// revealing and checking until they are in.
		if err := m.awaitSettled(ctx, o.Fetch); err != nil && ctx.Err() == nil {
			o.Log.Warn("member: " + err.Error())
		}
		stopChecks()
		m.checks.Wait()
	}
	return m.rep.Hash(), nil
}

type member struct {
	mu    sync.Mutex // guards sw for swarmStats
	o     MemberOptions
	g     *ledger.Genesis
	rc    *chain.Client
	lc    *LedgerClient
	sw    *swarmnet.Service
	seen  map[peer.ID]bool // peers the member has been in touch with (orphanWatch)
	rep   *diloco.Replica
	w     *diloco.Worker
	self  string
	zero  diloco.Hash // the local state before any training
	blobs []swarm.ID  // the last round's, dropped after the next
	// state is the blob of the replica's state at stateRound, published
	// for members that join late (0: none yet). Guarded by mu.
	state      swarm.ID
	stateRound int
	// configs says, per peer asked, whether it runs this node's run
	// configuration. Guarded by mu.
	configs map[peer.ID]bool
	joined  int // 1 + the last round joined (JoinTx), 0 for none

	// With member checks (membercheck.go): the node's validator, the
	// start states it committed to (guarded by mu), and the checks in
	// flight.
	val      *validation
	reveals  map[int][]byte
	checks   sync.WaitGroup
	checkCtx context.Context
}

// follow ends round r for a member that did not contribute to it and
// could not compute its result itself (why): once the round has closed it
// takes the state the others publish (catchUp), as a late joiner does.
func (m *member) follow(ctx context.Context, r int, began time.Time, loss float32, commits int, why error) error {
	m.o.Log.Info("member: following the round from the others' state", "round", r, "why", why)
	closed, err := m.awaitClose(ctx, r, nil, 0)
	if err != nil {
		return err
	}
	if err := m.catchUp(ctx, r+1); err != nil {
		return err
	}
	if m.o.OnRound != nil {
		m.o.OnRound(MemberRound{Round: r, Hash: m.rep.Hash(), Commits: commits, Accepted: len(closed.Result.Accepted), Agreed: true, Loss: loss,
			Took: time.Since(began), Weights: m.rep.Weights(), Transfers: m.sw.Transfers()})
	}
	return nil
}

// stakers counts the run's genesis accounts that hold stake: the nodes
// discovery looks for at first.
func (m *member) stakers() int {
	n := 0
	for _, a := range m.g.Accounts {
		if a.Stake > 0 {
			n++
		}
	}
	return n
}

// awaitPeers waits until the swarm holds every other genesis member, for
// at most d.
func (m *member) awaitPeers(ctx context.Context, d time.Duration) {
	want := m.stakers() - 1
	began := time.Now()
	t := time.NewTicker(m.o.Poll)
	defer t.Stop()
	for {
		n := len(m.sw.Peers())
		if n >= want {
			m.o.Log.Info("member: in touch with every member", "peers", n, "took", time.Since(began).Round(time.Millisecond))
			return
		}
		if time.Since(began) >= d {
			m.o.Log.Warn("member: starting without every member", "peers", n, "want", want, "waited", d)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// admit joins a node found by discovery to the swarm if its identity
// holds stake on the ledger: anyone can announce itself under a run's
// name, only members are worth a connection.
func (m *member) admit(ctx context.Context, info peer.AddrInfo) {
	log := m.o.Log.With("peer", info.ID)
	k, err := p2p.AccountOf(info.ID.String())
	if err != nil {
		log.Info("member: found a node that cannot be a member", "err", err)
		return
	}
	acct, err := m.rc.Account(ctx, k)
	if err != nil {
		log.Debug("member: account of a found node", "err", err)
		m.o.Find.Forget(info.ID)
		return
	}
	if acct.Stake == 0 {
		log.Info("member: found a node without stake; not joined")
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := m.sw.Connect(cctx, info); err != nil {
		log.Info("member: found node not reached (will look again)", "addrs", info.Addrs, "err", err)
		m.o.Find.Forget(info.ID)
		return
	}
	log.Info("member: joined a found node", "addrs", info.Addrs)
	// A node found after the start is asked for its run configuration
	// too: one with other flags is named now, not at its first vote.
	m.checkConfig(ctx, info.ID)
}

// round trains, commits, waits for the window, aggregates, votes and
// checks the outcome of one round.
func (m *member) round(ctx context.Context) error {
	began := time.Now()
	m.notePeers()
	// More than a round behind the chain (a late start, a restart, a
	// long stall): the contributions of the rounds missed are gone from
	// the swarm, so take the state the others hold.
	tot, err := m.lc.Totals(ctx)
	if err != nil {
		return err
	}
	if open := int(min(tot.OpenRound, uint64(m.o.Run.Rounds))); open > m.rep.Round()+1 {
		if err := m.catchUp(ctx, open); err != nil {
			return err
		}
		if m.rep.Done() {
			return nil
		}
	}
	if err := m.configMismatch(); err != nil {
		return err // more of the peers found since the start run other flags
	}
	r := m.rep.Round()
	info, err := m.lc.Round(ctx, uint64(r))
	if err != nil {
		return err
	}
	if m.val != nil {
		m.val.weights(r, m.rep.Weights())
	}
	// A member whose round is no longer open (it was slow, or restarted)
	// follows it without contributing, as one whose commit came too late.
	var loss float32
	committed := false
	if info.Status == "open" && (info.Window == nil || !info.Window.Closed(m.g, m.headTime(ctx))) {
		m.joinIfUnexpected(ctx, r)
		if committed, loss, err = m.contribute(ctx, r); err != nil {
			return err
		}
	}
	if info, err = m.awaitWindow(ctx, r); err != nil {
		return err
	}
	res, vote, subs, err := m.aggregate(ctx, r, info.Commits)
	if err != nil {
		if !committed {
			// A follower missing the round's contributions (gone from
			// the swarm by the time it looked) takes the result instead.
			return m.follow(ctx, r, began, loss, len(info.Commits), err)
		}
		return err
	}
	if committed && m.val != nil {
		m.val.closed(res, checkedPayloads(subs))
	}
	rank := -1     // this member's turn to send the result in full
	if committed { // only the round's members vote
		var ballot ledger.Body = vote
		members := make([]ledger.PubKey, len(info.Commits))
		for i, c := range info.Commits {
			members[i] = c.Worker
		}
		// A round's result lists every commit: the members vote by hash,
		// and only the first in the round's posting order send the
		// result itself (the others if it has not come by their turn).
		if rank = ledger.PostingRank(uint64(r), members, m.lc.Self()); rank >= ledger.ResultPosters {
			ballot = &ledger.VoteTx{Round: uint64(r), Result: ledger.ResultHash(vote)}
		}
		if err := m.submit(ctx, r, ballot, func(info ledger.RoundInfo) bool {
			return slices.ContainsFunc(info.Votes, func(v ledger.VoteRecord) bool { return v.Member == m.lc.Self() })
		}); err != nil {
			var te *ledger.TxError
			// A refusal (a vote on a round two behind, say) leaves the
			// outcome to the others; any other error is the node's.
			if !errors.As(err, &te) {
				return fmt.Errorf("member: round %d: vote: %w", r, err)
			}
			m.o.Log.Warn("member: vote refused", "round", r, "err", err)
		}
	}
	if err := m.w.ApplyUpdate(m.rep.LastUpdate(), m.rep.Hash()); err != nil {
		return err
	}
	var post *ledger.ResultTx // the result, to send if those before this member did not
	if rank >= ledger.ResultPosters {
		post = vote
	}
	closed, err := m.awaitClose(ctx, r, post, rank)
	if err != nil {
		return err
	}
	agreed := closed.Result.ModelHash == ledger.Hash(res.Hash)
	if !agreed && !committed {
		// A follower computes from what it could fetch; the members
		// who voted had it all.
		return m.follow(ctx, r, began, loss, len(info.Commits),
			fmt.Errorf("it computed %s, the round closed with %s", res.Hash, closed.Result.ModelHash))
	}
	if agreed {
		if err := m.publishState(); err != nil {
			m.o.Log.Warn("member: state not published", "round", r+1, "err", err)
		}
		if committed && m.val != nil {
			m.checks.Add(1)
			go m.check(m.checkCtx, r, *closed.Result)
		}
	}
	for _, b := range m.blobs {
		m.sw.Drop(b)
	}
	m.blobs = m.blobs[:0]
	for _, c := range info.Commits {
		m.blobs = append(m.blobs, swarm.ID(c.DeltaHash))
	}
	if m.o.OnRound != nil {
		m.o.OnRound(MemberRound{Round: r, Hash: res.Hash, Commits: len(info.Commits), Accepted: len(res.Accepted), Agreed: agreed, Contributed: committed, Loss: loss,
			Took: time.Since(began), Weights: m.rep.Weights(), Transfers: m.sw.Transfers(), Workers: acceptedWorkers(res), Tokens: res.Tokens})
	}
	if !agreed {
		return fmt.Errorf("member: round %d closed with weights %s, but this node computed %s", r, closed.Result.ModelHash, res.Hash)
	}
	return nil
}

// contribute trains round r, publishes the contribution and commits to
// it. A commit the chain refuses because the round's window has closed
// is not an error: the worker's state goes back to the round's start (its
// last commit's end) and committed is false.
func (m *member) contribute(ctx context.Context, r int) (committed bool, loss float32, err error) {
	backup := m.w.State()
	start := m.w.StateHash()
	steps := m.o.Run.InnerSteps
	if m.o.Behaviour != nil {
		steps = max(1, min(steps, m.o.Behaviour.Steps(r, steps)))
	}
	payload, tokens, err := m.w.Train(ctx, steps, func(_ int, l float32) { loss = l })
	if err != nil {
		return false, 0, err
	}
	if m.o.Behaviour != nil {
		payload, tokens = m.o.Behaviour.Forge(r, payload, tokens)
	}
	id, err := m.sw.Publish(payload)
	if err != nil {
		return false, 0, err
	}
	c := ledger.CommitTx{Round: uint64(r), DeltaHash: ledger.Hash(id), Tokens: uint64(tokens),
		StartState: ledger.Hash(start), EndState: ledger.Hash(m.w.StateHash()), Fresh: start == m.zero, Kernel: kernelName()}
	err = m.commit(ctx, r, &c)
	var te *ledger.TxError
	if errors.As(err, &te) && te.Code == ledger.CodeRoundNotOpen {
		m.o.Log.Warn("member: missed the round", "round", r, "reason", te.Reason)
		m.sw.Drop(id)
		// The next round would not wait for this member: ask it to now,
		// while the others are still finishing this one.
		m.join(ctx, r+1)
		return false, loss, m.w.SetState(backup)
	}
	if errors.As(err, &te) && te.Code == ledger.CodeNotStaked {
		// Slashed below the minimum (or unbonded): the node follows the
		// run without contributing.
		m.o.Log.Warn("member: not staked enough to contribute", "round", r, "reason", te.Reason)
		m.sw.Drop(id)
		return false, loss, m.w.SetState(backup)
	}
	if err != nil {
		return false, 0, fmt.Errorf("member: round %d: commit: %w", r, err)
	}
	m.o.Log.Info("member: committed", "round", r, "blob", id)
	if m.val != nil {
		enc, err := backup.MarshalBinary()
		if err != nil {
			return false, 0, err
		}
		m.keepReveal(r, enc)
	}
	return true, loss, nil
}

// aggregate fetches round r's committed contributions, closes the round
// on the replica and returns its result and this node's vote.
func (m *member) aggregate(ctx context.Context, r int, commits []ledger.CommitRecord) (*diloco.RoundResult, *ledger.ResultTx, []diloco.Submitted, error) {
	fctx, cancel := context.WithTimeout(ctx, m.o.Fetch)
	defer cancel()
	type fetched struct {
		i   int
		p   []byte
		err error
	}
	ch := make(chan fetched, len(commits))
	cancels := make([]context.CancelFunc, len(commits))
	for i, c := range commits {
		cctx, ccancel := context.WithCancel(fctx)
		cancels[i] = ccancel
		go func() {
			p, err := m.sw.Fetch(cctx, swarm.ID(c.DeltaHash))
			ch <- fetched{i, p, err}
		}()
	}
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	pending := make([]bool, len(commits))
	for i := range pending {
		pending[i] = true
	}
	m.notePeers()
	watch := newOrphanWatch(m.seen, m.o.Orphan)
	tick := time.NewTicker(min(time.Second, max(10*time.Millisecond, m.o.Orphan/4)))
	defer tick.Stop()
	payloads := make([][]byte, len(commits))
	why := map[ledger.PubKey]string{}
	for left := len(commits); left > 0; {
		var f fetched
		select {
		case f = <-ch:
		case <-tick.C:
			now := m.sw.Peers()
			for _, i := range watch.lost(time.Now(), pending, func(i int) (peer.ID, int, int) {
				held, holders := m.sw.Holding(swarm.ID(commits[i].DeltaHash))
				pub, _ := peer.Decode(p2p.PeerIDOf(commits[i].Worker))
				return pub, held, holders
			}, now) {
				m.o.Log.Warn("member: contribution lost: its publisher has gone and no peer holds any of it", "round", r, "worker", p2p.PeerIDOf(commits[i].Worker))
				cancels[i]()
			}
			continue
		}
		left--
		pending[f.i] = false
		if f.err != nil {
			why[commits[f.i].Worker] = "its payload could not be fetched"
			m.o.Log.Warn("member: contribution unavailable", "round", r, "worker", p2p.PeerIDOf(commits[f.i].Worker), "err", f.err)
			continue
		}
		payloads[f.i] = f.p
	}
	if ctx.Err() != nil {
		return nil, nil, nil, ctx.Err()
	}
	var subs []diloco.Submitted
	byID := map[string]ledger.CommitRecord{}
	for i, c := range commits {
		id := p2p.PeerIDOf(c.Worker)
		byID[id] = c
		if payloads[i] != nil {
			subs = append(subs, diloco.Submitted{Worker: id, Tokens: int(c.Tokens), Payload: payloads[i]})
		}
	}
	res, refused, err := m.rep.Close(r, subs)
	void := ""
	if err != nil {
		// Every contribution refused or excluded, or a result that is
		// not finite: a function of the contributions alone, so every
		// member finds the round void alike and votes for the weights
		// unchanged, rejecting every contribution.
		if verr := m.rep.Void(r); verr != nil {
			return nil, nil, nil, fmt.Errorf("member: %v; voiding the round: %v", err, verr)
		}
		m.o.Log.Warn("member: round void: the weights stay as they are", "round", r, "why", err)
		void = err.Error()
		res = &diloco.RoundResult{Round: r, Hash: m.rep.Hash()}
	}
	for _, x := range refused {
		why[byID[x.Worker].Worker] = "refused: " + x.Reason
	}
	for _, x := range res.Excluded {
		why[byID[x.Worker].Worker] = "screening: " + x.Reason
	}
	if void != "" {
		for _, s := range subs {
			if k := byID[s.Worker].Worker; why[k] == "" {
				why[k] = "void round: " + void
			}
		}
	}
	vote := &ledger.ResultTx{Round: uint64(r), ModelHash: ledger.Hash(res.Hash), Accepted: []ledger.Contribution{}, Rejected: []ledger.Rejection{}}
	for _, a := range res.Accepted {
		c := byID[a.Worker]
		vote.Accepted = append(vote.Accepted, ledger.Contribution{Worker: c.Worker, DeltaHash: c.DeltaHash, Tokens: c.Tokens})
	}
	for k, reason := range why {
		vote.Rejected = append(vote.Rejected, ledger.Rejection{Worker: k, Reason: ledgerReason(reason)})
	}
	slices.SortFunc(vote.Accepted, func(a, b ledger.Contribution) int { return bytes.Compare(a.Worker[:], b.Worker[:]) })
	slices.SortFunc(vote.Rejected, func(a, b ledger.Rejection) int { return bytes.Compare(a.Worker[:], b.Worker[:]) })
	return res, vote, subs, nil
}
