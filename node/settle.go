package node

import "github.com/cairnlabs/cairn/ledger"

// Settler judges the contributions of closed rounds for the run's chain:
// the step between a round's result, which says which contributions were
// aggregated, and its settlement, which pays them (and slashes the ones
// that failed verification).
//
// The aggregator asks its Settler about the oldest closed round that is
// not settled yet, first right after the block that records the round's
// result and then from its clock loop (every block interval) until the
// Settler answers. It submits the verdicts as the round's settlement and
// makes their block at once. It never closes DiLoCo round
// r+SettlementLag before round r is settled (the ledger would refuse that
// result): the round's contributions wait, and late ones are refused, so
// a slow Settler slows the run down rather than letting unjudged rounds
// pile up.
//
// A validator that recomputes contributions plugs in here: on the first
// call for a round it starts its work in the background (drawing the
// contributions to recompute with the block's hash as beacon: it is fixed
// only after every commit of the round) and answers not ready; a later
// call returns the verdicts.
type Settler interface {
	// Settle returns the verdicts for the round rec describes, whose
	// result the chain recorded in the block with hash beacon: one per rec.Accepted, in that
	// order and for the same workers, and ready true. While they are not
	// ready it returns ready false and no error, and is asked again with
	// the same arguments; it must not block. An error is logged and the
	// round asked again later; so are verdicts the ledger refuses (the
	// wrong number, order or workers, a failed verdict without evidence).
	Settle(rec ledger.RoundRecord, beacon ledger.Hash) (verdicts []ledger.Verdict, ready bool, err error)
}

// SettleUnchecked is the default Settler while no validator runs: it
// settles every round as soon as its result is recorded, each accepted
// contribution Unchecked, so the round's emission is paid at once, split
// pro rata to the contributions' tokens.
type SettleUnchecked struct{}

// Settle returns an Unchecked verdict for every accepted contribution; it
// is always ready and never fails.
func (SettleUnchecked) Settle(rec ledger.RoundRecord, _ ledger.Hash) ([]ledger.Verdict, bool, error) {
	vs := make([]ledger.Verdict, len(rec.Accepted))
	for i, c := range rec.Accepted {
		vs[i] = ledger.Verdict{Worker: c.Worker, Outcome: ledger.Unchecked}
	}
	return vs, true, nil
}
