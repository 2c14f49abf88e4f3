package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
)

// Check committees (Genesis.CheckCommittee, with member checks): when
// every member of a round recomputes the contributions drawn in it, the
// run's verification work grows as the square of its members. With a
// committee, only CheckCommittee of round r's members (all of them when it
// has no more) check r:
//
//   - The block that closes r (its result votes' majority) fixes r's
//     beacon: the block's hash on CometBFT (BlockInfo.Beacon), which
//     nobody knew while r took commits. The committee is the members with
//     the smallest SHA-256(CommitteeDomain ‖ beacon ‖ round ‖ key).
//   - Only they may send verdicts on r; a SettleTx from another member is
//     refused. More than half of the committee agreeing on the outcomes
//     settles r; otherwise r is settled unchecked when r+SettlementLag
//     closes, as without a committee.
//
// A committee of c trades protection for work: a cheat passes if more than
// half of its round's committee collude with it (or fail to check), where
// without a committee more than half of all members must. The block's
// proposer, choosing what the closing block holds, has some say in the
// beacon.
//
// State: "e" round(8) -> the beacon (32 bytes), written when the round
// closes in a run with a committee.
const prefixBeacon = 'e'

// MaxCheckCommittee bounds Genesis.CheckCommittee.
const MaxCheckCommittee = 1024

// CommitteeDomain separates the committee's draw from other uses of a
// beacon.
const CommitteeDomain = "cairn/ledger/committee/v1\x00"

func beaconKey(r uint64) string {
	return string(binary.BigEndian.AppendUint64([]byte{prefixBeacon}, r))
}

func decodeBeacon(b []byte) (Hash, error) {
	var h Hash
	if len(b) != len(h) {
		return h, fmt.Errorf("ledger: beacon of %d bytes, want %d", len(b), len(h))
	}
	copy(h[:], b)
	return h, nil
}

// beacon is round r's beacon, recorded when it closed.
func (s stateView) beacon(r uint64) (Hash, bool, error) {
	b, ok := s.kv.get(beaconKey(r))
	if !ok {
		return Hash{}, false, nil
	}
	h, err := decodeBeacon(b)
	return h, err == nil, err
}

// Committee returns the members of rec's round that check it under g,
// sorted by key: with g.CheckCommittee zero, or at least the round's
// member count, every member (every worker that committed: accepted or
// rejected); otherwise the CheckCommittee members with the smallest
// committee draw from beacon.
func Committee(g *Genesis, rec *RoundRecord, beacon Hash) []PubKey {
	members := make([]PubKey, 0, len(rec.Accepted)+len(rec.Rejected))
	for _, c := range rec.Accepted {
		members = append(members, c.Worker)
	}
	for _, r := range rec.Rejected {
		members = append(members, r.Worker)
	}
	slices.SortFunc(members, func(a, b PubKey) int { return bytes.Compare(a[:], b[:]) })
	members = slices.Compact(members)
	c := int(g.CheckCommittee)
	if c == 0 || c >= len(members) {
		return members
	}
	members = byDraw(CommitteeDomain, beacon[:], rec.Round, members)[:c]
	slices.SortFunc(members, func(a, b PubKey) int { return bytes.Compare(a[:], b[:]) })
	return members
}

// CommitteeDraw is member m's draw for round r's committee:
// SHA-256(CommitteeDomain ‖ beacon ‖ round as uint64 big-endian ‖ m).
func CommitteeDraw(beacon Hash, r uint64, m PubKey) Hash {
	return draw(CommitteeDomain, beacon[:], r, m)
}

// draw is SHA-256(domain ‖ seed ‖ r as uint64 big-endian ‖ m): a member's
// place in an order of round r that nobody picks (committees, posting).
func draw(domain string, seed []byte, r uint64, m PubKey) Hash {
	h := sha256.New()
	h.Write([]byte(domain))
	h.Write(seed)
	h.Write(binary.BigEndian.AppendUint64(nil, r))
	h.Write(m[:])
	var out Hash
	copy(out[:], h.Sum(nil))
	return out
}

// byDraw returns members sorted by their draws (ties by key).
func byDraw(domain string, seed []byte, r uint64, members []PubKey) []PubKey {
	type ranked struct {
		key  PubKey
		draw Hash
	}
	rs := make([]ranked, len(members))
	for i, m := range members {
		rs[i] = ranked{m, draw(domain, seed, r, m)}
	}
	slices.SortFunc(rs, func(a, b ranked) int {
		if c := bytes.Compare(a.draw[:], b.draw[:]); c != 0 {
			return c
		}
		return bytes.Compare(a.key[:], b.key[:])
	})
	out := make([]PubKey, len(rs))
	for i, x := range rs {
		out[i] = x.key
	}
	return out
}

// committee is round r's check committee as the ledger recorded it (every
// member without a committee).
func (x *execution) committee(r uint64) ([]PubKey, error) {
	rr, ok, err := x.st.round(r)
	if err != nil || !ok {
		return nil, internalError{fmt.Errorf("ledger: closed round %d has no result record (%v)", r, err)}
	}
	var beacon Hash
	if x.g.CheckCommittee > 0 {
		if beacon, ok, err = x.st.beacon(r); err != nil || !ok {
			return nil, internalError{fmt.Errorf("ledger: closed round %d has no beacon (%v)", r, err)}
		}
	}
	return Committee(x.g, &rr, beacon), nil
}
