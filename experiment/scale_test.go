package experiment

import (
	"testing"
)

// A small simulated round: every node ends with every contribution, and
// since every node fetches every other's, the nodes upload on average
// (N-1) contributions each (what they download), whatever the swarm does.
func TestScaleSmall(t *testing.T) {
	const n = 24
	rep, err := Scale(ScaleOptions{Nodes: n, Params: 300_000, Degree: 6, NAT: 0.3, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Complete != n || rep.Stayed != n || rep.RoundTime <= 0 {
		t.Fatalf("%+v", rep)
	}
	pieces := float64(rep.Contribution * (n - 1))
	if rep.DownMean < pieces || rep.UpMean < pieces {
		t.Fatalf("mean down %.0f, up %.0f bytes: want at least the %d other contributions (%.0f bytes)", rep.DownMean, rep.UpMean, n-1, pieces)
	}
	if rep.UpMean > 1.2*pieces {
		t.Fatalf("mean upload %.0f bytes: more than 1.2 times the contributions moved (%.0f)", rep.UpMean, pieces)
	}
	t.Logf("%d nodes: contribution %d B, round %v, up mean %.1fx max %.1fx its contribution, aggregator needs %.0f Mbit/s; %d events in %v",
		n, rep.Contribution, rep.RoundTime, rep.UpMean/float64(rep.Contribution), rep.UpRatio(), rep.AggregatorMbps, rep.Events, rep.Wall)
}

// Nodes that leave mid-round do not stop the others.
func TestScaleChurn(t *testing.T) {
	rep, err := Scale(ScaleOptions{Nodes: 24, Params: 300_000, Degree: 6, Churn: 0.2, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stayed == 24 || rep.Stayed == 0 || rep.Complete != rep.Stayed {
		t.Fatalf("stayed %d, complete %d", rep.Stayed, rep.Complete)
	}
}
