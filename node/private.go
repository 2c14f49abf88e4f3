package node

import (
	"encoding/json"
	"fmt"

	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/verify"
)

// privateCase is what a closed round's screening says of one private
// contribution (its commit says it trained on data only its worker
// holds).
type privateCase struct {
	accepted bool // aggregated
	screened bool // screening saw it
	refused  bool // the state machine refused its payload
	// cohort, for a member of a secure-aggregation cohort, is the
	// cohort's size: c is then the cohort's sum, which is all screening
	// saw.
	cohort int
	c      diloco.Contribution
	flags  verify.Flag
}

// privateEvidence is a failed private verdict's evidence: the screening
// figures it rests on.
type privateEvidence struct {
	Screened  bool    `json:"screened"`
	Measured  bool    `json:"measured"`
	Before    float64 `json:"loss_before"`
	After     float64 `json:"loss_after"`
	Tolerance float64 `json:"tolerance"`
	Flags     string  `json:"flags,omitempty"`
}

// judgePrivate is the verdict on a private contribution, which nobody can
// recompute: screening judges it by the run's rule (diloco.Private).
// Failed (slashed) when its payload was refused (malformed for the run),
// when it holds a value that is not finite or is zero although it claims
// tokens, or when applying it worsens the public held-out loss by more
// than the tolerance. Otherwise an aggregated one is Passed (screened and
// found harmless: paid) or, when its held-out loss was not measured in
// time, Unchecked (paid on trust, as a public contribution nobody drew).
// A contribution that was not aggregated and not failed gets no verdict
// (ok false): it is neither paid nor slashed. A member of a cohort is
// judged by its cohort's sum, which is all anyone saw of it: never failed
// (screening cannot tell which member harmed a sum; a harmful sum was
// excluded from the aggregate, so none of its members is paid).
func judgePrivate(key ledger.PubKey, p privateCase, rule diloco.Private) (v ledger.Verdict, ok bool, err error) {
	gain := p.c.LossBefore - p.c.LossAfter
	if p.cohort > 0 {
		switch {
		case !p.accepted:
			return v, false, nil
		case p.c.Measured:
			return ledger.Verdict{Worker: key, Outcome: ledger.Passed, Reason: ledgerReason(fmt.Sprintf("private, in a cohort of %d; its sum screened: held-out gain %+.4f nats", p.cohort, gain))}, true, nil
		default:
			return ledger.Verdict{Worker: key, Outcome: ledger.Unchecked, Reason: fmt.Sprintf("private, in a cohort of %d; held-out loss not measured in time", p.cohort)}, true, nil
		}
	}
	var why string
	switch {
	case p.refused:
		why = "private contribution refused for its payload"
	case p.flags&verify.NonFinite != 0:
		why = "private contribution holds values that are not finite"
	case p.flags&verify.NormLow != 0 && p.c.Tokens > 0 && p.flags&verify.Duplicate == 0:
		why = "private contribution is (nearly) zero although it claims tokens"
	case p.c.Measured && !(gain >= -rule.Tolerance):
		why = fmt.Sprintf("private contribution worsens the held-out loss by %.4f nats, past the run's tolerance of %g", -gain, rule.Tolerance)
	}
	if why == "" {
		switch {
		case !p.accepted || !p.screened:
			return v, false, nil
		case p.c.Measured:
			return ledger.Verdict{Worker: key, Outcome: ledger.Passed, Reason: ledgerReason(fmt.Sprintf("private; screened: held-out gain %+.4f nats", gain))}, true, nil
		default:
			return ledger.Verdict{Worker: key, Outcome: ledger.Unchecked, Reason: "private; held-out loss not measured in time"}, true, nil
		}
	}
	ev := privateEvidence{Screened: p.screened, Measured: p.c.Measured, Tolerance: rule.Tolerance}
	if p.c.Measured {
		ev.Before, ev.After = p.c.LossBefore, p.c.LossAfter
	}
	if p.flags != 0 {
		ev.Flags = p.flags.String()
	}
	b, err := json.Marshal(ev)
	if err != nil { // a loss that is not finite: say so in words
		ev.Before, ev.After = 0, 0
		ev.Flags += " (losses not finite)"
		if b, err = json.Marshal(ev); err != nil {
			return v, false, err
		}
	}
	return ledger.Verdict{Worker: key, Outcome: ledger.Failed, Reason: ledgerReason(why), Evidence: b}, true, nil
}
