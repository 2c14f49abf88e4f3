// Package swarmnet runs the swarm state machine over go-libp2p: one
// stream each way between two peers carries swarm messages in the wire
// framing, a clock ticks the machine, and peers the machine names as
// faulty are disconnected and refused from then on.
package swarmnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/swarm"
	"github.com/cairnlabs/cairn/wire"
)

// Protocol is the libp2p protocol of swarm streams.
const Protocol = "/cairn/swarm/1"

// redialTicks: every this many ticks the service dials the known peers
// it has no stream to (a connection the network or a busy peer closed).
const redialTicks = 3

// queueLen bounds the messages waiting for one peer's stream; beyond it
// messages are dropped (requests time out and are asked elsewhere).
const queueLen = 1024

// Options configure a Service.
type Options struct {
	Swarm swarm.Config
	// PieceSize of published blobs (default swarm.DefaultPieceSize).
	PieceSize int
	// Tick is how often the state machine's timeouts are checked
	// (default 1 s).
	Tick time.Duration
	// Wrap, if set, wraps each stream (a rate limiter, a counter).
	Wrap func(network.Stream) io.ReadWriteCloser
	// OnFault, if set, is told of each peer the machine names as faulty,
	// after it is disconnected.
	OnFault func(swarm.Fault)
	Log     *slog.Logger
}

// Service is a node's part in the swarm.
type Service struct {
	h    host.Host
	o    Options
	log  *slog.Logger
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu      sync.Mutex
	n       *swarm.Node
	out     map[peer.ID]*outbound
	in      map[peer.ID]network.Stream // each peer's latest stream to this node
	known   map[peer.ID]peer.AddrInfo  // peers to stay connected to
	dialing map[peer.ID]bool
	banned  map[peer.ID]string
	waiters map[swarm.ID][]chan struct{}
	faults  []swarm.Fault
	xfer    Transfers
	notify  *network.NotifyBundle

	// tamper, for tests, may change an outgoing message.
	tamper func(to peer.ID, m *swarm.Msg)
}

type outbound struct {
	q    chan swarm.Msg
	done chan struct{}
	st   network.Stream
}

// Transfers counts the pieces a node received, by the kind of connection
// they came over: direct (dialled, or hole-punched through NAT) or
// through a relay.
type Transfers struct {
	Direct, Relayed           int
	DirectBytes, RelayedBytes int64
}

