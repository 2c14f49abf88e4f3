package node

import (
	"context"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cairnlabs/cairn/p2p"

	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/swarm"
)

// A state blob is accepted only for the run's configuration, the round
// asked for and the weights hash the chain holds; each refusal says why.
func TestMemberStateChecks(t *testing.T) {
	cfg := tinyConfig(4)
	rep, err := diloco.NewReplica(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Snapshot()
	s.Round = 2
	want := diloco.HashWeights(2, s.Theta)
	b, err := encodeMemberState(s)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := decodeMemberState(b, cfg, 2, want); err != nil || got.Round != 2 {
		t.Fatalf("a good state: %v (round %d)", err, got.Round)
	}
	b2, _ := encodeMemberState(s)
	if string(b2) != string(b) {
		t.Fatal("the encoding is not deterministic: members would publish different blobs")
	}
	other := cfg
	other.InnerSteps++
	bad := s
	bad.Theta = append([]float32(nil), s.Theta...)
	bad.Theta[0] += 1
	badBlob, _ := encodeMemberState(bad)
	for _, c := range []struct {
		name  string
		b     []byte
		cfg   diloco.RunConfig
		round int
		want  string
	}{
		{"garbage", []byte("not a state"), cfg, 2, "member state:"},
		{"another run", b, other, 2, "another run's configuration"},
		{"another round", b, cfg, 3, "of round 2, want 3"},
		{"changed weights", badBlob, cfg, 2, "the chain closed round 1 with"},
	} {
		if _, err := decodeMemberState(c.b, c.cfg, c.round, want); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

func TestStateMessages(t *testing.T) {
	r, err := decodeStateAsk(kindStateAsk, encodeStateAsk(7))
	if err != nil || r != 7 {
		t.Fatalf("ask: %d %v", r, err)
	}
	id := swarm.ID{1, 2, 3}
	got, held, err := decodeStateReply(kindStateReply, encodeStateReply(7, id, true), 7)
	if err != nil || !held || got != id {
		t.Fatalf("reply: %v %v %v", got, held, err)
	}
	if _, held, err := decodeStateReply(kindStateReply, encodeStateReply(7, id, false), 7); err != nil || held {
		t.Fatalf("empty reply: %v %v", held, err)
	}
	if _, _, err := decodeStateReply(kindStateReply, encodeStateReply(6, id, true), 7); err == nil {
		t.Fatal("a reply about another round was accepted")
	}
	if _, err := decodeStateAsk(kindStateAsk, []byte{1, 2}); err == nil {
		t.Fatal("a short question was accepted")
	}
}

func FuzzStateMessages(f *testing.F) {
	f.Add(kindStateAsk, encodeStateAsk(3))
	f.Add(kindStateReply, encodeStateReply(3, swarm.ID{9}, true))
	f.Fuzz(func(t *testing.T, kind uint8, b []byte) {
		if r, err := decodeStateAsk(kind, b); err == nil && string(encodeStateAsk(r)) != string(b) {
			t.Fatal("a question does not round-trip")
		}
		if id, held, err := decodeStateReply(kind, b, 3); err == nil && string(encodeStateReply(3, id, held)) != string(b) {
			t.Fatal("a reply does not round-trip")
		}
	})
}

func FuzzMemberState(f *testing.F) {
	cfg := tinyConfig(4)
	rep, _ := diloco.NewReplica(cfg, nil)
	s := rep.Snapshot()
	s.Round = 1
	b, _ := encodeMemberState(s)
	f.Add(b)
	want := diloco.HashWeights(1, s.Theta)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeMemberState(b, cfg, 1, want)
		if err == nil {
			if _, err := diloco.RestoreReplica(s); err != nil {
				t.Logf("accepted a state that does not restore: %v", err)
			}
		}
	})
}

// A member given other run flags than its peers is found out before the
// first round, with an error that says what to do.
func TestMemberConfigMismatch(t *testing.T) {
	hosts := make([]host.Host, 3)
	for i := range hosts {
		key, _, _ := crypto.GenerateEd25519Key(nil)
		h, err := p2p.NewHost(key, []string{"/ip4/127.0.0.1/tcp/0"})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		hosts[i] = h
	}
	cfg := tinyConfig(4)
	other := cfg
	other.InnerSteps++
	ms := []*member{newMemberRun(MemberOptions{Run: other, Host: hosts[0]}), newMemberRun(MemberOptions{Run: cfg, Host: hosts[1]}),
		newMemberRun(MemberOptions{Run: cfg, Host: hosts[2]})}
	for i, m := range ms {
		hosts[i].SetStreamHandler(ProtoMemberConfig, m.serveConfig)
	}
	ctx := context.Background()
	for i, m := range ms {
		for j, h := range hosts {
			if i != j {
				hosts[i].Connect(ctx, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
				m.checkConfig(ctx, h.ID())
			}
		}
	}
	if err := ms[0].configMismatch(); err == nil || !strings.Contains(err.Error(), "2 of the 2 members asked run another configuration") {
		t.Fatalf("the odd member: %v", err)
	}
	for _, m := range ms[1:] {
		if err := m.configMismatch(); err != nil {
			t.Fatalf("a member with the majority's flags: %v", err)
		}
		if m.configs[hosts[0].ID()] {
			t.Fatal("the odd member's configuration counted as the same")
		}
	}
}
