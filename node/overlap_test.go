package node

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/verify"
)

// TestOverlapRun: in a run with overlap, every round gets a contribution
// from every worker, each started from the previous round's weights less
// the worker's own last contribution while that one uploaded (the workers
// trained every step of every round); the aggregator's validator
// recomputes every contribution from those weights and fails none, no
// worker is slashed, every round is paid in full, and the final weights
// differ from a run without overlap (the eager start is really taken);
// the same holds with the sparse codecs, top-k and random mask.
func TestOverlapRun(t *testing.T) {
	sample := verify.DefaultSampleOptions()
	sample.P = 1 // every contribution recomputed
	run := func(overlap bool, codec compress.Codec) LocalResult {
		cfg := tinyConfig(4)
		if overlap {
			cfg.OverlapSteps = 2
		}
		if _, _, _, sparse := codec.Sparse(); sparse {
			cfg.Codec, cfg.FeedbackDecay, cfg.OuterLR, cfg.Momentum, cfg.Robust.Trim = codec, 0.95, 1, 0, -1
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		var settled []ledger.RoundInfo
		res, err := RunLocal(ctx, LocalOptions{Config: cfg, Text: testText(), Workers: 2, EvalBatches: 1, Log: testLog(t),
			Validation: &ValidationOptions{Sample: sample}, OnSettle: func(r ledger.RoundInfo) { settled = append(settled, r) }})
		if err != nil {
			t.Fatal(err)
		}
		if res.Contributed != 8 {
			t.Fatalf("overlap %v: %d contributions, want 8", overlap, res.Contributed)
		}
		if res.Validator.Checked != 8 || res.Validator.Failed != 0 {
			t.Fatalf("overlap %v: validator %+v, want 8 checked, none failed", overlap, res.Validator)
		}
		l := res.Ledger
		if l.Invariants != nil || l.Verified != nil || l.Totals.Burned != 0 || l.Totals.Minted != 4*l.EmissionPerRound {
			t.Fatalf("overlap %v: ledger invariants %v, replay %v, totals %+v", overlap, l.Invariants, l.Verified, l.Totals)
		}
		for i, a := range l.Accounts {
			if a.Rounds != 4 || a.Account.Stake != LocalStake(DefaultLedgerParams()) {
				t.Fatalf("overlap %v: worker %d paid in %d rounds, stake %d", overlap, i, a.Rounds, a.Account.Stake)
			}
		}
		for _, w := range res.PerWorker {
			if w.Steps != 4*cfg.InnerSteps || w.Refused != 0 || w.Skipped != 0 {
				t.Fatalf("overlap %v: worker stats %+v", overlap, w)
			}
		}
		return res
	}
	over, plain := run(true, compress.Int8), run(false, compress.Int8)
	if slices.Equal(plain.Weights, over.Weights) {
		t.Fatal("the run with overlap ended with the weights of the run without")
	}
	run(true, "topk:16/256:2") // every sparse contribution recomputed bitwise too
	run(true, "mask:64/256:2") // and every random-mask one
}
