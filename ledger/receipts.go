package ledger

import (
	"bytes"
	"math/bits"
	"sort"
)

// Serving pays a model's trainers. A serving node (one of the chain's
// authorities) batches the usage receipts of the requests it answered
// into a ReceiptsTx: per requester, the requests, tokens and fees. The
// transaction debits each requester's balance by its fees and splits
// their sum among the run's contributors pro rata to their contributed
// tokens (SplitEmission: exact integer units, nothing created or lost).
// A contributor's tokens are those of its accepted contributions that
// settled without a failed verdict (passed or unchecked), counted by
// every settlement in the Contributions record.

// ReceiptEntry is one requester's usage in a ReceiptsTx.
type ReceiptEntry struct {
	Requester PubKey `json:"requester"`
	Requests  uint32 `json:"requests"`
	Tokens    uint64 `json:"tokens"`
	Fee       uint64 `json:"fee"`
}

// ReceiptsTx, signed by an authority (the serving node), records served
// usage of the model with hash Model: entries sorted by requester without
// repeats, each with at least one request and a fee.
type ReceiptsTx struct {
	Model   Hash
	Entries []ReceiptEntry
}

// MaxReceiptEntries bounds the requesters of one ReceiptsTx.
const MaxReceiptEntries = 4096

// Kind implements Body.
func (*ReceiptsTx) Kind() Kind { return KindReceipts }

func (b *ReceiptsTx) encode(e *encoder) {
	e.fixed(b.Model[:])
	e.u32(uint32(len(b.Entries)))
	for _, r := range b.Entries {
		e.fixed(r.Requester[:])
		e.u32(r.Requests)
		e.u64(r.Tokens)
		e.u64(r.Fee)
	}
}

const minReceiptEntry = 32 + 4 + 8 + 8

func decodeReceipts(d *decoder) *ReceiptsTx {
	r := &ReceiptsTx{}
	d.fixed(r.Model[:])
	n := d.count("receipt entries", MaxReceiptEntries, minReceiptEntry)
	if n == 0 && d.err == nil {
		d.fail("no receipt entries")
	}
	if n > 0 {
		r.Entries = make([]ReceiptEntry, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		x := &r.Entries[i]
		d.fixed(x.Requester[:])
		x.Requests, x.Tokens, x.Fee = d.u32(), d.u64(), d.u64()
		switch {
		case d.err != nil:
		case x.Requests == 0 || x.Fee == 0:
			d.fail("receipt entry %d: no requests or no fee", i)
		case i > 0 && bytes.Compare(r.Entries[i-1].Requester[:], x.Requester[:]) >= 0:
			d.fail("receipt entries not sorted by requester without repeats at %d", i)
		}
	}
	return r
}

// Contributor is an account's contributed tokens.
type Contributor struct {
	Worker PubKey `json:"worker"`
	Tokens uint64 `json:"tokens"`
}

// MaxContributors bounds the Contributions record.
const MaxContributors = 1 << 20

const prefixContrib = 'k'

func contribKey() string { return string([]byte{prefixContrib}) }

func encodeContributors(cs []Contributor) []byte {
	e := encoder{}
	e.u32(uint32(len(cs)))
	for _, c := range cs {
		e.fixed(c.Worker[:])
		e.u64(c.Tokens)
	}
	return e.b
}

func decodeContributors(b []byte) ([]Contributor, error) {
	d := decoder{b: b}
	n := d.count("contributors", MaxContributors, 40)
	cs := make([]Contributor, n)
	for i := 0; i < n && d.err == nil; i++ {
		d.fixed(cs[i].Worker[:])
		cs[i].Tokens = d.u64()
		if d.err == nil && (cs[i].Tokens == 0 || i > 0 && bytes.Compare(cs[i-1].Worker[:], cs[i].Worker[:]) >= 0) {
			d.fail("contributor %d: no tokens, or not sorted without repeats", i)
		}
	}
	return cs, d.finish("contributions record")
}

func (s stateView) contributors() ([]Contributor, error) {
	b, ok := s.kv.get(contribKey())
	if !ok {
		return nil, nil
	}
	return decodeContributors(b)
}

// addContributions adds tokens to the workers' contributed totals.
func (x *execution) addContributions(add map[PubKey]uint64) error {
	if len(add) == 0 {
		return nil
	}
	cs, err := x.st.contributors()
	if err != nil {
		return internalError{err}
	}
	idx := map[PubKey]int{}
	for i, c := range cs {
		idx[c.Worker] = i
	}
	for w, t := range add {
		i, ok := idx[w]
		if !ok {
			cs = append(cs, Contributor{Worker: w})
			i = len(cs) - 1
			idx[w] = i
		}
		var c uint64
		if cs[i].Tokens, c = bits.Add64(cs[i].Tokens, t, 0); c != 0 {
			return reject(CodeInvalid, "%s's contributed tokens would overflow", w)
		}
	}
	if len(cs) > MaxContributors {
		return reject(CodeInvalid, "more than %d contributors", MaxContributors)
	}
	sort.Slice(cs, func(i, j int) bool { return bytes.Compare(cs[i].Worker[:], cs[j].Worker[:]) < 0 })
	x.st.kv.put(contribKey(), encodeContributors(cs))
	return nil
}

// receipts executes a ReceiptsTx: each requester pays its fee, the sum is
// split among the contributors pro rata to their tokens.
func (x *execution) receipts(a *Account, b *ReceiptsTx) error {
	if !x.g.IsAuthority(a.Key) {
		return reject(CodeUnauthorized, "%s may not record served usage", a.Key)
	}
	cs, err := x.st.contributors()
	if err != nil {
		return internalError{err}
	}
	if len(cs) == 0 {
		return reject(CodeInvalid, "no contributor has settled tokens to be paid")
	}
	var total, c uint64
	for _, e := range b.Entries {
		r, err := x.acct(e.Requester)
		if err != nil {
			return err
		}
		if r.Balance < e.Fee {
			return reject(CodeInsufficientFunds, "requester %s owes %d with a balance of %d", e.Requester, e.Fee, r.Balance)
		}
		r.Balance -= e.Fee
		if total, c = bits.Add64(total, e.Fee, 0); c != 0 {
			return reject(CodeInvalid, "fees overflow")
		}
	}
	tokens := make([]uint64, len(cs))
	for i, c := range cs {
		tokens[i] = c.Tokens
	}
	shares, err := SplitEmission(total, tokens)
	if err != nil {
		return reject(CodeInvalid, "%v", err)
	}
	for i, c := range cs {
		if shares[i] == 0 {
			continue
		}
		w, err := x.acct(c.Worker)
		if err != nil {
			return err
		}
		w.Balance += shares[i] // the fees came out of balances: no overflow
	}
	return nil
}

// Contributors reads every contributor's tokens from the committed state.
func (l *Ledger) Contributors() ([]Contributor, error) { return l.view().contributors() }

func describeContrib() string { return "contributions" }
