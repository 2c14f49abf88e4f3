package swarm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// testNet delivers messages between nodes in one process, in order,
// through the wire encoding; it advances the clock only when nothing is
// left to deliver.
type testNet struct {
	t      *testing.T
	nodes  map[string]*Node
	names  []string
	queue  []envelope
	now    time.Time
	faults map[string][]Fault // by reporting node
	done   map[string][]ID
	// tamper, if set, may change or drop (false) a message in flight.
	tamper func(from, to string, m *Msg) bool
}

type envelope struct {
	from, to string
	m        Msg
}

func newNet(t *testing.T, n int, cfg Config) *testNet {
	t.Helper()
	tn := &testNet{t: t, nodes: map[string]*Node{}, now: time.Unix(1000, 0), faults: map[string][]Fault{}, done: map[string][]ID{}}
	for i := range n {
		name := fmt.Sprintf("n%02d", i)
		c := cfg
		c.Self = name
		tn.nodes[name] = New(c)
		tn.names = append(tn.names, name)
	}
	for _, a := range tn.names {
		for _, b := range tn.names {
			if a != b {
				tn.apply(a, tn.nodes[a].AddPeer(b, tn.now))
			}
		}
	}
	return tn
}

func (tn *testNet) apply(from string, r Ready) {
	for _, o := range r.Send {
		tn.queue = append(tn.queue, envelope{from, o.To, o.Msg})
	}
	tn.faults[from] = append(tn.faults[from], r.Faults...)
	tn.done[from] = append(tn.done[from], r.Done...)
}

// run delivers until nothing moves even after the clock passes timeouts.
func (tn *testNet) run() {
	idle, last := 0, int64(-1)
	for steps := 0; idle < 3; steps++ {
		if steps > 1e6 {
			tn.t.Fatal("the swarm did not settle")
		}
		if len(tn.queue) == 0 {
			// Idle: a whole cycle of timeouts moved no piece.
			var moved int64
			for _, n := range tn.nodes {
				moved += n.Stats().Downloaded
			}
			if moved == last {
				idle++
			} else {
				idle, last = 0, moved
			}
			tn.now = tn.now.Add(11 * time.Second)
			for _, name := range tn.names {
				tn.apply(name, tn.nodes[name].Tick(tn.now))
			}
			continue
		}
		e := tn.queue[0]
		tn.queue = tn.queue[1:]
		if tn.tamper != nil && !tn.tamper(e.from, e.to, &e.m) {
			continue
		}
		kind, body := e.m.Encode()
		m, err := Decode(kind, body)
		if err != nil {
			tn.t.Fatalf("%s to %s: %v message does not decode: %v", e.from, e.to, e.m.Kind, err)
		}
		tn.apply(e.to, tn.nodes[e.to].Step(e.from, m, tn.now))
	}
}

// seeded publishes data on n00 and has n01 fetch it: two holders.
func (tn *testNet) seeded(data []byte) ID {
	tn.t.Helper()
	id, rd, err := tn.nodes["n00"].Publish(data, MinPieceSize)
	if err != nil {
		tn.t.Fatal(err)
	}
	tn.apply("n00", rd)
	tn.apply("n01", tn.nodes["n01"].Want(id, tn.now))
	tn.run()
	return id
}

