package node

import (
	"context"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/diloco"
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
}
