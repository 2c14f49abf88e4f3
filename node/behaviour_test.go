package node

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/verify"
)

// halver trains the fewest steps it may (it asks for none: clamped to
// one), then sends its Δ halved and claims a whole round's tokens,
// remembering what it forged.
type halver struct {
	t      *testing.T
	n      int // parameters
	claim  int
	mu     sync.Mutex
	asked  []int           // the steps it was offered, by call
	forged map[int][]byte  // round -> payload sent
	honest map[int]float64 // round -> norm of the honest Δ it was given
}

func (h *halver) Steps(round, steps int) int {
	h.mu.Lock()
	h.asked = append(h.asked, steps)
	h.mu.Unlock()
	return 0
}

func (h *halver) Forge(round int, honest []byte, tokens int) ([]byte, int) {
	d := make([]float32, h.n)
	if err := compress.Decode(honest, d); err != nil {
		h.t.Errorf("round %d: the honest payload does not decode: %v", round, err)
		return honest, tokens
	}
	norm := verify.Norm(d)
	for i := range d {
		d[i] /= 2
	}
	p, err := compress.NewEncoder(compress.Int8, h.n).Encode(d)
	if err != nil {
		h.t.Errorf("round %d: %v", round, err)
		return honest, tokens
	}
	h.mu.Lock()
	h.forged[round], h.honest[round] = p, norm
	h.mu.Unlock()
	return p, h.claim
}

// TestBehaviourForgesContribution: a worker with a Behaviour trains the
// steps it says (clamped to 1..H), and the aggregator receives, commits
// and aggregates the payload and tokens its Forge returns, while the
// commit's local states are what the worker really trained (continuous
// from a fresh start); an honest worker beside it trains all H steps.
// OnStep reports each worker's steps by index and OnSettle every settled
// round, in order.
func TestBehaviourForgesContribution(t *testing.T) {
	cfg := tinyConfig(3)
	h := &halver{t: t, n: cfg.Model.NumParams(), claim: cfg.TokensPerRound(), forged: map[int][]byte{}, honest: map[int]float64{}}
	var mu sync.Mutex
	steps := map[int]int{}
	var settled []uint64
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := RunLocal(ctx, LocalOptions{Config: cfg, Text: testText(), Workers: 2, EvalBatches: 1, Log: testLog(t),
		Behaviours: []Behaviour{nil, h},
		OnStep:     func(w, round, step int, loss float32) { mu.Lock(); steps[w]++; mu.Unlock() },
		OnSettle:   func(r ledger.RoundInfo) { settled = append(settled, r.Round) }})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.PerWorker[1].Steps; got != cfg.Rounds {
		t.Errorf("the misbehaving worker trained %d steps, want 1 per round: %d", got, cfg.Rounds)
	}
	if got := res.PerWorker[0].Steps; got != cfg.Rounds*cfg.InnerSteps {
		t.Errorf("the honest worker trained %d steps, want %d", got, cfg.Rounds*cfg.InnerSteps)
	}
	if steps[0] != res.PerWorker[0].Steps || steps[1] != res.PerWorker[1].Steps {
		t.Errorf("OnStep counted %v, the workers %d and %d", steps, res.PerWorker[0].Steps, res.PerWorker[1].Steps)
	}
	for i, s := range h.asked {
		if s != cfg.InnerSteps {
			t.Errorf("call %d offered %d steps, not H = %d", i, s, cfg.InnerSteps)
		}
	}
	if len(settled) != cfg.Rounds {
		t.Errorf("OnSettle told of rounds %v, want 0..%d", settled, cfg.Rounds-1)
	}
	for i, r := range settled {
		if r != uint64(i) {
			t.Errorf("OnSettle told of rounds %v, not in order", settled)
			break
		}
	}
	bad, err := p2p.AccountOf(res.Ledger.Accounts[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	var commits []ledger.CommitRecord
	for _, ri := range res.Ledger.Rounds {
		p := h.forged[int(ri.Round)]
		if p == nil || !(h.honest[int(ri.Round)] > 0) {
			t.Fatalf("round %d: nothing forged from a trained Δ", ri.Round)
		}
		want := ledger.Hash(verify.PayloadDigest(p))
		found := false
		for _, c := range ri.Commits {
			if c.Worker == bad {
				commits = append(commits, c)
				found = true
				if c.DeltaHash != want || c.Tokens != uint64(h.claim) {
					t.Errorf("round %d: committed %s for %d tokens, the behaviour forged %s for %d", ri.Round, c.DeltaHash, c.Tokens, want, h.claim)
				}
			}
		}
		if !found {
			t.Errorf("round %d: no commit of the misbehaving worker", ri.Round)
		}
		aggregated := false
		for _, c := range ri.Result.Accepted {
			if c.Worker == bad {
				aggregated = c.DeltaHash == want && c.Tokens == uint64(h.claim)
			}
		}
		if !aggregated {
			t.Errorf("round %d: the forged contribution was not what the aggregator took: %+v", ri.Round, ri.Result)
		}
	}
	wantContinuous(t, "the misbehaving worker", commits)
	for i := 1; i < len(commits); i++ {
		if commits[i].StartState == commits[i].EndState {
			t.Errorf("round %d: the local state did not move, though the worker trained", commits[i].Round)
		}
	}
}
