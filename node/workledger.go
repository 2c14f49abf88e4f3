package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/verify"
)

// Reveal is what a worker keeps of one of its accepted contributions
// until the round is settled: its commit, the local state it trained from
// (whose hash is Commit.StartState) and the payload it sent (whose
// digest is Commit.DeltaHash). With the round's weights and the worker's
// identity the start state fixes the contribution bit for bit on the
// commit's kernel path, so a validator recomputing it asks for them.
type Reveal struct {
	Round   uint64
	Commit  ledger.CommitTx
	Start   diloco.LocalState
	Payload []byte
}

// workLedger is a worker's side of the run's chain. Its fields belong to
// the run loop, except kept (under the worker's mu).
type workLedger struct {
	key     ed25519.PrivateKey
	self    ledger.PubKey
	client  *LedgerClient // kept across sessions with one host and chain
	host    string
	kernel  string
	zero    diloco.Hash // the hash of the run's zero local state
	keep    int         // reveals kept: SettlementLag+1
	refresh atomic.Bool // a balance query is in flight

	// What the chain holds of this worker: whether it has a commit, and
	// the end state of its last; known false means ask before the next
	// commit.
	known, has bool
	end        ledger.Hash
	// recorded is 1 + the round of the last commit the chain recorded
	// (0: none yet): the chain takes one commit per round.
	recorded int

	// The local state before the round in progress (or the last one
	// trained), to roll back to if its commit is not recorded.
	start      diloco.LocalState
	startHash  diloco.Hash
	startValid bool
	// cur is the hash of the worker's local state, while curValid.
	cur      diloco.Hash
	curValid bool

	kept []Reveal // oldest first, at most keep
	// sending is the reveal of the contribution being submitted (its
	// start state a copy), under the worker's mu: a validator may ask for
	// it as soon as the round closes, before the worker has read its
	// acknowledgement and kept it.
	sending *Reveal
}

// stateHash is the hash of the worker's local state (cached between
// changes: hashing it reads every moment).
func (w *Worker) stateHash() diloco.Hash {
	l := &w.led
	if !l.curValid {
		l.cur, l.curValid = w.w.StateHash(), true
	}
	return l.cur
}

// setState replaces the worker's local state.
func (w *Worker) setState(s diloco.LocalState, hash diloco.Hash) error {
	if err := w.w.SetState(s); err != nil {
		return err
	}
	w.led.cur, w.led.curValid = hash, true
	return nil
}

// connectLedger reaches the run's chain at the start of a session: a
// client for the aggregator's chain (the one the welcome names), and the
// stake the run asks for, which a worker whose balance allows bonds by
// itself (waiting for the block that records it). A worker that cannot
// reach the minimum says so in its log and carries on: the aggregator
// refuses it, naming the stake it lacks, until someone funds it.
func (w *Worker) connectLedger(ctx context.Context, wel *welcome) error {
	l := &w.led
	if wel.ChainID == "" {
		return errPermanent{errors.New("the aggregator names no ledger chain")}
	}
	if l.client == nil || (l.host != w.aggID && w.opts.ChainRPC == "") || l.client.Info().ChainID != wel.ChainID {
		var c *LedgerClient
		var err error
		if w.opts.ChainRPC != "" {
			c, err = NewChainLedgerClient(ctx, w.opts.ChainRPC, l.key, wel.ChainID)
		} else {
			c, err = NewLedgerClient(ctx, w.tr, w.aggID, l.key, wel.ChainID)
		}
		if err != nil {
			return err
		}
		if old := l.client; old != nil && old.Info().ChainID == wel.ChainID {
			c.last = max(c.last, old.Nonce()) // commits may still be queued
		} else {
			l.has, l.end = false, ledger.Hash{}
		}
		l.client, l.host = c, w.aggID
		l.keep = int(min(c.Info().SettlementLag, 64)) + 1
	}
	l.known = false // the chain may have moved on while we were away
	minStake := wel.MinStake
	if minStake == 0 {
		return nil
	}
	a, err := l.client.Account(ctx, l.self)
	if err != nil {
		return err
	}
	w.setBalance(a)
	if a.Stake >= minStake {
		return nil
	}
	need := minStake - a.Stake
	if a.Balance < need {
		w.log.Warn("this identity's stake is below the run's minimum and its balance cannot make it up: the aggregator will refuse it until someone funds it",
			"id", w.ID(), "stake", a.Stake, "balance", a.Balance, "min_stake", minStake)
		return nil
	}
	if err := l.client.Register(ctx, need); err != nil {
		return fmt.Errorf("bonding %d units of stake: %w", need, err)
	}
	w.log.Info("bonding stake", "amount", need, "min_stake", minStake)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for wait := time.Now().Add(time.Minute); time.Now().Before(wait); {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if a, err = l.client.Account(ctx, l.self); err != nil {
			return err
		}
		if a.Stake >= minStake {
			w.setBalance(a)
			w.log.Info("stake bonded", "stake", a.Stake, "balance", a.Balance)
			return nil
		}
	}
	return fmt.Errorf("the stake bonded %v ago is not on the ledger yet", time.Minute)
}

