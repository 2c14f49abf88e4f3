package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/wire"
)

// TestHostilePeer: malformed, truncated, oversized and lying frames on every
// protocol are refused without crashing the aggregator, and an honest run
// afterwards still finishes.
func TestHostilePeer(t *testing.T) {
	cfg := tinyConfig(2)
	agg := startAggregator(t, t.TempDir(), cfg, nil)
	defer agg.Close()
	key, err := p2p.LoadIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h, err := p2p.NewHost(key, loopback)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	info, _ := p2p.ParseAddr(agg.Addrs()[0])
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := p2p.Connect(ctx, h, info, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	send := func(proto protocol.ID, raw []byte) error {
		s, err := h.NewStream(ctx, info.ID, proto)
		if err != nil {
			return err
		}
		defer s.Close()
		s.SetDeadline(time.Now().Add(5 * time.Second))
		s.Write(raw)
		s.CloseWrite()
		var buf bytes.Buffer
		buf.ReadFrom(s)
		return nil
	}
	frame := func(kind uint8, body []byte) []byte {
		var b bytes.Buffer
		wire.WriteMsg(&b, kind, body)
		return b.Bytes()
	}
	huge := make([]byte, 6)
	huge[0], huge[1] = wire.MsgMagic, kindSubmit
	binary.BigEndian.PutUint32(huge[2:], 1<<31) // a 2 GB control message
	var hugeBlob bytes.Buffer
	wire.WriteJSON(&hugeBlob, kindSubmit, submitRequest{Round: 0, Hash: diloco.Hash{}.String(), Tokens: 1})
	hb := make([]byte, 45)
	hb[0] = wire.BlobMagic
	binary.BigEndian.PutUint64(hb[1:], 1<<40) // a 1 TB blob
	hugeBlob.Write(hb)

	round0 := diloco.HashWeights(0, diloco.InitialWeights(cfg))
	enc := compress.NewEncoder(cfg.Codec, cfg.Model.NumParams())
	good, _ := enc.Encode(make([]float32, cfg.Model.NumParams()))
	var lying bytes.Buffer // a valid frame around a payload that lies about its size
	wire.WriteJSON(&lying, kindSubmit, submitRequest{Round: 0, Hash: round0.String(), Tokens: 1})
	bad := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(bad[4:], uint32(cfg.Model.NumParams()+1))
	wire.WriteBlob(&lying, bad)
	var corrupt bytes.Buffer // a valid header with a flipped byte in the blob
	wire.WriteJSON(&corrupt, kindSubmit, submitRequest{Round: 0, Hash: round0.String(), Tokens: 1})
	wire.WriteBlob(&corrupt, good)
	cb := corrupt.Bytes()
	cb[len(cb)-40] ^= 0xff

	attacks := []struct {
		proto protocol.ID
		raw   []byte
	}{
		{ProtoJoin, []byte("GET / HTTP/1.1\r\n\r\n")},
		{ProtoJoin, frame(kindJoin, []byte(`{"version": 1`))},
		{ProtoJoin, frame(kindJoin, []byte(`{"version": 99}`))},
		{ProtoPoll, frame(kindPoll, []byte(`{"round": 0, "hash": "zz"}`))},
		{ProtoPoll, frame(kindPoll, []byte(`{"round": -5, "hash": "`+diloco.Hash{}.String()+`"}`))},
		{ProtoSubmit, huge},
		{ProtoSubmit, hugeBlob.Bytes()},
		{ProtoSubmit, lying.Bytes()},
		{ProtoSubmit, cb},
		{ProtoSubmit, frame(kindSubmit, []byte(`{"round": 0, "hash": "`+round0.String()+`", "tokens": 999999999}`))},
		{ProtoState, frame(kindStateReq, []byte(`{"hash": "nope"}`))},
		{ProtoState, []byte{wire.MsgMagic}},
	}
	for i, a := range attacks {
		if err := send(a.proto, a.raw); err != nil {
			t.Fatalf("attack %d: %v", i, err)
		}
	}
	// The hostile peer contributed nothing; honest workers finish the run.
	errs := runAll(t, ctx, agg, []*Worker{startWorker(t, agg.Addrs()[0]), startWorker(t, agg.Addrs()[0])})
	for i := 0; i < 3; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if _, round := agg.Weights(); round != 2 {
		t.Fatalf("run ended at round %d", round)
	}
}

// TestWorkerSurvivesPoisonedWeights: global weights that give a
// non-finite loss (what an accepted poison would leave) do not make a
// worker exit as though it were broken: it skips the round, keeps
// following the run, and contributes again once the run's weights are
// healthy (here: the aggregator is replaced by one running the same run
// from the seed's weights).
func TestWorkerSurvivesPoisonedWeights(t *testing.T) {
	cfg := tinyConfig(2)
	cfg.RoundTimeout = diloco.Duration(2 * time.Second)
	dir := t.TempDir()
	bad := diloco.InitialWeights(cfg)
	for i := range bad {
		bad[i] = -2e38
	}
	first, err := StartAggregator(AggregatorOptions{Ledger: openRun(), DataDir: dir, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Config: cfg, Init: bad, Text: testText(),
		EvalBatches: 1, Threads: 1, Grace: 200 * time.Millisecond, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	addr := first.Addrs()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w := startWorker(t, addr)
	werr := make(chan error, 1)
	go func() { werr <- w.Run(ctx) }()
	firstCtx, stopFirst := context.WithCancel(ctx)
	firstDone := make(chan error, 1)
	go func() { firstDone <- first.Run(firstCtx) }()
	for w.Stats().Skipped == 0 {
		select {
		case err := <-werr:
			t.Fatalf("the worker exited on poisoned weights: %v", err)
		case <-ctx.Done():
			t.Fatal("the worker never tried the poisoned round")
		case <-time.After(20 * time.Millisecond):
		}
	}
	stopFirst()
	<-firstDone
	first.Close()
	if _, round := first.Weights(); round != 0 {
		t.Fatalf("the poisoned run closed round %d", round)
	}
	second, err := StartAggregator(AggregatorOptions{Ledger: openRun(), DataDir: dir, Listen: []string{addrWithoutPeer(t, addr)}, Config: cfg, Text: testText(),
		EvalBatches: 1, Threads: 1, Grace: 200 * time.Millisecond, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if err := second.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("worker: %v", err)
	}
	if st := w.Stats(); st.Rounds != 2 {
		t.Fatalf("the worker contributed %d rounds of the healthy run, want 2", st.Rounds)
	}
}

// attacker is a libp2p host that speaks to a node by hand.
type attacker struct {
	t    *testing.T
	key  crypto.PrivKey
	h    host.Host
	to   peer.ID
	ctx  context.Context
	stop context.CancelFunc
}

func newAttacker(t *testing.T, addr string) *attacker {
	t.Helper()
	key, err := p2p.LoadIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return newAttackerWithKey(t, addr, key)
}

func newAttackerWithKey(t *testing.T, addr string, key crypto.PrivKey) *attacker {
	t.Helper()
	h, err := p2p.NewHost(key, loopback)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := p2p.ParseAddr(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	if err := p2p.Connect(ctx, h, info, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); h.Close() })
	return &attacker{t: t, key: key, h: h, to: info.ID, ctx: ctx, stop: cancel}
}

// open starts a stream for proto and writes the JSON request.
func (x *attacker) open(proto string, kind uint8, req any) network.Stream {
	x.t.Helper()
	s, err := x.h.NewStream(x.ctx, x.to, protocol.ID(proto))
	if err != nil {
		x.t.Fatal(err)
	}
	s.SetDeadline(time.Now().Add(20 * time.Second))
	if err := wire.WriteJSON(s, kind, req); err != nil {
		x.t.Fatal(err)
	}
	return s
}

// refusal reads a reply that must be a refusal, and returns its reason.
func refusalOf(t *testing.T, s io.Reader, kind uint8) string {
	t.Helper()
	var v map[string]any
	err := wire.ReadJSON(s, kind, maxControl, &v)
	var re *wire.RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("want a refusal, got %v (%v)", err, v)
	}
	return re.Msg
}

// TestNonParticipantRefusedWithReason: a contribution from an identity
// that was not present when the round opened is refused, and the peer is
// told why; so is a second contribution under one identity.
func TestNonParticipantRefusedWithReason(t *testing.T) {
	cfg := tinyConfig(2)
	agg := startAggregator(t, t.TempDir(), cfg, nil)
	defer agg.Close()
	x := newAttacker(t, agg.Addrs()[0])
	round0 := diloco.HashWeights(0, diloco.InitialWeights(cfg))
	good, _ := compress.NewEncoder(cfg.Codec, cfg.Model.NumParams()).Encode(make([]float32, cfg.Model.NumParams()))
	s := x.open(ProtoSubmit, kindSubmit, submitRequest{Round: 0, Hash: round0.String(), Tokens: cfg.TokensPerStep()})
	wire.WriteBlob(s, good)
	s.CloseWrite()
	if msg := refusalOf(t, s, kindAck); !strings.Contains(msg, "not a participant") {
		t.Fatalf("refusal %q does not say why", msg)
	}
	s.Close()
}

// TestCraftedJoinReply: an aggregator (or a man in the middle of a
// misconfigured run) whose welcome carries a model shape that overflows
// the parameter count, or a batch too large to allocate, makes the worker
// stop with a one-line error, not a panic.
func TestCraftedJoinReply(t *testing.T) {
	for _, mutate := range []func(*diloco.RunConfig){
		func(c *diloco.RunConfig) { c.Model.NEmbd, c.Model.NHead = 3221225472, 1 },
		func(c *diloco.RunConfig) { c.Batch = 1 << 40 },
		func(c *diloco.RunConfig) { c.Batch, c.Model.BlockSize = 1<<16, 1<<16 },
	} {
		cfg := tinyConfig(1)
		mutate(&cfg)
		key, _ := p2p.LoadIdentity(t.TempDir())
		h, err := p2p.NewHost(key, []string{"/ip4/127.0.0.1/tcp/0"})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		h.SetStreamHandler(ProtoJoin, func(s network.Stream) {
			defer s.Close()
			var req joinRequest
			wire.ReadJSON(s, kindJoin, maxControl, &req)
			wire.WriteJSON(s, kindWelcome, welcome{Version: ProtocolVersion, Config: cfg, Round: 0, Hash: diloco.Hash{}.String()})
		})
		w := startWorker(t, p2p.Addrs(h)[0])
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err = w.Run(ctx)
		timedOut := ctx.Err() != nil
		cancel()
		if err == nil || timedOut || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "run config") {
			t.Fatalf("worker given a crafted config (batch %d, width %d): %v", cfg.Batch, cfg.Model.NEmbd, err)
		}
	}
}

// TestDuplicateIdentityToldWhy: a second node running under an identity
// that has already contributed to the round (two processes sharing a data
// directory, before it was locked) is refused with a reason that says so.
func TestDuplicateIdentityToldWhy(t *testing.T) {
	cfg := tinyConfig(1)
	cfg.Quorum = 2
	agg := startAggregator(t, t.TempDir(), cfg, nil)
	defer agg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adir := t.TempDir()
	a, err := StartWorker(WorkerOptions{DataDir: adir, Listen: loopback, Join: agg.Addrs()[0], Text: testText(), Threads: 1, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	release := make(chan struct{})
	b, err := StartWorker(WorkerOptions{DataDir: t.TempDir(), Listen: loopback, Join: agg.Addrs()[0], Text: testText(), Threads: 1, Log: testLog(t),
		OnStep: func(int, int, float32) { <-release }})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	errs := runAll(t, ctx, agg, []*Worker{a, b})
	for a.Stats().Rounds == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	key, err := p2p.LoadIdentity(adir) // the same key file: the same identity
	if err != nil {
		t.Fatal(err)
	}
	twin := newAttackerWithKey(t, agg.Addrs()[0], key)
	round0 := diloco.HashWeights(0, diloco.InitialWeights(cfg))
	good, _ := compress.NewEncoder(cfg.Codec, cfg.Model.NumParams()).Encode(make([]float32, cfg.Model.NumParams()))
	s := twin.open(ProtoSubmit, kindSubmit, submitRequest{Round: 0, Hash: round0.String(), Tokens: cfg.TokensPerStep()})
	wire.WriteBlob(s, good)
	msg := refusalOf(t, s, kindAck)
	s.Close()
	close(release)
	if !strings.Contains(msg, "already contributed") || !strings.Contains(msg, "another node runs with its identity") {
		t.Fatalf("refusal %q does not say another node shares the identity", msg)
	}
	for i := 0; i < 3; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
