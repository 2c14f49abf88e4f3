package node

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cairnlabs/cairn/chain"
	"github.com/cairnlabs/cairn/ledger"
)

// A member's transactions on the chain (join, commit, vote, result) and
// its waits on the chain's rounds.

// joinIfUnexpected sends a JoinTx for round r when its window would not
// wait for this member (it was not accepted in r-1: it caught up, or
// missed that window), so that the window does not close before its
// commit. A refusal only costs the member this round's contribution.
func (m *member) joinIfUnexpected(ctx context.Context, r int) {
	if r == 0 {
		for _, a := range m.g.Accounts {
			if a.Key == m.lc.Self() && a.Stake > 0 && a.Stake >= m.g.MinStake {
				return
			}
		}
	} else {
		prev, err := m.lc.Round(ctx, uint64(r-1))
		if err != nil || prev.Result == nil {
			return
		}
		if slices.ContainsFunc(prev.Result.Accepted, func(c ledger.Contribution) bool { return c.Worker == m.lc.Self() }) {
			return
		}
		if len(prev.Result.Accepted) == 0 && slices.ContainsFunc(prev.Result.Rejected, func(rj ledger.Rejection) bool { return rj.Worker == m.lc.Self() }) {
			return // after a void round its committers are expected
		}
	}
	m.join(ctx, r)
}

// join sends a JoinTx for round r; a refusal is logged (the member then
// contributes only if it commits before the window closes).
func (m *member) join(ctx context.Context, r int) {
	if r >= m.o.Run.Rounds || m.joined == r+1 {
		return
	}
	if err := m.lc.Send(ctx, &ledger.JoinTx{Round: uint64(r)}); err != nil {
		m.o.Log.Info("member: join refused", "round", r, "err", err)
		return
	}
	m.joined = r + 1
	m.o.Log.Info("member: joined the round's window", "round", r)
}

// submit sends body to the chain, retrying when the validator cannot be
// reached (a reset connection, a timeout) up to five times with growing
// pauses; in reads whether round r shows that an attempt whose answer was
// lost went through (then a refusal of the next attempt is no error).
func (m *member) submit(ctx context.Context, r int, body ledger.Body, in func(ledger.RoundInfo) bool) error {
	landed := func() bool {
		info, err := m.lc.Round(ctx, uint64(r))
		return err == nil && in(info)
	}
	for attempt := 0; ; attempt++ {
		err := m.lc.Send(ctx, body)
		if err == nil {
			return nil
		}
		var te *ledger.TxError
		if errors.As(err, &te) {
			if attempt > 0 && landed() {
				return nil
			}
			return err
		}
		if attempt == 5 || ctx.Err() != nil {
			return err
		}
		m.o.Log.Warn("member: the chain did not answer, retrying", "round", r, "kind", body.Kind(), "err", err)
		if err := sleepCtx(ctx, time.Duration(250<<attempt)*time.Millisecond); err != nil {
			return err
		}
		if landed() {
			return nil
		}
	}
}

// commit submits c, watching round r meanwhile: a commit that passed the
// validator's check while the window was open but was not in a block when
// the window closed will never be (the window closed before a proposal
// took it), so the wait ends with CodeRoundNotOpen instead of the
// inclusion timeout.
func (m *member) commit(ctx context.Context, r int, c *ledger.CommitTx) error {
	mine := func(info ledger.RoundInfo) bool {
		return slices.ContainsFunc(info.Commits, func(x ledger.CommitRecord) bool { return x.Worker == m.lc.Self() })
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.submit(sctx, r, c, mine) }()
	tick := time.NewTicker(m.o.Poll)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			info, err := m.lc.Round(ctx, uint64(r))
			if err != nil || info.Window == nil || mine(info) || !info.Window.Closed(m.g, m.headTime(ctx)) {
				continue
			}
			cancel()
			<-done
			if info, err := m.lc.Round(ctx, uint64(r)); err == nil && mine(info) {
				return nil
			}
			return &ledger.TxError{Code: ledger.CodeRoundNotOpen, Reason: fmt.Sprintf("round %d's commit window closed before the commit was in a block", r)}
		}
	}
}

// headTime is the time of the chain's latest block (zero if unknown).
func (m *member) headTime(ctx context.Context) int64 {
	h, err := m.rc.Head(ctx)
	if err != nil {
		return 0
	}
	return h.Time.UnixNano()
}

// awaitWindow waits until round r's commit window has closed on the
// chain and returns the round with its final commits.
func (m *member) awaitWindow(ctx context.Context, r int) (ledger.RoundInfo, error) {
	for {
		info, err := m.lc.Round(ctx, uint64(r))
		if err != nil {
			return info, err
		}
		if info.Window != nil {
			head, err := m.rc.Head(ctx)
			if err != nil {
				return info, err
			}
			if info.Window.Closed(m.g, head.Time.UnixNano()) {
				// No block at or after this time takes a commit: read
				// the round once more for commits of the last blocks.
				return m.lc.Round(ctx, uint64(r))
			}
		}
		if err := sleepCtx(ctx, m.o.Poll); err != nil {
			return info, err
		}
	}
}

// awaitClose waits until round r has a result on the chain.
// postTurn is how long a member that voted by hash waits, per place in the
// posting order, for the round's result before it sends the result itself.
func (m *member) postTurn() time.Duration { return max(time.Second, 2*m.o.Poll) }

// awaitClose waits until round r has closed. A member that voted by hash
// (post, its result; rank, its place in the posting order) sends the
// result in full if the round is still open after its turn and nobody has
// sent that result.
func (m *member) awaitClose(ctx context.Context, r int, post *ledger.ResultTx, rank int) (ledger.RoundInfo, error) {
	turn := time.Now().Add(time.Duration(rank) * m.postTurn())
	for {
		info, err := m.lc.Round(ctx, uint64(r))
		if err != nil {
			return info, err
		}
		if info.Result != nil {
			return info, nil
		}
		if post != nil && time.Now().After(turn) {
			if h := ledger.ResultHash(post); !slices.Contains(info.Posted, h) {
				m.o.Log.Info("member: sending the round's result, which its posters have not", "round", r, "rank", rank)
				if err := m.lc.Send(ctx, post); err != nil {
					m.o.Log.Warn("member: result not sent", "round", r, "err", err)
				}
			}
			post = nil
		}
		if err := sleepCtx(ctx, m.o.Poll); err != nil {
			return info, err
		}
	}
}

// AwaitVotes waits until every worker that committed in round r has voted
// on its result, polling the chain through c every poll, or until ctx
// ends (its error).
func AwaitVotes(ctx context.Context, c *chain.Client, r uint64, poll time.Duration) error {
	for {
		b, err := c.Query(ctx, "round", binary.BigEndian.AppendUint64(nil, r))
		if err == nil {
			var info ledger.RoundInfo
			if err = json.Unmarshal(b, &info); err == nil && len(info.Commits) > 0 && len(info.Votes) >= len(info.Commits) {
				return nil
			}
		}
		if err := sleepCtx(ctx, poll); err != nil {
			return err
		}
	}
}
