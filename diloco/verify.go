package diloco

import (
	"context"
	"crypto/sha256"
	"fmt"

	"github.com/cairnlabs/cairn/verify"
)

// Verify is a validator's whole check of one contribution: claim c (the
// worker's committed digests, declared kernel path and submitted payload,
// for round c.Round), trained from the round's weights theta on tokens
// claimed tokens (with prev, the weights of the round before, for a run
// with overlap: see Recompute), recomputed from the start state the worker revealed
// (revealed: its canonical encoding, untrusted bytes). It returns the
// verdict for the ledger:
//
//   - BadReveal or BrokenChain when the revealed bytes do not hash to the
//     committed start, or that is not the state the worker's previous
//     contribution ended with (c.WantStart);
//   - Malformed when the claimed tokens are not a whole number of inner
//     steps between 1 and H, or the payload does not decode;
//   - BadState when the revealed state does not decode, is impossible
//     before round c.Round, or makes training diverge;
//   - else what j.Judge says of the recomputation on this process's kernel
//     path (CurrentPath).
//
// c.Revealed is set from the revealed bytes (what the caller put there is
// ignored). It returns an error, and no verdict, only for faults of the
// verifier: theta does not fit the run, c.Round is outside it, prev is
// needed and missing, ctx is done, or the recomputation does not decode.
func (r *Recomputer) Verify(ctx context.Context, j *verify.Judge, c verify.Claim, theta, prev []float32, revealed []byte, tokens int) (verify.Verdict, error) {
	cfg := r.w.Cfg
	if len(theta) != len(r.w.theta) {
		return verify.Verdict{}, fmt.Errorf("weights have %d values, the model %d", len(theta), len(r.w.theta))
	}
	if c.Round < 0 || c.Round >= cfg.Rounds {
		return verify.Verdict{}, fmt.Errorf("round %d is outside the run's rounds [0, %d)", c.Round, cfg.Rounds)
	}
	c.Revealed = sha256.Sum256(revealed)
	if v, ok := j.CheckStart(c); !ok {
		return v, nil
	}
	per := cfg.TokensPerStep()
	if tokens < per || tokens > cfg.TokensPerRound() || tokens%per != 0 {
		return verify.Verdict{Round: c.Round, Worker: c.Worker, Reason: verify.Malformed, Submitted: verify.PayloadDigest(c.Payload)}, nil
	}
	start, err := UnmarshalState(revealed, cfg)
	if err != nil || start.Step > c.Round*cfg.InnerSteps || start.AheadRound >= c.Round {
		return verify.RefuseState(c), nil
	}
	if cfg.Overlapped() && c.Round > 0 && start.AheadRound == c.Round-1 && len(prev) != len(theta) {
		return verify.Verdict{}, fmt.Errorf("round %d's contribution started from round %d's weights, which the verifier was not given", c.Round, c.Round-1)
	}
	payload, end, err := r.Recompute(ctx, c.Worker, c.Round, theta, prev, start, tokens/per)
	if err != nil {
		if ctx.Err() != nil {
			return verify.Verdict{}, ctx.Err()
		}
		return verify.RefuseState(c), nil // training diverged from the revealed state
	}
	return j.Judge(c, verify.Recomputation{Path: verify.CurrentPath(), Payload: payload, End: verify.Digest(end.Hash())})
}
