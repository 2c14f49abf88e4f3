package diloco_test

import (
	"fmt"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/gpt"
)

// One round of the aggregator's state machine, driven by hand: two workers
// poll, the round opens, both contribute, the round closes and the
// published change moves the weights to round 1.
func ExampleAggregator() {
	cfg := diloco.DefaultConfig()
	cfg.Model = gpt.DefaultConfig(8, 1, 2, 8)
	agg, _ := diloco.NewAggregator(cfg)
	agg.Grace = 0
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, id := range []string{"alice", "bob"} {
		agg.Poll(id, 0, agg.Hash(), now)
	}
	ev, _ := agg.Tick(now)
	fmt.Println("opened:", ev.Opened, agg.Poll("alice", 0, agg.Hash(), now).Action)

	n := cfg.Model.NumParams()
	for k, id := range []string{"alice", "bob"} {
		delta := make([]float32, n) // θr − θlocal after H inner steps
		for i := range delta {
			delta[i] = 1e-3 * float32(1+k+i%3)
		}
		payload, _ := compress.NewEncoder(cfg.Codec, n).Encode(delta)
		if err := agg.Submit(id, 0, agg.Hash(), cfg.TokensPerRound(), payload, now.Add(time.Second)); err != nil {
			panic(err)
		}
	}
	ev, _ = agg.Tick(now.Add(time.Second))
	fmt.Println("closed round", ev.Closed.Round, "with", ev.Closed.Contributors, "->", agg.Phase())
	// Both were screened (norms within the bounds of the round's median,
	// no copies) and aggregated.
	fmt.Printf("accepted %d, excluded %d, flags %q %q\n", len(ev.Closed.Accepted), len(ev.Closed.Excluded),
		ev.Closed.Screening[0].Flags.String(), ev.Closed.Screening[1].Flags.String())
	// The caller persists agg.Snapshot() here, then publishes.
	agg.Publish(now.Add(time.Second))
	fmt.Println("round", agg.Round(), agg.Phase())
	// Output:
	// opened: true train
	// closed round 0 with [alice bob] -> unpublished
	// accepted 2, excluded 0, flags "" ""
	// round 1 open
}
