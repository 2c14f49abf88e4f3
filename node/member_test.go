package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/compress"
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

// blowup sends its Δ scaled by a million in round void: a value no honest
// worker sends, refused on arrival.
type blowup struct {
	void int
	n    int
}

func (b blowup) Steps(round, steps int) int { return steps }

func (b blowup) Forge(round int, honest []byte, tokens int) ([]byte, int) {
	if round != b.void {
		return honest, tokens
	}
	d := make([]float32, b.n)
	if err := compress.Decode(honest, d); err != nil {
		return honest, tokens
	}
	for i := range d {
		d[i] *= 1e6
	}
	p, err := compress.NewEncoder(compress.Int8, b.n).Encode(d)
	if err != nil {
		return honest, tokens
	}
	return p, tokens
}

// A round whose every contribution is refused is void for every member
// alike: they vote for the weights unchanged, rejecting each contribution
// with the reason, and the run goes on from the same weights.
func TestMembersVoidRound(t *testing.T) {
	if testing.Short() {
		t.Skip("starts CometBFT nodes and trains")
	}
	const members = 3
	cfg := tinyConfig(3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bad := blowup{void: 1, n: cfg.Model.NumParams()}
	var seen []MembersRound
	res, err := RunMembersLocal(ctx, MembersLocalOptions{Config: cfg, Text: testText(), Members: members, Validators: 2,
		CommitWindow: time.Minute, EvalBatches: 2, Log: testLog(t), Behaviours: []Behaviour{bad, bad, bad},
		OnRound: func(r MembersRound) { seen = append(seen, r) }})
	if err != nil {
		t.Fatal(err)
	}
	// Round 2's window waits for the void round's committers: all three.
	if len(seen) != cfg.Rounds || seen[1].Agreed != members || seen[1].Contributions != 0 || seen[1].ValLoss != seen[0].ValLoss ||
		seen[2].Contributions != members || seen[2].Agreed != members {
		t.Fatalf("rounds %+v: want round 1 void (no contribution, round 0's loss) and agreed, round 2 whole", seen)
	}
	void := res.Chain[1]
	if void.Result == nil || len(void.Result.Accepted) != 0 || len(void.Result.Rejected) != members {
		t.Fatalf("the void round on the chain: %+v", void)
	}
	for _, x := range void.Result.Rejected {
		if !strings.Contains(x.Reason, "refused") {
			t.Fatalf("rejection %+v: want the refusal's reason", x)
		}
	}
}