// reconcile makes the worker's local state continue what the chain holds
// before it trains and commits: the end state of its last recorded
// commit, or the zero state (a fresh start). When it does not know what
// the chain holds (a new session, a refused or unanswered contribution)
// it asks. A worker whose last commit was not recorded rolls back to the
// state it trained that round from; one whose state matches nothing the
// chain holds starts afresh from the zero state.
func (w *Worker) reconcile(ctx context.Context) error {
	l := &w.led
	if !l.known {
		a, err := l.client.Account(ctx, l.self)
		if err != nil {
			return err
		}
		l.known, l.has, l.end = true, a.HasEndState, a.EndState
		l.client.catchUp(a.Nonce)
		w.setBalance(a)
	}
	target := l.zero
	if l.has {
		target = diloco.Hash(l.end)
	}
	cur := w.stateHash()
	switch {
	case cur == target || cur == l.zero:
	case l.startValid && l.startHash == target:
		if err := w.setState(l.start, l.startHash); err != nil {
			return errPermanent{err}
		}
		w.log.Info("rolled the local state back to the start of the last round: its commit is not on the ledger")
	default:
		if err := w.setState(diloco.ZeroState(w.w.Cfg), l.zero); err != nil {
			return errPermanent{err}
		}
		w.log.Warn("the local state does not continue this worker's last commit on the ledger; starting afresh from the zero state")
	}
	return nil
}

// commitTo builds and signs the worker's commit to a contribution:
// the payload's digest, the tokens, the local state's hash before the
// round (start) and after it, and the kernel path it trained on. A start
// from the zero state is a fresh start.
func (w *Worker) commitTo(round int, payload []byte, tokens int, start diloco.Hash) (ledger.CommitTx, []byte, error) {
	l := &w.led
	c := ledger.CommitTx{Round: uint64(round), DeltaHash: ledger.Hash(verify.PayloadDigest(payload)), Tokens: uint64(tokens),
		StartState: ledger.Hash(start), EndState: ledger.Hash(w.stateHash()), Fresh: start == l.zero, Kernel: l.kernel, Private: w.opts.PrivateData != nil}
	raw, err := l.client.signNext(&c)
	return c, raw, err
}

// submitted takes note of what became of a contribution's commit:
// recorded (the contribution accepted, or refused all the same), or not
// recorded by this attempt (refused before). A refusal of a first attempt
// rolls the local state back to the round's start; after any refusal the
// worker asks the chain before its next commit.
func (w *Worker) submitted(c *contribution, recorded, accepted bool) {
	l := &w.led
	if !accepted { // an accepted one's reveal moves to kept (keepReveal)
		w.mu.Lock()
		l.sending = nil
		w.mu.Unlock()
	}
	if recorded {
		l.known, l.has, l.end = true, true, c.commit.EndState
		l.recorded = c.round + 1
		if accepted {
			w.keepReveal(c)
		}
		return
	}
	l.known = false
	w.stopAhead() // it trained on from this contribution's end state
	if c.attempts == 1 && l.startValid && l.startHash == diloco.Hash(c.commit.StartState) {
		if err := w.setState(l.start, l.startHash); err != nil {
			w.log.Error("cannot roll the local state back", "err", err)
		}
	}
}

// sendingReveal makes the reveal of contribution c available while it is
// submitted, if the worker holds its start state.
func (w *Worker) sendingReveal(c *contribution) {
	l := &w.led
	var r *Reveal
	if l.startValid && l.startHash == diloco.Hash(c.commit.StartState) {
		r = &Reveal{Round: c.commit.Round, Commit: c.commit, Start: l.start.Clone(), Payload: c.payload}
	}
	w.mu.Lock()
	l.sending = r
	w.mu.Unlock()
}

