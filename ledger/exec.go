package ledger

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"sort"
	"strings"
)

// TxError is a rejected transaction: its code and a one-line reason. A
// rejected transaction changes no state.
type TxError struct {
	Code   Code
	Reason string
}

func (e *TxError) Error() string { return "ledger: rejected (" + e.Code.String() + "): " + e.Reason }

func reject(code Code, format string, args ...any) *TxError {
	return &TxError{Code: code, Reason: clip(fmt.Sprintf(format, args...))}
}

// internalError marks state that does not decode: corruption outside the
// ledger, never a transaction's fault.
type internalError struct{ err error }

func (e internalError) Error() string { return e.err.Error() }
func (e internalError) Unwrap() error { return e.err }

// execution is one transaction being applied on its own overlay.
type execution struct {
	g      *Genesis
	height uint64
	time   int64 // the block's time, Unix ns (CheckTx: the tip's)
	index  uint32
	st     stateView
	accts  map[PubKey]*Account
	meta   Meta
	txHash Hash // SHA-256 of the encoded transaction
	beacon Hash // the block's (BlockInfo.Beacon); zero in CheckTx
}

// acct returns the account of k, loaded once per transaction so that a
// key appearing in several roles (sender and worker) is one value.
func (x *execution) acct(k PubKey) (*Account, error) {
	if a, ok := x.accts[k]; ok {
		return a, nil
	}
	a, err := x.st.account(k)
	if err != nil {
		return nil, internalError{err}
	}
	x.accts[k] = &a
	return &a, nil
}

// execTx applies raw on top of parent. On success its writes are merged
// into parent and it returns nil; a *TxError rejects the transaction and
// leaves parent untouched; any other error is state corruption.
func execTx(parent *overlay, g *Genesis, info BlockInfo, index uint32, raw []byte) error {
	tx, err := DecodeTx(raw)
	if err != nil {
		return reject(CodeMalformed, "%s", strings.TrimPrefix(err.Error(), "ledger: "))
	}
	if !tx.VerifySig(g.ChainID) {
		return reject(CodeBadSignature, "signature is not %s's for chain %q and kind %v", tx.Sender, g.ChainID, tx.Body.Kind())
	}
	txo := newOverlay(parent)
	x := &execution{g: g, height: info.Height, time: info.Time, beacon: info.Beacon, index: index, st: stateView{txo}, accts: map[PubKey]*Account{}, txHash: sha256.Sum256(raw)}
	if x.meta, err = x.st.meta(); err != nil {
		return internalError{err}
	}
	sender, err := x.acct(tx.Sender)
	if err != nil {
		return err
	}
	if tx.Nonce <= sender.Nonce {
		return reject(CodeBadNonce, "nonce %d does not exceed the last nonce %d of %s", tx.Nonce, sender.Nonce, tx.Sender)
	}
	sender.Nonce = tx.Nonce
	switch b := tx.Body.(type) {
	case *RegisterTx:
		err = x.register(sender, b)
	case *TransferTx:
		err = x.transfer(sender, b)
	case *UnbondTx:
		err = x.unbond(sender, b)
	case *WithdrawTx:
		err = x.withdraw(sender)
	case *CommitTx:
		err = x.commit(sender, b)
	case *ResultTx:
		if g.MemberRounds() {
			err = x.vote(sender, b)
		} else {
			err = x.result(sender, b)
		}
	case *SettleTx:
		err = x.settle(sender, b)
	case *ReceiptsTx:
		err = x.receipts(sender, b)
	case *FingerprintTx:
		err = x.fingerprint(sender, b)
	case *JoinTx:
		err = x.join(sender, b)
	case *VoteTx:
		err = x.voteHash(sender, b)
	case *PrivacyTx:
		err = x.privacy(sender, b)
	case *RecordsTx:
		err = x.records(sender, b)
	case *SamplesTx:
		err = x.samples(sender, b)
	default:
		err = fmt.Errorf("ledger: no rule for %T", b)
	}
	if err != nil {
		return err
	}
	x.flush(x.txHash, tx.Body.Kind())
	txo.mergeInto(parent)
	return nil
}

