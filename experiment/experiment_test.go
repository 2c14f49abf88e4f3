package experiment

import (
	"context"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/gpt"
)

// TestDiLoCoVsDDPAtEqualTokens runs both arms on a tiny model: they train
// on the same number of tokens, DiLoCo's bytes are what its nodes really
// sent, far below data parallelism's, and both learn.
func TestDiLoCoVsDDPAtEqualTokens(t *testing.T) {
	cfg := diloco.DefaultConfig()
	cfg.Model = gpt.DefaultConfig(16, 1, 2, 16)
	cfg.Batch, cfg.InnerSteps, cfg.Rounds, cfg.Warmup = 2, 10, 3, 2
	cfg.RoundTimeout = diloco.Duration(30 * time.Second)
	text := corpus.TinyShakespeare()[:100000]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := DiLoCoVsDDP(ctx, Options{Config: cfg, Workers: 2, Text: text, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	d, p := res[0], res[1]
	if d.Tokens != p.Tokens || d.Tokens != int64(3*10*2*2*16) {
		t.Fatalf("tokens: DiLoCo %d, DDP %d", d.Tokens, p.Tokens)
	}
	if p.Bytes != DDPBytes(cfg, 2) || p.Bytes != uint64(8*cfg.Model.NumParams()*2*30) {
		t.Fatalf("DDP bytes %d", p.Bytes)
	}
	if d.Bytes == 0 || d.Bytes*10 > p.Bytes {
		t.Fatalf("DiLoCo sent %d bytes, DDP would send %d", d.Bytes, p.Bytes)
	}
	for _, r := range res {
		if !(r.ValLoss < 5.4) {
			t.Fatalf("%s: val loss %v did not fall below the untrained ln 256 ≈ 5.55", r.Name, r.ValLoss)
		}
	}
}
