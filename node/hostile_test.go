package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"

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
