package secagg

import (
	"testing"
	"time"
)

// BenchmarkDemoRound runs a cohort of 8 at threshold 6 over inputs the
// size of the demo model (867,328 parameters) at 16 bits, two parties
// dropping out after sharing, and reports each client's and the server's
// protocol time and a client's bytes each way against plain int8 (one
// byte a parameter).
func BenchmarkDemoRound(b *testing.B) {
	const dim = 867328
	var client, server time.Duration
	var up, down int
	for b.Loop() {
		r := newRoundBits(b, 8, 6, dim, 16, "bench")
		keys, _ := r.server.Keys()
		start := time.Now()
		boxes := map[uint64][]Box{}
		for _, id := range r.cfg.Parties[:7] {
			boxes[id], _ = r.clients[id].ShareKeys(keys)
		}
		client += time.Since(start) / 7
		start = time.Now()
		for _, id := range r.cfg.Parties[:7] {
			r.server.AddBoxes(id, boxes[id])
		}
		routed, _ := r.server.Route()
		server += time.Since(start)
		var masked []Masked
		start = time.Now()
		for _, id := range r.cfg.Parties[:6] { // 7 drops after sharing
			m, err := r.clients[id].MaskInput(r.inputs[id], routed[id])
			if err != nil {
				b.Fatal(err)
			}
			masked = append(masked, m)
		}
		client += time.Since(start) / 6
		start = time.Now()
		for _, m := range masked {
			r.server.AddMasked(m)
		}
		surv, _ := r.server.Survivors()
		server += time.Since(start)
		var reveals []Reveal
		start = time.Now()
		for _, id := range surv {
			rv, _ := r.clients[id].Unmask(surv)
			reveals = append(reveals, rv)
		}
		client += time.Since(start) / time.Duration(len(surv))
		start = time.Now()
		for _, rv := range reveals {
			r.server.AddReveal(rv)
		}
		if _, _, err := r.server.Sum(); err != nil {
			b.Fatal(err)
		}
		server += time.Since(start)
		up = KeysSize + len(boxes[1])*BoxSize + MaskedSize(r.cfg) + len(reveals[0].Marshal())
		down = len(keys)*KeysSize + len(routed[1])*BoxSize + 8*len(surv)
	}
	b.ReportMetric(float64(client.Milliseconds())/float64(b.N), "client-ms")
	b.ReportMetric(float64(server.Milliseconds())/float64(b.N), "server-ms")
	b.ReportMetric(float64(up)/dim, "up/int8")
	b.ReportMetric(float64(up+down)/dim, "total/int8")
}
