package ledger

import (
	"encoding/binary"
	"fmt"
)

// State keys. Each starts with one letter naming the record, followed by
// fixed-width fields, so keys are unambiguous and sort by their fields:
//
//	"m"                              Meta
//	"a" key(32)                      Account
//	"c" round(8) worker(32)          CommitRecord
//	"r" round(8)                     RoundRecord (written by the round result)
//	"v" round(8) worker(32)          VerdictRecord (written by the settlement)
//	"h" key(32) height(8) index(4)   HistoryEntry: a transaction that touched the account
//	"k"                              []Contributor (receipts.go)
//	"f" model(32)                    FingerprintRecord (fingerprint.go)
//	"o" round(8)                     WindowRecord (members.go)
//	"b" round(8) member(32)          VoteRecord (members.go)
//	"t" round(8) result(32)          votes for a result (members.go)
//	"q" round(8) member(32)          VoteRecord of a member's verdicts (checks.go)
//	"Q" round(8) hash(32)            check votes for those outcomes (checks.go)
//	"p"                              PrivacyRecord: the last privacy spent (privacy.go)
//
// Keys are never deleted.
const (
	prefixMeta    = 'm'
	prefixAccount = 'a'
	prefixCommit  = 'c'
	prefixRound   = 'r'
	prefixVerdict = 'v'
	prefixHistory = 'h'
)

func metaKey() string { return "m" }

func accountKey(k PubKey) string { return string(append([]byte{prefixAccount}, k[:]...)) }

func roundKey(r uint64) string {
	return string(binary.BigEndian.AppendUint64([]byte{prefixRound}, r))
}

func commitKey(r uint64, w PubKey) string {
	return string(append(binary.BigEndian.AppendUint64([]byte{prefixCommit}, r), w[:]...))
}

func verdictKey(r uint64, w PubKey) string {
	return string(append(binary.BigEndian.AppendUint64([]byte{prefixVerdict}, r), w[:]...))
}

func historyKey(k PubKey, height uint64, index uint32) string {
	b := append([]byte{prefixHistory}, k[:]...)
	b = binary.BigEndian.AppendUint64(b, height)
	return string(binary.BigEndian.AppendUint32(b, index))
}

// Meta holds the chain-wide counters.
type Meta struct {
	OpenRound  uint64 `json:"open_round"`  // the round commits go to; 0 at genesis
	NextSettle uint64 `json:"next_settle"` // every round below it is settled
	Supply     uint64 `json:"supply"`      // all balances, stakes and unbonding entries
	Minted     uint64 `json:"minted"`      // total emission paid
	Burned     uint64 `json:"burned"`      // total stake slashed
}

func (m *Meta) encode() []byte {
	e := encoder{}
	e.u64(m.OpenRound)
	e.u64(m.NextSettle)
	e.u64(m.Supply)
	e.u64(m.Minted)
	e.u64(m.Burned)
	return e.b
}

func decodeMeta(b []byte) (Meta, error) {
	d := decoder{b: b}
	m := Meta{OpenRound: d.u64(), NextSettle: d.u64(), Supply: d.u64(), Minted: d.u64(), Burned: d.u64()}
	if d.err == nil && m.NextSettle > m.OpenRound {
		d.fail("next round to settle %d after the open round %d", m.NextSettle, m.OpenRound)
	}
	return m, d.finish("meta record")
}

// Unbonding is stake on its way out: slashable until released to the
// balance at ReleaseRound.
type Unbonding struct {
	Amount       uint64 `json:"amount"`
	ReleaseRound uint64 `json:"release_round"`
}

// Account is an account's state.
type Account struct {
	Key         PubKey      `json:"key"`
	Balance     uint64      `json:"balance"`
	Stake       uint64      `json:"stake"`
	Nonce       uint64      `json:"nonce"` // the last nonce used; 0 before the first transaction
	HasEndState bool        `json:"has_end_state"`
	EndState    Hash        `json:"end_state"` // the end state of the last commit
	Unbonding   []Unbonding `json:"unbonding,omitempty"`
}

