package ledger

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// Votes by hash: in a member round every member votes on the result, and
// a result lists every commit of the round, so votes that each carried
// the whole result would put N results of N contributions on the chain
// each round. A member may instead vote with a VoteTx, the round and the
// result's hash (ResultHash); the round closes once more than half of its
// members voted for one result, by ResultTx or VoteTx, and that result
// itself has been sent in a ResultTx by one of them (members.go). A
// member that voted by hash may then send the result it voted for.
//
// State: "R" round(8) result(32) -> the result sent for that hash (its
// encoded body).
const prefixPosted = 'R'

// VoteTx is a member's vote for the result of round Round whose
// ResultHash is Result.
type VoteTx struct {
	Round  uint64
	Result Hash
}

// Kind is KindVote.
func (*VoteTx) Kind() Kind { return KindVote }

func (b *VoteTx) encode(e *encoder) {
	e.u64(b.Round)
	e.fixed(b.Result[:])
}

func postedKey(r uint64, h Hash) string {
	return string(append(binary.BigEndian.AppendUint64([]byte{prefixPosted}, r), h[:]...))
}

// decodePosted decodes a posted result stored under round r and hash h.
func decodePosted(r uint64, h Hash, b []byte) (*ResultTx, error) {
	d := decoder{b: b}
	res := decodeResult(&d)
	if err := d.finish("posted result"); err != nil {
		return nil, err
	}
	if res.Round != r || ResultHash(res) != h {
		return nil, fmt.Errorf("ledger: the result posted under round %d and hash %s is another", r, h)
	}
	return res, nil
}

// posted reports whether the result with hash h of round r has been sent.
func (x *execution) posted(r uint64, h Hash) bool {
	_, ok := x.st.kv.get(postedKey(r, h))
	return ok
}

// postedResult is the result with hash h of round r, if it was sent.
func (x *execution) postedResult(r uint64, h Hash) (*ResultTx, bool, error) {
	b, ok := x.st.kv.get(postedKey(r, h))
	if !ok {
		return nil, false, nil
	}
	res, err := decodePosted(r, h, b)
	if err != nil {
		return nil, false, internalError{err}
	}
	return res, true, nil
}

// ResultPosters is how many members of a round, first in its posting
// order, send its result in full with their votes; the others vote by
// hash and send the result only if it has not come by their turn. This is
// the members' convention (the ledger takes a result from any member).
const ResultPosters = 2

// PostingRank is self's place in round r's posting order: the members
// sorted by SHA-256("cairn/member/poster/v1" ‖ r ‖ key); -1 if self is
// not among them.
func PostingRank(r uint64, members []PubKey, self PubKey) int {
	return slices.Index(byDraw(postingDomain, nil, r, members), self)
}

const postingDomain = "cairn/member/poster/v1\x00"

// vote executes a ResultTx of a member round: the sender's vote for the
// result, and the result itself, which votes by hash (VoteTx) for the same
// result need to close the round. A member that voted by hash may send
// the result it voted for (it counts once); no other second vote is taken.
func (x *execution) vote(a *Account, b *ResultTx) error {
	open := x.meta.OpenRound
	if err := x.checkVoter(a, b.Round); err != nil {
		return err
	}
	res := ResultHash(b)
	prev, voted, err := x.voteOf(b.Round, a.Key)
	if err != nil {
		return err
	}
	if voted && (prev.Result != res || x.posted(b.Round, res) || b.Round+1 == open) {
		return reject(CodeDuplicateCommit, "%s already voted on round %d", a.Key, b.Round)
	}
	w, err := x.memberWindow(b.Round)
	if err != nil {
		return err
	}
	v := VoteRecord{Round: b.Round, Member: a.Key, Result: res, Height: x.height}
	if b.Round+1 == open {
		// A late vote on the round just closed: recorded, to name a
		// member that disagrees.
		x.st.kv.put(voteKey(b.Round, a.Key), v.encode())
		return nil
	}
	if !w.Closed(x.g, x.time) {
		return windowOpen(x, b.Round, w)
	}
	if err := x.checkResult(b); err != nil {
		return err
	}
	if n := uint64(len(b.Accepted) + len(b.Rejected)); n != w.Commits {
		return reject(CodeNoCommit, "the result covers %d contributions; round %d has %d commits", n, b.Round, w.Commits)
	}
	e := encoder{}
	b.encode(&e)
	x.st.kv.put(postedKey(b.Round, res), e.b)
	var tally uint64
	if voted {
		if tally, err = x.tally(tallyKey(b.Round, res)); err != nil {
			return err
		}
	} else {
		x.st.kv.put(voteKey(b.Round, a.Key), v.encode())
		if tally, err = x.count(tallyKey(b.Round, res)); err != nil {
			return err
		}
	}
	if 2*tally <= w.Commits {
		return nil
	}
	return x.closeMemberRound(b)
}

