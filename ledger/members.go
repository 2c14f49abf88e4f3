package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// Member rounds: a run without an authority over its rounds
// (Genesis.CommitWindow > 0), for runs where every node aggregates.
//
//   - Round r's commit window opens with its first commit and lasts
//     CommitWindow of block time, or until every worker whose contribution
//     r-1 accepted and that still holds the minimum stake when the window
//     opens (for round 0: every account staked at genesis; after a void
//     round, which accepted none, every worker that committed to it) has
//     committed in r; a commit after it is refused (a worker slashed or
//     unbonded below the minimum while the window is open stops counting
//     among those it waits for). A round nobody has committed to waits.
//   - Once the window has passed, each worker that committed in r (a
//     member of r) votes for a result: the weights hash it computed and
//     every commit of r, accepted or rejected, sent in full (ResultTx) or
//     by its hash (VoteTx, votes.go). One vote per member.
//   - When more than half of r's members have voted for the same result,
//     byte for byte, and that result has been sent in full, r closes with
//     it and is settled at once (with member checks, checks.go: by its
//     members' verdicts later): every
//     accepted contribution is paid (verdict unchecked) pro rata to its
//     tokens. A member of the round just closed may still vote; its vote
//     is recorded, so a node whose result disagrees is named (RoundInfo's
//     votes).
//   - SettleTx is refused; authorities sign only blocks.
//   - A staked worker that r does not expect (one that caught up with the
//     run, or missed r-1's window) sends JoinTx for r before committing,
//     while r is open or once r-1's window has closed without it: r's
//     window then waits for its commit too (closing early only once it has
//     committed, else at its end). A worker that joined r-1 and did not
//     commit there may not join r (it would hold every window open).
//
// State: "o" round(8) -> the window's opening (block time i64) and the
// round's commit count; "b" round(8) member(32) -> VoteRecord;
// "t" round(8) result(32) -> votes for that result (u64); "j" round(8)
// worker(32) -> 1 (the worker joined the round); "J" round(8) -> joins
// before the round's window opened (u64); "x" round(8) worker(32) -> 1
// (the window counted the worker among those it expects when it opened) or
// 0 (counted, or joined, and since dropped: its stake fell below the
// minimum, so it can no longer commit and the window stops waiting for it).
const (
	prefixWindow = 'o'
	prefixVote   = 'b'
	prefixTally  = 't'
	prefixJoin   = 'j'
	prefixJoins  = 'J'
	prefixExpect = 'x'
)

func expectKey(r uint64, w PubKey) string {
	return string(append(binary.BigEndian.AppendUint64([]byte{prefixExpect}, r), w[:]...))
}

func decodeExpect(b []byte) (any, error) {
	if len(b) != 1 || b[0] > 1 {
		return nil, fmt.Errorf("ledger: expectation record %x, want 00 or 01", b)
	}
	return b[0] == 1, nil
}

// dropped reports whether round r's window stopped counting worker w
// among those it waits for (unexpect): it does not count its commit
// either, if it regained the stake to make one.
func (x *execution) dropped(r uint64, w PubKey) bool {
	v, ok := x.st.kv.get(expectKey(r, w))
	return ok && len(v) == 1 && v[0] == 0
}

// unexpect stops the open member round's window from waiting for worker a
// once a can no longer commit (its stake fell below the minimum: slashed
// or unbonded): a window that opened expecting a, or that a joined,
// counts one worker fewer, and closes as soon as the others have
// committed rather than at its end.
func (x *execution) unexpect(a *Account) error {
	if !x.g.MemberRounds() || a.Stake > 0 && a.Stake >= x.g.MinStake {
		return nil
	}
	r := x.meta.OpenRound
	w, ok, err := x.st.window(r)
	if err != nil {
		return internalError{err}
	}
	if !ok || w.Closed(x.g, x.time) {
		return nil // a window that opens later does not count it
	}
	if _, did, err := x.st.commit(r, a.Key); err != nil {
		return internalError{err}
	} else if did {
		return nil
	}
	v, has := x.st.kv.get(expectKey(r, a.Key))
	if counted := has && len(v) == 1 && v[0] == 1 || !has && x.st.joined(r, a.Key); !counted {
		return nil
	}
	x.st.kv.put(expectKey(r, a.Key), []byte{0})
	if w.Expected > 0 {
		w.Expected--
	}
	x.st.kv.put(windowKey(r), w.encode())
	return nil
}

