package ledger

import (
	"encoding/binary"
	"fmt"
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