// flush writes the touched accounts, the meta record and a history entry
// for every touched account.
func (x *execution) flush(txHash Hash, kind Kind) {
	keys := make([]PubKey, 0, len(x.accts))
	for k := range x.accts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return bytes.Compare(keys[i][:], keys[j][:]) < 0 })
	for _, k := range keys {
		enc := x.accts[k].encode()
		if old, ok := x.st.kv.get(accountKey(k)); !ok || !bytes.Equal(old, enc) {
			x.st.kv.put(accountKey(k), enc)
		}
		h := HistoryEntry{TxHash: txHash, Kind: kind}
		x.st.kv.put(historyKey(k, x.height, x.index), h.encode())
	}
	x.st.putMeta(&x.meta)
}

func (x *execution) register(a *Account, b *RegisterTx) error {
	if b.Amount == 0 {
		return reject(CodeInvalid, "zero amount")
	}
	if a.Balance < b.Amount {
		return reject(CodeInsufficientFunds, "bonding %d with a balance of %d", b.Amount, a.Balance)
	}
	if a.Stake+b.Amount < x.g.MinStake {
		return reject(CodeNotStaked, "stake %d after bonding is below the minimum %d", a.Stake+b.Amount, x.g.MinStake)
	}
	a.Balance -= b.Amount
	a.Stake += b.Amount
	return nil
}

func (x *execution) transfer(a *Account, b *TransferTx) error {
	if b.Amount == 0 {
		return reject(CodeInvalid, "zero amount")
	}
	if b.To == a.Key {
		return reject(CodeInvalid, "transfer to the sender itself")
	}
	if a.Balance < b.Amount {
		return reject(CodeInsufficientFunds, "transferring %d with a balance of %d", b.Amount, a.Balance)
	}
	to, err := x.acct(b.To)
	if err != nil {
		return err
	}
	a.Balance -= b.Amount
	to.Balance += b.Amount // bounded by the supply
	return nil
}

func (x *execution) unbond(a *Account, b *UnbondTx) error {
	if b.Amount == 0 {
		return reject(CodeInvalid, "zero amount")
	}
	if a.Stake < b.Amount {
		return reject(CodeInsufficientFunds, "unbonding %d with a stake of %d", b.Amount, a.Stake)
	}
	if len(a.Unbonding) >= MaxUnbonding {
		return reject(CodeInvalid, "already %d unbonding entries (limit %d)", len(a.Unbonding), MaxUnbonding)
	}
	release, carry := bits.Add64(x.meta.OpenRound, x.g.UnbondingRounds, 0)
	if carry != 0 {
		release = ^uint64(0)
	}
	a.Stake -= b.Amount
	a.Unbonding = append(a.Unbonding, Unbonding{Amount: b.Amount, ReleaseRound: release})
	return x.unexpect(a)
}

func (x *execution) withdraw(a *Account) error {
	if len(a.Unbonding) == 0 {
		return reject(CodeInvalid, "nothing unbonding")
	}
	var keep []Unbonding
	var released uint64
	for _, u := range a.Unbonding {
		if u.ReleaseRound <= x.meta.OpenRound {
			released += u.Amount
		} else {
			keep = append(keep, u)
		}
	}
	if released == 0 {
		return reject(CodeInvalid, "nothing to withdraw before round %d (open round %d)", a.Unbonding[0].ReleaseRound, x.meta.OpenRound)
	}
	a.Unbonding = keep
	a.Balance += released
	return nil
}

