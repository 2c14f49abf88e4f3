package diloco

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/gpt"
)

// BenchmarkRoundClose measures the aggregator's critical path at the end
// of a round of the demo model: four int8 contributions aggregated, the
// outer step, the published update encoded, applied and hashed.
func BenchmarkRoundClose(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Model = gpt.DefaultConfig(128, 4, 4, 64)
	n := cfg.Model.NumParams()
	r := rand.New(rand.NewPCG(1, 1))
	var payloads [][]byte
	for i := 0; i < 4; i++ {
		d := make([]float32, n)
		for j := range d {
			d[j] = float32(r.NormFloat64() * 1e-3)
		}
		p, _ := compress.NewEncoder(compress.Int8, n).Encode(d)
		payloads = append(payloads, p)
	}
	a, _ := NewAggregator(cfg)
	a.Grace = 0
	ids := []string{"a", "b", "c", "d"}
	now := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for _, id := range ids {
			a.Poll(id, a.Round(), a.Hash(), now)
		}
		a.Tick(now)
		for k, id := range ids {
			if err := a.Submit(id, a.Round(), a.Hash(), 10, payloads[k], now); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		if ev, err := a.Tick(now); err != nil || ev.Closed == nil {
			b.Fatal("no close", err)
		}
	}
}
