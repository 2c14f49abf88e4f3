package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/wire"
)

// blobHeader is the start of a blob that promises size bytes.
func blobHeader(size uint64) []byte {
	b := make([]byte, 45)
	b[0] = wire.BlobMagic
	binary.BigEndian.PutUint64(b[1:], size)
	binary.BigEndian.PutUint32(b[41:], wire.ChunkSize)
	return b
}

// TestSubmitHeaderCheckedBeforePayload: a contribution whose header the
// aggregator refuses (a non-participant's) is refused before a byte of its
// payload is read; a participant's payload larger than the run's codec
// can write is refused on its blob header.
func TestSubmitHeaderCheckedBeforePayload(t *testing.T) {
	cfg := tinyConfig(2)
	agg := startAggregator(t, t.TempDir(), cfg, nil)
	defer agg.Close()
	x := newAttacker(t, agg.Addrs()[0])
	round0 := diloco.HashWeights(0, diloco.InitialWeights(cfg))
	limit := maxPayload(cfg)

	before := agg.Counter().Received()
	s := x.open(ProtoSubmit, kindSubmit, submitRequest{Round: 0, Hash: round0.String(), Tokens: cfg.TokensPerStep()})
	go func() { // 4 MiB the aggregator must not read
		s.Write(blobHeader(4 << 20))
		s.Write(make([]byte, 4<<20))
	}()
	if msg := refusalOf(t, s, kindAck); !strings.Contains(msg, "not a participant") {
		t.Fatalf("refusal %q", msg)
	}
	s.Reset()
	if got := agg.Counter().Received() - before; got > 64<<10 {
		t.Fatalf("the aggregator read %d bytes of a contribution it refused on its header", got)
	}

	// Become a participant: poll until the round opens.
	runCtx, stop := context.WithCancel(x.ctx)
	ran := make(chan error, 1)
	go func() { ran <- agg.Run(runCtx) }()
	defer func() { stop(); <-ran }()
	p := x.open(ProtoPoll, kindPoll, pollRequest{Round: 0, Hash: round0.String()})
	var reply pollReply
	if err := wire.ReadJSON(p, kindReply, maxControl, &reply); err != nil || reply.Action != "train" {
		t.Fatalf("attacker's poll: %v %+v", err, reply)
	}
	p.Close()
	tokens := cfg.TokensPerStep()
	s = x.open(ProtoSubmit, kindSubmit, submitRequest{Round: 0, Hash: round0.String(), Tokens: tokens,
		Commit: x.commit(agg, 1, ledger.CommitTx{Round: 0, Tokens: uint64(tokens), Fresh: true})})
	s.Write(blobHeader(uint64(limit) + 1))
	if msg := refusalOf(t, s, kindAck); !strings.Contains(msg, "exceeds the limit") {
		t.Fatalf("oversized payload: refusal %q", msg)
	}
	s.Reset()
	// The largest payload the encoder can write is accepted.
	good, _ := compress.NewEncoder(cfg.Codec, cfg.Model.NumParams()).Encode(make([]float32, cfg.Model.NumParams()))
	if int64(len(good)) > limit {
		t.Fatalf("an honest payload of %d bytes exceeds the limit %d", len(good), limit)
	}
	s = x.open(ProtoSubmit, kindSubmit, submitRequest{Round: 0, Hash: round0.String(), Tokens: tokens,
		Commit: x.commit(agg, 1, ledger.CommitTx{Round: 0, DeltaHash: digest(good), Tokens: uint64(tokens), Fresh: true})})
	wire.WriteBlob(s, good)
	var a ack
	if err := wire.ReadJSON(s, kindAck, maxControl, &a); err != nil {
		t.Fatalf("a participant's honest contribution: %v", err)
	}
	s.Close()
}

