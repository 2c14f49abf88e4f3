package diloco

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/cairnlabs/cairn/verify"
)

// PayloadHistory is how many closed rounds' payload digests the aggregator
// remembers to recognise copies (a contribution whose payload repeats one
// of them is excluded as a Duplicate). The memory it costs is a digest and
// a worker id per contribution of those rounds.
const PayloadHistory = 4

// Contribution is a contribution a closed round took: who sent it, the
// digest of its payload (verify.PayloadDigest, what the worker commits to)
// and the tokens it claims.
type Contribution struct {
	Worker  string
	Payload verify.Digest
	Tokens  int
	// Members, for the sum of a secure-aggregation cohort (SubmitCohort),
	// are the workers whose contributions it sums (Worker is then the
	// cohort's name); nil for a worker's own contribution.
	Members []string
	// Parts is the number of inputs a cohort's sum holds (0 otherwise).
	Parts int
	// Measured says whether the caller supplied the held-out loss
	// (SetHeldOut) before the round closed: LossBefore at θr, LossAfter at
	// θr − Step·Δ (see verify.HeldOut).
	Measured              bool
	LossBefore, LossAfter float64
}

// Exclusion is a contribution left out of the aggregate for a certain
// finding of screening: something no honest worker sends, whatever the
// other contributions of the round are.
type Exclusion struct {
	Contribution
	// Flags are the certain findings: NonFinite (a value that is not
	// finite), Duplicate (the payload repeats one of the last
	// PayloadHistory rounds', or another worker sent the same bytes in
	// this round: neither copy counts, both are screened as suspects),
	// NormLow (Δ is exactly zero although it claims tokens), LossWorse
	// (the held-out loss after applying it is not finite).
	Flags verify.Flag
	// Reason says the same in one line, for logs and for the ledger.
	Reason string
}

// SeenPayload is a payload digest the aggregator remembers, with where it
// was first seen (part of the durable state, see Snapshot.Seen). Its JSON
// is {"payload": hex digest, "worker": id, "round": n}.
type SeenPayload struct {
	Payload verify.Digest
	Worker  string
	Round   int
}

type seenJSON struct {
	Payload string `json:"payload"`
	Worker  string `json:"worker"`
	Round   int    `json:"round"`
}

// MarshalJSON encodes s with its digest in hex.
func (s SeenPayload) MarshalJSON() ([]byte, error) {
	return json.Marshal(seenJSON{Payload: s.Payload.String(), Worker: s.Worker, Round: s.Round})
}

// UnmarshalJSON decodes what MarshalJSON writes; a digest that is not 64
// hex digits is an error (Restore checks the rest).
func (s *SeenPayload) UnmarshalJSON(b []byte) error {
	var j seenJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	d, err := hex.DecodeString(j.Payload)
	if err != nil || len(d) != len(s.Payload) {
		return fmt.Errorf("seen payload digest %.80q is not %d hex digits", j.Payload, 2*len(s.Payload))
	}
	copy(s.Payload[:], d)
	s.Worker, s.Round = j.Worker, j.Round
	return nil
}

// MaxWorkerID bounds the length of a worker id the aggregator remembers in
// its payload history (libp2p peer ids are about 52 bytes).
const MaxWorkerID = verify.MaxWorkerLen

// SetHeldOut gives the held-out loss of worker id's contribution to round,
// whose payload has digest payload: before is the loss at the round's
// weights θr and after at θr − Step·Δ, as verify.HeldOut.Loss measures them
// on a held-out slice of the worker's assigned data. The caller measures it
// off the state machine (it costs forward passes), on its own kernel path;
// only one node, the aggregator, screens a round, so the differences of a
// few ulps between paths never meet. Screening at close uses the loss
// (verify.Screen's loss score; a finite before with an after that is not
// finite excludes the contribution); a before that is not finite says
// nothing about the contribution and counts as unmeasured.
//
// It refuses, in one line, a loss for another round than the current one, for
// a worker that has not contributed to it, for another payload than the one
// held, or a second loss for one contribution. A refusal is normal when the
// round closed before the measurement finished.
func (a *Aggregator) SetHeldOut(id string, round int, payload verify.Digest, before, after float64) error {
	if round != a.round || (a.phase != Open && a.phase != Waiting) { // a round back to waiting keeps its contributions
		return fmt.Errorf("held-out loss for round %d, but round %d is %v", round, a.round, a.phase)
	}
	s, ok := a.subs[id]
	switch {
	case !ok:
		return fmt.Errorf("held-out loss for %s, which has not contributed to round %d", id, round)
	case s.digest != payload:
		return fmt.Errorf("held-out loss of payload %s, but %s contributed %s", payload, id, s.digest)
	case s.lossSet:
		return fmt.Errorf("held-out loss of %s's contribution to round %d given twice", id, round)
	}
	s.lossSet = true
	if !math.IsNaN(before) && !math.IsInf(before, 0) {
		s.measured, s.before, s.after = true, before, after
	}
	a.subs[id] = s
	return nil
}

