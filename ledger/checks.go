package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
)

// Member checks (Genesis.MemberChecks, with member rounds): verification
// by recomputation in a run without an authority.
//
//   - A member round closes on its members' result votes (members.go) but
//     is not settled then. Each member of round r recomputes the
//     contributions the round's beacon and screening choose and sends its
//     verdicts as a SettleTx for r: one per accepted contribution (passed,
//     failed or unchecked) and optionally for rejected ones, exactly as an
//     authority's settlement. One check vote per member; r must be the
//     oldest unsettled round (a vote for a later one is refused until
//     then).
//   - When more than half of r's members sent verdicts with the same
//     outcomes (CheckHash: the workers and outcomes; the reasons and
//     evidence may differ between honest checkers, whose distances print
//     differently), r is settled with the verdicts of the vote that made
//     the majority: paid, and failed contributions slashed.
//   - Round r must be settled when round r+SettlementLag closes; if its
//     members have not agreed by then, it is settled with every accepted
//     contribution unchecked (paid, nobody slashed). The run never waits
//     for checks, and a worker's stake cannot leave before its rounds are
//     settled (UnbondingRounds > SettlementLag).
//
// State: "q" round(8) member(32) -> VoteRecord (Result: the CheckHash of
// its verdicts); "Q" round(8) hash(32) -> check votes for those outcomes
// (u64).
const (
	prefixCheckVote  = 'q'
	prefixCheckTally = 'Q'
)

func checkVoteKey(r uint64, m PubKey) string {
	return string(append(binary.BigEndian.AppendUint64([]byte{prefixCheckVote}, r), m[:]...))
}

func checkTallyKey(r uint64, h Hash) string {
	return string(append(binary.BigEndian.AppendUint64([]byte{prefixCheckTally}, r), h[:]...))
}

// CheckHash is what the members' verdicts on a round agree on: the round
// and each verdict's worker and outcome, in order.
func CheckHash(b *SettleTx) Hash {
	e := encoder{}
	e.str("cairn/ledger/checks/v1")
	e.u64(b.Round)
	e.u32(uint32(len(b.Verdicts)))
	for _, v := range b.Verdicts {
		e.fixed(v.Worker[:])
		e.u8(uint8(v.Outcome))
	}
	return sha256.Sum256(e.b)
}

// checkHashOf is the CheckHash of a settled round's verdict records
// (sorted by worker, as stored).
func checkHashOf(r uint64, recs []VerdictRecord) Hash {
	b := SettleTx{Round: r, Verdicts: make([]Verdict, len(recs))}
	for i, v := range recs {
		b.Verdicts[i] = Verdict{Worker: v.Worker, Outcome: v.Outcome}
	}
	return CheckHash(&b)
}

// checkVote executes a member's SettleTx: its verdicts on a round it was
// a member of.
func (x *execution) checkVote(a *Account, b *SettleTx) error {
	if _, ok, err := x.st.commit(b.Round, a.Key); err != nil {
		return internalError{err}
	} else if !ok {
		return reject(CodeUnauthorized, "%s did not commit in round %d: only its members send verdicts on it", a.Key, b.Round)
	}
	voters := uint64(0) // the committee's size; zero: every member
	if x.g.CheckCommittee > 0 && b.Round < x.meta.OpenRound {
		c, err := x.committee(b.Round)
		if err != nil {
			return err
		}
		if _, on := slices.BinarySearchFunc(c, a.Key, func(k, m PubKey) int { return bytes.Compare(k[:], m[:]) }); !on {
			return reject(CodeUnauthorized, "%s is not on round %d's check committee: only its %d members send verdicts on it", a.Key, b.Round, len(c))
		}
		voters = uint64(len(c))
	}
	if _, dup := x.st.kv.get(checkVoteKey(b.Round, a.Key)); dup {
		return reject(CodeDuplicateCommit, "%s already sent its verdicts on round %d", a.Key, b.Round)
	}
	if b.Round+1 == x.meta.NextSettle && b.Round < x.meta.OpenRound {
		// A late vote on the round settled last: recorded, to name a
		// member whose verdicts disagree.
		v := VoteRecord{Round: b.Round, Member: a.Key, Result: CheckHash(b), Height: x.height}
		x.st.kv.put(checkVoteKey(b.Round, a.Key), v.encode())
		return nil
	}
	s, err := x.checkSettlement(b)
	if err != nil {
		return err
	}
	w, ok, err := x.st.window(b.Round)
	if err != nil || !ok {
		return internalError{fmt.Errorf("ledger: round %d has a commit but no window record (%v)", b.Round, err)}
	}
	h := CheckHash(b)
	v := VoteRecord{Round: b.Round, Member: a.Key, Result: h, Height: x.height}
	x.st.kv.put(checkVoteKey(b.Round, a.Key), v.encode())
	tally, err := x.count(checkTallyKey(b.Round, h))
	if err != nil {
		return err
	}
	if voters == 0 {
		voters = w.Commits
	}
	if 2*tally <= voters {
		return nil
	}
	return x.applySettlement(s)
}

// settleOverdue settles, unchecked, every closed round whose verdicts are
// due before round r closes (those at least SettlementLag before it).
func (x *execution) settleOverdue(r uint64) error {
	for x.meta.NextSettle+x.g.SettlementLag <= r {
		s := x.meta.NextSettle
		rr, ok, err := x.st.round(s)
		if err != nil || !ok {
			return internalError{fmt.Errorf("ledger: closed round %d has no result record (%v)", s, err)}
		}
		b := &SettleTx{Round: s, Verdicts: make([]Verdict, len(rr.Accepted))}
		for i, c := range rr.Accepted {
			b.Verdicts[i] = Verdict{Worker: c.Worker, Outcome: Unchecked,
				Reason: fmt.Sprintf("no majority of the members' verdicts before round %d closed", r)}
		}
		if err := x.settleRound(b); err != nil {
			return err
		}
	}
	return nil
}
