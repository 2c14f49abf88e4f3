package ledger

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Queries read the committed state. Lists come from a scan of the whole
// state (fine for the thousands of accounts and rounds a run holds; a
// query is not on the block path).

// scan returns the committed pairs whose key starts with prefix, in key
// order.
func (b *kvBase) scan(prefix string) []KV {
	var out []KV
	for _, m := range b.buckets {
		for k, v := range m {
			if strings.HasPrefix(k, prefix) {
				out = append(out, KV{Key: []byte(k), Value: v})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return string(out[i].Key) < string(out[j].Key) })
	return out
}

func (l *Ledger) view() stateView { return stateView{newOverlay(l.base)} }

// Account returns k's committed account (all zeros if never seen). It
// fails only on corrupt state.
func (l *Ledger) Account(k PubKey) (Account, error) { return l.view().account(k) }

// Accounts returns every account in key order.
func (l *Ledger) Accounts() ([]Account, error) {
	var out []Account
	for _, p := range l.base.scan(string([]byte{prefixAccount})) {
		var k PubKey
		copy(k[:], p.Key[1:])
		a, err := decodeAccount(k, p.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// Totals are the chain-wide counters with the genesis supply and the tip.
type Totals struct {
	Meta
	GenesisSupply uint64 `json:"genesis_supply"`
	Tip           Tip    `json:"tip"`
}

// Totals returns the supply, minted, burned, open round, next round to
// settle, and the tip. Supply = GenesisSupply + Minted - Burned always
// holds (CheckInvariants also recounts it from the accounts).
func (l *Ledger) Totals() (Totals, error) {
	m, err := l.view().meta()
	return Totals{Meta: m, GenesisSupply: l.gSupply, Tip: l.tip}, err
}

// RoundInfo is everything the state holds about one round.
type RoundInfo struct {
	Round    uint64          `json:"round"`
	Status   string          `json:"status"` // "future", "open", "closed" (awaiting settlement) or "settled"
	Result   *RoundRecord    `json:"result,omitempty"`
	Commits  []CommitRecord  `json:"commits"`
	Verdicts []VerdictRecord `json:"verdicts"`
	// Window and Votes, in a run with member rounds: the round's commit
	// window and its members' votes (Agrees once it closed).
	Window *WindowRecord `json:"window,omitempty"`
	Votes  []VoteRecord  `json:"votes,omitempty"`
	// Checks, in a run with member checks: the members' verdict votes
	// (Result: the CheckHash of each; Agrees once the round is settled
	// with those outcomes).
	Checks []VoteRecord `json:"checks,omitempty"`
	// Committee, in a run with a check committee, once the round has
	// closed: the members that check it (the only ones whose verdicts on
	// it count), and the beacon that picked them.
	Committee []PubKey `json:"committee,omitempty"`
	Beacon    *Hash    `json:"beacon,omitempty"`
	// Posted, in a member round, are the hashes of the results its
	// members have sent in full (a vote by hash needs its result sent).
	Posted []Hash `json:"posted,omitempty"`
}

// Round returns round r's status, result, commits and verdicts.
func (l *Ledger) Round(r uint64) (RoundInfo, error) {
	st := l.view()
	m, err := st.meta()
	if err != nil {
		return RoundInfo{}, err
	}
	info := RoundInfo{Round: r}
	switch {
	case r > m.OpenRound:
		info.Status = "future"
	case r == m.OpenRound:
		info.Status = "open"
	case r >= m.NextSettle:
		info.Status = "closed"
	default:
		info.Status = "settled"
	}
	if rr, ok, err := st.round(r); err != nil {
		return info, err
	} else if ok {
		info.Result = &rr
	}
	var key [9]byte
	key[0] = prefixCommit
	binary.BigEndian.PutUint64(key[1:], r)
	for _, p := range l.base.scan(string(key[:])) {
		var w PubKey
		copy(w[:], p.Key[9:])
		c, err := decodeCommitRecord(r, w, p.Value)
		if err != nil {
			return info, err
		}
		info.Commits = append(info.Commits, c)
	}
	key[0] = prefixVerdict
	for _, p := range l.base.scan(string(key[:])) {
		var w PubKey
		copy(w[:], p.Key[9:])
		v, err := decodeVerdictRecord(r, w, p.Value)
		if err != nil {
			return info, err
		}
		info.Verdicts = append(info.Verdicts, v)
	}
	if w, ok, err := st.window(r); err != nil {
		return info, err
	} else if ok {
		info.Window = &w
	}
	for _, p := range l.base.scan(string(binary.BigEndian.AppendUint64([]byte{prefixPosted}, r))) {
		var h Hash
		copy(h[:], p.Key[9:])
		info.Posted = append(info.Posted, h)
	}
	var resultHash Hash
	if info.Result != nil {
		resultHash = ResultHash(&ResultTx{Round: r, ModelHash: info.Result.ModelHash, Accepted: info.Result.Accepted, Rejected: info.Result.Rejected})
	}
	if info.Votes, err = l.votes(prefixVote, r, func(v VoteRecord) bool { return info.Result != nil && v.Result == resultHash }); err != nil {
		return info, err
	}
	if l.g.CheckCommittee > 0 && info.Result != nil {
		b, ok, err := st.beacon(r)
		if err != nil {
			return info, err
		}
		if ok {
			info.Beacon = &b
			info.Committee = Committee(&l.g, info.Result, b)
		}
	}
	settled := checkHashOf(r, info.Verdicts)
	if info.Checks, err = l.votes(prefixCheckVote, r, func(v VoteRecord) bool { return info.Status == "settled" && v.Result == settled }); err != nil {
		return info, err
	}
	return info, nil
}

// votes lists round r's vote records under prefix (result votes or check
// votes), each marked by agrees.
func (l *Ledger) votes(prefix byte, r uint64, agrees func(VoteRecord) bool) ([]VoteRecord, error) {
	key := binary.BigEndian.AppendUint64([]byte{prefix}, r)
	var out []VoteRecord
	for _, p := range l.base.scan(string(key)) {
		var m PubKey
		copy(m[:], p.Key[9:])
		v, err := decodeVoteRecord(r, m, p.Value)
		if err != nil {
			return nil, err
		}
		v.Agrees = agrees(v)
		out = append(out, v)
	}
	return out, nil
}

// History returns the transactions that touched k (sent by it, paying
// it, judging or accepting its contributions), oldest first.
func (l *Ledger) History(k PubKey) ([]HistoryEntry, error) {
	var out []HistoryEntry
	for _, p := range l.base.scan(string(append([]byte{prefixHistory}, k[:]...))) {
		h, err := decodeHistoryEntry(k, binary.BigEndian.Uint64(p.Key[33:]), binary.BigEndian.Uint32(p.Key[41:]), p.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

// Query answers an ABCI-style query on the committed state with JSON:
//
//	"account"   data: 32-byte key      -> Account
//	"accounts"  data: empty            -> []Account
//	"totals"    data: empty            -> Totals
//	"round"     data: 8-byte big-endian round number -> RoundInfo
//	"history"   data: 32-byte key      -> []HistoryEntry
//	"contributors" data: empty         -> []Contributor
//	"fingerprint" data: 32-byte model hash -> FingerprintRecord, or null if none
//	"privacy"   data: empty            -> PrivacyRecord, or null for a run without DP
//
// It fails on an unknown path or data of the wrong size.
func (l *Ledger) Query(path string, data []byte) ([]byte, error) {
	var v any
	var err error
	switch path {
	case "account", "history":
		if len(data) != 32 {
			return nil, fmt.Errorf("ledger: query %s: data of %d bytes, want a 32-byte key", path, len(data))
		}
		var k PubKey
		copy(k[:], data)
		if path == "account" {
			v, err = l.Account(k)
		} else {
			v, err = l.History(k)
		}
	case "accounts", "totals":
		if len(data) != 0 {
			return nil, fmt.Errorf("ledger: query %s takes no data", path)
		}
		if path == "accounts" {
			v, err = l.Accounts()
		} else {
			v, err = l.Totals()
		}
	case "contributors":
		if len(data) != 0 {
			return nil, fmt.Errorf("ledger: query contributors takes no data")
		}
		v, err = l.Contributors()
	case "fingerprint":
		if len(data) != 32 {
			return nil, fmt.Errorf("ledger: query fingerprint: data of %d bytes, want a 32-byte model hash", len(data))
		}
		var m Hash
		copy(m[:], data)
		rec, ok, ferr := l.Fingerprint(m)
		if ok {
			v = &rec
		} else {
			v = (*FingerprintRecord)(nil)
		}
		err = ferr
	case "sample":
		if len(data) != 32 {
			return nil, fmt.Errorf("ledger: query sample: data of %d bytes, want a 32-byte sample hash", len(data))
		}
		var h Hash
		copy(h[:], data)
		rec, ok, serr := l.Sample(h)
		if ok {
			v = &rec
		} else {
			v = (*SampleInfo)(nil)
		}
		err = serr
	case "record":
		if len(data) != 32 {
			return nil, fmt.Errorf("ledger: query record: data of %d bytes, want a 32-byte content hash", len(data))
		}
		var h Hash
		copy(h[:], data)
		rec, ok, rerr := l.Record(h)
		if ok {
			v = &rec
		} else {
			v = (*RecordInfo)(nil)
		}
		err = rerr
	case "privacy":
		if len(data) != 0 {
			return nil, fmt.Errorf("ledger: query privacy takes no data")
		}
		rec, ok, perr := l.Privacy()
		if ok {
			v = &rec
		} else {
			v = (*PrivacyRecord)(nil)
		}
		err = perr
	case "round":
		if len(data) != 8 {
			return nil, fmt.Errorf("ledger: query round: data of %d bytes, want an 8-byte round", len(data))
		}
		v, err = l.Round(binary.BigEndian.Uint64(data))
	default:
		return nil, fmt.Errorf("ledger: query: unknown path %q", path)
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}