func (x *execution) commit(a *Account, b *CommitTx) error {
	if a.Stake < x.g.MinStake {
		return reject(CodeNotStaked, "stake %d is below the minimum %d", a.Stake, x.g.MinStake)
	}
	switch {
	case b.Round < x.meta.OpenRound:
		return reject(CodeRoundNotOpen, "round %d is closed (open round %d)", b.Round, x.meta.OpenRound)
	case b.Round > x.meta.OpenRound:
		return reject(CodeRoundNotOpen, "round %d is not open (open round %d)", b.Round, x.meta.OpenRound)
	}
	if _, dup, err := x.st.commit(b.Round, a.Key); err != nil {
		return internalError{err}
	} else if dup {
		return reject(CodeDuplicateCommit, "%s already committed in round %d", a.Key, b.Round)
	}
	if b.Tokens == 0 || b.Tokens > MaxTokens {
		return reject(CodeInvalid, "%d tokens claimed, want 1..%d", b.Tokens, uint64(MaxTokens))
	}
	if x.g.MemberRounds() {
		if err := x.memberCommit(b.Round, a.Key); err != nil {
			return err
		}
	}
	if !b.Fresh && a.HasEndState && b.StartState != a.EndState {
		return reject(CodeStateMismatch, "start state %s is not the end state %s of the last commit", b.StartState, a.EndState)
	}
	rec := CommitRecord{Round: b.Round, Worker: a.Key, DeltaHash: b.DeltaHash, Tokens: b.Tokens,
		StartState: b.StartState, EndState: b.EndState, Fresh: b.Fresh, Kernel: b.Kernel, Private: b.Private, Height: x.height}
	x.st.kv.put(commitKey(b.Round, a.Key), rec.encode())
	a.HasEndState, a.EndState = true, b.EndState
	return nil
}

func (x *execution) result(a *Account, b *ResultTx) error {
	if !x.g.IsAuthority(a.Key) {
		return reject(CodeUnauthorized, "%s may not sign round results", a.Key)
	}
	if b.Round != x.meta.OpenRound {
		return reject(CodeRoundNotOpen, "result for round %d, but the open round is %d", b.Round, x.meta.OpenRound)
	}
	if err := x.checkResult(b); err != nil {
		return err
	}
	if lag := x.g.SettlementLag; b.Round >= lag && x.meta.NextSettle <= b.Round-lag {
		return reject(CodeInvalid, "round %d must be settled before round %d closes", x.meta.NextSettle, b.Round)
	}
	x.closeRound(b)
	return nil
}

// checkResult checks a result's contributions against the round's
// commits: each accepted one matches its commit, no delta is accepted
// twice, and no worker is both accepted and rejected.
func (x *execution) checkResult(b *ResultTx) error {
	seen := map[Hash]bool{}
	for _, c := range b.Accepted {
		rec, ok, err := x.st.commit(b.Round, c.Worker)
		if err != nil {
			return internalError{err}
		}
		if !ok {
			return reject(CodeNoCommit, "%s did not commit in round %d", c.Worker, b.Round)
		}
		if rec.DeltaHash != c.DeltaHash || rec.Tokens != c.Tokens {
			return reject(CodeNoCommit, "%s's contribution does not match its commit", c.Worker)
		}
		if seen[c.DeltaHash] {
			return reject(CodeInvalid, "delta %s accepted twice (a copy)", c.DeltaHash)
		}
		seen[c.DeltaHash] = true
		if _, err := x.acct(c.Worker); err != nil {
			return err
		}
	}
	for _, r := range b.Rejected {
		if _, ok, err := x.st.commit(b.Round, r.Worker); err != nil {
			return internalError{err}
		} else if !ok {
			return reject(CodeNoCommit, "%s rejected but did not commit in round %d", r.Worker, b.Round)
		}
		if i := sort.Search(len(b.Accepted), func(i int) bool {
			return bytes.Compare(b.Accepted[i].Worker[:], r.Worker[:]) >= 0
		}); i < len(b.Accepted) && b.Accepted[i].Worker == r.Worker {
			return reject(CodeInvalid, "%s both accepted and rejected", r.Worker)
		}
		if _, err := x.acct(r.Worker); err != nil {
			return err
		}
	}
	return nil
}

