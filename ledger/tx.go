package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
)

// TxVersion is the version byte that starts every encoded transaction.
const TxVersion = 1

// Kind says what a transaction does.
type Kind uint8

// The transaction kinds.
const (
	KindRegister    Kind = 1 + iota // bond stake (first bond registers the identity)
	KindTransfer                    // move balance to another account
	KindUnbond                      // start unbonding stake
	KindWithdraw                    // release matured unbonding entries to balance
	KindCommit                      // commit to a contribution in the open round
	KindResult                      // the aggregator's round result (closes the round)
	KindSettle                      // verification verdicts for a closed round: rewards and slashing
	KindReceipts                    // served usage: requesters pay, contributors are paid
	KindFingerprint                 // an owner's commitment to a model's secret fingerprint set
	KindJoin                        // a member round's window is to wait for the sender's commit
	KindPrivacy                     // the privacy a run with differential privacy has spent
	KindRecords                     // crowdsourced records a collector took: their contributors are paid
	KindSamples                     // generated samples a job's coordinator judged: paid or slashed
	KindVote                        // a member's vote on its round's result, by hash
	kindEnd
)

var kindNames = [...]string{"", "register", "transfer", "unbond", "withdraw", "commit", "result", "settle", "receipts", "fingerprint", "join", "privacy", "records", "samples", "vote"}