func joinKey(r uint64, w PubKey) string {
	return string(append(binary.BigEndian.AppendUint64([]byte{prefixJoin}, r), w[:]...))
}

func joinsKey(r uint64) string {
	return string(binary.BigEndian.AppendUint64([]byte{prefixJoins}, r))
}

// JoinTx asks the open member round's commit window to wait for the
// sender's commit (see the rules above).
type JoinTx struct {
	Round uint64
}

// Kind is KindJoin.
func (*JoinTx) Kind() Kind { return KindJoin }

func (b *JoinTx) encode(e *encoder) { e.u64(b.Round) }

func decodeJoinRecord(b []byte) (any, error) {
	if len(b) != 1 || b[0] != 1 {
		return nil, fmt.Errorf("ledger: join record %x, want 01", b)
	}
	return true, nil
}

func decodeJoins(b []byte) (any, error) {
	if len(b) != 8 || binary.BigEndian.Uint64(b) == 0 {
		return nil, fmt.Errorf("ledger: join count %x, want a positive u64", b)
	}
	return binary.BigEndian.Uint64(b), nil
}

// joined reports whether w joined round r.
func (s stateView) joined(r uint64, w PubKey) bool {
	_, ok := s.kv.get(joinKey(r, w))
	return ok
}

// joins is the number of joins to round r before its window opened.
func (s stateView) joins(r uint64) uint64 {
	b, ok := s.kv.get(joinsKey(r))
	if !ok || len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// expects reports whether round r's window counts w among the workers it
// waits for without a join: for round 0 the accounts staked at genesis,
// then the workers whose contributions r-1 accepted (all that committed to
// r-1 if it accepted none) that still hold the minimum stake.
func (x *execution) expects(r uint64, w PubKey) (bool, error) {
	if r == 0 {
		i, ok := x.g.account(w)
		return ok && i.Stake > 0 && i.Stake >= x.g.MinStake, nil
	}
	prev, ok, err := x.st.round(r - 1)
	if err != nil || !ok {
		return false, err
	}
	_, was := slices.BinarySearchFunc(prev.Accepted, w, func(c Contribution, k PubKey) int { return bytes.Compare(c.Worker[:], k[:]) })
	if len(prev.Accepted) == 0 {
		// After a void round, its committers: nobody was accepted, and
		// they would otherwise race each other's joins.
		was = slices.ContainsFunc(prev.Rejected, func(rj Rejection) bool { return rj.Worker == w })
	}
	if !was {
		return false, nil
	}
	// A worker slashed (or unbonded) below the minimum since cannot
	// commit: the window does not wait for it.
	a, err := x.st.account(w)
	if err != nil {
		return false, err
	}
	return a.Stake > 0 && a.Stake >= x.g.MinStake, nil
}

// join executes a JoinTx.
func (x *execution) join(a *Account, b *JoinTx) error {
	if !x.g.MemberRounds() {
		return reject(CodeUnauthorized, "join is for runs with member rounds; this run's rounds are closed by an authority")
	}
	open := x.meta.OpenRound
	if b.Round != open && b.Round != open+1 {
		return reject(CodeRoundNotOpen, "join for round %d, but the open round is %d (a join is for it or the next)", b.Round, open)
	}
	if b.Round == open+1 {
		// Joining the next round is for a worker that missed the open
		// round's window: once it has closed, the worker can no longer be
		// among the round's contributions (and so among those the next
		// round expects). One that committed to it is expected next if
		// the round accepts it.
		if w, ok, err := x.st.window(open); err != nil {
			return internalError{err}
		} else if !ok || !w.Closed(x.g, x.time) {
			return reject(CodeRoundNotOpen, "join for round %d while round %d's commit window is open: commit to round %d", b.Round, open, open)
		}
		if _, did, err := x.st.commit(open, a.Key); err != nil {
			return internalError{err}
		} else if did {
			return reject(CodeInvalid, "%s committed to round %d: round %d expects it if that contribution is accepted", a.Key, open, b.Round)
		}
	}
	if a.Stake == 0 || a.Stake < x.g.MinStake {
		return reject(CodeNotStaked, "stake %d is below the minimum %d", a.Stake, max(x.g.MinStake, 1))
	}
	r := b.Round
	if _, dup, err := x.st.commit(r, a.Key); err != nil {
		return internalError{err}
	} else if dup {
		return reject(CodeDuplicateCommit, "%s already committed in round %d", a.Key, r)
	}
	if x.st.joined(r, a.Key) {
		return reject(CodeDuplicateCommit, "%s already joined round %d", a.Key, r)
	}
	if exp, err := x.expects(r, a.Key); err != nil {
		return internalError{err}
	} else if exp {
		return reject(CodeInvalid, "round %d already waits for %s", r, a.Key)
	}
	if r > 0 && x.st.joined(r-1, a.Key) {
		if _, did, err := x.st.commit(r-1, a.Key); err != nil {
			return internalError{err}
		} else if !did {
			return reject(CodeUnauthorized, "%s joined round %d and did not commit there", a.Key, r-1)
		}
	}
	w, ok, err := x.st.window(r)
	if err != nil {
		return internalError{err}
	}
	if ok {
		if w.Closed(x.g, x.time) {
			return reject(CodeRoundNotOpen, "round %d's commit window has closed", r)
		}
		w.Expected++
		x.st.kv.put(windowKey(r), w.encode())
	} else {
		x.st.kv.put(joinsKey(r), binary.BigEndian.AppendUint64(nil, x.st.joins(r)+1))
	}
	x.st.kv.put(joinKey(r, a.Key), []byte{1})
	return nil
}

func windowKey(r uint64) string {
	return string(binary.BigEndian.AppendUint64([]byte{prefixWindow}, r))
}

func voteKey(r uint64, m PubKey) string {
	return string(append(binary.BigEndian.AppendUint64([]byte{prefixVote}, r), m[:]...))
}

func tallyKey(r uint64, res Hash) string {
	return string(append(binary.BigEndian.AppendUint64([]byte{prefixTally}, r), res[:]...))
}

// WindowRecord is a member round's commit window.
type WindowRecord struct {
	Round   uint64 `json:"round"`
	Opened  int64  `json:"opened"`  // block time of the first commit, Unix ns
	Commits uint64 `json:"commits"` // members of the round
	// Expected is how many contributions the round before accepted (for
	// round 0: the accounts staked at genesis); Returning how many of
	// their workers have committed in this one.
	// The window closes early once every one of them has.
	Expected  uint64 `json:"expected"`
	Returning uint64 `json:"returning"`
}

// Closed reports whether the window takes no more commits at block time
// now: CommitWindow has passed since it opened, or every worker whose
// contribution the round before accepted has committed.
func (w *WindowRecord) Closed(g *Genesis, now int64) bool {
	return now >= w.Opened+g.CommitWindow || w.Expected > 0 && w.Returning >= w.Expected
}

func (w *WindowRecord) encode() []byte {
	e := encoder{}
	e.i64(w.Opened)
	e.u64(w.Commits)
	e.u64(w.Expected)
	e.u64(w.Returning)
	return e.b
}

func decodeWindowRecord(r uint64, b []byte) (WindowRecord, error) {
	d := decoder{b: b}
	w := WindowRecord{Round: r, Opened: d.i64(), Commits: d.u64(), Expected: d.u64(), Returning: d.u64()}
	if d.err == nil && (w.Commits == 0 || w.Returning > w.Expected || w.Returning > w.Commits) {
		d.fail("commit window with no commit, or more returning members than expected or committed")
	}
	return w, d.finish("window record")
}

// VoteRecord is a member's vote on its round's result.
type VoteRecord struct {
	Round  uint64 `json:"round"`
	Member PubKey `json:"member"`
	Result Hash   `json:"result"` // ResultHash of the result it voted for
	Height uint64 `json:"height"`
	// Agrees, in queries of a closed round: the vote is for the result
	// the round closed with.
	Agrees bool `json:"agrees"`
}

func (v *VoteRecord) encode() []byte {
	e := encoder{}
	e.fixed(v.Result[:])
	e.u64(v.Height)
	return e.b
}

func decodeVoteRecord(r uint64, m PubKey, b []byte) (VoteRecord, error) {
	d := decoder{b: b}
	v := VoteRecord{Round: r, Member: m}
	d.fixed(v.Result[:])
	v.Height = d.u64()
	return v, d.finish("vote record")
}

func decodeTally(b []byte) (uint64, error) {
	d := decoder{b: b}
	n := d.u64()
	if d.err == nil && n == 0 {
		d.fail("zero tally")
	}
	return n, d.finish("tally")
}

// ResultHash is the SHA-256 of a result's body: what member votes agree on.
func ResultHash(b *ResultTx) Hash {
	e := encoder{}
	b.encode(&e)
	return sha256.Sum256(e.b)
}

func (s stateView) window(r uint64) (WindowRecord, bool, error) {
	b, ok := s.kv.get(windowKey(r))
	if !ok {
		return WindowRecord{}, false, nil
	}
	w, err := decodeWindowRecord(r, b)
	return w, true, err
}

// memberCommit takes worker's commit to round r into its window, opening
// it.
func (x *execution) memberCommit(r uint64, worker PubKey) error {
	w, ok, err := x.st.window(r)
	if err != nil {
		return internalError{err}
	}
	if !ok {
		w = WindowRecord{Round: r, Opened: x.time}
		if r == 0 {
			// Round 0 expects the workers staked at genesis.
			for _, a := range x.g.Accounts {
				if a.Stake > 0 && a.Stake >= x.g.MinStake {
					w.Expected++
				}
			}
		} else {
			prev, ok, err := x.st.round(r - 1)
			if err != nil {
				return internalError{err}
			}
			workers := make([]PubKey, 0, len(prev.Accepted)+len(prev.Rejected))
			for _, c := range prev.Accepted {
				workers = append(workers, c.Worker)
			}
			if len(prev.Accepted) == 0 {
				for _, rj := range prev.Rejected {
					workers = append(workers, rj.Worker)
				}
			}
			for _, k := range workers {
				if !ok {
					break
				}
				if exp, err := x.expects(r, k); err != nil {
					return internalError{err}
				} else if exp {
					w.Expected++
					x.st.kv.put(expectKey(r, k), []byte{1})
				}
			}
		}
		// And those that joined before the window opened.
		w.Expected += x.st.joins(r)
	} else if w.Closed(x.g, x.time) {
		if x.time < w.Opened+x.g.CommitWindow {
			return reject(CodeRoundNotOpen, "round %d's commit window closed early: all %d workers it expected have committed", r, w.Expected)
		}
		return reject(CodeRoundNotOpen, "round %d's commit window closed at %s", r, time.Unix(0, w.Opened+x.g.CommitWindow).UTC().Format(time.RFC3339Nano))
	}
	w.Commits++
	if exp, err := x.expects(r, worker); err != nil {
		return internalError{err}
	} else if (exp || x.st.joined(r, worker)) && !x.dropped(r, worker) && w.Returning < w.Expected {
		w.Returning++
	}
	x.st.kv.put(windowKey(r), w.encode())
	return nil
}

// tally is the count under key (0 when none).
func (x *execution) tally(key string) (uint64, error) {
	tb, ok := x.st.kv.get(key)
	if !ok {
		return 0, nil
	}
	t, err := decodeTally(tb)
	if err != nil {
		return 0, internalError{err}
	}
	return t, nil
}

// count adds one to the tally under key and returns it.
func (x *execution) count(key string) (uint64, error) {
	tally, err := x.tally(key)
	if err != nil {
		return 0, err
	}
	tally++
	x.st.kv.put(key, binary.BigEndian.AppendUint64(nil, tally))
	return tally, nil
}

// account returns the genesis account of k (Accounts are sorted by key).
func (g *Genesis) account(k PubKey) (GenesisAccount, bool) {
	i, ok := slices.BinarySearchFunc(g.Accounts, k, func(a GenesisAccount, k PubKey) int { return bytes.Compare(a.Key[:], k[:]) })
	if !ok {
		return GenesisAccount{}, false
	}
	return g.Accounts[i], true
}
