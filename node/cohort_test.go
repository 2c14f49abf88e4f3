package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/secagg"
	"github.com/cairnlabs/cairn/verify"
	"github.com/cairnlabs/cairn/wire"
)

// recorder keeps the Δ a private worker trained each round (its Behaviour
// sends it unchanged): the test's plain view of what the aggregator
// never sees.
type recorder struct {
	mu *sync.Mutex
	by map[int][]byte
}

func (r recorder) Steps(_, steps int) int { return steps }

func (r recorder) Forge(round int, honest []byte, tokens int) ([]byte, int) {
	r.mu.Lock()
	r.by[round] = append([]byte(nil), honest...)
	r.mu.Unlock()
	return honest, tokens
}

// TestSecureAggregationRun: eight private workers and a public one, each
// its own libp2p node, in a run with secure aggregation. Round 0: the
// eight form a cohort (threshold 6), two drop out after sending their
// masked inputs, and the round closes with the cohort's sum, which equals
// the plain fixed-point sum of the eight inputs exactly (the survivors'
// reveals remove the dropped parties' masks); the ledger accepts the
// eight private commits, each judged by the sum's screening and paid.
// Round 1: the six left form a cohort (threshold 5), two more drop after
// their masked inputs, four reveals are too few: the cohort fails, its
// commits are rejected with the reason, neither paid nor slashed, and the
// round goes on with the public worker.
func TestSecureAggregationRun(t *testing.T) {
	cfg := tinyConfig(2)
	cfg.Private = &diloco.Private{Tolerance: 0.5, SecAgg: cfg.DefaultSecAgg()}
	cfg.RoundTimeout = diloco.Duration(15 * time.Second)
	var mu sync.Mutex
	var results []*diloco.RoundResult
	agg, err := StartAggregator(AggregatorOptions{DataDir: t.TempDir(), Listen: loopback, Config: cfg, Text: testText(), EvalBatches: 1, Threads: 1,
		Grace: 500 * time.Millisecond, Log: testLog(t), Ledger: openRun(), BlockInterval: 100 * time.Millisecond,
		Validation: &ValidationOptions{}, HeldOut: HeldOutOptions{Wait: 20 * time.Second},
		OnRound: func(r RoundInfo) { mu.Lock(); results = append(results, r.Result); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	defer agg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	text := corpus.TinyShakespeare()
	rec := make([]recorder, 8)
	var private []*Worker
	for i := range 8 {
		rec[i] = recorder{mu: &mu, by: map[int][]byte{}}
		w, err := StartWorker(WorkerOptions{DataDir: t.TempDir(), Listen: loopback, Join: agg.Addrs()[0], Threads: 1, Log: testLog(t),
			PrivateData: text[200000+i*20000 : 220000+i*20000], Behaviour: rec[i]})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		drop := map[int]bool{0: i < 2, 1: i == 2 || i == 3}
		w.cohortDrop = func(round int) bool { return drop[round] }
		private = append(private, w)
	}
	public, err := StartWorker(WorkerOptions{DataDir: t.TempDir(), Listen: loopback, Join: agg.Addrs()[0], Text: testText(), Threads: 1, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer public.Close()
	dropped := make(chan int, 8)
	for i, w := range private {
		go func() {
			err := w.Run(ctx)
			if err != nil && strings.Contains(err.Error(), "test: dropped out") {
				w.Close() // a dropped worker is gone: its host too
				dropped <- i
				return
			}
			if err != nil {
				t.Errorf("private worker %d: %v", i, err)
			}
			dropped <- -1
		}()
	}
	errs := runAll(t, ctx, agg, []*Worker{public})
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for range 8 {
		<-dropped
	}
	agg.Close()

	mu.Lock()
	defer mu.Unlock()
	if len(results) != 2 {
		t.Fatalf("%d rounds reported", len(results))
	}
	// Round 0: the cohort's mean is the plain mean of the eight inputs,
	// bit for bit.
	var cohort *diloco.Contribution
	for i := range results[0].Accepted {
		if results[0].Accepted[i].Members != nil {
			cohort = &results[0].Accepted[i]
		}
	}
	if cohort == nil || len(cohort.Members) != 8 || len(results[0].Accepted) != 2 {
		t.Fatalf("round 0 accepted %+v", results[0].Accepted)
	}
	n := cfg.Model.NumParams()
	scale, err := secagg.ScaleFor(8, cfg.Private.SecAgg.Clip, cfg.Private.SecAgg.Bits)
	if err != nil {
		t.Fatal(err)
	}
	sum, x, d := make([]uint32, n), make([]uint32, n), make([]float32, n)
	tokens := 0
	for i := range 8 {
		if err := compress.Decode(rec[i].by[0], d); err != nil {
			t.Fatalf("worker %d's round-0 Δ: %v", i, err)
		}
		if err := secagg.Encode(x, d, cfg.Private.SecAgg.Clip, scale, cfg.Private.SecAgg.Bits); err != nil {
			t.Fatal(err)
		}
		for j := range sum {
			sum[j] += x[j]
		}
		tokens += cfg.TokensPerRound()
	}
	for j := range sum {
		sum[j] &= 1<<cfg.Private.SecAgg.Bits - 1
	}
	if err := secagg.Decode(d, sum, scale*8, cfg.Private.SecAgg.Bits); err != nil {
		t.Fatal(err)
	}
	want, _ := compress.NewEncoder(compress.FP32, n).Encode(d)
	if verify.PayloadDigest(want) != cohort.Payload || cohort.Tokens != tokens {
		t.Fatalf("the cohort's mean (%d tokens) is not the plain mean of its eight inputs (%d tokens)", cohort.Tokens, tokens)
	}
	// Round 1: the cohort failed; only the public worker counts.
	if len(results[1].Accepted) != 1 || results[1].Accepted[0].Members != nil || results[1].Accepted[0].Worker != public.ID() {
		t.Fatalf("round 1 accepted %+v", results[1].Accepted)
	}

	ids := []string{public.ID()}
	for _, w := range private {
		ids = append(ids, w.ID())
	}
	ll := closedLedger(t, agg.opts.DataDir, ids...)
	privateKey := map[ledger.PubKey]int{}
	for i, w := range private {
		k, err := p2p.AccountOf(w.ID())
		if err != nil {
			t.Fatal(err)
		}
		privateKey[k] = i
	}
	r0, r1 := ll.Rounds[0], ll.Rounds[1]
	if len(r0.Result.Accepted) != 9 {
		t.Fatalf("round 0's result accepts %d contributions, want the eight private and the public", len(r0.Result.Accepted))
	}
	for _, v := range r0.Verdicts {
		if _, ok := privateKey[v.Worker]; ok && (v.Outcome == ledger.Failed || !strings.Contains(v.Reason, "in a cohort of 8") || v.Reward == 0) {
			t.Errorf("round 0: private %s judged %v (%s), paid %d", v.Worker, v.Outcome, v.Reason, v.Reward)
		}
	}
	rejected := 0
	for _, r := range r1.Result.Rejected {
		if _, ok := privateKey[r.Worker]; ok {
			rejected++
			if !strings.Contains(r.Reason, "secure aggregation failed") {
				t.Errorf("round 1: private %s rejected for %q", r.Worker, r.Reason)
			}
		}
	}
	if rejected != 6 {
		t.Errorf("round 1 rejected %d private commits, want the cohort's 6", rejected)
	}
	for _, v := range r1.Verdicts {
		if _, ok := privateKey[v.Worker]; ok {
			t.Errorf("round 1: a verdict on private %s (%v, %s): its cohort failed, it is neither paid nor slashed", v.Worker, v.Outcome, v.Reason)
		}
	}
}

// cohortSend sends a cohort request (and blob, when not nil) and returns
// the reply or the refusal's reason.
func (x *attacker) cohortSend(req cohortRequest, blob []byte) (cohortReply, string) {
	x.t.Helper()
	s := x.open(ProtoSecAgg, kindCohort, req)
	defer s.Close()
	if blob != nil {
		go func() {
			wire.WriteBlob(s, blob)
			s.CloseWrite()
		}()
	}
	var r cohortReply
	err := wire.ReadJSON(s, kindCohortReply, maxControl, &r)
	if re := (*wire.RemoteError)(nil); errors.As(err, &re) {
		return r, re.Msg
	}
	if err != nil {
		x.t.Fatalf("%s: %v", req.Step, err)
	}
	return r, ""
}

// TestCohortRefusals: a hostile member of a cohort, and a stranger, send
// what no honest member sends; each message is refused with its reason
// before it counts: a stranger, another session, an unknown step,
// malformed keys, keys under another party's number, a message of a
// later step, a second message. The member then vanishes: the cohort
// fails for want of its boxes (threshold 3 of 3) and the round goes on
// with the public worker.
func TestCohortRefusals(t *testing.T) {
	cfg := tinyConfig(1)
	cfg.RoundTimeout = diloco.Duration(10 * time.Second)
	cfg.Private = &diloco.Private{Tolerance: 0.5, SecAgg: cfg.DefaultSecAgg()}
	var mu sync.Mutex
	var results []*diloco.RoundResult
	agg, err := StartAggregator(AggregatorOptions{DataDir: t.TempDir(), Listen: loopback, Config: cfg, Text: testText(), EvalBatches: 1, Threads: 1,
		Grace: time.Second, Log: testLog(t), Ledger: openRun(), BlockInterval: 100 * time.Millisecond, Validation: &ValidationOptions{},
		OnRound: func(r RoundInfo) { mu.Lock(); results = append(results, r.Result); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	defer agg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	text := corpus.TinyShakespeare()
	var workers []*Worker
	for i := range 3 {
		o := WorkerOptions{DataDir: t.TempDir(), Listen: loopback, Join: agg.Addrs()[0], Threads: 1, Log: testLog(t)}
		if i < 2 {
			o.PrivateData = text[300000+i*20000 : 320000+i*20000]
		} else {
			o.Text = testText()
		}
		w, err := StartWorker(o)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		workers = append(workers, w)
	}
	x, stranger := newAttacker(t, agg.Addrs()[0]), newAttacker(t, agg.Addrs()[0])
	round0 := diloco.HashWeights(0, diloco.InitialWeights(cfg))
	errs := runAll(t, ctx, agg, workers)
	var reply pollReply
	for reply.Action != "train" {
		s := x.open(ProtoPoll, kindPoll, pollRequest{Round: 0, Hash: round0.String(), Private: true})
		if err := wire.ReadJSON(s, kindReply, maxControl, &reply); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	co := reply.Cohort
	if co == nil || len(co.Members) != 3 || co.Threshold != 3 {
		t.Fatalf("the hostile member's cohort: %+v", co)
	}
	me := uint64(slices.Index(co.Members, x.h.ID().String()) + 1)
	session, _ := hex.DecodeString(co.Session)
	keys := secagg.Keys{ID: me, Enc: [32]byte{1}, Mask: [32]byte{2}}
	other := keys
	other.ID = me%3 + 1
	req := func(step, session string) cohortRequest { return cohortRequest{Round: 0, Session: session, Step: step} }
	for _, tc := range []struct {
		name string
		from *attacker
		req  cohortRequest
		blob []byte
		want string
	}{
		{"a stranger", stranger, req(stepKeys, co.Session), keys.Marshal(), "is not a member of round 0's cohort"},
		{"another session", x, req(stepKeys, hex.EncodeToString(make([]byte, len(session)))), keys.Marshal(), "is not round 0's cohort's"},
		{"an unknown step", x, req("shares", co.Session), keys.Marshal(), `unknown cohort step "shares"`},
		{"malformed keys", x, req(stepKeys, co.Session), keys.Marshal()[:10], "keys of 10 bytes"},
		{"another party's keys", x, req(stepKeys, co.Session), other.Marshal(), fmt.Sprintf("keys for party %d from party %d", other.ID, me)},
		{"a later step", x, req(stepBoxes, co.Session), make([]byte, secagg.BoxSize), "while round 0's cohort is at its keys step"},
		{"its keys", x, req(stepKeys, co.Session), keys.Marshal(), ""},
		{"its keys again", x, req(stepKeys, co.Session), keys.Marshal(), "a second keys message"},
	} {
		if _, msg := tc.from.cohortSend(tc.req, tc.blob); !strings.Contains(msg, tc.want) || (tc.want == "") != (msg == "") {
			t.Errorf("%s: refusal %q, want %q", tc.name, msg, tc.want)
		}
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(results) != 1 || len(results[0].Accepted) != 1 || results[0].Accepted[0].Worker != workers[2].ID() || len(results[0].Missing) != 0 {
		t.Fatalf("the round without its cohort: %+v", results)
	}
}
