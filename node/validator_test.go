package node

import (
	"context"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/verify"
	"github.com/cairnlabs/cairn/wire"
)

// TestValidatorOverLoopback: a validator fetches a worker's revealed start
// state over libp2p and recomputes its contribution: the honest one
// passes bitwise, a lazy one (a fifth of the steps, the whole round
// claimed) fails on its payload, a worker that kept no state fails as
// unrevealed, and a peer that is not a validator is refused the state.
func TestValidatorOverLoopback(t *testing.T) {
	cfg := tinyConfig(3)
	trainData, _ := corpus.Split(testText(), 0.9)
	pool := kernels.NewPool(1)
	defer pool.Close()
	workerNode, validatorNode, stranger := newLedgerPeer(t), newLedgerPeer(t), newLedgerPeer(t)
	ctx := context.Background()
	kept := map[int][]byte{}
	var served wire.Counter
	serveReveals(workerNode.tr, func(r int) ([]byte, bool) { b, ok := kept[r]; return b, ok },
		func(p string, _ int) bool { return p == validatorNode.tr.ID() }, &served, nil)

	// The worker trains round 0 honestly, keeping its start state.
	id := workerNode.tr.ID()
	w, err := diloco.NewWorker(id, cfg, trainData, pool)
	if err != nil {
		t.Fatal(err)
	}
	theta := diloco.InitialWeights(cfg)
	if err := w.SetWeights(0, theta, diloco.HashWeights(0, theta)); err != nil {
		t.Fatal(err)
	}
	start := w.State()
	if kept[0], err = start.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	honest, tokens, err := w.Train(ctx, cfg.InnerSteps, nil)
	if err != nil {
		t.Fatal(err)
	}
	end := w.StateHash()
	if err := w.SetState(start); err != nil {
		t.Fatal(err)
	}
	lazy, _, err := w.Train(ctx, 1, nil)
	if err != nil {
		t.Fatal(err)
	}

	for _, p := range []ledgerPeer{validatorNode, stranger} {
		if _, err := p.tr.Connect(ctx, workerNode.tr.Addrs()[0]); err != nil {
			t.Fatal(err)
		}
	}
	var fetched wire.Counter
	v, err := NewValidator(cfg, trainData, pool, func(ctx context.Context, worker string, round int) ([]byte, error) {
		return FetchReveal(ctx, validatorNode.tr, &fetched, worker, round, cfg)
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	zero := diloco.ZeroState(cfg).Hash()
	check := Check{Round: 0, Theta: theta, Worker: id, Payload: honest, Tokens: tokens, Path: verify.CurrentPath(),
		Start: start.Hash(), End: end, WantStart: zero}
	verdict, err := v.Verify(ctx, check)
	if err != nil {
		t.Fatal(err)
	}
	if !verdict.Passed() || !verdict.SamePath || verdict.Distance != 0 {
		t.Fatalf("the honest contribution: %+v", verdict)
	}
	if n := fetched.Received(); n < uint64(diloco.StateSize(cfg)) || served.Sent() < uint64(diloco.StateSize(cfg)) {
		t.Fatalf("the reveal moved %d bytes (served %d), the state is %d", n, served.Sent(), diloco.StateSize(cfg))
	}
	if v.Busy <= 0 {
		t.Fatal("the recomputation took no time")
	}

	check.Payload = lazy
	if verdict, err = v.Verify(ctx, check); err != nil || verdict.Passed() || verdict.Reason != verify.PayloadMismatch {
		t.Fatalf("the lazy contribution: %+v, %v", verdict, err)
	}

	check.Payload, check.Round = honest, 1 // no state kept for round 1
	if verdict, err = v.Verify(ctx, check); err != nil || verdict.Reason != verify.BadReveal {
		t.Fatalf("a contribution whose worker reveals nothing: %+v, %v", verdict, err)
	}

	if _, err = FetchReveal(ctx, stranger.tr, nil, id, 0, cfg); err == nil || !strings.Contains(err.Error(), "only the run's validators") {
		t.Fatalf("a stranger asking for the state: %v", err)
	}
}
