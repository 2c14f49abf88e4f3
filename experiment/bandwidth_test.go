package experiment

import (
	"context"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/gpt"
)

// TestBandwidthArms: every arm trains on equal tokens and learns (below
// the untrained ln 256 ≈ 5.55); the
// sparse arm sends far fewer bytes up than int8; the DDP row's traffic is
// k fp32 gradients each way per step and, over an emulated link, its wall
// time adds the transfers, so its compute share falls below 1.
func TestBandwidthArms(t *testing.T) {
	cfg := diloco.DefaultConfig()
	cfg.Model = gpt.DefaultConfig(16, 1, 2, 16)
	cfg.Batch, cfg.InnerSteps, cfg.Rounds, cfg.Warmup = 2, 10, 2, 2
	cfg.RoundTimeout = diloco.Duration(30 * time.Second)
	text := corpus.TinyShakespeare()[:100000]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	arms := []BandwidthArm{
		{Name: "int8", Codec: compress.Int8, OuterLR: 0.7, Momentum: 0.9},
		{Name: "sparse", Codec: "topk:16/256:2", DownCodec: "topk:64/256:2", FeedbackDecay: 0.95, OuterLR: 1},
	}
	rows, err := Bandwidth(ctx, BandwidthOptions{Config: cfg, Arms: arms, Workers: 2, Text: text, Threads: 2, DDP: true,
		LinkBytesPerSec: 4e6, LinkRTT: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("%d rows, want 2 arms and DDP", len(rows))
	}
	in8, sp, ddp := rows[0], rows[1], rows[2]
	for _, r := range rows {
		if !(r.ValLoss < 5.5) || r.Up == 0 || r.Down == 0 || !(r.Compute > 0 && r.Compute <= 1) {
			t.Fatalf("%+v", r)
		}
	}
	if sp.Up*3 > in8.Up {
		t.Fatalf("sparse sent %d bytes up, int8 %d", sp.Up, in8.Up)
	}
	n, steps := uint64(cfg.Model.NumParams()), uint64(cfg.Rounds*cfg.InnerSteps)
	if ddp.Up != 4*n*2*steps || ddp.Down != ddp.Up {
		t.Fatalf("DDP bytes %d up, %d down, want %d each", ddp.Up, ddp.Down, 4*n*2*steps)
	}
	if !(ddp.Compute < 1) {
		t.Fatalf("DDP over a link computes %.3f of its wall time", ddp.Compute)
	}
	bad := arms[:1]
	bad[0].Codec = "topk"
	if _, err := Bandwidth(ctx, BandwidthOptions{Config: cfg, Arms: bad, Workers: 1, Text: text}); err == nil {
		t.Fatal("a codec not written canonically was accepted")
	}
}
