package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/metrics"
	"github.com/cairnlabs/cairn/p2p"
)

// Member checks (ledger.Genesis.MemberChecks): every member of a round is
// also its validator. Once the round has closed, each member draws the
// contributions to recompute exactly as an aggregator's validator does
// (the beacon: the hash of the block that closed the round; plus the most
// suspicious by screening, and those screening excluded), fetches their
// workers' start states over the reveal protocol, recomputes them, and
// sends its verdicts as a SettleTx; the ledger settles the round when more
// than half of its members agree on the outcomes. A member keeps the start
// state of each round it committed to, and reveals it to any staked
// member, until its run ends.
//
// With a check committee (ledger.Genesis.CheckCommittee) only the members
// the round's beacon picks recompute and send verdicts; the others go on.
//
// What differs between members, so may split their verdicts: a reveal
// one member could fetch and another could not (the worker is then failed
// by the one, passed by the other), and the "caught before" list, which a
// member keeps in memory from the rounds it checked itself.

// startChecks starts the member's validator and serves its reveals.
func (m *member) startChecks(ctx context.Context) error {
	tr := p2p.TransportOn(m.o.Host)
	remote := transportReveals(m.o.Run, tr, nil, m.o.Log)
	fetch := func(ctx context.Context, worker string, round int) ([]byte, error) {
		if worker == m.self { // its own contribution: checked like the others'
			if enc, ok := m.reveal(round); ok {
				return enc, nil
			}
			return nil, fmt.Errorf("no start state of round %d kept here", round)
		}
		return remote(ctx, worker, round)
	}
	val, err := newValidation(m.o.Run, m.o.Checks, m.o.Train, fetch,
		func(r uint64) (ledger.RoundInfo, error) { return m.lc.Round(ctx, r) }, m.o.Log, metrics.NewRegistry())
	if err != nil {
		return err
	}
	// Every checker of a round must draw the same contributions: "caught
	// before" comes from the chain's settled rounds, not from what this
	// member happened to check.
	val.caughtLag = m.g.SettlementLag
	m.mu.Lock()
	m.val = val
	m.mu.Unlock()
	m.reveals = map[int][]byte{}
	serveReveals(tr, m.reveal, func(peer string, round int) bool { return m.mayCheck(ctx, peer, round) }, nil, m.o.Log)
	return nil
}

// keepReveal keeps enc, the start state the member committed to in round
// r, for the checks of the rounds that may still be settled.
func (m *member) keepReveal(r int, enc []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reveals[r] = enc
	for k := range m.reveals {
		if k+int(m.g.SettlementLag)+1 < r {
			delete(m.reveals, k)
		}
	}
}

// reveal is the member's RevealSource.
func (m *member) reveal(round int) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	enc, ok := m.reveals[round]
	return enc, ok
}

// mayCheck says whether peer may see a worker's start state of round:
// only the run's members check, so only they see a worker's optimiser
// state. A member of the round (it committed there) checks it even if it
// has been slashed below the minimum stake since, as its committee may
// have drawn it; otherwise the peer's account must hold the minimum stake.
func (m *member) mayCheck(ctx context.Context, peer string, round int) bool {
	k, err := p2p.AccountOf(peer)
	if err != nil || round < 0 {
		return false
	}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if a, err := m.lc.Account(qctx, k); err == nil && a.Stake > 0 && a.Stake >= m.g.MinStake {
		return true
	}
	info, err := m.lc.Round(qctx, uint64(round))
	return err == nil && slices.ContainsFunc(info.Commits, func(c ledger.CommitRecord) bool { return c.Worker == k })
}

// check judges round r, which closed with rec, and sends the member's
// verdicts once r is the oldest round awaiting them. A round settled
// before (unchecked, when its members did not agree in time) needs none.
func (m *member) check(ctx context.Context, r int, rec ledger.RoundRecord) {
	defer m.checks.Done()
	log := m.o.Log.With("round", r)
	var beacon ledger.Hash
	for {
		b, err := m.rc.Block(ctx, int64(rec.Height))
		if err == nil {
			beacon = b.Hash
			break
		}
		if sleepCtx(ctx, m.o.Poll) != nil {
			return
		}
	}
	if m.g.CheckCommittee > 0 {
		// The ledger takes verdicts on r only from its committee, drawn
		// from the same beacon (the closing block's hash).
		committee := ledger.Committee(m.g, &rec, beacon)
		if !slices.Contains(committee, m.lc.Self()) {
			log.Info("member: not on the round's check committee", "committee", len(committee))
			return
		}
		log.Info("member: on the round's check committee", "committee", len(committee))
	}
	var verdicts []ledger.Verdict
	for {
		vs, ready, err := m.val.Settle(rec, beacon)
		if err != nil {
			log.Warn("member: round not checked", "err", err)
			return
		}
		if ready {
			verdicts = vs
			break
		}
		if sleepCtx(ctx, m.o.Poll) != nil {
			return
		}
	}
	for {
		tot, err := m.lc.Totals(ctx)
		if err == nil && tot.NextSettle > uint64(r) {
			log.Info("member: round settled before this member's verdicts")
			return
		}
		if err == nil && tot.NextSettle == uint64(r) {
			break
		}
		if sleepCtx(ctx, m.o.Poll) != nil {
			return
		}
	}
	failed := 0
	for _, v := range verdicts {
		if v.Outcome == ledger.Failed {
			failed++
		}
	}
	self := m.lc.Self()
	err := m.submit(ctx, r, &ledger.SettleTx{Round: uint64(r), Verdicts: verdicts}, func(info ledger.RoundInfo) bool {
		return slices.ContainsFunc(info.Checks, func(v ledger.VoteRecord) bool { return v.Member == self })
	})
	var te *ledger.TxError
	switch {
	case errors.As(err, &te):
		log.Warn("member: verdicts refused", "err", err)
	case err != nil:
		log.Warn("member: verdicts not sent", "err", err)
	default:
		log.Info("member: verdicts sent", "contributions", len(verdicts), "failed", failed)
	}
}

// awaitSettled waits until every round of the run is settled (the checks
// of its last rounds are in), serving reveals meanwhile, for at most wait.
func (m *member) awaitSettled(ctx context.Context, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		tot, err := m.lc.Totals(ctx)
		if err == nil && tot.NextSettle >= uint64(m.o.Run.Rounds) {
			return nil
		}
		if err := sleepCtx(ctx, m.o.Poll); err != nil {
			if err == nil {
				err = ctx.Err()
			}
			return fmt.Errorf("the run's last rounds are not settled after %s (%v)", wait, err)
		}
	}
}

// checkedPayloads are a round's contributions by worker, as the member
// aggregated them, for its validator.
func checkedPayloads(subs []diloco.Submitted) map[string][]byte {
	out := make(map[string][]byte, len(subs))
	for _, s := range subs {
		out[s.Worker] = s.Payload
	}
	return out
}
