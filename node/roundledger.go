package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/p2p"
)

// savedResult is a closed round's result as the aggregator saves it with
// the round's state (meta "ledger_result"): the ResultTx's body and the
// round's recorded commits, so that after a crash between the save and
// the result's block the aggregator records the result on restart.
type savedResult struct {
	Round     uint64                `json:"round"`
	ModelHash ledger.Hash           `json:"model_hash"`
	Accepted  []ledger.Contribution `json:"accepted"`
	Rejected  []ledger.Rejection    `json:"rejected"`
	Commits   [][]byte              `json:"commits"` // signed commits of the round, in arrival order
	// Privacy, in a run with differential privacy, is the privacy spent
	// once the round is published, recorded after the result.
	Privacy *ledger.PrivacyTx `json:"privacy,omitempty"`
}

// maxSavedResult bounds the saved result's JSON: MaxContributions
// commits of MaxLedgerTxBytes in base64, and the lists.
const maxSavedResult = 2*ledger.MaxContributions*MaxLedgerTxBytes + 1<<20

func (s *savedResult) tx() *ledger.ResultTx {
	return &ledger.ResultTx{Round: s.Round, ModelHash: s.ModelHash, Accepted: s.Accepted, Rejected: s.Rejected}
}

// decodeSavedResult reads a saved result (from the aggregator's state
// file: trusted to be ours, but checked for size and shape). The ledger
// judges the rest when the result is submitted.
func decodeSavedResult(b []byte) (*savedResult, error) {
	if len(b) > maxSavedResult {
		return nil, fmt.Errorf("saved ledger result of %d bytes exceeds %d", len(b), maxSavedResult)
	}
	var s savedResult
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("saved ledger result: %v", err)
	}
	if len(s.Commits) > ledger.MaxContributions || len(s.Accepted) > ledger.MaxContributions || len(s.Rejected) > ledger.MaxContributions {
		return nil, fmt.Errorf("saved ledger result holds %d commits, %d accepted and %d rejected contributions, at most %d each",
			len(s.Commits), len(s.Accepted), len(s.Rejected), ledger.MaxContributions)
	}
	for i, c := range s.Commits {
		if len(c) == 0 || len(c) > MaxLedgerTxBytes {
			return nil, fmt.Errorf("saved ledger result: commit %d of %d bytes", i, len(c))
		}
	}
	return &s, nil
}

// resultOf is the ledger's record of a closed round: the contributions
// the round aggregated, each with its recorded commit, and the recorded
// commits it did not aggregate with the reason; both sorted by worker as
// the ledger requires. It also lists the round's commits, in arrival
// order, to submit again after a crash. A contributor without a recorded
// commit cannot happen (a contribution reaches the state machine only
// after its commit); it would be left out and is returned in missing.
func resultOf(res *diloco.RoundResult, commits map[string]*roundCommit, order []string) (s *savedResult, missing []string) {
	s = &savedResult{Round: uint64(res.Round), ModelHash: ledger.Hash(res.Hash), Accepted: []ledger.Contribution{}, Rejected: []ledger.Rejection{}}
	// Only what was aggregated is accepted (and paid): contributions that
	// screening excluded are rejected with its reason.
	aggregated := map[string]bool{}
	for _, a := range res.Accepted {
		if a.Members != nil {
			// A cohort's sum: its members whose masked inputs it holds.
			for _, m := range a.Members {
				if c := commits[m]; c != nil && c.accepted {
					aggregated[m] = true
					s.Accepted = append(s.Accepted, ledger.Contribution{Worker: c.worker, DeltaHash: c.delta, Tokens: c.tokens})
				}
			}
			continue
		}
		aggregated[a.Worker] = true
		c := commits[a.Worker]
		if c == nil {
			missing = append(missing, a.Worker)
			continue
		}
		s.Accepted = append(s.Accepted, ledger.Contribution{Worker: c.worker, DeltaHash: c.delta, Tokens: c.tokens})
	}
	excluded := map[string]string{}
	for _, e := range res.Excluded {
		excluded[e.Worker] = "screening: " + e.Reason
		for _, m := range e.Members {
			excluded[m] = "screening of its cohort's sum: " + e.Reason
		}
	}
	for _, id := range order {
		c := commits[id]
		s.Commits = append(s.Commits, c.raw)
		if !aggregated[id] {
			why := c.refused
			if why == "" {
				why = excluded[id]
			}
			if why == "" {
				why = "not aggregated"
			}
			s.Rejected = append(s.Rejected, ledger.Rejection{Worker: c.worker, Reason: ledgerReason(why)})
		}
	}
	slices.SortFunc(s.Accepted, func(a, b ledger.Contribution) int { return bytes.Compare(a.Worker[:], b.Worker[:]) })
	slices.SortFunc(s.Rejected, func(a, b ledger.Rejection) int { return bytes.Compare(a.Worker[:], b.Worker[:]) })
	return s, missing
}

