package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/safetensors"
	"github.com/cairnlabs/cairn/swarm"
	"github.com/cairnlabs/cairn/wire"
)

// ProtoMemberState asks a member which swarm blob holds its replica's
// state (weights, outer momentum, update residual) at a round, for a
// member that joins late or fell behind. The answer is only a pointer:
// the state itself travels through the swarm and is checked against the
// weights hash the chain closed the previous round with.
const ProtoMemberState = "/cairn/member-state/1"

const (
	kindStateAsk   uint8 = 1
	kindStateReply uint8 = 2
	// stateTimeout bounds one question and its answer.
	stateTimeout = 10 * time.Second
)

// encodeStateAsk and decodeStateAsk: the round, uint64 big-endian.
func encodeStateAsk(round uint64) []byte { return binary.BigEndian.AppendUint64(nil, round) }

func decodeStateAsk(kind uint8, b []byte) (uint64, error) {
	if kind != kindStateAsk || len(b) != 8 {
		return 0, fmt.Errorf("member state: a question is kind %d with 8 bytes, got kind %d with %d", kindStateAsk, kind, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// A reply is empty (the member holds no state of that round) or the
// round and the blob's ID.
func encodeStateReply(round uint64, id swarm.ID, held bool) []byte {
	if !held {
		return nil
	}
	return append(binary.BigEndian.AppendUint64(nil, round), id[:]...)
}

func decodeStateReply(kind uint8, b []byte, round uint64) (swarm.ID, bool, error) {
	var id swarm.ID
	switch {
	case kind != kindStateReply:
		return id, false, fmt.Errorf("member state: a reply is kind %d, got %d", kindStateReply, kind)
	case len(b) == 0:
		return id, false, nil
	case len(b) != 8+len(id):
		return id, false, fmt.Errorf("member state: a reply has 0 or %d bytes, got %d", 8+len(id), len(b))
	case binary.BigEndian.Uint64(b) != round:
		return id, false, fmt.Errorf("member state: asked for round %d, told of round %d", round, binary.BigEndian.Uint64(b))
	}
	copy(id[:], b[8:])
	return id, true, nil
}

// encodeMemberState lays out a replica's snapshot as a safetensors file:
// deterministic, so every member that agrees on the round publishes the
// same bytes and the same blob, and a joiner fetches it from all of them.
func encodeMemberState(s diloco.Snapshot) ([]byte, error) {
	tensors, md := snapshotTensors(s)
	return safetensors.Encode(tensors, md)
}

// decodeMemberState parses a state blob and checks it is the run's at
// round with weights whose hash is want. Every failure names what is
// wrong.
func decodeMemberState(b []byte, cfg diloco.RunConfig, round int, want diloco.Hash) (diloco.Snapshot, error) {
	f, err := safetensors.Parse(b)
	if err != nil {
		return diloco.Snapshot{}, fmt.Errorf("member state: %v", err)
	}
	s, err := decodeSnapshot(f)
	if err != nil {
		return s, fmt.Errorf("member state: %v", err)
	}
	got, _ := json.Marshal(s.Cfg)
	mine, _ := json.Marshal(cfg)
	if !bytes.Equal(got, mine) {
		return s, fmt.Errorf("member state: another run's configuration: %s", got)
	}
	if s.Round != round {
		return s, fmt.Errorf("member state: of round %d, want %d", s.Round, round)
	}
	if n := cfg.Model.NumParams(); len(s.Theta) != n {
		return s, fmt.Errorf("member state: %d weights for a model of %d", len(s.Theta), n)
	}
	if h := diloco.HashWeights(round, s.Theta); h != want {
		return s, fmt.Errorf("member state: weights hash to %s, the chain closed round %d with %s", h, round-1, want)
	}
	return s, nil
}

// serveState answers ProtoMemberState questions with the state the
// member published last.
func (m *member) serveState(st network.Stream) {
	defer st.Close()
	st.SetDeadline(time.Now().Add(stateTimeout))
	kind, body, err := wire.ReadMsg(st, 8)
	if err != nil {
		st.Reset()
		return
	}
	r, err := decodeStateAsk(kind, body)
	if err != nil {
		m.o.Log.Info("member: bad state question", "peer", st.Conn().RemotePeer(), "err", err)
		st.Reset()
		return
	}
	m.mu.Lock()
	id, held := m.state, m.stateRound == int(r) && m.stateRound > 0
	m.mu.Unlock()
	wire.WriteMsg(st, kindStateReply, encodeStateReply(r, id, held))
}

// askState asks p for the blob of its state at round.
func (m *member) askState(ctx context.Context, p peer.ID, round uint64) (swarm.ID, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, stateTimeout)
	defer cancel()
	st, err := m.o.Host.NewStream(network.WithAllowLimitedConn(ctx, "cairn member state"), p, ProtoMemberState)
	if err != nil {
		return swarm.ID{}, false, err
	}
	defer st.Close()
	st.SetDeadline(time.Now().Add(stateTimeout))
	if err := wire.WriteMsg(st, kindStateAsk, encodeStateAsk(round)); err != nil {
		st.Reset()
		return swarm.ID{}, false, err
	}
	kind, body, err := wire.ReadMsg(st, 8+len(swarm.ID{}))
	if err != nil {
		st.Reset()
		return swarm.ID{}, false, err
	}
	return decodeStateReply(kind, body, round)
}

// publishState makes the replica's state a swarm blob (dropping the
// previous one) for members that join late or fall behind.
func (m *member) publishState() error {
	b, err := encodeMemberState(m.rep.Snapshot())
	if err != nil {
		return err
	}
	id, err := m.sw.Publish(b)
	if err != nil {
		return err
	}
	m.mu.Lock()
	old, had := m.state, m.stateRound > 0
	m.state, m.stateRound = id, m.rep.Round()
	m.mu.Unlock()
	if had && old != id {
		m.sw.Drop(old)
	}
	return nil
}

// catchUp brings a member that is behind the chain to round open: it asks
// its peers which blob holds their state at that round, fetches the one
// most of them name (the others in turn if it does not check out),
// checks it against the weights hash the chain closed round open-1 with,
// and resumes its replica and worker from it. It fails when no peer's
// state checks out within the fetch timeout.
func (m *member) catchUp(ctx context.Context, open int) error {
	info, err := m.lc.Round(ctx, uint64(open-1))
	if err != nil {
		return err
	}
	if info.Result == nil {
		return fmt.Errorf("member: round %d has no result on the chain", open-1)
	}
	want := diloco.Hash(info.Result.ModelHash)
	from := m.rep.Round()
	deadline := time.Now().Add(m.o.Fetch)
	var last error
	for time.Now().Before(deadline) {
		votes := map[swarm.ID]int{}
		for _, p := range m.sw.Peers() {
			id, held, err := m.askState(ctx, p, uint64(open))
			if err != nil {
				m.o.Log.Debug("member: state question", "peer", p, "err", err)
				continue
			}
			if held {
				votes[id]++
			}
		}
		ids := make([]swarm.ID, 0, len(votes))
		for id := range votes {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool {
			if votes[ids[i]] != votes[ids[j]] {
				return votes[ids[i]] > votes[ids[j]]
			}
			return bytes.Compare(ids[i][:], ids[j][:]) < 0
		})
		for _, id := range ids {
			fctx, cancel := context.WithDeadline(ctx, deadline)
			b, err := m.sw.Fetch(fctx, id)
			cancel()
			if err != nil {
				last = err
				continue
			}
			s, err := decodeMemberState(b, m.o.Run, open, want)
			m.sw.Drop(id)
			if err != nil {
				last = err
				m.o.Log.Warn("member: a peer's state does not check out", "blob", id, "err", err)
				continue
			}
			rep, err := diloco.RestoreReplica(s)
			if err != nil {
				last = err
				continue
			}
			if err := m.w.SetWeights(open, rep.Weights(), rep.Hash()); err != nil {
				return err
			}
			m.rep = rep
			m.o.Log.Info("member: caught up", "from_round", from, "to_round", open, "weights", rep.Hash().String(), "holders", votes[id])
			return m.publishState()
		}
		if len(ids) == 0 {
			last = errors.New("no peer holds it yet")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(m.o.Poll):
		}
	}
	return fmt.Errorf("member: behind at round %d with the chain at %d, and no peer's state of round %d checked out within %s: %v", from, open, open, m.o.Fetch, last)
}

// ProtoMemberConfig asks a member for the digest of its run
// configuration: members given other run flags compute other weights, and
// finding out at the first vote costs a round.
const ProtoMemberConfig = "/cairn/member-config/1"

const kindConfigDigest uint8 = 3

// configDigest is the SHA-256 of the run configuration's JSON.
func configDigest(cfg diloco.RunConfig) [32]byte {
	b, _ := json.Marshal(cfg) // a validated config always encodes
	return sha256.Sum256(b)
}

func (m *member) serveConfig(st network.Stream) {
	defer st.Close()
	st.SetDeadline(time.Now().Add(stateTimeout))
	d := configDigest(m.o.Run)
	wire.WriteMsg(st, kindConfigDigest, d[:])
}

// askConfig returns p's configuration digest.
func (m *member) askConfig(ctx context.Context, p peer.ID) ([32]byte, error) {
	var d [32]byte
	ctx, cancel := context.WithTimeout(ctx, stateTimeout)
	defer cancel()
	st, err := m.o.Host.NewStream(network.WithAllowLimitedConn(ctx, "cairn member config"), p, ProtoMemberConfig)
	if err != nil {
		return d, err
	}
	defer st.Close()
	st.SetDeadline(time.Now().Add(stateTimeout))
	kind, body, err := wire.ReadMsg(st, len(d))
	if err != nil {
		st.Reset()
		return d, err
	}
	if kind != kindConfigDigest || len(body) != len(d) {
		return d, fmt.Errorf("member config: want kind %d with %d bytes, got kind %d with %d", kindConfigDigest, len(d), kind, len(body))
	}
	copy(d[:], body)
	return d, nil
}

// checkConfig compares p's run configuration with this node's once, and
// names a peer that runs another.
func (m *member) checkConfig(ctx context.Context, p peer.ID) {
	m.mu.Lock()
	if m.configs == nil {
		m.configs = map[peer.ID]bool{}
	}
	_, done := m.configs[p]
	m.mu.Unlock()
	if done {
		return
	}
	d, err := m.askConfig(ctx, p)
	if err != nil {
		m.o.Log.Debug("member: config question", "peer", p, "err", err)
		return
	}
	same := d == configDigest(m.o.Run)
	m.mu.Lock()
	m.configs[p] = same
	m.mu.Unlock()
	if !same {
		m.o.Log.Warn("member: peer runs another configuration (other run flags): its weights will differ from this node's", "peer", p)
	}
}

// configMismatch is an error when more than half of the peers checked
// run another configuration than this node: then this node is the odd
// one (with one peer, both are: such a pair cannot agree on any round).
func (m *member) configMismatch() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	other := 0
	for _, same := range m.configs {
		if !same {
			other++
		}
	}
	if 2*other > len(m.configs) {
		return fmt.Errorf("member: %d of the %d members asked run another configuration than this node: give every member the same run flags (model shape, rounds, inner steps, codec, seed, data)", other, len(m.configs))
	}
	return nil
}
