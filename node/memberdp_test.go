package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/dp"
	"github.com/cairnlabs/cairn/metrics"
)

// TestMemberRefusesDP: a run without an aggregator cannot add secret
// noise, so a member refuses a config with differential privacy before it
// does anything.
func TestMemberRefusesDP(t *testing.T) {
	cfg := diloco.DefaultConfig()
	cfg.DP = &diloco.DP{Clip: 1, Noise: 5, Delta: 1e-5, Budget: 100}
	if _, err := RunMember(context.Background(), MemberOptions{Run: cfg}); err == nil || !strings.Contains(err.Error(), "needs an aggregator") {
		t.Fatalf("member with DP: %v", err)
	}
	cfg.DP, cfg.Private = nil, &diloco.Private{Tolerance: 0.1}
	if _, err := RunMember(context.Background(), MemberOptions{Run: cfg}); err == nil || !strings.Contains(err.Error(), "private contributions need an aggregator") {
		t.Fatalf("member with private contributions: %v", err)
	}
}

// TestRunWithDP: a real run (aggregator and workers on loopback) with
// differential privacy draws its noise seed, reports the ε spent after
// every round, rising to at most the budget, exposes it as a metric and
// records it on the run's ledger.
func TestRunWithDP(t *testing.T) {
	cfg := tinyConfig(3)
	z, err := dp.NoiseFor(50, 1e-5, 1, cfg.Rounds)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DP = &diloco.DP{Clip: 0.1, Noise: z, Delta: 1e-5, Budget: 50}
	reg := metrics.NewRegistry()
	var spent []float64
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := RunLocal(ctx, LocalOptions{Config: cfg, Text: testText(), Workers: 2, EvalBatches: 1, Log: testLog(t), Metrics: reg,
		OnRound: func(r RoundInfo) {
			if r.Result != nil {
				spent = append(spent, r.Result.Epsilon)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if len(spent) != cfg.Rounds {
		t.Fatalf("ε reported for %d rounds, want %d", len(spent), cfg.Rounds)
	}
	for i, e := range spent {
		want, _ := dp.Spent(z, 1, i+1, 1e-5)
		if e != want || e > 50 {
			t.Fatalf("after round %d: ε %v, want %v within 50", i, e, want)
		}
	}
	// The ledger holds the last round's record, ε rounded up.
	p := res.Ledger.Privacy
	last := spent[len(spent)-1]
	if p == nil || p.Round != uint64(cfg.Rounds-1) || p.Spent() < last || p.Spent() > last+1e-6 || p.BudgetValue() != 50 || p.DeltaValue() != 1e-5 {
		t.Fatalf("the ledger's privacy record %+v, the run's last ε %v", p, last)
	}
	var b strings.Builder
	reg.WriteTo(&b)
	if !strings.Contains(b.String(), "cairn_dp_epsilon_spent") {
		t.Fatal("no ε metric")
	}
}