// ledgerReason makes s a reason the ledger accepts: printable ASCII, 1 to
// ledger.MaxReasonBytes bytes.
func ledgerReason(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	if len(b) > ledger.MaxReasonBytes {
		b = b[:ledger.MaxReasonBytes]
	}
	if len(b) == 0 {
		return "refused"
	}
	return string(b)
}

// record puts a closed round's result on the chain, in a block made at
// once: the round's commits are queued again first (those already
// queued or in a block are refused, which is fine: after a crash they
// were lost with the mempool), then the result. If the ledger refuses
// the result because a commit it names is not on the chain (dropped from
// the mempool: its worker's stake was slashed meanwhile), the queue is
// flushed into a block and the result keeps only what the chain holds;
// the contributions left out were aggregated but are not paid. Calling
// it again after an error retries; after success it does nothing.
func (l *aggLedger) record(s *savedResult, now func() time.Time) error {
	l.drive.Lock()
	defer l.drive.Unlock()
	if open := l.open.Load(); open > s.Round {
		return l.recordPrivacy(s, now)
	} else if open < s.Round {
		return fmt.Errorf("the ledger has round %d open, behind the result of round %d", open, s.Round)
	}
	if l.resultQueued != s.Round+1 {
		for _, raw := range s.Commits {
			l.host.be.Submit(raw) // a refusal: already queued or recorded
		}
		tx := s.tx()
		_, err := l.host.SubmitResult(tx)
		var te *ledger.TxError
		if errors.As(err, &te) && (te.Code == ledger.CodeNoCommit || te.Code == ledger.CodeInvalid) {
			if _, err := l.host.Produce(now()); err != nil {
				return err
			}
			var dropped []string
			if tx, dropped, err = l.onChain(tx); err != nil {
				return err
			}
			l.log.Warn("contributions aggregated without their commit on the ledger: they are not paid", "round", s.Round, "workers", dropped)
			_, err = l.host.SubmitResult(tx)
		}
		if err != nil {
			return fmt.Errorf("the ledger refused the result of round %d: %v", s.Round, err)
		}
		l.resultQueued = s.Round + 1
	}
	if _, err := l.host.Produce(now()); err != nil {
		return err
	}
	if err := l.refresh(); err != nil {
		return err
	}
	l.resultQueued = 0
	if l.open.Load() <= s.Round {
		return fmt.Errorf("the result of round %d was queued but is not in the ledger's block", s.Round)
	}
	l.log.Debug("round result recorded", "round", s.Round, "accepted", len(s.Accepted), "rejected", len(s.Rejected), "height", l.height.Load())
	return l.recordPrivacy(s, now)
}

// recordPrivacy records the privacy spent with a closed round, in a block
// after the round's result; a record the ledger holds already (the
// aggregator stopped after recording it) is not sent again.
func (l *aggLedger) recordPrivacy(s *savedResult, now func() time.Time) error {
	if s.Privacy == nil {
		return nil
	}
	_, err := l.host.SubmitPrivacy(s.Privacy)
	var te *ledger.TxError
	if errors.As(err, &te) && te.Code == ledger.CodeInvalid && strings.Contains(te.Reason, "recorded already") {
		return nil
	}
	if err != nil {
		return fmt.Errorf("the ledger refused the privacy spent with round %d: %v", s.Round, err)
	}
	if _, err := l.host.Produce(now()); err != nil {
		return err
	}
	l.log.Debug("privacy spent recorded", "round", s.Round, "epsilon_millionths", s.Privacy.Epsilon)
	return nil
}

