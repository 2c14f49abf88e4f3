package experiment

import (
	"testing"

	"github.com/cairnlabs/cairn/compress"
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
	// The chain: the window closes in the block of the commits; the round
	// closes once the nodes have fetched, aggregated and voted, every node
	// agreeing, on one result sent in full by each of the first posters
	// and votes by hash from the rest.
	t.Logf("chain: window closed %v, round closed %v, all voted %v; %d agreeing, %d results in full, %d bytes",
		rep.WindowClosed, rep.Closed, rep.AllVoted, rep.Agreeing, rep.FullResults, rep.ChainBytes)
	if rep.WindowClosed <= 0 || rep.Closed < rep.WindowClosed+rep.RoundTime || rep.AllVoted < rep.Closed {
		t.Fatalf("window closed at %v, round at %v (the fetch alone takes %v), all voted at %v", rep.WindowClosed, rep.Closed, rep.RoundTime, rep.AllVoted)
	}
	if rep.Agreeing != n || rep.Disagreeing != 0 || rep.FullResults != 2 {
		t.Fatalf("%d agreeing, %d disagreeing, %d results in full: want %d, 0, 2", rep.Agreeing, rep.Disagreeing, rep.FullResults, n)
	}
	// Commits and votes by hash are a few hundred bytes each; a result
	// lists all n contributions (72 bytes each) and is sent twice.
	if max := int64(n*600 + 2*(n*72+400)); rep.ChainBytes > max {
		t.Fatalf("the round took %d bytes of chain, want at most %d", rep.ChainBytes, max)
	}
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
	// The round closes on the chain with a majority of its 24 members.
	if rep.Closed <= rep.WindowClosed || 2*rep.Agreeing <= 24 || rep.Agreeing+rep.Disagreeing != rep.Stayed {
		t.Fatalf("closed at %v, %d of %d that stayed agreeing", rep.Closed, rep.Agreeing, rep.Stayed)
	}
	t.Logf("churn: %d of 24 stayed; round closed at %v with %d agreeing, %d disagreeing; all voted at %v; %d results in full",
		rep.Stayed, rep.Closed, rep.Agreeing, rep.Disagreeing, rep.AllVoted, rep.FullResults)
}

// TestDenser: the update of a top-k run is its union, denser by the
// factor given (capped at the chunk); a random-mask run's is not.
func TestDenser(t *testing.T) {
	for _, c := range []struct{ in, want compress.Codec }{
		{"topk:64/4096:2", "topk:256/4096:2"},
		{"topk:2048/4096:1", "topk:4096/4096:1"},
		{"mask:1024/4096:2", "mask:1024/4096:2"},
		{compress.Int8, compress.Int8},
	} {
		if got := denser(c.in, 4); got != c.want {
			t.Errorf("denser(%s, 4) = %s, want %s", c.in, got, c.want)
		}
	}
}