// New starts the swarm on h: it handles Protocol streams and ticks until
// Close.
func New(h host.Host, o Options) *Service {
	if o.PieceSize == 0 {
		o.PieceSize = swarm.DefaultPieceSize
	}
	if o.Tick <= 0 {
		o.Tick = time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	o.Swarm.Self = h.ID().String()
	ctx, stop := context.WithCancel(context.Background())
	s := &Service{h: h, o: o, log: o.Log, ctx: ctx, stop: stop, n: swarm.New(o.Swarm),
		out: map[peer.ID]*outbound{}, in: map[peer.ID]network.Stream{}, known: map[peer.ID]peer.AddrInfo{}, dialing: map[peer.ID]bool{},
		banned: map[peer.ID]string{}, waiters: map[swarm.ID][]chan struct{}{}}
	h.SetStreamHandler(Protocol, s.handle)
	s.notify = &network.NotifyBundle{ConnectedF: s.connected}
	h.Network().Notify(s.notify)
	s.wg.Add(1)
	go s.ticker()
	return s
}

// Close stops the service and closes its streams.
func (s *Service) Close() {
	s.h.RemoveStreamHandler(Protocol)
	s.h.Network().StopNotify(s.notify)
	s.stop()
	s.mu.Lock()
	for id, ob := range s.out {
		close(ob.done)
		delete(s.out, id)
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Connect dials p (if not connected) and joins it to the swarm: each side
// opens its stream to the other. It fails if p is banned or unreachable
// (or does not run the swarm yet); either way the service keeps dialling
// p every few ticks while it is not connected.
func (s *Service) Connect(ctx context.Context, p peer.AddrInfo) error {
	s.mu.Lock()
	why, bad := s.banned[p.ID]
	if !bad && p.ID != s.h.ID() {
		s.known[p.ID] = p
	}
	s.mu.Unlock()
	if bad {
		return fmt.Errorf("swarmnet: peer %s is banned: %s", p.ID, why)
	}
	if err := s.h.Connect(ctx, p); err != nil {
		return fmt.Errorf("swarmnet: connect to %s: %v", p.ID, err)
	}
	return s.join(p.ID)
}

// join opens this node's stream to p and adds p to the machine.
func (s *Service) join(p peer.ID) error {
	s.mu.Lock()
	if _, ok := s.out[p]; ok || s.ctx.Err() != nil {
		s.mu.Unlock()
		return nil
	}
	ob := &outbound{q: make(chan swarm.Msg, queueLen), done: make(chan struct{})}
	s.out[p] = ob
	s.mu.Unlock()
	// A peer behind NAT may at first be reached only through a relay;
	// connected tells when a direct connection replaces it.
	st, err := s.h.NewStream(network.WithAllowLimitedConn(s.ctx, "cairn swarm"), p, Protocol)
	if err != nil {
		s.mu.Lock()
		if s.out[p] == ob {
			delete(s.out, p)
		}
		s.mu.Unlock()
		return fmt.Errorf("swarmnet: open a stream to %s: %v", p, err)
	}
	s.wg.Add(2)
	go s.write(p, st, ob)
	go s.watch(p, st, ob)
	s.mu.Lock()
	ob.st = st
	s.apply(s.n.AddPeer(p.String(), time.Now()))
	s.mu.Unlock()
	via := "direct"
	if p2p.Relayed(st.Conn()) {
		via = "relay"
	}
	s.log.Debug("swarm: stream open", "peer", p, "via", via, "addr", st.Conn().RemoteMultiaddr())
	return nil
}

// connected moves this node's stream to p onto c when c is a direct
// connection and the stream runs through a relay (a hole punch
// succeeded): the relay's bandwidth is no longer needed.
func (s *Service) connected(_ network.Network, c network.Conn) {
	if p2p.Relayed(c) {
		return
	}
	p := c.RemotePeer()
	s.mu.Lock()
	ob, ok := s.out[p]
	if !ok || ob.st == nil || !p2p.Relayed(ob.st.Conn()) || s.ctx.Err() != nil {
		s.mu.Unlock()
		return
	}
	s.leave(p)
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		ob.st.Reset()
		if err := s.join(p); err != nil {
			s.log.Debug("swarm: move to a direct connection", "peer", p, "err", err)
			return
		}
		s.log.Info("swarm: moved from a relay to a direct connection", "peer", p, "addr", c.RemoteMultiaddr())
	}()
}

// watch reads this node's stream to p, on which p writes nothing, to
// learn when it breaks (the connection closed, p reset it): p then leaves
// and is dialled again later.
func (s *Service) watch(p peer.ID, st network.Stream, ob *outbound) {
	defer s.wg.Done()
	var b [1]byte
	for {
		if _, err := st.Read(b[:]); err != nil {
			break
		}
	}
	s.mu.Lock()
	if s.out[p] == ob {
		s.leave(p)
	}
	s.mu.Unlock()
}

// Publish holds data as a blob and announces it; it returns its ID.
func (s *Service) Publish(data []byte) (swarm.ID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, rd, err := s.n.Publish(data, s.o.PieceSize)
	if err != nil {
		return id, err
	}
	s.apply(rd)
	return id, nil
}

// Fetch returns blob id's bytes, fetching them from the swarm if the
// node does not hold them, or fails when ctx ends first. The bytes are
// the service's own until Drop: callers must not change them.
func (s *Service) Fetch(ctx context.Context, id swarm.ID) ([]byte, error) {
	s.mu.Lock()
	if d, ok := s.n.Data(id); ok {
		s.mu.Unlock()
		return d, nil
	}
	ch := make(chan struct{})
	s.waiters[id] = append(s.waiters[id], ch)
	s.apply(s.n.Want(id, time.Now()))
	s.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
		s.mu.Lock()
		held, pieces := s.n.Progress(id)
		holders, peers := s.n.Holders(id)
		s.mu.Unlock()
		return nil, fmt.Errorf("swarmnet: fetching blob %s: %w (%d of %d pieces; %d of %d peers hold some)", id, ctx.Err(), held, pieces, holders, peers)
	case <-s.ctx.Done():
		return nil, errors.New("swarmnet: closed")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.n.Data(id)
	if !ok {
		return nil, fmt.Errorf("swarmnet: blob %s was dropped while fetched", id)
	}
	return d, nil
}

// Drop forgets blob id.
func (s *Service) Drop(id swarm.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n.Drop(id)
}

// Holding says of blob id how many pieces this node holds and how many of
// its connected peers have said they hold some.
func (s *Service) Holding(id swarm.ID) (held, holders int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	held, _ = s.n.Progress(id)
	holders, _ = s.n.Holders(id)
	return held, holders
}

// Peers returns the peers the node has a stream to, sorted.
func (s *Service) Peers() []peer.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := make([]peer.ID, 0, len(s.out))
	for p := range s.out {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// Stats returns the machine's piece traffic.
func (s *Service) Stats() swarm.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n.Stats()
}

// Transfers returns the pieces received so far by connection kind.
func (s *Service) Transfers() Transfers {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.xfer
}

// count records a piece received on c. Callers hold mu.
func (s *Service) count(c network.Conn, n int) {
	if p2p.Relayed(c) {
		s.xfer.Relayed++
		s.xfer.RelayedBytes += int64(n)
	} else {
		s.xfer.Direct++
		s.xfer.DirectBytes += int64(n)
	}
}

// Faults returns the peers named faulty so far, with the reasons.
func (s *Service) Faults() []swarm.Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]swarm.Fault(nil), s.faults...)
}

