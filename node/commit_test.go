package node

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/verify"
	"github.com/cairnlabs/cairn/wire"
)

// digest is a payload's ledger delta hash.
func digest(payload []byte) ledger.Hash { return ledger.Hash(verify.PayloadDigest(payload)) }

// commit signs body with the attacker's identity for agg's chain.
func (x *attacker) commit(agg *Aggregator, nonce uint64, body ledger.CommitTx) []byte {
	x.t.Helper()
	key, err := p2p.LedgerKey(x.key)
	if err != nil {
		x.t.Fatal(err)
	}
	if body.Kernel == "" {
		body.Kernel = "test"
	}
	raw, err := ledger.SignTx(agg.led.info.ChainID, key, nonce, &body)
	if err != nil {
		x.t.Fatal(err)
	}
	return raw
}

// submitRaw sends a contribution and returns the ack, or the refusal.
func (x *attacker) submitRaw(req submitRequest, payload []byte) (ack, string) {
	x.t.Helper()
	s := x.open(ProtoSubmit, kindSubmit, req)
	defer s.Close()
	go func() {
		wire.WriteBlob(s, payload)
		s.CloseWrite()
	}()
	var a ack
	err := wire.ReadJSON(s, kindAck, maxControl, &a)
	if err == nil {
		return a, ""
	}
	if re := (*wire.RemoteError)(nil); errors.As(err, &re) {
		return ack{}, re.Msg
	}
	x.t.Fatalf("submit: %v", err)
	return ack{}, ""
}

// poll asks what to do with the weights of round with hash.
func (x *attacker) poll(round int, hash diloco.Hash) pollReply {
	x.t.Helper()
	s := x.open(ProtoPoll, kindPoll, pollRequest{Round: round, Hash: hash.String()})
	defer s.Close()
	var r pollReply
	if err := wire.ReadJSON(s, kindReply, maxControl, &r); err != nil {
		x.t.Fatalf("poll: %v", err)
	}
	return r
}

