package web

import (
	"fmt"
	"time"

	"github.com/cairnlabs/cairn/ledger"
)

// LedgerSource is where the view reads the run's ledger (node.LedgerHost
// is one).
type LedgerSource interface {
	Totals() (ledger.Totals, error)
	Round(r uint64) (ledger.RoundInfo, error)
	AccountOf(k ledger.PubKey) (ledger.Account, error)
}

// AccountLister is a LedgerSource that can list every account (a
// validator's view shows them all; an aggregator's only its workers).
type AccountLister interface {
	Accounts() ([]ledger.Account, error)
}

// ListAccounts makes the view show every account of a source that is an
// AccountLister, named by nameOf (a peer ID, say).
func (h *Hub) ListAccounts(nameOf func(ledger.PubKey) string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nameOf = nameOf
}

// Verifier is a LedgerSource that can replay its ledger from genesis
// (node.LedgerHost on an embedded chain).
type Verifier interface {
	Verify() error
}

// verifyEvery bounds how often the view replays the ledger, and a replay
// at most 0.5% of the time: a replay grows with the chain.
const verifyEvery = 30 * time.Second

// ledgerEvery bounds how often the view reads the ledger, however many
// requests come.
const ledgerEvery = time.Second

// SetLedgerSource makes the view read the ledger from src (at most once
// a second, when the page asks): totals, each settled round's slashing
// with its evidence, and the balance and stake of every worker it knows.
// accountOf maps a worker's ID to its ledger key.
func (h *Hub) SetLedgerSource(src LedgerSource, accountOf func(id string) (ledger.PubKey, error)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.src, h.accountOf = src, accountOf
	h.gen++
	h.verifying, h.verifiedAt = false, time.Time{}
	// Read everything again from the new source.
	h.scanned, h.ledgerAt, h.ledger.Slashes, h.ledger.Rewards = 0, time.Time{}, nil, nil
	for _, w := range h.workers {
		w.Slashed = 0
	}
}

// FreezeLedger reads the ledger source once more and stops reading it
// (it is about to close), keeping what it read.
func (h *Hub) FreezeLedger() {
	h.mu.Lock()
	h.ledgerAt = time.Time{}
	h.mu.Unlock()
	h.readLedger()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.src = nil
	h.gen++
}

// SetVerified records whether the ledger's replay from genesis checked out.
func (h *Hub) SetVerified(ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ledger.Verified = &ok
}

// readLedger refreshes the ledger part of the view if it is older than
// ledgerEvery. The reads happen outside the hub's lock.
func (h *Hub) readLedger() {
	h.mu.Lock()
	src, accountOf := h.src, h.accountOf
	// At most once a second, and at most 1% of the time: a slow source
	// (a long chain, a remote validator) is read less often.
	if src == nil || h.now().Sub(h.ledgerAt) < max(ledgerEvery, 100*h.readTook) || h.reading {
		h.mu.Unlock()
		return
	}
	h.reading = true
	if v, ok := src.(Verifier); ok && !h.verifying && h.now().Sub(h.verifiedAt) >= max(verifyEvery, 200*h.verifyTook) {
		h.verifying = true
		gen := h.gen
		go func() {
			began := h.now()
			err := v.Verify()
			took := h.now().Sub(began)
			h.mu.Lock()
			defer h.mu.Unlock()
			if gen != h.gen { // the source changed meanwhile (closed, say)
				h.verifying = false
				return
			}
			ok := err == nil
			h.ledger.Verified, h.verifying, h.verifiedAt, h.verifyTook = &ok, false, h.now(), took
			h.ledger.VerifyError = ""
			if err != nil {
				h.ledger.VerifyError = err.Error()
			}
		}()
	}
	from := h.scanned
	ids := make([]string, 0, len(h.workers))
	for id := range h.workers {
		ids = append(ids, id)
	}
	h.mu.Unlock()
	began := h.now()
	defer func() {
		h.mu.Lock()
		h.reading, h.ledgerAt, h.readTook = false, h.now(), h.now().Sub(began)
		h.mu.Unlock()
	}()

	tot, err := src.Totals()
	if err != nil {
		return
	}
	var slashes []Slash
	var rewards []Reward
	for r := from; r < tot.NextSettle; r++ {
		info, err := src.Round(r)
		if err != nil {
			return
		}
		paid := Reward{Round: int(r) + 1}
		for _, v := range info.Verdicts {
			paid.Paid += v.Reward
			if v.Slashed > 0 {
				slashes = append(slashes, Slash{Round: int(r) + 1, Worker: h.idOf(v.Worker, ids, accountOf), Amount: v.Slashed,
					Evidence: fmt.Sprintf("%s: %s (evidence %x)", v.Outcome, v.Reason, v.EvidenceHash[:8])})
			}
		}
		rewards = append(rewards, paid)
	}
	accts := map[string]ledger.Account{}
	h.mu.Lock()
	nameOf := h.nameOf
	h.mu.Unlock()
	if l, ok := src.(AccountLister); ok && nameOf != nil {
		all, err := l.Accounts()
		if err != nil {
			return
		}
		for _, a := range all {
			accts[nameOf(a.Key)] = a
		}
	}
	for _, id := range ids {
		k, err := accountOf(id)
		if err != nil {
			continue
		}
		if a, err := src.AccountOf(k); err == nil {
			accts[id] = a
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.scanned = tot.NextSettle
	h.ledger.Height, h.ledger.Minted, h.ledger.Burned = int64(tot.Tip.Height), tot.Minted, tot.Burned
	h.ledger.Slashes = append(h.ledger.Slashes, slashes...)
	h.ledger.Rewards = append(h.ledger.Rewards, rewards...)
	for _, x := range slashes {
		h.worker(x.Worker).Slashed += x.Amount
	}
	for id, a := range accts {
		w := h.worker(id)
		w.Balance, w.Stake = a.Balance, a.Stake
	}
}

// idOf names the worker whose key is k: the known worker with that key,
// else the key in hex.
func (h *Hub) idOf(k ledger.PubKey, ids []string, accountOf func(string) (ledger.PubKey, error)) string {
	for _, id := range ids {
		if a, err := accountOf(id); err == nil && a == k {
			return id
		}
	}
	return fmt.Sprintf("%x", k[:])
}