// onChain keeps of a result the contributions whose commit the chain
// holds (matching delta hash and tokens, each delta once) and returns the
// workers left out.
func (l *aggLedger) onChain(tx *ledger.ResultTx) (*ledger.ResultTx, []string, error) {
	ri, err := l.host.Round(tx.Round)
	if err != nil {
		return nil, nil, err
	}
	have := map[ledger.PubKey]ledger.CommitRecord{}
	for _, c := range ri.Commits {
		have[c.Worker] = c
	}
	out := &ledger.ResultTx{Round: tx.Round, ModelHash: tx.ModelHash}
	var dropped []string
	seen := map[ledger.Hash]bool{}
	for _, c := range tx.Accepted {
		if rec, ok := have[c.Worker]; ok && rec.DeltaHash == c.DeltaHash && rec.Tokens == c.Tokens && !seen[c.DeltaHash] {
			seen[c.DeltaHash] = true
			out.Accepted = append(out.Accepted, c)
		} else {
			dropped = append(dropped, p2p.PeerIDOf(c.Worker))
		}
	}
	for _, r := range tx.Rejected {
		if _, ok := have[r.Worker]; ok {
			out.Rejected = append(out.Rejected, r)
		}
	}
	return out, dropped, nil
}

// settle settles the closed rounds the Settler has verdicts for, oldest
// first, each in a block made at once; it stops at the first round the
// Settler is not ready with. Errors (the Settler's, the ledger refusing
// its verdicts, a failed write) leave the round for a later call.
func (l *aggLedger) settle(now func() time.Time) error {
	l.drive.Lock()
	defer l.drive.Unlock()
	for l.settled.Load() < l.open.Load() {
		r := l.settled.Load()
		if l.settleQueued != r+1 {
			ri, err := l.host.Round(r)
			if err != nil {
				return err
			}
			if ri.Result == nil {
				return fmt.Errorf("the ledger's closed round %d has no result", r)
			}
			beacon, err := l.host.be.BlockHash(ri.Result.Height)
			if err != nil {
				return err
			}
			vs, ready, err := l.settler.Settle(*ri.Result, beacon)
			if err != nil {
				return fmt.Errorf("settling round %d: %v", r, err)
			}
			if !ready {
				return nil
			}
			if _, err := l.host.SubmitSettle(&ledger.SettleTx{Round: r, Verdicts: vs}); err != nil {
				return fmt.Errorf("the ledger refused the settlement of round %d: %v", r, err)
			}
			l.settleQueued = r + 1
		}
		if _, err := l.host.Produce(now()); err != nil {
			return err
		}
		if err := l.refresh(); err != nil {
			return err
		}
		l.settleQueued = 0
		if l.settled.Load() <= r {
			return fmt.Errorf("the settlement of round %d was queued but is not in the ledger's block", r)
		}
		l.log.Debug("round settled", "round", r, "height", l.height.Load())
	}
	return nil
}

// sync brings the chain level with the DiLoCo round the run resumes at:
// a chain whose open round is the run's is in step; one a round behind,
// when the saved state holds that round's result, missed the result's
// block (the aggregator stopped between saving the round and recording
// it), which is recorded now; a new chain for a run that started before
// it records the run's earlier rounds as empty. Anything else is a
// ledger of another run, an error.
func (l *aggLedger) sync(round int, saved *savedResult, now func() time.Time) error {
	r, open := uint64(round), l.open.Load()
	switch {
	case open == r:
		return nil
	case open+1 == r && saved != nil && saved.Round == open:
		l.log.Warn("recording the result of the last round, saved before the aggregator stopped but not yet on the ledger", "round", open)
		if err := l.record(saved, now); err != nil {
			return fmt.Errorf("the run's ledger: %v", err)
		}
		return nil
	case open == 0 && l.height.Load() == 0:
		l.log.Warn("a new ledger for a run already at a later round: its earlier rounds are recorded as empty", "rounds", r)
		return l.fastForward(r, now)
	}
	return fmt.Errorf("the run's ledger (%s) has round %d open, but the run is at round %d: it belongs to another run or lost blocks; move it away to start a new chain",
		l.path, open, r)
}

// fastForward closes and settles rounds 0..r-1 of a new chain with
// nothing accepted.
func (l *aggLedger) fastForward(r uint64, now func() time.Time) error {
	for k := uint64(0); k < r; k++ {
		if _, err := l.host.SubmitResult(&ledger.ResultTx{Round: k}); err != nil {
			return fmt.Errorf("the run's ledger: empty result of round %d: %v", k, err)
		}
		if _, err := l.host.SubmitSettle(&ledger.SettleTx{Round: k}); err != nil {
			return fmt.Errorf("the run's ledger: empty settlement of round %d: %v", k, err)
		}
		if (k+1)%1000 == 0 || k+1 == r {
			if _, err := l.host.Produce(now()); err != nil {
				return err
			}
		}
	}
	return l.refresh()
}