func randomBlob(r *rand.Rand, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Every node publishes a blob and wants everyone else's: each ends with
// every blob, bit for bit, and a publisher uploads each piece of its own
// blob about Copies times while the swarm carries the rest.
func TestSwarmAllToAll(t *testing.T) {
	const nodes, piece = 8, MinPieceSize
	tn := newNet(t, nodes, Config{Copies: 1})
	r := rand.New(rand.NewPCG(1, 2))
	blobs := map[ID][]byte{}
	owner := map[ID]string{}
	for i, name := range tn.names {
		data := randomBlob(r, 6*piece+i*100) // 7 pieces, the last one short (but for i = 0)
		id, rd, err := tn.nodes[name].Publish(data, piece)
		if err != nil {
			t.Fatal(err)
		}
		tn.apply(name, rd)
		blobs[id], owner[id] = data, name
	}
	for _, name := range tn.names {
		for id := range blobs {
			if owner[id] != name {
				tn.apply(name, tn.nodes[name].Want(id, tn.now))
			}
		}
	}
	tn.run()
	var total int64
	for _, name := range tn.names {
		if len(tn.faults[name]) > 0 {
			t.Errorf("%s reported honest peers: %v", name, tn.faults[name])
		}
		if len(tn.done[name]) != nodes-1 {
			t.Errorf("%s completed %d blobs, want %d", name, len(tn.done[name]), nodes-1)
		}
		for id, want := range blobs {
			got, ok := tn.nodes[name].Data(id)
			if !ok || !bytes.Equal(got, want) {
				t.Fatalf("%s does not hold blob %s intact", name, id)
			}
		}
		st := tn.nodes[name].Stats()
		total += st.Uploaded
		if st.Downloaded == 0 || st.Uploaded == 0 {
			t.Errorf("%s: %+v: every node should fetch and serve", name, st)
		}
	}
	// What was downloaded was uploaded exactly once: nothing is fetched twice.
	var size int64
	for _, d := range blobs {
		size += int64(len(d))
	}
	if want := size * (nodes - 1); total != want {
		t.Errorf("uploaded %d bytes in all, want %d (every blob once to each other node)", total, want)
	}
	// Uploads are spread: no node serves much more than the mean.
	for _, name := range tn.names {
		if st := tn.nodes[name].Stats(); float64(st.Uploaded) > 1.5*float64(total)/nodes {
			t.Errorf("%s uploaded %d bytes, more than 1.5 times the mean %d", name, st.Uploaded, total/nodes)
		}
	}
}

// A peer serving bytes that do not match a piece's hash is named, ignored
// from then on, and the blob is fetched intact from the others.
func TestSwarmCorruptPeerNamed(t *testing.T) {
	tn := newNet(t, 5, Config{})
	r := rand.New(rand.NewPCG(3, 4))
	data := randomBlob(r, 10*MinPieceSize)
	// n01 fetches first, then turns bad: every piece it serves is flipped.
	id := tn.seeded(data)
	tn.tamper = func(from, to string, m *Msg) bool {
		if from == "n01" && m.Kind == KindPiece {
			m.Data = slices.Clone(m.Data)
			m.Data[0] ^= 1
		}
		return true
	}
	// The publisher will not serve any more while n01 holds everything.
	for _, name := range tn.names[2:] {
		tn.apply(name, tn.nodes[name].Want(id, tn.now))
	}
	tn.run()
	named := 0
	for _, name := range tn.names[2:] {
		got, ok := tn.nodes[name].Data(id)
		if !ok || !bytes.Equal(got, data) {
			t.Fatalf("%s did not get the blob intact", name)
		}
		for _, f := range tn.faults[name] {
			if f.Peer != "n01" || !strings.Contains(f.Reason, "does not match its hash") {
				t.Errorf("%s: unexpected fault %+v", name, f)
			}
			named++
		}
	}
	if named == 0 {
		t.Fatal("nobody named the corrupting peer")
	}
	// The publisher had served each piece Copies times and n01 held them
	// all, so it first refused as busy, then served those it refused.
	if st := tn.nodes["n00"].Stats(); st.Refused == 0 {
		t.Errorf("the publisher never refused as busy: %+v", st)
	}
}

// A peer that sends a manifest, a piece or a bitfield that breaks the
// protocol is named with the reason.
func TestSwarmProtocolFaults(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	data := randomBlob(r, 3*MinPieceSize+7)
	for _, tc := range []struct {
		name   string
		tamper func(m *Msg) bool
		reason string
	}{
		{"bad manifest", func(m *Msg) bool {
			if m.Kind == KindManifest {
				m.Data = slices.Clone(m.Data)
				m.Data[len(m.Data)-1] ^= 1
			}
			return true
		}, "bad manifest"},
		{"wrong piece", func(m *Msg) bool {
			if m.Kind == KindPiece {
				m.Piece = (m.Piece + 1) % 4
			}
			return true
		}, "not asked for"},
		{"short bitfield", func(m *Msg) bool {
			if m.Kind == KindBitfield && m.All {
				m.All, m.Bits = false, []byte{0xff, 0xff}
			}
			return true
		}, "bitfield of 2 bytes for 4 pieces"},
		{"have beyond", func(m *Msg) bool {
			if m.Kind == KindBitfield && m.All {
				m.Kind, m.All, m.Piece = KindHave, false, 9
			}
			return true
		}, "piece 9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := newNet(t, 3, Config{})
			// n01 is honest and holds the blob too; n00 lies to n02.
			id := tn.seeded(data)
			tn.tamper = func(from, to string, m *Msg) bool {
				if from == "n00" && to == "n02" {
					return tc.tamper(m)
				}
				return true
			}
			tn.apply("n02", tn.nodes["n02"].Want(id, tn.now))
			tn.run()
			fs := tn.faults["n02"]
			if len(fs) != 1 || fs[0].Peer != "n00" || !strings.Contains(fs[0].Reason, tc.reason) {
				t.Fatalf("faults %+v, want n00 named for %q", fs, tc.reason)
			}
			if got, ok := tn.nodes["n02"].Data(id); !ok || !bytes.Equal(got, data) {
				t.Fatal("n02 did not get the blob from the honest peer")
			}
		})
	}
}