// closeRound records b as the open round's result and opens the next.
func (x *execution) closeRound(b *ResultTx) {
	rec := RoundRecord{Round: b.Round, ModelHash: b.ModelHash, Height: x.height, Accepted: b.Accepted, Rejected: b.Rejected}
	x.st.kv.put(roundKey(b.Round), rec.encode())
	if x.g.CheckCommittee > 0 {
		x.st.kv.put(beaconKey(b.Round), slices.Clone(x.beacon[:]))
	}
	x.meta.OpenRound++
}

func (x *execution) settle(a *Account, b *SettleTx) error {
	if x.g.MemberChecks {
		return x.checkVote(a, b)
	}
	if !x.g.IsAuthority(a.Key) {
		return reject(CodeUnauthorized, "%s may not sign settlements", a.Key)
	}
	if x.g.MemberRounds() {
		return reject(CodeUnauthorized, "a run with member rounds and no member checks settles each round when it closes")
	}
	return x.settleRound(b)
}

// settleRound settles the oldest closed, unsettled round with b's verdicts.
func (x *execution) settleRound(b *SettleTx) error {
	s, err := x.checkSettlement(b)
	if err != nil {
		return err
	}
	return x.applySettlement(s)
}

// settlement is a checked SettleTx: the tokens of the contributions it
// pays and their indexes in b.Verdicts.
type settlement struct {
	b      *SettleTx
	tokens []uint64
	paid   []int
}

// checkSettlement checks that b settles the oldest closed, unsettled
// round with a verdict for each of its accepted contributions.
func (x *execution) checkSettlement(b *SettleTx) (settlement, error) {
	switch m := x.meta; {
	case b.Round >= m.OpenRound:
		return settlement{}, reject(CodeNotSettleable, "round %d is not closed (open round %d)", b.Round, m.OpenRound)
	case b.Round < m.NextSettle:
		return settlement{}, reject(CodeNotSettleable, "round %d is already settled", b.Round)
	case b.Round > m.NextSettle:
		return settlement{}, reject(CodeNotSettleable, "round %d must be settled first", m.NextSettle)
	}
	rr, ok, err := x.st.round(b.Round)
	if err != nil || !ok {
		return settlement{}, internalError{fmt.Errorf("ledger: closed round %d has no result record (%v)", b.Round, err)}
	}
	// Verdicts (sorted by worker) cover every accepted contribution and
	// may cover rejected ones: a contribution screening kept out of the
	// aggregate is never paid, but a failed verification still slashes it.
	var tokens []uint64
	var paid []int
	ai, ri := 0, 0
	for i, v := range b.Verdicts {
		for ri < len(rr.Rejected) && bytes.Compare(rr.Rejected[ri].Worker[:], v.Worker[:]) < 0 {
			ri++
		}
		switch {
		case ai < len(rr.Accepted) && rr.Accepted[ai].Worker == v.Worker:
			if v.Outcome != Failed {
				tokens = append(tokens, rr.Accepted[ai].Tokens)
				paid = append(paid, i)
			}
			ai++
		case ai < len(rr.Accepted) && bytes.Compare(rr.Accepted[ai].Worker[:], v.Worker[:]) < 0:
			return settlement{}, reject(CodeInvalid, "no verdict for the accepted contribution of %s", rr.Accepted[ai].Worker)
		case ri < len(rr.Rejected) && rr.Rejected[ri].Worker == v.Worker:
			if v.Outcome == Passed {
				return settlement{}, reject(CodeInvalid, "%s's contribution was rejected in round %d: it cannot pass", v.Worker, b.Round)
			}
		default:
			return settlement{}, reject(CodeInvalid, "verdict for %s, who has no contribution in round %d", v.Worker, b.Round)
		}
	}
	if ai < len(rr.Accepted) {
		return settlement{}, reject(CodeInvalid, "no verdict for the accepted contribution of %s", rr.Accepted[ai].Worker)
	}
	if _, err := SplitEmission(x.g.EmissionPerRound, tokens); err != nil {
		return settlement{}, reject(CodeInvalid, "%v", err)
	}
	return settlement{b: b, tokens: tokens, paid: paid}, nil
}

