package ledger

import "math"

// Privacy records. A run with differential privacy for its contributors
// (diloco.RunConfig.DP) spends privacy with every round it publishes; the
// authority that closes the rounds records, in a PrivacyTx after each
// round's result, how much the run has spent once that round is out, so
// that anyone holding the ledger can check the run against its budget
// without trusting the aggregator's logs. The ledger enforces what can be
// checked without the weights: rounds recorded in order, only closed ones,
// the spending never falling, never past the budget, and the budget and δ
// never changing once recorded.

// PrivacyUnit is the scale of the recorded ε and budget: millionths.
const PrivacyUnit = 1e6

// DeltaUnit is the scale of the recorded δ: parts per 10^12.
const DeltaUnit = 1e12

// PrivacyTx records the privacy the run has spent once Round is published.
// The sender must be an authority, Round a closed round after the last one
// recorded, 0 < Delta < DeltaUnit, 0 < Budget, Epsilon ≤ Budget and at
// least the last recorded ε, with the last record's budget and δ.
type PrivacyTx struct {
	Round   uint64
	Epsilon uint64 // ε spent, in millionths (rounded up)
	Budget  uint64 // the run's ε budget, in millionths
	Delta   uint64 // δ, in parts per 10^12
}

// Kind implements Body.
func (*PrivacyTx) Kind() Kind { return KindPrivacy }

func (b *PrivacyTx) encode(e *encoder) {
	e.u64(b.Round)
	e.u64(b.Epsilon)
	e.u64(b.Budget)
	e.u64(b.Delta)
}

func decodePrivacy(d *decoder) *PrivacyTx {
	p := &PrivacyTx{Round: d.u64(), Epsilon: d.u64(), Budget: d.u64(), Delta: d.u64()}
	if d.err == nil && (p.Budget == 0 || p.Delta == 0 || p.Delta >= DeltaUnit || p.Epsilon > p.Budget) {
		d.fail("privacy record with a zero budget, delta outside (0, 1) or epsilon past the budget")
	}
	return p
}

// NewPrivacyTx is the record of eps spent of budget at delta once round
// is published, ε rounded up to the next millionth (so the ledger never
// understates it) and the budget down.
func NewPrivacyTx(round uint64, eps, budget, delta float64) *PrivacyTx {
	return &PrivacyTx{Round: round, Epsilon: uint64(math.Ceil(eps * PrivacyUnit)), Budget: uint64(math.Floor(budget * PrivacyUnit)),
		Delta: uint64(math.Round(delta * DeltaUnit))}
}

// PrivacyRecord is the last privacy record of the run, in the units of
// PrivacyTx (Spent, BudgetValue and DeltaValue give the numbers).
type PrivacyRecord struct {
	Round   uint64 `json:"round"`
	Epsilon uint64 `json:"epsilon_millionths"` // ε spent once Round is published
	Budget  uint64 `json:"budget_millionths"`
	Delta   uint64 `json:"delta_per_1e12"`
	Height  uint64 `json:"height"` // the block that holds the record
}

// Spent is ε spent.
func (r PrivacyRecord) Spent() float64 { return float64(r.Epsilon) / PrivacyUnit }

// BudgetValue is the run's ε budget.
func (r PrivacyRecord) BudgetValue() float64 { return float64(r.Budget) / PrivacyUnit }

// DeltaValue is δ.
func (r PrivacyRecord) DeltaValue() float64 { return float64(r.Delta) / DeltaUnit }

// prefixPrivacy keys the last privacy record: "p".
const prefixPrivacy = 'p'

func privacyKey() string { return string([]byte{prefixPrivacy}) }

func (r PrivacyRecord) encode() []byte {
	e := encoder{}
	(&PrivacyTx{Round: r.Round, Epsilon: r.Epsilon, Budget: r.Budget, Delta: r.Delta}).encode(&e)
	e.u64(r.Height)
	return e.b
}

func decodePrivacyRecord(b []byte) (PrivacyRecord, error) {
	d := decoder{b: b}
	p := decodePrivacy(&d)
	r := PrivacyRecord{Round: p.Round, Epsilon: p.Epsilon, Budget: p.Budget, Delta: p.Delta, Height: d.u64()}
	if d.err == nil && r.Height == 0 {
		d.fail("height 0")
	}
	return r, d.finish("privacy record")
}

func (s stateView) privacy() (PrivacyRecord, bool, error) {
	b, ok := s.kv.get(privacyKey())
	if !ok {
		return PrivacyRecord{}, false, nil
	}
	r, err := decodePrivacyRecord(b)
	return r, true, err
}

// privacy executes a PrivacyTx.
func (x *execution) privacy(a *Account, b *PrivacyTx) error {
	if !x.g.IsAuthority(a.Key) {
		return reject(CodeUnauthorized, "%s may not record the privacy spent", a.Key)
	}
	if b.Round >= x.meta.OpenRound {
		return reject(CodeRoundNotOpen, "privacy spent after round %d, which has not closed (the open round is %d)", b.Round, x.meta.OpenRound)
	}
	last, ok, err := x.st.privacy()
	if err != nil {
		return internalError{err}
	}
	if ok {
		switch {
		case b.Round <= last.Round:
			return reject(CodeInvalid, "privacy for round %d, but round %d is recorded already", b.Round, last.Round)
		case b.Epsilon < last.Epsilon:
			return reject(CodeInvalid, "privacy spent falls from %d to %d millionths of epsilon", last.Epsilon, b.Epsilon)
		case b.Budget != last.Budget || b.Delta != last.Delta:
			return reject(CodeInvalid, "the run's privacy budget or delta changed from %d/%d to %d/%d", last.Budget, last.Delta, b.Budget, b.Delta)
		}
	}
	rec := PrivacyRecord{Round: b.Round, Epsilon: b.Epsilon, Budget: b.Budget, Delta: b.Delta, Height: x.height}
	x.st.kv.put(privacyKey(), rec.encode())
	return nil
}

// Privacy returns the run's last privacy record, and false if it has
// none (a run without differential privacy). It fails only on corrupt
// state.
func (l *Ledger) Privacy() (PrivacyRecord, bool, error) { return l.view().privacy() }
