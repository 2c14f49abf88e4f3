package ledger

// Fingerprint commitments. The owner of a model that carries a secret
// fingerprint set (cairn fingerprint embed) commits to the set on the
// ledger: a FingerprintTx names the model by its weights hash and the set
// by the SHA-256 of its sealed (encrypted) file. The set stays secret; the
// commitment shows that its sender held exactly that file for that model
// at that block, before anyone who copies the model can claim it. The
// first commitment for a model wins: a later one, by anyone (the owner
// included), is refused, so a thief cannot re-register a stolen model
// under a set of its own.

// FingerprintTx commits the sender, as the model's owner, to a
// fingerprint set. The sender must be a known account: one that holds a
// balance, a stake or stake unbonding (an account never funded cannot
// commit, so commitments cost an identity on the chain). Model must have
// no commitment yet. Neither hash may be zero.
type FingerprintTx struct {
	Model Hash // the model's weights hash, as ReceiptsTx names a served model (diloco.HashWeights of round 0)
	Set   Hash // SHA-256 of the sealed fingerprint file, byte for byte
}

// Kind implements Body.
func (*FingerprintTx) Kind() Kind { return KindFingerprint }

func (b *FingerprintTx) encode(e *encoder) {
	e.fixed(b.Model[:])
	e.fixed(b.Set[:])
}

func decodeFingerprint(d *decoder) *FingerprintTx {
	f := &FingerprintTx{}
	d.fixed(f.Model[:])
	d.fixed(f.Set[:])
	if d.err == nil && (f.Model.IsZero() || f.Set.IsZero()) {
		d.fail("fingerprint commitment with a zero model or set hash")
	}
	return f
}

// FingerprintRecord is a model's fingerprint commitment.
type FingerprintRecord struct {
	Model  Hash   `json:"model"`
	Set    Hash   `json:"set"`     // SHA-256 of the sealed fingerprint file
	Owner  PubKey `json:"owner"`   // the account that committed it
	Height uint64 `json:"height"`  // the block that holds the commitment
	Index  uint32 `json:"index"`   // its position in that block
	TxHash Hash   `json:"tx_hash"` // SHA-256 of the transaction
}

// prefixFingerprint keys the commitments: "f" model(32).
const prefixFingerprint = 'f'

func fingerprintKey(model Hash) string { return string(append([]byte{prefixFingerprint}, model[:]...)) }

func (r *FingerprintRecord) encode() []byte {
	e := encoder{}
	e.fixed(r.Set[:])
	e.fixed(r.Owner[:])
	e.u64(r.Height)
	e.u32(r.Index)
	e.fixed(r.TxHash[:])
	return e.b
}

func decodeFingerprintRecord(model Hash, b []byte) (FingerprintRecord, error) {
	d := decoder{b: b}
	r := FingerprintRecord{Model: model}
	d.fixed(r.Set[:])
	d.fixed(r.Owner[:])
	r.Height, r.Index = d.u64(), d.u32()
	d.fixed(r.TxHash[:])
	if d.err == nil && (model.IsZero() || r.Set.IsZero() || r.Height == 0) {
		d.fail("zero model or set hash, or height 0")
	}
	return r, d.finish("fingerprint record")
}

func (s stateView) fingerprint(model Hash) (FingerprintRecord, bool, error) {
	b, ok := s.kv.get(fingerprintKey(model))
	if !ok {
		return FingerprintRecord{}, false, nil
	}
	r, err := decodeFingerprintRecord(model, b)
	return r, true, err
}

// fingerprint executes a FingerprintTx.
func (x *execution) fingerprint(a *Account, b *FingerprintTx) error {
	if a.Balance == 0 && a.Stake == 0 && len(a.Unbonding) == 0 {
		return reject(CodeUnauthorized, "%s holds nothing on the ledger: only a funded or staked account may commit a fingerprint set", a.Key)
	}
	old, dup, err := x.st.fingerprint(b.Model)
	if err != nil {
		return internalError{err}
	}
	if dup {
		return reject(CodeDuplicateCommit, "model %s already has a fingerprint commitment (set %.16s..., owner %.16s..., block %d)",
			b.Model, old.Set, old.Owner, old.Height)
	}
	rec := FingerprintRecord{Model: b.Model, Set: b.Set, Owner: a.Key, Height: x.height, Index: x.index, TxHash: x.txHash}
	x.st.kv.put(fingerprintKey(b.Model), rec.encode())
	return nil
}

// Fingerprint returns the committed fingerprint commitment for model, and
// false if it has none. It fails only on corrupt state.
func (l *Ledger) Fingerprint(model Hash) (FingerprintRecord, bool, error) {
	return l.view().fingerprint(model)
}