// handle reads a peer's stream into the machine.
func (s *Service) handle(st network.Stream) {
	p := st.Conn().RemotePeer()
	s.mu.Lock()
	_, bad := s.banned[p]
	s.mu.Unlock()
	if bad {
		st.Reset()
		return
	}
	if err := s.join(p); err != nil {
		s.log.Debug("swarm: no stream back", "peer", p, "err", err)
		st.Reset()
		return
	}
	var rw io.ReadWriteCloser = st
	if s.o.Wrap != nil {
		rw = s.o.Wrap(st)
	}
	defer rw.Close()
	s.mu.Lock()
	s.in[p] = st
	s.mu.Unlock()
	for {
		kind, body, err := wire.ReadMsg(rw, swarm.MaxBody)
		var ferr *wire.FormatError
		if errors.As(err, &ferr) {
			s.mu.Lock()
			s.ban(swarm.Fault{Peer: p.String(), Reason: "sent a malformed frame: " + err.Error()})
			s.mu.Unlock()
			st.Reset()
			return
		}
		if err == nil {
			var m swarm.Msg
			if m, err = swarm.Decode(kind, body); err == nil {
				s.mu.Lock()
				if m.Kind == swarm.KindPiece {
					s.count(st.Conn(), len(body))
				}
				s.apply(s.n.Step(p.String(), m, time.Now()))
				_, bad = s.banned[p]
				s.mu.Unlock()
				if bad {
					st.Reset()
					return
				}
				continue
			}
			// Undecodable bytes are a fault like any other.
			s.mu.Lock()
			s.ban(swarm.Fault{Peer: p.String(), Reason: "sent a message that does not decode: " + err.Error()})
			s.mu.Unlock()
			st.Reset()
			return
		}
		if !errors.Is(err, io.EOF) && s.ctx.Err() == nil {
			s.log.Debug("swarm: stream ended", "peer", p, "err", err)
		}
		s.mu.Lock()
		// A peer that moved to another connection (from a relay to a
		// hole-punched one) has a newer stream: this one's end is not
		// the peer's.
		if s.in[p] == st {
			delete(s.in, p)
			s.leave(p)
		}
		s.mu.Unlock()
		return
	}
}