// keepReveal keeps the start state of an accepted contribution, dropping
// the oldest beyond SettlementLag+1 (its buffers hold the next round's
// start).
func (w *Worker) keepReveal(c *contribution) {
	l := &w.led
	r := Reveal{Round: c.commit.Round, Commit: c.commit, Start: l.start, Payload: c.payload}
	l.start, l.startValid = diloco.LocalState{}, false
	w.mu.Lock()
	l.sending = nil
	if len(l.kept) >= l.keep {
		l.start = l.kept[0].Start
		l.kept = append(l.kept[:0], l.kept[1:]...)
	}
	l.kept = append(l.kept, r)
	w.mu.Unlock()
}

// Reveal returns a copy of what the worker keeps for its contribution to
// round (see Reveal): false if it keeps nothing for it (it did not
// contribute, the contribution was refused, or it is older than the
// worker's last SettlementLag+1 accepted contributions).
func (w *Worker) Reveal(round uint64) (Reveal, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.led.kept {
		if r.Round == round {
			r.Start, r.Payload = r.Start.Clone(), append([]byte(nil), r.Payload...)
			return r, true
		}
	}
	if r := w.led.sending; r != nil && r.Round == round {
		return Reveal{Round: r.Round, Commit: r.Commit, Start: r.Start.Clone(), Payload: append([]byte(nil), r.Payload...)}, true
	}
	return Reveal{}, false
}

// Revealable lists the rounds the worker keeps reveals for, oldest first.
func (w *Worker) Revealable() []uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var rs []uint64
	for _, r := range w.led.kept {
		rs = append(rs, r.Round)
	}
	return rs
}

// setBalance notes the worker's account as last read.
func (w *Worker) setBalance(a ledger.Account) {
	w.mu.Lock()
	w.stats.Balance, w.stats.Stake = a.Balance, a.Stake
	w.mu.Unlock()
	w.met.Gauge("cairn_balance", "this worker's balance on the run's ledger, in units").Set(float64(a.Balance))
	w.met.Gauge("cairn_stake", "this worker's bonded stake on the run's ledger, in units").Set(float64(a.Stake))
}

// readBalance reads the worker's account back (after an accepted
// contribution: the rounds settled since pay it) in the background, one
// query at a time.
func (w *Worker) readBalance(ctx context.Context) {
	c := w.led.client
	if c == nil || !w.led.refresh.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer w.led.refresh.Store(false)
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if a, err := c.Account(ctx, w.led.self); err == nil {
			w.setBalance(a)
		} else {
			w.log.Debug("balance not read", "err", err)
		}
	}()
}

// finalBalance reads the worker's account once the run is over (every
// round is settled by then unless the Settler still works on some).
func (w *Worker) finalBalance(ctx context.Context) {
	if w.led.client == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if a, err := w.led.client.Account(ctx, w.led.self); err == nil {
		w.setBalance(a)
		w.log.Info("balance", "balance", a.Balance, "stake", a.Stake)
	}
}

// kernelName is the kernel path this process trains on, as a commit
// names it ([a-z0-9._+/-], at most ledger.MaxKernelBytes).
func kernelName() string {
	b := []byte(verify.CurrentPath())
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + 'a' - 'A'
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '_', c == '+', c == '/', c == '-':
		default:
			b[i] = '-'
		}
	}
	if len(b) > ledger.MaxKernelBytes {
		b = b[:ledger.MaxKernelBytes]
	}
	if len(b) == 0 {
		return "unknown"
	}
	return string(b)
}

// revealState is the worker's RevealSource: the encoded start state of its
// contribution to round, while it keeps it.
func (w *Worker) revealState(round int) ([]byte, bool) {
	if round < 0 {
		return nil, false
	}
	r, ok := w.Reveal(uint64(round))
	if !ok {
		return nil, false
	}
	enc, err := r.Start.MarshalBinary()
	return enc, err == nil
}

// isValidator says whether peer may see the worker's start states: the
// run's aggregator, which validates its rounds.
func (w *Worker) isValidator(peer string, _ int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return peer != "" && peer == w.aggID
}
