package node

import (
	"time"

	"github.com/cairnlabs/cairn/verify"
)

// ValidationOptions configure the aggregator's validator.
type ValidationOptions struct {
	// Sample chooses the contributions recomputed besides the excluded
	// ones and those of workers already caught: each with probability
	// P, drawn from the hash of the block that recorded the round's
	// result, plus the most suspicious by screening (zero value:
	// verify.DefaultSampleOptions()).
	Sample verify.SampleOptions
	// Tolerance is the cross-kernel-path bound on the distance between a
	// contribution and its recomputation (0: verify.DefaultTolerance).
	Tolerance float64
	// Threads are the validator's own compute threads (0: 1).
	Threads int
}

// ValidatorStats say what the aggregator's validator did.
type ValidatorStats struct {
	Checked int           // contributions recomputed (or found unrevealed)
	Failed  int           // of those, the ones that failed
	Busy    time.Duration // time spent recomputing and judging
}