// write sends queued messages to p until the peer leaves.
func (s *Service) write(p peer.ID, st network.Stream, ob *outbound) {
	defer s.wg.Done()
	var rw io.ReadWriteCloser = st
	if s.o.Wrap != nil {
		rw = s.o.Wrap(st)
	}
	defer rw.Close()
	for {
		select {
		case m := <-ob.q:
			kind, body := m.Encode()
			if err := wire.WriteMsg(rw, kind, body); err != nil {
				st.Reset()
				s.mu.Lock()
				s.leave(p)
				s.mu.Unlock()
				return
			}
		case <-ob.done:
			return
		}
	}
}

// leave removes p from the machine and stops its writer. Callers hold mu.
func (s *Service) leave(p peer.ID) {
	ob, ok := s.out[p]
	if !ok {
		return
	}
	s.log.Debug("swarm: peer left", "peer", p)
	close(ob.done)
	delete(s.out, p)
	s.apply(s.n.RemovePeer(p.String(), time.Now()))
}

// ban disconnects a faulty peer and refuses it from then on. Callers
// hold mu.
func (s *Service) ban(f swarm.Fault) {
	p, err := peer.Decode(f.Peer)
	if err != nil {
		return
	}
	if _, ok := s.banned[p]; ok {
		return
	}
	s.banned[p] = f.Reason
	s.faults = append(s.faults, f)
	s.log.Warn("swarm: peer dropped", "peer", f.Peer, "reason", f.Reason)
	s.leave(p)
	if s.o.OnFault != nil {
		go s.o.OnFault(f)
	}
}

// apply carries out what the machine asked. Callers hold mu.
func (s *Service) apply(rd swarm.Ready) {
	for _, o := range rd.Send {
		p, err := peer.Decode(o.To)
		if err != nil {
			continue
		}
		ob, ok := s.out[p]
		if !ok {
			continue
		}
		m := o.Msg
		if s.tamper != nil {
			s.tamper(p, &m)
		}
		select {
		case ob.q <- m:
		default:
			s.log.Debug("swarm: queue full, message dropped", "peer", p, "kind", m.Kind)
		}
	}
	for _, id := range rd.Done {
		for _, ch := range s.waiters[id] {
			close(ch)
		}
		delete(s.waiters, id)
	}
	for _, f := range rd.Faults {
		s.ban(f)
	}
}

func (s *Service) ticker() {
	defer s.wg.Done()
	t := time.NewTicker(s.o.Tick)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case now := <-t.C:
			s.mu.Lock()
			s.apply(s.n.Tick(now))
			if i%redialTicks == 0 {
				s.redial()
			}
			s.mu.Unlock()
		case <-s.ctx.Done():
			return
		}
	}
}

// redial dials, in the background, every known peer without a stream.
// Callers hold mu.
func (s *Service) redial() {
	for id, info := range s.known {
		if _, ok := s.out[id]; ok || s.dialing[id] {
			continue
		}
		if _, bad := s.banned[id]; bad {
			delete(s.known, id)
			continue
		}
		s.dialing[id] = true
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
			defer cancel()
			if err := s.h.Connect(ctx, info); err == nil {
				if err := s.join(info.ID); err != nil {
					s.log.Debug("swarm: redial", "peer", info.ID, "err", err)
				}
			}
			s.mu.Lock()
			delete(s.dialing, info.ID)
			s.mu.Unlock()
		}()
	}
}
