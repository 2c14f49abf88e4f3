package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
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
	type ranked struct {
		key  PubKey
		draw Hash
	}
	rs := make([]ranked, len(members))
	for i, m := range members {
		h := sha256.New()
		h.Write([]byte("cairn/member/poster/v1\x00"))
		h.Write(binary.BigEndian.AppendUint64(nil, r))
		h.Write(m[:])
		rs[i].key = m
		copy(rs[i].draw[:], h.Sum(nil))
	}
	slices.SortFunc(rs, func(a, b ranked) int { return bytes.Compare(a.draw[:], b.draw[:]) })
	return slices.IndexFunc(rs, func(x ranked) bool { return x.key == self })
}