// TestCommitChecksWithContribution: every contribution carries its
// worker's commit, and each way it can fail to match is refused with its
// reason before the commit is recorded: none, malformed, oversized, not a
// commit, signed by someone else, another round, other tokens, a payload
// whose digest is not the committed one, one declared private in a run
// that takes no private contributions, a replayed nonce and a start
// state that does not continue the worker's last commit. A recorded
// commit whose contribution the state machine refuses (a payload that
// does not decode) gets an ack saying so, and the round's result on the
// chain rejects it with the reason; a resent commit gets the same ack.
func TestCommitChecksWithContribution(t *testing.T) {
	cfg := tinyConfig(2)
	cfg.RoundTimeout = diloco.Duration(1500 * time.Millisecond)
	agg := startAggregator(t, t.TempDir(), cfg, nil)
	defer agg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- agg.Run(ctx) }()
	x, y := newAttacker(t, agg.Addrs()[0]), newAttacker(t, agg.Addrs()[0])
	round0 := diloco.HashWeights(0, diloco.InitialWeights(cfg))
	replies := make(chan pollReply, 2)
	for _, p := range []*attacker{x, y} {
		go func() { replies <- p.poll(0, round0) }()
	}
	for range 2 {
		if r := <-replies; r.Action != "train" {
			t.Fatalf("poll at round 0: %+v", r)
		}
	}
	n := cfg.Model.NumParams()
	small := make([]float32, n) // a Δ screening keeps: not zero, well inside the bound
	for i := range small {
		small[i] = 1e-4 * float32(i%7-3)
	}
	good, _ := compress.NewEncoder(cfg.Codec, n).Encode(small)
	for i := range small {
		small[i] *= -2
	}
	good1, _ := compress.NewEncoder(cfg.Codec, n).Encode(small) // round 1's: a repeat would be excluded as a copy
	other := append([]byte(nil), good...)
	other[len(other)-1] ^= 1
	tokens := cfg.TokensPerStep()
	req := func(round int, hash diloco.Hash, commit []byte) submitRequest {
		return submitRequest{Round: round, Hash: hash.String(), Tokens: tokens, Commit: commit}
	}
	body := func(round uint64, payload []byte) ledger.CommitTx {
		return ledger.CommitTx{Round: round, DeltaHash: digest(payload), Tokens: uint64(tokens), Fresh: true}
	}
	yKey, _ := p2p.LedgerKey(y.key)
	bySomeoneElse, _ := ledger.SignTx(agg.led.info.ChainID, yKey, 1, &ledger.CommitTx{Round: 0, DeltaHash: digest(good), Tokens: uint64(tokens), Fresh: true, Kernel: "test"})
	xKey, _ := p2p.LedgerKey(x.key)
	transfer, _ := ledger.SignTx(agg.led.info.ChainID, xKey, 1, &ledger.TransferTx{To: ledger.KeyOf(yKey), Amount: 1})
	wrongTokens := body(0, good)
	wrongTokens.Tokens *= 2
	private := body(0, good)
	private.Private = true
	for _, tc := range []struct {
		name    string
		req     submitRequest
		payload []byte
		want    string
	}{
		{"no commit", req(0, round0, nil), good, "carries no ledger commit"},
		{"malformed commit", req(0, round0, []byte("not a transaction")), good, "malformed transaction"},
		{"oversized commit", req(0, round0, make([]byte, MaxLedgerTxBytes+1)), good, "more than the limit"},
		{"not a commit", req(0, round0, transfer), good, "is a transfer, not a commit"},
		{"someone else's signature", req(0, round0, bySomeoneElse), good, "signed by " + y.h.ID().String()},
		{"another round", req(0, round0, x.commit(agg, 1, body(1, good))), good, "commit is for round 1, the contribution for round 0"},
		{"other tokens", req(0, round0, x.commit(agg, 1, wrongTokens)), good, "claims"},
		{"wrong digest", req(0, round0, x.commit(agg, 1, body(0, other))), good, "digest"},
		{"private in a run that takes none", req(0, round0, x.commit(agg, 1, private)), good, "this run takes none"},
	} {
		if a, msg := x.submitRaw(tc.req, tc.payload); !strings.Contains(msg, tc.want) {
			t.Errorf("%s: refusal %q (ack %+v), want %q", tc.name, msg, a, tc.want)
		}
	}
	// x's honest contribution: recorded and accepted; the same commit
	// sent again gets the same answer.
	first := x.commit(agg, 5, body(0, good))
	for i := 0; i < 2; i++ {
		if a, msg := x.submitRaw(req(0, round0, first), good); msg != "" || a.Refused != "" || a.Round != 0 {
			t.Fatalf("honest contribution, attempt %d: ack %+v, refusal %q", i+1, a, msg)
		}
	}
	// A copy of x's payload from y is refused before its commit.
	if _, msg := y.submitRaw(req(0, round0, y.commit(agg, 1, body(0, good))), good); !strings.Contains(msg, "copy of another contribution") {
		t.Fatalf("a copy: refusal %q", msg)
	}
	// y's commit is recorded, but its payload does not decode.
	garbled := append([]byte(nil), good...)
	garbled[5] ^= 0x40 // the value count
	if a, msg := y.submitRaw(req(0, round0, y.commit(agg, 2, body(0, garbled))), garbled); msg != "" || a.Refused == "" {
		t.Fatalf("a payload that does not decode: ack %+v, refusal %q", a, msg)
	}

	// Round 0 closes at its deadline with x's contribution; x follows to
	// round 1 and keeps committing.
	if r := x.poll(0, round0); r.Action != "update" {
		t.Fatalf("poll after round 0: %+v", r)
	}
	agg.mu.Lock()
	round1 := agg.agg.Hash()
	agg.mu.Unlock()
	if r := x.poll(1, round1); r.Action != "train" {
		if r = x.poll(1, round1); r.Action != "train" {
			t.Fatalf("poll at round 1: %+v", r)
		}
	}
	end := body(0, good).EndState // x's last end state: zero
	next := ledger.CommitTx{Round: 1, DeltaHash: digest(good1), Tokens: uint64(tokens), StartState: ledger.Hash{1}}
	if _, msg := x.submitRaw(req(1, round1, x.commit(agg, 5, next)), good1); !strings.Contains(msg, "bad-nonce") {
		t.Errorf("replayed nonce: refusal %q", msg)
	}
	if _, msg := x.submitRaw(req(1, round1, x.commit(agg, 6, next)), good1); !strings.Contains(msg, "state-mismatch") {
		t.Errorf("start state not continuing the last commit: refusal %q", msg)
	}
	next.StartState = end
	if a, msg := x.submitRaw(req(1, round1, x.commit(agg, 6, next)), good1); msg != "" || a.Refused != "" {
		t.Fatalf("round 1's honest contribution: ack %+v, refusal %q", a, msg)
	}
	if err := <-ran; err != nil {
		t.Fatal(err)
	}

	ch := agg.led.host
	r0, err := ch.Round(0)
	if err != nil {
		t.Fatal(err)
	}
	xa, ya := ledger.KeyOf(xKey), ledger.KeyOf(yKey)
	if r0.Result == nil || len(r0.Result.Accepted) != 1 || r0.Result.Accepted[0].Worker != xa || r0.Result.Accepted[0].DeltaHash != digest(good) ||
		len(r0.Result.Rejected) != 1 || r0.Result.Rejected[0].Worker != ya || !strings.Contains(r0.Result.Rejected[0].Reason, "refused for its payload") {
		t.Fatalf("round 0's result: %+v", r0.Result)
	}
	if len(r0.Commits) != 2 || r0.Status != "settled" {
		t.Fatalf("round 0: %d commits, %s", len(r0.Commits), r0.Status)
	}
	acct, _ := ch.Chain().Account(xa)
	if want := 2 * agg.led.info.EmissionPerRound; acct.Balance != want || acct.Nonce != 6 {
		t.Fatalf("x's account after two paid rounds: %+v, want balance %d and nonce 6", acct, want)
	}
	if acct, _ := ch.Chain().Account(ya); acct.Balance != 0 {
		t.Fatalf("y was paid %d for a refused contribution", acct.Balance)
	}
}
