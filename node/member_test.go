package node

import (
	"context"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/diloco"
)

// A run without an aggregator: three members on a CometBFT chain with
// member rounds compute bitwise the same weights every round, the chain
// records every vote as agreeing and pays every contribution, and the
// run ends with exactly the weights the aggregator mode reaches with the
// same seed, codec and workers.
func TestMembersMatchAggregator(t *testing.T) {
	if testing.Short() {
		t.Skip("starts CometBFT nodes and trains")
	}
	const members = 3
	cfg := tinyConfig(3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var seen []MembersRound
	res, err := RunMembersLocal(ctx, MembersLocalOptions{Config: cfg, Text: testText(), Members: members, Validators: 2,
		CommitWindow: time.Minute, EvalBatches: 2, Log: testLog(t), OnRound: func(r MembersRound) { seen = append(seen, r) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != cfg.Rounds {
		t.Fatalf("%d rounds reported, want %d", len(seen), cfg.Rounds)
	}
	for _, r := range seen {
		if r.Agreed != members || r.ValLoss <= 0 || r.Downloaded == 0 {
			t.Fatalf("round %d: %+v", r.Round, r)
		}
	}
	for _, info := range res.Chain {
		if info.Status != "settled" || info.Result == nil || len(info.Result.Accepted) != members || len(info.Votes) != members {
			t.Fatalf("round %d on the chain: %+v", info.Round, info)
		}
		for _, v := range info.Votes {
			if !v.Agrees {
				t.Fatalf("round %d: %s disagrees", info.Round, v.Member)
			}
		}
	}
	if got := seen[len(seen)-1].Hash; got != res.Hash {
		t.Fatalf("the last round's weights %s, the run's %s", got, res.Hash)
	}
	agg, err := RunLocal(ctx, LocalOptions{Config: cfg, Text: testText(), Workers: members, EvalBatches: 2, Ledger: openRun()})
	if err != nil {
		t.Fatal(err)
	}
	if h := diloco.HashWeights(cfg.Rounds, agg.Weights); h != res.Hash {
		t.Fatalf("the aggregator mode ends with %s, the members with %s", h, res.Hash)
	}
}