// voteHash executes a VoteTx: the sender's vote for a result by its hash.
// More than half of the round's members voting for one result closes the
// round once that result itself has been sent (by a ResultTx).
func (x *execution) voteHash(a *Account, b *VoteTx) error {
	if !x.g.MemberRounds() {
		return reject(CodeUnauthorized, "votes by hash are for runs with member rounds; this run's rounds are closed by an authority")
	}
	open := x.meta.OpenRound
	if err := x.checkVoter(a, b.Round); err != nil {
		return err
	}
	if _, voted, err := x.voteOf(b.Round, a.Key); err != nil {
		return err
	} else if voted {
		return reject(CodeDuplicateCommit, "%s already voted on round %d", a.Key, b.Round)
	}
	w, err := x.memberWindow(b.Round)
	if err != nil {
		return err
	}
	v := VoteRecord{Round: b.Round, Member: a.Key, Result: b.Result, Height: x.height}
	if b.Round+1 == open {
		x.st.kv.put(voteKey(b.Round, a.Key), v.encode())
		return nil
	}
	if !w.Closed(x.g, x.time) {
		return windowOpen(x, b.Round, w)
	}
	x.st.kv.put(voteKey(b.Round, a.Key), v.encode())
	tally, err := x.count(tallyKey(b.Round, b.Result))
	if err != nil {
		return err
	}
	if 2*tally <= w.Commits {
		return nil
	}
	res, ok, err := x.postedResult(b.Round, b.Result)
	if err != nil || !ok {
		return err // the result itself closes the round when it comes
	}
	return x.closeMemberRound(res)
}

// checkVoter checks that a may vote on round r: r is open or just closed,
// and a committed in it.
func (x *execution) checkVoter(a *Account, r uint64) error {
	open := x.meta.OpenRound
	if r != open && r+1 != open {
		return reject(CodeRoundNotOpen, "vote on round %d, but the open round is %d", r, open)
	}
	if _, ok, err := x.st.commit(r, a.Key); err != nil {
		return internalError{err}
	} else if !ok {
		return reject(CodeUnauthorized, "%s did not commit in round %d: only its members vote on its result", a.Key, r)
	}
	return nil
}

// voteOf is m's vote on round r, if any.
func (x *execution) voteOf(r uint64, m PubKey) (VoteRecord, bool, error) {
	b, ok := x.st.kv.get(voteKey(r, m))
	if !ok {
		return VoteRecord{}, false, nil
	}
	v, err := decodeVoteRecord(r, m, b)
	if err != nil {
		return v, false, internalError{err}
	}
	return v, true, nil
}

// memberWindow is round r's window, which a round with commits has.
func (x *execution) memberWindow(r uint64) (WindowRecord, error) {
	w, ok, err := x.st.window(r)
	if err != nil || !ok {
		return w, internalError{fmt.Errorf("ledger: round %d has a commit but no window record (%v)", r, err)}
	}
	return w, nil
}

func windowOpen(x *execution, r uint64, w WindowRecord) error {
	return reject(CodeRoundNotOpen, "round %d's commit window is open until %s or until %d more expected workers commit",
		r, time.Unix(0, w.Opened+x.g.CommitWindow).UTC().Format(time.RFC3339Nano), w.Expected-w.Returning)
}

// closeMemberRound closes the open member round with b, which more than
// half of its members voted for, and settles it at once, unchecked, or
// (with member checks) leaves it to its members' verdicts, settling the
// rounds whose verdicts are overdue first.
func (x *execution) closeMemberRound(b *ResultTx) error {
	if x.g.MemberChecks {
		if err := x.settleOverdue(b.Round); err != nil {
			return err
		}
		x.closeRound(b)
		return nil
	}
	x.closeRound(b)
	verdicts := make([]Verdict, len(b.Accepted))
	for i, c := range b.Accepted {
		verdicts[i] = Verdict{Worker: c.Worker, Outcome: Unchecked}
	}
	return x.settleRound(&SettleTx{Round: b.Round, Verdicts: verdicts})
}