// Unbonded is the total of the account's unbonding entries.
func (a *Account) Unbonded() uint64 {
	var t uint64
	for _, u := range a.Unbonding {
		t += u.Amount // bounded by the supply, which fits in 64 bits
	}
	return t
}

func (a *Account) encode() []byte {
	e := encoder{}
	e.u64(a.Balance)
	e.u64(a.Stake)
	e.u64(a.Nonce)
	e.boolean(a.HasEndState)
	e.fixed(a.EndState[:])
	e.u32(uint32(len(a.Unbonding)))
	for _, u := range a.Unbonding {
		e.u64(u.Amount)
		e.u64(u.ReleaseRound)
	}
	return e.b
}

func decodeAccount(k PubKey, b []byte) (Account, error) {
	d := decoder{b: b}
	a := Account{Key: k, Balance: d.u64(), Stake: d.u64(), Nonce: d.u64(), HasEndState: d.boolean("has end state")}
	d.fixed(a.EndState[:])
	if d.err == nil && !a.HasEndState && !a.EndState.IsZero() {
		d.fail("end state without the flag")
	}
	n := d.count("unbonding", MaxUnbonding, 16)
	if n > 0 {
		a.Unbonding = make([]Unbonding, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		u := &a.Unbonding[i]
		u.Amount, u.ReleaseRound = d.u64(), d.u64()
		if d.err == nil && (u.Amount == 0 || i > 0 && u.ReleaseRound < a.Unbonding[i-1].ReleaseRound) {
			d.fail("unbonding entry %d: zero or out of order", i)
		}
	}
	return a, d.finish("account record")
}

// CommitRecord is a worker's commit in a round.
type CommitRecord struct {
	Round      uint64 `json:"round"`
	Worker     PubKey `json:"worker"`
	DeltaHash  Hash   `json:"delta_hash"`
	Tokens     uint64 `json:"tokens"`
	StartState Hash   `json:"start_state"`
	EndState   Hash   `json:"end_state"`
	Fresh      bool   `json:"fresh"`
	Kernel     string `json:"kernel"`
	Private    bool   `json:"private,omitempty"` // trained on the worker's own data (CommitTx.Private)
	Height     uint64 `json:"height"`            // the block that holds the commit
}

func (c *CommitRecord) encode() []byte {
	e := encoder{}
	e.fixed(c.DeltaHash[:])
	e.u64(c.Tokens)
	e.fixed(c.StartState[:])
	e.fixed(c.EndState[:])
	e.boolean(c.Fresh)
	e.str(c.Kernel)
	e.boolean(c.Private)
	e.u64(c.Height)
	return e.b
}

func decodeCommitRecord(round uint64, w PubKey, b []byte) (CommitRecord, error) {
	d := decoder{b: b}
	c := CommitRecord{Round: round, Worker: w}
	d.fixed(c.DeltaHash[:])
	c.Tokens = d.u64()
	d.fixed(c.StartState[:])
	d.fixed(c.EndState[:])
	c.Fresh = d.boolean("fresh")
	c.Kernel = d.str("kernel", MaxKernelBytes, identifier)
	c.Private = d.boolean("private")
	c.Height = d.u64()
	return c, d.finish("commit record")
}

// RoundRecord is a closed round's result.
type RoundRecord struct {
	Round     uint64         `json:"round"`
	ModelHash Hash           `json:"model_hash"` // θ(round+1)
	Height    uint64         `json:"height"`     // the block that holds the result
	Accepted  []Contribution `json:"accepted"`
	Rejected  []Rejection    `json:"rejected"`
}

func (r *RoundRecord) encode() []byte {
	e := encoder{}
	e.u64(r.Height)
	(&ResultTx{Round: r.Round, ModelHash: r.ModelHash, Accepted: r.Accepted, Rejected: r.Rejected}).encode(&e)
	return e.b
}

func decodeRoundRecord(round uint64, b []byte) (RoundRecord, error) {
	d := decoder{b: b}
	h := d.u64()
	res := decodeResult(&d)
	if d.err == nil && res.Round != round {
		d.fail("round %d under the key of round %d", res.Round, round)
	}
	return RoundRecord{Round: round, ModelHash: res.ModelHash, Height: h, Accepted: res.Accepted, Rejected: res.Rejected}, d.finish("round record")
}

// VerdictRecord is the settlement of one accepted contribution.
type VerdictRecord struct {
	Round        uint64  `json:"round"`
	Worker       PubKey  `json:"worker"`
	Outcome      Outcome `json:"outcome"`
	Reason       string  `json:"reason,omitempty"`
	EvidenceHash Hash    `json:"evidence_hash"` // SHA-256 of the evidence in the block; zero if none
	Reward       uint64  `json:"reward"`
	Slashed      uint64  `json:"slashed"`
	Height       uint64  `json:"height"` // the block that holds the settlement
}

// MarshalText writes the outcome's name.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// UnmarshalText reads an outcome's name; an unknown name is an error.
func (o *Outcome) UnmarshalText(b []byte) error {
	for i := Passed; i < outcomeEnd; i++ {
		if string(b) == outcomeNames[i] {
			*o = i
			return nil
		}
	}
	return fmt.Errorf("ledger: unknown outcome %q", b)
}

func (v *VerdictRecord) encode() []byte {
	e := encoder{}
	e.u8(uint8(v.Outcome))
	e.str(v.Reason)
	e.fixed(v.EvidenceHash[:])
	e.u64(v.Reward)
	e.u64(v.Slashed)
	e.u64(v.Height)
	return e.b
}

func decodeVerdictRecord(round uint64, w PubKey, b []byte) (VerdictRecord, error) {
	d := decoder{b: b}
	v := VerdictRecord{Round: round, Worker: w, Outcome: Outcome(d.u8())}
	v.Reason = d.str("reason", MaxReasonBytes, printable)
	d.fixed(v.EvidenceHash[:])
	v.Reward, v.Slashed, v.Height = d.u64(), d.u64(), d.u64()
	if d.err == nil && (v.Outcome == 0 || v.Outcome >= outcomeEnd) {
		d.fail("unknown outcome %d", uint8(v.Outcome))
	}
	return v, d.finish("verdict record")
}

// HistoryEntry is a transaction that touched an account.
type HistoryEntry struct {
	Account PubKey `json:"account"`
	Height  uint64 `json:"height"`
	Index   uint32 `json:"index"` // position in the block
	TxHash  Hash   `json:"tx_hash"`
	Kind    Kind   `json:"kind"`
}

// MarshalText writes the kind's name.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a kind's name; an unknown name is an error.
func (k *Kind) UnmarshalText(b []byte) error {
	for i := KindRegister; i < kindEnd; i++ {
		if string(b) == kindNames[i] {
			*k = i
			return nil
		}
	}
	return fmt.Errorf("ledger: unknown kind %q", b)
}

func (h *HistoryEntry) encode() []byte {
	e := encoder{}
	e.fixed(h.TxHash[:])
	e.u8(uint8(h.Kind))
	return e.b
}

func decodeHistoryEntry(k PubKey, height uint64, index uint32, b []byte) (HistoryEntry, error) {
	d := decoder{b: b}
	h := HistoryEntry{Account: k, Height: height, Index: index}
	d.fixed(h.TxHash[:])
	h.Kind = Kind(d.u8())
	if d.err == nil && (h.Kind == 0 || h.Kind >= kindEnd) {
		d.fail("unknown kind %d", uint8(h.Kind))
	}
	return h, d.finish("history entry")
}

// DecodeStateValue decodes one state pair (as the store holds it) into
// its record: Meta, Account, CommitRecord, RoundRecord, VerdictRecord,
// HistoryEntry, []Contributor, FingerprintRecord, WindowRecord, VoteRecord,
// PrivacyRecord, a beacon (Hash), an expectation (bool), a posted result
// (*ResultTx) or a tally (uint64). It fails on an unknown key layout or a malformed value;
// re-encoding an accepted value gives back exactly value.
func DecodeStateValue(key, value []byte) (any, error) {
	if len(key) == 0 {
		return nil, fmt.Errorf("ledger: empty state key")
	}
	var k PubKey
	rest := key[1:]
	switch {
	case key[0] == prefixMeta && len(rest) == 0:
		return decodeMeta(value)
	case key[0] == prefixAccount && len(rest) == 32:
		copy(k[:], rest)
		return decodeAccount(k, value)
	case key[0] == prefixCommit && len(rest) == 40:
		copy(k[:], rest[8:])
		return decodeCommitRecord(binary.BigEndian.Uint64(rest), k, value)
	case key[0] == prefixRound && len(rest) == 8:
		return decodeRoundRecord(binary.BigEndian.Uint64(rest), value)
	case key[0] == prefixVerdict && len(rest) == 40:
		copy(k[:], rest[8:])
		return decodeVerdictRecord(binary.BigEndian.Uint64(rest), k, value)
	case key[0] == prefixHistory && len(rest) == 44:
		copy(k[:], rest)
		return decodeHistoryEntry(k, binary.BigEndian.Uint64(rest[32:]), binary.BigEndian.Uint32(rest[40:]), value)
	case key[0] == prefixContrib && len(rest) == 0:
		return decodeContributors(value)
	case key[0] == prefixFingerprint && len(rest) == 32:
		var m Hash
		copy(m[:], rest)
		return decodeFingerprintRecord(m, value)
	case key[0] == prefixWindow && len(rest) == 8:
		return decodeWindowRecord(binary.BigEndian.Uint64(rest), value)
	case key[0] == prefixVote && len(rest) == 40:
		copy(k[:], rest[8:])
		return decodeVoteRecord(binary.BigEndian.Uint64(rest), k, value)
	case (key[0] == prefixTally || key[0] == prefixCheckTally) && len(rest) == 40:
		return decodeTally(value)
	case key[0] == prefixCheckVote && len(rest) == 40:
		copy(k[:], rest[8:])
		return decodeVoteRecord(binary.BigEndian.Uint64(rest), k, value)
	case key[0] == prefixPrivacy && len(rest) == 0:
		return decodePrivacyRecord(value)
	case key[0] == prefixRecord && len(rest) == 32:
		var h Hash
		copy(h[:], rest)
		return decodeRecordInfo(h, value)
	case key[0] == prefixSample && len(rest) == 32:
		var h Hash
		copy(h[:], rest)
		return decodeSampleInfo(h, value)
	case key[0] == prefixJoin && len(rest) == 40:
		return decodeJoinRecord(value)
	case key[0] == prefixJoins && len(rest) == 8:
		return decodeJoins(value)
	case key[0] == prefixBeacon && len(rest) == 8:
		return decodeBeacon(value)
	case key[0] == prefixExpect && len(rest) == 40:
		return decodeExpect(value)
	case key[0] == prefixPosted && len(rest) == 40:
		var h Hash
		copy(h[:], rest[8:])
		return decodePosted(binary.BigEndian.Uint64(rest), h, value)
	}
	return nil, fmt.Errorf("ledger: unknown state key %x", key)
}

// stateView gives typed access to a key/value layer. A record that does
// not decode means the state was corrupted outside the ledger: it is an
// internal error, never a transaction's fault.
type kvRW interface {
	kvReader
	put(k string, v []byte)
}

type stateView struct{ kv kvRW }

func (s stateView) meta() (Meta, error) {
	b, ok := s.kv.get(metaKey())
	if !ok {
		return Meta{}, fmt.Errorf("ledger: state has no meta record")
	}
	return decodeMeta(b)
}

func (s stateView) putMeta(m *Meta) { s.kv.put(metaKey(), m.encode()) }

// account returns k's account; an account never seen is all zeros.
func (s stateView) account(k PubKey) (Account, error) {
	b, ok := s.kv.get(accountKey(k))
	if !ok {
		return Account{Key: k}, nil
	}
	return decodeAccount(k, b)
}

func (s stateView) putAccount(a *Account) { s.kv.put(accountKey(a.Key), a.encode()) }

func (s stateView) commit(r uint64, w PubKey) (CommitRecord, bool, error) {
	b, ok := s.kv.get(commitKey(r, w))
	if !ok {
		return CommitRecord{}, false, nil
	}
	c, err := decodeCommitRecord(r, w, b)
	return c, true, err
}

func (s stateView) round(r uint64) (RoundRecord, bool, error) {
	b, ok := s.kv.get(roundKey(r))
	if !ok {
		return RoundRecord{}, false, nil
	}
	rr, err := decodeRoundRecord(r, b)
	return rr, true, err
}

// DescribeStateKey names a state key for people ("account 1f2e...",
// "commit of ... in round 3"); a key of no known layout is shown in hex.
func DescribeStateKey(k []byte) string {
	if len(k) == 0 {
		return "(empty key)"
	}
	rest := k[1:]
	switch {
	case k[0] == prefixMeta && len(rest) == 0:
		return "meta"
	case k[0] == prefixAccount && len(rest) == 32:
		return fmt.Sprintf("account %x", rest)
	case k[0] == prefixCommit && len(rest) == 40:
		return fmt.Sprintf("commit of %x in round %d", rest[8:], binary.BigEndian.Uint64(rest))
	case k[0] == prefixRound && len(rest) == 8:
		return fmt.Sprintf("result of round %d", binary.BigEndian.Uint64(rest))
	case k[0] == prefixVerdict && len(rest) == 40:
		return fmt.Sprintf("verdict on %x in round %d", rest[8:], binary.BigEndian.Uint64(rest))
	case k[0] == prefixHistory && len(rest) == 44:
		return fmt.Sprintf("history of %x at block %d tx %d", rest[:32], binary.BigEndian.Uint64(rest[32:]), binary.BigEndian.Uint32(rest[40:]))
	case k[0] == prefixContrib && len(rest) == 0:
		return describeContrib()
	case k[0] == prefixFingerprint && len(rest) == 32:
		return fmt.Sprintf("fingerprint commitment for model %x", rest)
	case k[0] == prefixWindow && len(rest) == 8:
		return fmt.Sprintf("commit window of round %d", binary.BigEndian.Uint64(rest))
	case k[0] == prefixVote && len(rest) == 40:
		return fmt.Sprintf("vote of %x on round %d", rest[8:], binary.BigEndian.Uint64(rest))
	case k[0] == prefixTally && len(rest) == 40:
		return fmt.Sprintf("votes for result %x of round %d", rest[8:], binary.BigEndian.Uint64(rest))
	case k[0] == prefixJoin && len(rest) == 40:
		return fmt.Sprintf("join of %x to round %d", rest[8:], binary.BigEndian.Uint64(rest))
	case k[0] == prefixJoins && len(rest) == 8:
		return fmt.Sprintf("joins to round %d before its window", binary.BigEndian.Uint64(rest))
	case k[0] == prefixPosted && len(rest) == 40:
		return fmt.Sprintf("result %x sent for round %d", rest[8:], binary.BigEndian.Uint64(rest))
	case k[0] == prefixExpect && len(rest) == 40:
		return fmt.Sprintf("round %d's window expecting %x", binary.BigEndian.Uint64(rest), rest[8:])
	case k[0] == prefixBeacon && len(rest) == 8:
		return fmt.Sprintf("beacon of round %d", binary.BigEndian.Uint64(rest))
	case k[0] == prefixPrivacy && len(rest) == 0:
		return "the privacy the run has spent"
	case k[0] == prefixRecord && len(rest) == 32:
		return fmt.Sprintf("accepted record %x", rest)
	case k[0] == prefixSample && len(rest) == 32:
		return fmt.Sprintf("judged sample %x", rest)
	}
	return fmt.Sprintf("key %x", k)
}