// awaitingLoss reports whether the round, ready to close at now, should
// wait for held-out losses still missing: at most HeldOutWait after it
// first became ready.
func (a *Aggregator) awaitingLoss(now time.Time) bool {
	if a.HeldOutWait <= 0 {
		return false
	}
	missing := false
	for _, s := range a.subs {
		if !s.lossSet {
			missing = true
			break
		}
	}
	if !missing {
		return false
	}
	if a.readyAt.IsZero() {
		a.readyAt = now
	}
	return now.Before(a.readyAt.Add(a.HeldOutWait))
}

// certain returns the certain findings of a contribution's screening and
// their reason, or 0 and "" when it may be aggregated.
func certain(round int, s verify.Screening, c Contribution, private *Private) (verify.Flag, string) {
	switch {
	case c.Members != nil && private != nil && c.Measured && !(c.LossBefore-c.LossAfter >= -private.Tolerance):
		return verify.LossWorse, fmt.Sprintf("the cohort's sum worsens the held-out loss by %.4f nats, past the run's tolerance of %g", c.LossAfter-c.LossBefore, private.Tolerance)
	case s.Flags&verify.NonFinite != 0:
		return verify.NonFinite, "its Δ holds a value that is not finite"
	case s.Flags&verify.Duplicate != 0:
		if s.DuplicateOf.Round == round {
			return verify.Duplicate, fmt.Sprintf("its payload is byte for byte %s's in this round", s.DuplicateOf.Worker)
		}
		return verify.Duplicate, fmt.Sprintf("its payload is byte for byte %s's of round %d", s.DuplicateOf.Worker, s.DuplicateOf.Round)
	case s.Norm == 0:
		return verify.NormLow, fmt.Sprintf("its Δ is zero, yet it claims %d tokens", c.Tokens)
	case c.Measured && (math.IsNaN(c.LossAfter) || math.IsInf(c.LossAfter, 0)):
		return verify.LossWorse, fmt.Sprintf("the held-out loss after applying it is %v", c.LossAfter)
	}
	return 0, ""
}

// prior maps the remembered payload digests to where they were first seen.
func (a *Aggregator) prior() map[verify.Digest]verify.Origin {
	m := make(map[verify.Digest]verify.Origin, len(a.seen))
	for _, s := range a.seen { // oldest first: the first sighting wins
		if _, ok := m[s.Payload]; !ok {
			m[s.Payload] = verify.Origin{Worker: s.Worker, Round: s.Round}
		}
	}
	return m
}

// remember adds the payloads of the closing round's contributors ids (in
// worker order) to the history and forgets rounds older than
// PayloadHistory.
func (a *Aggregator) remember(round int, ids []string) {
	keep := a.seen[:0]
	for _, s := range a.seen {
		if s.Round > round-PayloadHistory {
			keep = append(keep, s)
		}
	}
	clear(a.seen[len(keep):]) // let forgotten ids go
	a.seen = keep
	for _, id := range ids {
		a.seen = append(a.seen, SeenPayload{Payload: a.subs[id].digest, Worker: id, Round: round})
	}
}

// checkSeen validates a snapshot's payload history for a run at round
// (which no remembered payload can be from) and returns the entries still
// within PayloadHistory rounds.
func checkSeen(seen []SeenPayload, round int) ([]SeenPayload, error) {
	var out []SeenPayload
	for i, s := range seen {
		switch {
		case s.Round < 0 || s.Round >= round:
			return nil, fmt.Errorf("snapshot remembers a payload of round %d at round %d", s.Round, round)
		case s.Worker == "" || len(s.Worker) > MaxWorkerID:
			return nil, fmt.Errorf("snapshot remembers payload %d with a worker id of %d bytes (1 to %d)", i, len(s.Worker), MaxWorkerID)
		case i > 0 && s.Round < seen[i-1].Round:
			return nil, fmt.Errorf("snapshot's payload history is not in round order")
		}
		if s.Round > round-1-PayloadHistory {
			out = append(out, s)
		}
	}
	return out, nil
}