// fetchWeights asks a node for the weights with hash and reads them;
// it returns the refusal, if any.
func fetchWeights(t *testing.T, x *attacker, hash diloco.Hash, n int) string {
	t.Helper()
	s := x.open(ProtoState, kindStateReq, stateRequest{Hash: hash.String()})
	defer s.Close()
	var rep stateReply
	err := wire.ReadJSON(s, kindState, maxControl, &rep)
	if re := (*wire.RemoteError)(nil); errors.As(err, &re) {
		return re.Msg
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := wire.ReadBlobInto(s, make([]byte, 4*n)); err != nil {
		t.Fatal(err)
	}
	return ""
}

// TestWeightDownloadsLimited: one peer cannot download the full weights
// from the aggregator, or from a worker, over and over: the third request
// for one round's weights is refused, with the reason.
func TestWeightDownloadsLimited(t *testing.T) {
	cfg := tinyConfig(1)
	agg := startAggregator(t, t.TempDir(), cfg, nil)
	defer agg.Close()
	holder := startWorker(t, agg.Addrs()[0])
	if err := holder.setup(cfg); err != nil {
		t.Fatal(err)
	}
	theta := diloco.InitialWeights(cfg)
	hash := diloco.HashWeights(0, theta)
	if err := holder.w.SetWeights(0, theta, hash); err != nil {
		t.Fatal(err)
	}
	holder.publishWeights()
	n := cfg.Model.NumParams()
	for _, addr := range []string{agg.Addrs()[0], holder.Addrs()[0]} {
		x := newAttacker(t, addr)
		for i := 0; i < 2; i++ {
			if msg := fetchWeights(t, x, hash, n); msg != "" {
				t.Fatalf("download %d refused: %s", i, msg)
			}
		}
		if msg := fetchWeights(t, x, hash, n); !strings.Contains(msg, "already served to this peer") {
			t.Fatalf("third download of the same weights: %q", msg)
		}
	}
}

func TestServeLimit(t *testing.T) {
	l := newServeLimit(2, 3)
	l.maxPeers = 5
	h1, h2 := diloco.Hash{1}, diloco.Hash{2}
	var releases []func()
	for _, p := range []string{"a", "b", "c"} {
		r, err := l.acquire(p, h1)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	if _, err := l.acquire("d", h1); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("fourth concurrent download: %v", err)
	}
	releases[0]()
	releases[0]() // twice is harmless
	r, err := l.acquire("a", h1)
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	r()
	releases[1]()
	releases[2]()
	if _, err := l.acquire("a", h1); err == nil {
		t.Fatal("third download by one peer")
	}
	for _, p := range []string{"d", "e"} {
		r, err := l.acquire(p, h1)
		if err != nil {
			t.Fatal(err)
		}
		r()
	}
	if _, err := l.acquire("f", h1); err == nil {
		t.Fatal("more peers than remembered")
	}
	if r, err := l.acquire("a", h2); err != nil {
		t.Fatalf("new weights: %v", err)
	} else {
		r()
	}
}

// TestSlowPeerCostsSeconds: a joiner whose peers serve the weights
// hostilely (one stalls after the header, one trickles a byte every
// 100 ms) leaves each after seconds and fetches from the aggregator.
func TestSlowPeerCostsSeconds(t *testing.T) {
	cfg := tinyConfig(1)
	agg := startAggregator(t, t.TempDir(), cfg, nil)
	defer agg.Close()
	theta := diloco.InitialWeights(cfg)
	hash := diloco.HashWeights(0, theta)
	n := cfg.Model.NumParams()
	var peers []string
	for _, trickle := range []bool{false, true} {
		key, _ := p2p.LoadIdentity(t.TempDir())
		h, err := p2p.NewHost(key, []string{"/ip4/127.0.0.1/tcp/0"})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		h.SetStreamHandler(ProtoState, func(s network.Stream) {
			defer s.Reset()
			var req stateRequest
			wire.ReadJSON(s, kindStateReq, maxControl, &req)
			wire.WriteJSON(s, kindState, stateReply{Round: 0, Hash: hash.String()})
			s.Write(blobHeader(uint64(4 * n)))
			for trickle {
				if _, err := s.Write([]byte{0}); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(time.Minute)
		})
		peers = append(peers, p2p.Addrs(h)[0])
	}
	w := startWorker(t, agg.Addrs()[0])
	w.peerStall, w.peerBase = time.Second, time.Second
	ctx := t.Context()
	id, err := w.tr.Connect(ctx, agg.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	w.aggID = id
	if err := w.setup(cfg); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := w.fetchState(ctx, 0, hash, peers); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("two hostile peers cost %v", el)
	}
	if w.w.Hash() != hash {
		t.Fatal("weights not installed")
	}
}

// manyAddrs is a transport that knows ten long addresses for every peer,
// as the aggregator of a large run would.
type manyAddrs struct{ Transport }

func (m manyAddrs) AddrsOf(p string) []string {
	var out []string
	for i := 0; i < 10; i++ {
		pad := strings.Repeat("x", 20*i) // the longest are over maxAddrLen
		out = append(out, fmt.Sprintf("/dns4/%s%d.example.net/tcp/4001/p2p/%s", pad, i, p))
	}
	return out
}

// TestWelcomeFitsWithThousandsOfWorkers: with 5000 workers present, each
// with ten addresses, a join is answered with a bounded random sample of
// them, and a real worker still joins and trains.
func TestWelcomeFitsWithThousandsOfWorkers(t *testing.T) {
	cfg := tinyConfig(1)
	cfg.RoundTimeout = diloco.Duration(2 * time.Second)
	key, err := p2p.LoadIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tr, err := p2p.NewTransport(key, []string{"/ip4/127.0.0.1/tcp/0"})
	if err != nil {
		t.Fatal(err)
	}
	agg, err := StartAggregator(AggregatorOptions{Ledger: openRun(), DataDir: t.TempDir(), Transport: manyAddrs{tr}, Config: cfg, Text: testText(),
		EvalBatches: 1, Threads: 1, Grace: 200 * time.Millisecond, Limits: diloco.Limits{MaxPeers: 10000}, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer agg.Close()
	round0 := diloco.HashWeights(0, diloco.InitialWeights(cfg))
	agg.mu.Lock()
	for i := 0; i < 5000; i++ {
		var k ledger.PubKey
		binary.BigEndian.PutUint64(k[:], uint64(i)+1)
		agg.agg.Poll(p2p.PeerIDOf(k), 0, round0, time.Now())
	}
	agg.mu.Unlock()
	x := newAttacker(t, agg.Addrs()[0])
	seen := map[string]bool{}
	for i := 0; i < 2; i++ {
		s := x.open(ProtoJoin, kindJoin, joinRequest{Version: ProtocolVersion})
		var wel welcome
		if err := wire.ReadJSON(s, kindWelcome, maxControl, &wel); err != nil {
			t.Fatalf("join with 5000 workers present: %v", err)
		}
		s.Close()
		if len(wel.Peers) == 0 || len(wel.Peers) > welcomePeers*welcomeAddrs {
			t.Fatalf("welcome lists %d addresses", len(wel.Peers))
		}
		for _, a := range wel.Peers {
			if len(a) > maxAddrLen {
				t.Fatalf("address of %d bytes in the welcome", len(a))
			}
			seen[a[strings.LastIndex(a, "/")+1:]] = true
		}
	}
	if len(seen) <= welcomePeers {
		t.Fatalf("two welcomes named %d workers: not a random sample", len(seen))
	}
	// A real worker joins (it computes θ0; the fake peers are never
	// needed) and its contribution closes the run's one round, at the
	// deadline: the round waited for the earliest silent newcomers.
	w := startWorker(t, agg.Addrs()[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := runAll(t, ctx, agg, []*Worker{w})
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if st := w.Stats(); st.Rounds != 1 {
		t.Fatalf("the worker contributed %d times", st.Rounds)
	}
}
