package swarmnet

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/swarm"
	"github.com/cairnlabs/cairn/wire"
)

func newHost(t *testing.T) host.Host {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := p2p.NewHost(key, []string{"/ip4/127.0.0.1/tcp/0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func newSwarm(t *testing.T, n int) []*Service {
	t.Helper()
	var ss []*Service
	for range n {
		s := New(newHost(t), Options{PieceSize: swarm.MinPieceSize * 4, Tick: 100 * time.Millisecond,
			Swarm: swarm.Config{Timeout: 2 * time.Second}})
		t.Cleanup(s.Close)
		ss = append(ss, s)
	}
	// A ring plus chords: not everyone is connected to everyone.
	ctx := context.Background()
	for i, s := range ss {
		for _, d := range []int{1, 3} {
			o := ss[(i+d)%n]
			if err := s.Connect(ctx, peer.AddrInfo{ID: o.h.ID(), Addrs: o.h.Addrs()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return ss
}

func blob(seed uint64, size int) []byte {
	r := mrand.New(mrand.NewPCG(seed, 1))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Six nodes over libp2p each publish a blob and fetch every other one.
func TestSwarmOverLibp2p(t *testing.T) {
	ss := newSwarm(t, 6)
	ids := make([]swarm.ID, len(ss))
	datas := make([][]byte, len(ss))
	for i, s := range ss {
		datas[i] = blob(uint64(i), 100_000+i*1000)
		var err error
		if ids[i], err = s.Publish(datas[i]); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := make(chan error, len(ss))
	for i, s := range ss {
		go func() {
			for j, id := range ids {
				got, err := s.Fetch(ctx, id)
				if err != nil {
					errs <- fmt.Errorf("node %d: %v", i, err)
					return
				}
				if !bytes.Equal(got, datas[j]) {
					errs <- fmt.Errorf("node %d: blob %d differs", i, j)
					return
				}
			}
			errs <- nil
		}()
	}
	for range ss {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range ss {
		if f := s.Faults(); len(f) > 0 {
			t.Errorf("node %d named honest peers: %v", i, f)
		}
		if st := s.Stats(); st.Uploaded == 0 {
			t.Errorf("node %d served nothing: %+v", i, st)
		}
	}
}

// A peer that serves corrupted pieces is named, disconnected and refused
// from then on, and the blob arrives intact from an honest holder.
func TestCorruptPeerDropped(t *testing.T) {
	ss := newSwarm(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bad := ss[1]
	setTamper := func(on bool) {
		bad.mu.Lock()
		defer bad.mu.Unlock()
		bad.tamper = nil
		if on {
			bad.tamper = func(_ peer.ID, m *swarm.Msg) {
				if m.Kind == swarm.KindPiece {
					m.Data = slices.Clone(m.Data)
					m.Data[len(m.Data)-1] ^= 0x40
				}
			}
		}
	}
	// Node 2 asks whichever holders it likes: until it has asked node 1
	// (and so been served a bad piece), publish another blob.
	for attempt := range 5 {
		data := blob(uint64(7+attempt), 300_000)
		id, err := ss[0].Publish(data)
		if err != nil {
			t.Fatal(err)
		}
		// Nodes 1 and 3 (both neighbours of 2, and of 0) fetch it first;
		// then node 1 turns bad.
		setTamper(false)
		for _, i := range []int{1, 3} {
			if _, err := ss[i].Fetch(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		setTamper(true)
		got, err := ss[2].Fetch(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatal("the blob arrived corrupted")
		}
		if len(ss[2].Faults()) > 0 {
			break
		}
		t.Logf("attempt %d: node 2 took every piece from the honest holders", attempt)
	}
	fs := ss[2].Faults()
	if len(fs) != 1 || fs[0].Peer != bad.h.ID().String() || !strings.Contains(fs[0].Reason, "does not match its hash") {
		t.Fatalf("node 2 named %+v, want node 1 for a piece that does not match its hash", fs)
	}
	err := ss[2].Connect(ctx, peer.AddrInfo{ID: bad.h.ID(), Addrs: bad.h.Addrs()})
	if err == nil || !strings.Contains(err.Error(), "banned") {
		t.Fatalf("reconnecting to the faulty peer: %v, want a refusal", err)
	}
}

// A peer writing frames that break the format or do not decode is named
// and refused.
func TestMalformedFramesBan(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
		want  string
	}{
		{"bad magic", []byte{0x00, 0x41, 0, 0, 0, 0}, "bad magic"},
		{"oversized", []byte{wire.MsgMagic, 0x45, 0xff, 0xff, 0xff, 0xff}, "exceeds the limit"},
		{"undecodable", append([]byte{wire.MsgMagic, 0x45, 0, 0, 0, 33}, make([]byte, 33)...), "does not decode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(newHost(t), Options{})
			t.Cleanup(s.Close)
			h := newHost(t)
			h.SetStreamHandler(Protocol, func(st network.Stream) { io.Copy(io.Discard, st) })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := h.Connect(ctx, peer.AddrInfo{ID: s.h.ID(), Addrs: s.h.Addrs()}); err != nil {
				t.Fatal(err)
			}
			st, err := h.NewStream(ctx, s.h.ID(), Protocol)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Write(tc.frame); err != nil {
				t.Fatal(err)
			}
			for ctx.Err() == nil && len(s.Faults()) == 0 {
				time.Sleep(10 * time.Millisecond)
			}
			fs := s.Faults()
			if len(fs) != 1 || fs[0].Peer != h.ID().String() || !strings.Contains(fs[0].Reason, tc.want) {
				t.Fatalf("faults %+v, want the peer named for %q", fs, tc.want)
			}
			// A new stream from it is refused.
			st2, err := h.NewStream(ctx, s.h.ID(), Protocol)
			if err == nil {
				st2.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err = st2.Read(make([]byte, 1)); err == nil {
					t.Fatal("a banned peer's stream was served")
				}
			}
		})
	}
}

func reachHost(t *testing.T, r p2p.Reach) host.Host {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	h, err := p2p.NewReachableHost(key, r)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// A node that cannot be dialled is reached through a circuit relay v2
// slot; the blob travels over the relayed (limited) connection and is
// counted as relayed.
func TestSwarmThroughRelay(t *testing.T) {
	relay := reachHost(t, p2p.Reach{Reachability: "public"})
	hidden := reachHost(t, p2p.Reach{Reachability: "private", Relays: []peer.AddrInfo{{ID: relay.ID(), Addrs: relay.Addrs()}}})
	other := reachHost(t, p2p.Reach{Reachability: "private", NoRelayService: true})
	circuit, err := ma.NewMultiaddr(fmt.Sprintf("%s/p2p/%s/p2p-circuit", relay.Addrs()[0], relay.ID()))
	if err != nil {
		t.Fatal(err)
	}
	via := peer.AddrInfo{ID: hidden.ID(), Addrs: []ma.Multiaddr{circuit}}
	o := Options{PieceSize: swarm.MinPieceSize, Tick: 100 * time.Millisecond, Swarm: swarm.Config{Timeout: 2 * time.Second}}
	sh, so := New(hidden, o), New(other, o)
	defer sh.Close()
	defer so.Close()
	data := blob(7, 10*swarm.MinPieceSize+5)
	id, err := sh.Publish(data)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The hidden node reserves its relay slot in the background.
	for {
		if err = so.Connect(ctx, via); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no connection through the relay: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	got, err := so.Fetch(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the blob arrived changed")
	}
	x := so.Transfers()
	if x.Relayed != 11 || x.Direct != 0 || x.RelayedBytes < int64(len(data)) {
		t.Fatalf("transfers %+v: want all 11 pieces relayed", x)
	}
}