// applySettlement pays and slashes as s says and marks its round settled.
func (x *execution) applySettlement(s settlement) error {
	b, tokens, paid := s.b, s.tokens, s.paid
	shares, err := SplitEmission(x.g.EmissionPerRound, tokens)
	if err != nil {
		return reject(CodeInvalid, "%v", err)
	}
	var minted uint64
	if len(paid) > 0 {
		minted = x.g.EmissionPerRound
	}
	m := x.meta
	if err := m.mint(minted); err != nil {
		return err
	}
	recs := make([]VerdictRecord, len(b.Verdicts))
	for i, v := range b.Verdicts {
		recs[i] = VerdictRecord{Round: b.Round, Worker: v.Worker, Outcome: v.Outcome, Reason: v.Reason, Height: x.height}
		if len(v.Evidence) > 0 {
			recs[i].EvidenceHash = sha256.Sum256(v.Evidence)
		}
	}
	contributed := map[PubKey]uint64{}
	for j, i := range paid {
		w, err := x.acct(b.Verdicts[i].Worker)
		if err != nil {
			return err
		}
		w.Balance += shares[j] // bounded by the new supply
		recs[i].Reward = shares[j]
		contributed[w.Key] = tokens[j]
	}
	if err := x.addContributions(contributed); err != nil {
		return err
	}
	for i, v := range b.Verdicts {
		if v.Outcome != Failed {
			continue
		}
		w, err := x.acct(v.Worker)
		if err != nil {
			return err
		}
		if recs[i].Slashed, err = m.slash(w, x.g.SlashBasisPoints); err != nil {
			return err
		}
		if err := x.unexpect(w); err != nil {
			return err
		}
	}
	for i := range recs {
		x.st.kv.put(verdictKey(b.Round, recs[i].Worker), recs[i].encode())
	}
	m.NextSettle++
	x.meta = m
	return nil
}

// mint adds amount to the supply and to the minted total.
func (m *Meta) mint(amount uint64) error {
	var c1, c2 uint64
	m.Supply, c1 = bits.Add64(m.Supply, amount, 0)
	m.Minted, c2 = bits.Add64(m.Minted, amount, 0)
	if c1|c2 != 0 {
		return reject(CodeInvalid, "minting %d would overflow the supply", amount)
	}
	return nil
}

// slash takes basisPoints of w's stake and unbonding entries, burned, and
// returns the amount.
func (m *Meta) slash(w *Account, basisPoints uint32) (uint64, error) {
	cut := slashAmount(w.Stake+w.Unbonded(), basisPoints)
	var c uint64
	if m.Burned, c = bits.Add64(m.Burned, cut, 0); c != 0 {
		return 0, reject(CodeInvalid, "the burned total would overflow")
	}
	m.Supply -= cut // cut <= the worker's holdings <= the supply
	takeStake(w, cut)
	return cut, nil
}

// takeStake removes cut from the bonded stake first, then from the
// unbonding entries oldest first; entries emptied are dropped.
func takeStake(a *Account, cut uint64) {
	n := min(cut, a.Stake)
	a.Stake -= n
	cut -= n
	var keep []Unbonding
	for _, u := range a.Unbonding {
		n := min(cut, u.Amount)
		u.Amount -= n
		cut -= n
		if u.Amount > 0 {
			keep = append(keep, u)
		}
	}
	a.Unbonding = keep
}

// isTxError reports whether err is a rejection rather than corruption.
func isTxError(err error) (*TxError, bool) {
	var te *TxError
	ok := errors.As(err, &te)
	return te, ok
}
