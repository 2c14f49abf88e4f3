package node

import (
	"context"
	"fmt"
	"time"

	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/verify"
)

// Validator recomputes contributions: for each one it is given, it asks
// the worker for the start state it committed to, re-runs the worker's
// round from the round's weights on the worker's assigned data, and
// judges the submitted payload against the recomputation (bitwise on the
// worker's kernel path, within verify's tolerance across paths). Every
// verdict it returns is backed by its evidence (verify.Verdict). It is not
// safe for concurrent use: a node runs one per validating goroutine.
type Validator struct {
	cfg   diloco.RunConfig
	rec   *diloco.Recomputer
	judge *verify.Judge
	fetch RevealFetcher
	// Busy is the time spent recomputing and judging so far: the
	// validator's compute, set against the workers' to state the overhead.
	Busy time.Duration
}

// RevealFetcher gets worker's encoded start state of round (FetchReveal
// over a transport, in a node).
type RevealFetcher func(ctx context.Context, worker string, round int) ([]byte, error)

// NewValidator prepares recomputations of run cfg on its training data
// (the first 90% of the run's text) with the threads of pool, fetching
// reveals with fetch; tol is the cross-path tolerance (0:
// verify.DefaultTolerance).
func NewValidator(cfg diloco.RunConfig, trainData []byte, pool *kernels.Pool, fetch RevealFetcher, tol float64) (*Validator, error) {
	if tol == 0 {
		tol = verify.DefaultTolerance
	}
	rec, err := diloco.NewRecomputer(cfg, trainData, pool)
	if err != nil {
		return nil, err
	}
	j, err := verify.NewJudge(cfg.Model.NumParams(), tol)
	if err != nil {
		return nil, err
	}
	return &Validator{cfg: cfg, rec: rec, judge: j, fetch: fetch}, nil
}

// Check is one contribution to verify: what the worker committed to on the
// ledger and submitted to the aggregator.
type Check struct {
	Round int
	Theta []float32 // the round's global weights θr (read only)
	// Prev are θr-1, for a run with overlap (see diloco.Recompute).
	Prev    []float32
	Worker  string
	Payload []byte
	Tokens  int
	Path    string // the kernel path the worker declared
	// Start and End are the committed hashes of the worker's local state
	// before and after its round; WantStart is what Start had to be (its
	// previous commit's End, or the zero state's hash after a fresh start).
	Start, End, WantStart diloco.Hash
}

// Verify checks c. A worker that does not reveal its start state (it is
// gone, refuses, or sends something else) fails with verify.BadReveal:
// a contribution nobody can recompute is not paid for. The error is for
// the validator's own faults only (c.Theta does not fit, c.Prev is
// needed and missing, c.Round is
// outside the run, ctx is done).
func (v *Validator) Verify(ctx context.Context, c Check) (verify.Verdict, error) {
	claim := verify.Claim{Round: c.Round, Worker: c.Worker, Path: c.Path, Payload: c.Payload,
		Start: verify.Digest(c.Start), End: verify.Digest(c.End), WantStart: verify.Digest(c.WantStart)}
	revealed, err := v.fetch(ctx, c.Worker, c.Round)
	if err != nil {
		if ctx.Err() != nil {
			return verify.Verdict{}, ctx.Err()
		}
		return verify.Verdict{Round: c.Round, Worker: c.Worker, Reason: verify.BadReveal,
			Submitted: verify.PayloadDigest(c.Payload), Claimed: claim.Start}, nil
	}
	start := time.Now()
	verdict, err := v.rec.Verify(ctx, v.judge, claim, c.Theta, c.Prev, revealed, c.Tokens)
	v.Busy += time.Since(start)
	if err != nil {
		return verify.Verdict{}, fmt.Errorf("verifying %s's contribution to round %d: %v", c.Worker, c.Round, err)
	}
	return verdict, nil
}