// A peer that goes silent, or leaves, is asked no more: its requests time
// out and go to other holders.
func TestSwarmSilentAndLeavingPeers(t *testing.T) {
	tn := newNet(t, 4, Config{})
	r := rand.New(rand.NewPCG(7, 8))
	data := randomBlob(r, 20*MinPieceSize)
	id := tn.seeded(data)
	// n00 goes silent; n01 leaves n03's view after it has all.
	tn.tamper = func(from, to string, m *Msg) bool { return from != "n00" }
	tn.apply("n02", tn.nodes["n02"].Want(id, tn.now))
	tn.run()
	if got, ok := tn.nodes["n02"].Data(id); !ok || !bytes.Equal(got, data) {
		t.Fatal("n02 did not get the blob past a silent peer")
	}
	tn.apply("n03", tn.nodes["n03"].RemovePeer("n01", tn.now))
	tn.apply("n03", tn.nodes["n03"].Want(id, tn.now))
	tn.run()
	if got, ok := tn.nodes["n03"].Data(id); !ok || !bytes.Equal(got, data) {
		t.Fatal("n03 did not get the blob from the remaining peer")
	}
	for _, name := range tn.names {
		if len(tn.faults[name]) > 0 {
			t.Errorf("%s: %v: a silent peer is not a faulty one", name, tn.faults[name])
		}
	}
}

// A peer asking for far more pieces than a blob has is flooding.
func TestSwarmRequestFlood(t *testing.T) {
	n := New(Config{Self: "a"})
	n.AddPeer("b", time.Unix(0, 0))
	id, _, err := n.Publish(randomBlob(rand.New(rand.NewPCG(1, 1)), 2*MinPieceSize), MinPieceSize)
	if err != nil {
		t.Fatal(err)
	}
	var faults []Fault
	served := 0
	for range 10 {
		rd := n.Step("b", Msg{Kind: KindRequest, Blob: id, Piece: 1}, time.Unix(0, 0))
		faults = append(faults, rd.Faults...)
		for _, o := range rd.Send {
			if o.Msg.Kind == KindPiece {
				served++
			}
		}
	}
	if served != 4 || len(faults) != 1 || !strings.Contains(faults[0].Reason, "asked for 5 pieces") {
		t.Fatalf("served %d, faults %v: want 4 served and the flood named", served, faults)
	}
}

// Whatever a peer sends, a node neither panics nor accepts bytes that do
// not match the blob it wants.
func FuzzNodeStep(f *testing.F) {
	r := rand.New(rand.NewPCG(9, 9))
	data := randomBlob(r, 2*MinPieceSize+3)
	man, _ := NewManifest(data, MinPieceSize)
	enc, _ := man.MarshalBinary()
	id := man.ID()
	for _, m := range []Msg{
		{Kind: KindBitfield, Blob: id, All: true},
		{Kind: KindManifest, Blob: id, Data: enc},
		{Kind: KindPiece, Blob: id, Piece: 0, Data: data[:MinPieceSize]},
		{Kind: KindRequest, Blob: id, Piece: 1},
	} {
		k, b := m.Encode()
		f.Add(k, b, uint8(0))
	}
	f.Fuzz(func(t *testing.T, kind uint8, body []byte, seq uint8) {
		n := New(Config{Self: "a"})
		now := time.Unix(0, 0)
		n.AddPeer("p", now)
		if _, _, err := n.Publish(randomBlob(rand.New(rand.NewPCG(1, 2)), 3000), MinPieceSize); err != nil {
			t.Fatal(err)
		}
		n.Want(id, now)
		// A scripted start (bitfield, manifest) so that pieces are asked for.
		if seq&1 != 0 {
			n.Step("p", Msg{Kind: KindBitfield, Blob: id, All: true}, now)
		}
		if seq&2 != 0 {
			n.Step("p", Msg{Kind: KindManifest, Blob: id, Data: enc}, now)
		}
		m, err := Decode(kind, body)
		if err != nil {
			return
		}
		n.Step("p", m, now)
		n.Tick(now.Add(time.Minute))
		held, pieces := n.Progress(id)
		if held > pieces {
			t.Fatalf("holds %d of %d pieces", held, pieces)
		}
		if got, ok := n.Data(id); ok && !bytes.Equal(got, data) {
			t.Fatal("accepted a blob that is not the one wanted")
		}
	})
}