func (k Kind) String() string {
	if k == 0 || k >= kindEnd {
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
	return kindNames[k]
}

// Body is the kind-specific part of a transaction: one of *RegisterTx,
// *TransferTx, *UnbondTx, *WithdrawTx, *CommitTx, *ResultTx, *SettleTx,
// *ReceiptsTx, *FingerprintTx, *JoinTx, *PrivacyTx, *RecordsTx, *SamplesTx,
// *VoteTx.
type Body interface {
	Kind() Kind
	encode(e *encoder)
}

// Tx is a decoded transaction. Its signature covers the chain ID, the kind
// and every other field (see SigningBytes).
type Tx struct {
	Sender PubKey
	Nonce  uint64 // must exceed the sender's last used nonce
	Body   Body
	Sig    Signature
}

// RegisterTx moves Amount from the sender's balance to its stake. The stake
// afterwards must reach the genesis minimum; the first bond registers the
// identity, later ones top it up.
type RegisterTx struct{ Amount uint64 }

// TransferTx moves Amount of the sender's balance to To.
type TransferTx struct {
	To     PubKey
	Amount uint64
}

// UnbondTx starts unbonding Amount of the sender's stake: it stays
// slashable and is released to the balance by a WithdrawTx once the open
// round has advanced by the genesis unbonding period.
type UnbondTx struct{ Amount uint64 }

// WithdrawTx releases every matured unbonding entry to the balance.
type WithdrawTx struct{}

// CommitTx commits the sender to its contribution in Round before the
// round closes: the hash of the compressed Δ it will reveal to the
// aggregator, the tokens it claims, and the hashes of its local state
// (inner AdamW moments and error-feedback residual) at the round's start
// and end. StartState must equal the EndState of the sender's previous
// commit unless Fresh declares a restart from scratch.
type CommitTx struct {
	Round      uint64
	DeltaHash  Hash
	Tokens     uint64
	StartState Hash
	EndState   Hash
	Fresh      bool
	Kernel     string // the kernel path it trained on, e.g. "avx512"; [a-z0-9._+/-], 1..32 bytes
	// Private declares a contribution trained on data only its worker
	// holds: nobody can recompute it, so a validator judges it by its
	// effect on the run's public held-out loss instead.
	Private bool
}

// Contribution is one accepted contribution in a round result; it must
// match the worker's commit for the round.
type Contribution struct {
	Worker    PubKey `json:"worker"`
	DeltaHash Hash   `json:"delta_hash"`
	Tokens    uint64 `json:"tokens"`
}

// Rejection is a committed contribution the aggregator did not accept,
// with its screening verdict (late, never revealed, hash mismatch, ...).
type Rejection struct {
	Worker PubKey `json:"worker"`
	Reason string `json:"reason"` // printable ASCII, 1..200 bytes
}

// ResultTx is the round result, signed by an authority: the hash of the
// new weights θ(r+1), the accepted contributions and the rejected ones,
// each list sorted by worker key without repeats. It closes Round (which
// must be the open round) and opens Round+1.
type ResultTx struct {
	Round     uint64
	ModelHash Hash
	Accepted  []Contribution
	Rejected  []Rejection
}

// Outcome is a verification verdict.
type Outcome uint8

// The verdicts of a settlement.
const (
	Passed    Outcome = 1 + iota // recomputed and matched (private: screened and harmless): paid
	Failed                       // recomputed and did not match: not paid, stake slashed
	Unchecked                    // not recomputed: paid
	outcomeEnd
)

var outcomeNames = [...]string{"", "passed", "failed", "unchecked"}

func (o Outcome) String() string {
	if o == 0 || o >= outcomeEnd {
		return fmt.Sprintf("outcome(%d)", uint8(o))
	}
	return outcomeNames[o]
}

// Verdict judges one accepted contribution. A failed verdict carries a
// reason and the verifier's evidence (hashes, distances: opaque bytes,
// 1..2048); other verdicts carry no evidence and may carry a reason.
type Verdict struct {
	Worker   PubKey
	Outcome  Outcome
	Reason   string
	Evidence []byte
}

// SettleTx settles a closed round, signed by an authority: verdicts
// sorted by worker, one for every accepted contribution and, optionally,
// one for a rejected contribution (Failed or Unchecked: a rejected
// contribution is never paid, but failing verification still slashes it).
// It pays the round's emission to the accepted contributions that did not
// fail and slashes every failed one.
type SettleTx struct {
	Round    uint64
	Verdicts []Verdict
}

// Kind implementations.
func (*RegisterTx) Kind() Kind { return KindRegister }
func (*TransferTx) Kind() Kind { return KindTransfer }
func (*UnbondTx) Kind() Kind   { return KindUnbond }
func (*WithdrawTx) Kind() Kind { return KindWithdraw }
func (*CommitTx) Kind() Kind   { return KindCommit }
func (*ResultTx) Kind() Kind   { return KindResult }
func (*SettleTx) Kind() Kind   { return KindSettle }

func (b *RegisterTx) encode(e *encoder) { e.u64(b.Amount) }
func (b *TransferTx) encode(e *encoder) { e.fixed(b.To[:]); e.u64(b.Amount) }
func (b *UnbondTx) encode(e *encoder)   { e.u64(b.Amount) }
func (b *WithdrawTx) encode(e *encoder) {}

func (b *CommitTx) encode(e *encoder) {
	e.u64(b.Round)
	e.fixed(b.DeltaHash[:])
	e.u64(b.Tokens)
	e.fixed(b.StartState[:])
	e.fixed(b.EndState[:])
	e.boolean(b.Fresh)
	e.str(b.Kernel)
	e.boolean(b.Private)
}

func (b *ResultTx) encode(e *encoder) {
	e.u64(b.Round)
	e.fixed(b.ModelHash[:])
	e.u32(uint32(len(b.Accepted)))
	for _, c := range b.Accepted {
		e.fixed(c.Worker[:])
		e.fixed(c.DeltaHash[:])
		e.u64(c.Tokens)
	}
	e.u32(uint32(len(b.Rejected)))
	for _, r := range b.Rejected {
		e.fixed(r.Worker[:])
		e.str(r.Reason)
	}
}

func (b *SettleTx) encode(e *encoder) {
	e.u64(b.Round)
	e.u32(uint32(len(b.Verdicts)))
	for _, v := range b.Verdicts {
		e.fixed(v.Worker[:])
		e.u8(uint8(v.Outcome))
		e.str(v.Reason)
		e.bytes(v.Evidence)
	}
}

// encodeUnsigned is the transaction without its signature.
func (tx *Tx) encodeUnsigned() []byte {
	e := encoder{b: make([]byte, 0, 128)}
	e.u8(TxVersion)
	e.u8(uint8(tx.Body.Kind()))
	e.fixed(tx.Sender[:])
	e.u64(tx.Nonce)
	tx.Body.encode(&e)
	return e.b
}

// Encode returns the canonical encoding: version, kind, sender, nonce,
// body, signature.
func (tx *Tx) Encode() []byte {
	return append(tx.encodeUnsigned(), tx.Sig[:]...)
}

// Hash is the SHA-256 of the encoded transaction; it names the
// transaction in account histories.
func (tx *Tx) Hash() Hash { return sha256.Sum256(tx.Encode()) }

const txSigDomain = "cairn/ledger/tx/v1\x00"

// SigningBytes is what the sender signs: a domain tag, the chain ID, the
// kind, then the unsigned encoding. A signature is valid on one chain and
// for one kind only.
func (tx *Tx) SigningBytes(chainID string) []byte {
	e := encoder{b: make([]byte, 0, 256)}
	e.fixed([]byte(txSigDomain))
	e.str(chainID)
	e.u8(uint8(tx.Body.Kind()))
	e.fixed(tx.encodeUnsigned())
	return e.b
}

// VerifySig reports whether the signature is the sender's over
// SigningBytes(chainID).
func (tx *Tx) VerifySig(chainID string) bool {
	return ed25519.Verify(tx.Sender[:], tx.SigningBytes(chainID), tx.Sig[:])
}

// SignTx builds a transaction from key's account with nonce and body,
// signs it for chainID and returns its encoding. It fails on a key that is
// not an ed25519 private key or a body that does not encode to a valid
// transaction (the result always passes DecodeTx).
func SignTx(chainID string, key ed25519.PrivateKey, nonce uint64, body Body) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("ledger: private key of %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if body == nil {
		return nil, fmt.Errorf("ledger: nil transaction body")
	}
	tx := &Tx{Nonce: nonce, Body: body}
	copy(tx.Sender[:], key.Public().(ed25519.PublicKey))
	copy(tx.Sig[:], ed25519.Sign(key, tx.SigningBytes(chainID)))
	raw := tx.Encode()
	if _, err := DecodeTx(raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// KeyOf returns the account of an ed25519 private key.
func KeyOf(key ed25519.PrivateKey) PubKey {
	var k PubKey
	copy(k[:], key.Public().(ed25519.PublicKey))
	return k
}

const (
	minContribution = 32 + 32 + 8
	minRejection    = 32 + 4 + 1
	minVerdict      = 32 + 1 + 4 + 4
)

// DecodeTx decodes a transaction, checking its structure only (not its
// signature or its validity against a state). It rejects input over
// MaxTxBytes, an unknown version or kind, truncated or trailing bytes,
// fields over their limits, lists not sorted by worker or with repeats,
// and any non-canonical form, so Encode of the result gives back exactly
// b. Errors start with "ledger: malformed transaction".
func DecodeTx(b []byte) (*Tx, error) {
	if len(b) > MaxTxBytes {
		return nil, fmt.Errorf("ledger: malformed transaction: %d bytes, limit %d", len(b), MaxTxBytes)
	}
	d := decoder{b: b}
	if v := d.u8(); d.err == nil && v != TxVersion {
		d.fail("version %d, want %d", v, TxVersion)
	}
	kind := Kind(d.u8())
	tx := &Tx{}
	d.fixed(tx.Sender[:])
	tx.Nonce = d.u64()
	if d.err == nil {
		switch kind {
		case KindRegister:
			tx.Body = &RegisterTx{Amount: d.u64()}
		case KindTransfer:
			t := &TransferTx{}
			d.fixed(t.To[:])
			t.Amount = d.u64()
			tx.Body = t
		case KindUnbond:
			tx.Body = &UnbondTx{Amount: d.u64()}
		case KindWithdraw:
			tx.Body = &WithdrawTx{}
		case KindCommit:
			tx.Body = decodeCommit(&d)
		case KindResult:
			tx.Body = decodeResult(&d)
		case KindSettle:
			tx.Body = decodeSettle(&d)
		case KindReceipts:
			tx.Body = decodeReceipts(&d)
		case KindFingerprint:
			tx.Body = decodeFingerprint(&d)
		case KindJoin:
			tx.Body = &JoinTx{Round: d.u64()}
		case KindVote:
			v := &VoteTx{Round: d.u64()}
			d.fixed(v.Result[:])
			tx.Body = v
		case KindPrivacy:
			tx.Body = decodePrivacy(&d)
		case KindRecords:
			tx.Body = decodeRecords(&d)
		case KindSamples:
			tx.Body = decodeSamples(&d)
		default:
			d.fail("unknown kind %d", uint8(kind))
		}
	}
	d.fixed(tx.Sig[:])
	if err := d.finish("transaction"); err != nil {
		return nil, err
	}
	return tx, nil
}

func decodeCommit(d *decoder) *CommitTx {
	c := &CommitTx{Round: d.u64()}
	d.fixed(c.DeltaHash[:])
	c.Tokens = d.u64()
	d.fixed(c.StartState[:])
	d.fixed(c.EndState[:])
	c.Fresh = d.boolean("fresh")
	c.Kernel = d.str("kernel", MaxKernelBytes, identifier)
	c.Private = d.boolean("private")
	return c
}

func decodeResult(d *decoder) *ResultTx {
	r := &ResultTx{Round: d.u64()}
	d.fixed(r.ModelHash[:])
	n := d.count("accepted", MaxContributions, minContribution)
	if n > 0 {
		r.Accepted = make([]Contribution, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		c := &r.Accepted[i]
		d.fixed(c.Worker[:])
		d.fixed(c.DeltaHash[:])
		c.Tokens = d.u64()
		if i > 0 && d.err == nil && bytes.Compare(r.Accepted[i-1].Worker[:], c.Worker[:]) >= 0 {
			d.fail("accepted contributions not sorted by worker without repeats at %d", i)
		}
	}
	n = d.count("rejected", MaxContributions, minRejection)
	if n > 0 {
		r.Rejected = make([]Rejection, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		x := &r.Rejected[i]
		d.fixed(x.Worker[:])
		x.Reason = d.str("rejection reason", MaxReasonBytes, nonEmptyPrintable)
		if i > 0 && d.err == nil && bytes.Compare(r.Rejected[i-1].Worker[:], x.Worker[:]) >= 0 {
			d.fail("rejected contributions not sorted by worker without repeats at %d", i)
		}
	}
	return r
}

func decodeSettle(d *decoder) *SettleTx {
	s := &SettleTx{Round: d.u64()}
	n := d.count("verdicts", MaxContributions, minVerdict)
	if n > 0 {
		s.Verdicts = make([]Verdict, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		v := &s.Verdicts[i]
		d.fixed(v.Worker[:])
		v.Outcome = Outcome(d.u8())
		v.Reason = d.str("verdict reason", MaxReasonBytes, printable)
		if ev := d.bytes("evidence", MaxEvidenceBytes); len(ev) > 0 {
			v.Evidence = bytes.Clone(ev)
		}
		if d.err != nil {
			break
		}
		switch {
		case v.Outcome == 0 || v.Outcome >= outcomeEnd:
			d.fail("verdict %d: unknown outcome %d", i, uint8(v.Outcome))
		case v.Outcome == Failed && (v.Reason == "" || len(v.Evidence) == 0):
			d.fail("verdict %d: a failed verdict needs a reason and evidence", i)
		case v.Outcome != Failed && len(v.Evidence) != 0:
			d.fail("verdict %d: evidence on a %v verdict", i, v.Outcome)
		case i > 0 && bytes.Compare(s.Verdicts[i-1].Worker[:], v.Worker[:]) >= 0:
			d.fail("verdicts not sorted by worker without repeats at %d", i)
		}
	}
	return s
}
