package experiment

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/swarm"
	"github.com/cairnlabs/cairn/wire"
)

// ScaleOptions configure Scale.
type ScaleOptions struct {
	Nodes  int
	Params int            // model parameters (default 10,000,000)
	Codec  compress.Codec // of the contributions (default topk at 2%)
	// Update is the codec of the update an aggregator would publish
	// (default: the contributions' codec at four times its density, as
	// an average of four sparse contributions).
	Update    compress.Codec
	Mbps      float64       // every node's link, each way (default 50)
	RTT       time.Duration // between any two nodes (default 50 ms)
	Loss      float64       // packet loss: a piece that loses one stalls one RTO
	NAT       float64       // share of nodes behind NAT: they peer only with public nodes
	Churn     float64       // share of nodes that leave at a random moment of the round
	Degree    int           // peers per node (default 16)
	PieceSize int           // default swarm.DefaultPieceSize
	// The chain: a block every BlockTime (default 1 s) of the
	// transactions that have reached it (half a round trip after they
	// are sent). A node aggregates for Aggregate (default 2 s) once it
	// holds every contribution it can get, and waits at most FetchTimeout
	// (default 60 s) for those it lacks.
	BlockTime, Aggregate, FetchTimeout time.Duration
	Seed                               uint64
	Log                                func(format string, args ...any)
}

// ScaleReport is one simulated round.
type ScaleReport struct {
	Nodes        int
	Contribution int64 // bytes of one contribution
	UpdateBytes  int64 // bytes of the aggregator's update
	// RoundTime: from every node publishing its contribution to every
	// node that stayed holding every contribution it could still get.
	RoundTime time.Duration
	Complete  int // nodes that stayed and got every contribution of a node that stayed
	Stayed    int
	// Bytes each node sent and received (pieces and control), mean and
	// maximum over the nodes that stayed.
	UpMean, UpMax, DownMean, DownMax float64
	// The aggregator topology for the same round: the aggregator takes in
	// every contribution and sends the update to every node.
	AggregatorIn, AggregatorOut int64
	// AggregatorMbps is the link (each way) an aggregator needs to move
	// its bytes in RoundTime; AggregatorTime the round time over a link of
	// the nodes' speed (each node's own transfers run in parallel).
	AggregatorMbps float64
	AggregatorTime time.Duration
	// The chain side, on the ledger state machine (times from the start
	// of the round, when every node commits): the commit window closed;
	// the round closed with the result a majority voted for; every node
	// that stayed had voted. Agreeing and Disagreeing count the nodes
	// that stayed by whether their vote was that result; FullResults the
	// results sent in full; ChainBytes the round's transactions.
	WindowClosed, Closed, AllVoted time.Duration
	Agreeing, Disagreeing          int
	FullResults                    int
	ChainBytes                     int64
	Events                         int
	Wall                           time.Duration
}

// UpRatio is the largest upload of a node over its own contribution.
func (r *ScaleReport) UpRatio() float64 { return r.UpMax / float64(r.Contribution) }

// Scale simulates one round of a run without an aggregator at internet
// scale: every node publishes its contribution and fetches everyone
// else's through the real swarm state machine (swarm.Node), over
// simulated links (each node's uplink and downlink serialise what it
// sends and receives; a message travels RTT/2; a piece that loses a
// packet stalls one retransmission timeout), in a random graph where
// nodes behind NAT peer only with public ones and churned nodes leave
// mid-round. Contributions are real codec output of the given size, so
// their bytes are hashed and checked as on the network. It fails on bad
// options.
func Scale(o ScaleOptions) (*ScaleReport, error) {
	if o.Nodes < 2 {
		return nil, fmt.Errorf("scale: %d nodes, want at least 2", o.Nodes)
	}
	if o.Params <= 0 {
		o.Params = 10_000_000
	}
	if o.Codec == "" {
		c, err := compress.ParseCodec("topk:82/4096:2")
		if err != nil {
			return nil, err
		}
		o.Codec = c
	}
	if o.Mbps <= 0 {
		o.Mbps = 50
	}
	if o.RTT <= 0 {
		o.RTT = 50 * time.Millisecond
	}
	if o.Degree <= 0 {
		o.Degree = 16
	}
	if o.PieceSize <= 0 {
		o.PieceSize = swarm.DefaultPieceSize
	}
	if o.BlockTime <= 0 {
		o.BlockTime = time.Second
	}
	if o.Aggregate <= 0 {
		o.Aggregate = 2 * time.Second
	}
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = time.Minute
	}
	if o.NAT < 0 || o.NAT >= 1 || o.Churn < 0 || o.Churn >= 1 || o.Loss < 0 || o.Loss >= 1 {
		return nil, fmt.Errorf("scale: NAT, churn and loss shares must be in [0, 1)")
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			o.Log(format, args...)
		}
	}
	began := time.Now()
	r := rand.New(rand.NewPCG(o.Seed, 0x5ca1e))
	// One real contribution: its size is every node's (each node's
	// bytes differ, as they would).
	proto, err := sampleContribution(o.Codec, o.Params, r)
	if err != nil {
		return nil, err
	}
	s := int64(len(proto))
	update := o.Update
	if update == "" {
		update = denser(o.Codec, 4)
	}
	u, err := sampleContribution(update, o.Params, r)
	if err != nil {
		return nil, err
	}
	rep := &ScaleReport{Nodes: o.Nodes, Contribution: s, UpdateBytes: int64(len(u))}
	logf("contribution %d bytes (%v of %d parameters), update %d bytes", s, o.Codec, o.Params, len(u))

	sim := newNetSim(o, r)
	buffers := map[swarm.ID][]byte{}
	datas := make([][]byte, o.Nodes)
	for i := range o.Nodes {
		d := slices.Clone(proto)
		binaryTag(d, i)
		datas[i] = d
	}
	for i := range o.Nodes {
		sim.nodes[i] = swarm.New(swarm.Config{Self: nodeName(i), MaxBlob: 1 << 31,
			Buffer: func(id swarm.ID, size int64) []byte { return buffers[id] }})
	}
	sim.connect()
	ids := make([]swarm.ID, o.Nodes)
	for i, d := range datas {
		m, err := swarm.NewManifest(d, o.PieceSize)
		if err != nil {
			return nil, err
		}
		ids[i] = m.ID()
		buffers[ids[i]] = d
	}
	for i := range o.Nodes {
		_, rd, err := sim.nodes[i].Publish(datas[i], o.PieceSize)
		if err != nil {
			return nil, err
		}
		sim.apply(i, rd)
	}
	for i := range o.Nodes {
		for j, id := range ids {
			if j != i {
				sim.apply(i, sim.nodes[i].Want(id, sim.start))
			}
		}
	}
	// Churn: nodes leave at random moments within the time the round
	// would take at full speed.
	est := time.Duration(float64(s*int64(o.Nodes-1)*8) / (o.Mbps * 1e6) * float64(time.Second))
	for i := range o.Nodes {
		if r.Float64() < o.Churn {
			sim.leaveAt(i, sim.start.Add(time.Duration(r.Int64N(int64(est)+1))))
		}
	}
	sim.run()
	// The result.
	var done time.Time
	for i, n := range sim.nodes {
		if sim.gone[i] {
			continue
		}
		rep.Stayed++
		complete := true
		for j, id := range ids {
			if j == i || sim.gone[j] {
				continue
			}
			if _, ok := n.Data(id); !ok {
				complete = false
			}
		}
		if complete {
			rep.Complete++
			if sim.last[i].After(done) {
				done = sim.last[i]
			}
		}
		up, down := float64(sim.up[i]), float64(sim.down[i])
		rep.UpMean += up
		rep.DownMean += down
		rep.UpMax = max(rep.UpMax, up)
		rep.DownMax = max(rep.DownMax, down)
	}
	rep.UpMean /= float64(max(1, rep.Stayed))
	rep.DownMean /= float64(max(1, rep.Stayed))
	rep.RoundTime = done.Sub(sim.start)
	rep.AggregatorIn = s * int64(o.Nodes)
	rep.AggregatorOut = rep.UpdateBytes * int64(o.Nodes)
	if rep.RoundTime > 0 {
		rep.AggregatorMbps = float64(max(rep.AggregatorIn, rep.AggregatorOut)) * 8 / rep.RoundTime.Seconds() / 1e6
	}
	rep.AggregatorTime = time.Duration(float64(rep.AggregatorIn+rep.AggregatorOut)*8/(o.Mbps*1e6)*float64(time.Second)) + o.RTT
	// The chain: commits, votes and results through the ledger.
	held := func(i, j int) bool { _, ok := sim.nodes[i].Data(ids[j]); return ok }
	fetched := func(i int) time.Duration {
		for j := range ids {
			if j != i && !held(i, j) {
				return -1 // it waits out the fetch timeout
			}
		}
		return sim.last[i].Sub(sim.start)
	}
	ct, err := simulateChain(o, ids, sim.gone, held, fetched)
	if err != nil {
		return nil, err
	}
	rep.WindowClosed, rep.Closed, rep.AllVoted = ct.windowClosed, ct.closed, ct.allVoted
	rep.Agreeing, rep.Disagreeing, rep.FullResults, rep.ChainBytes = ct.agreeing, ct.disagreeing, ct.fullResults, ct.bytes
	logf("chain: window closed at %v, round closed at %v (%d of %d agreeing), every node voted by %v; %d results in full, %d bytes, %d blocks",
		ct.windowClosed, ct.closed, ct.agreeing, ct.agreeing+ct.disagreeing, ct.allVoted, ct.fullResults, ct.bytes, ct.blocks)
	rep.Events = sim.events
	rep.Wall = time.Since(began)
	return rep, nil
}

// sampleContribution encodes a Gaussian pseudo-gradient of n values.
func sampleContribution(c compress.Codec, n int, r *rand.Rand) ([]byte, error) {
	d := make([]float32, n)
	for i := range d {
		d[i] = float32(r.NormFloat64() * 1e-3)
	}
	return compress.NewEncoder(c, n).Encode(d)
}

// denser is c at f times its density (top-k codecs; others unchanged: a
// sum of random-mask payloads on one seed is no denser than one).
func denser(c compress.Codec, f int) compress.Codec {
	k, chunk, bits, ok := c.Sparse()
	if !ok || c.Masked() {
		return c
	}
	d, err := compress.ParseCodec(fmt.Sprintf("topk:%d/%d:%d", min(k*f, chunk), chunk, bits))
	if err != nil {
		return c
	}
	return d
}

// binaryTag makes node i's copy of a contribution its own.
func binaryTag(d []byte, i int) {
	for k := 0; k < 8 && k < len(d); k++ {
		d[len(d)-1-k] ^= byte(uint64(i) >> (8 * k))
	}
}

func nodeName(i int) string { return fmt.Sprintf("n%05d", i) }

// netSim delivers swarm messages over simulated links.
type netSim struct {
	o              ScaleOptions
	r              *rand.Rand
	nodes          []*swarm.Node
	nat            []bool
	start, now     time.Time
	q              eventQueue
	seq            int
	upFree, dnFree []time.Time
	up, down       []int64
	last           []time.Time // when each node last completed a blob
	gone           []bool
	ticking        []bool
	events         int
	index          map[string]int
	edges          [][]int
}

func newNetSim(o ScaleOptions, r *rand.Rand) *netSim {
	n := o.Nodes
	t0 := time.Unix(0, 0)
	s := &netSim{o: o, r: r, nodes: make([]*swarm.Node, n), nat: make([]bool, n), start: t0, now: t0,
		upFree: make([]time.Time, n), dnFree: make([]time.Time, n), up: make([]int64, n), down: make([]int64, n),
		last: make([]time.Time, n), gone: make([]bool, n), ticking: make([]bool, n), index: map[string]int{}, edges: make([][]int, n)}
	for i := range n {
		s.nat[i] = r.Float64() < o.NAT
		s.index[nodeName(i)] = i
		s.upFree[i], s.dnFree[i] = t0, t0
	}
	return s
}

// connect wires a random graph: each node dials Degree/2 others (so
// degrees average Degree); a node behind NAT dials and is dialled only
// by public nodes.
func (s *netSim) connect() {
	n := len(s.nodes)
	var public []int
	for i := range n {
		if !s.nat[i] {
			public = append(public, i)
		}
	}
	linked := map[[2]int]bool{}
	link := func(a, b int) {
		if a == b || linked[[2]int{min(a, b), max(a, b)}] {
			return
		}
		linked[[2]int{min(a, b), max(a, b)}] = true
		s.edges[a] = append(s.edges[a], b)
		s.edges[b] = append(s.edges[b], a)
		s.apply(a, s.nodes[a].AddPeer(nodeName(b), s.now))
		s.apply(b, s.nodes[b].AddPeer(nodeName(a), s.now))
	}
	for i := range n {
		for range max(1, s.o.Degree/2) {
			if s.nat[i] || s.r.Float64() < float64(len(public))/float64(n) {
				if len(public) > 0 {
					link(i, public[s.r.IntN(len(public))])
				}
			} else {
				j := s.r.IntN(n)
				if s.nat[j] && s.nat[i] {
					continue
				}
				link(i, j)
			}
		}
	}
}

type event struct {
	at    time.Time
	seq   int
	from  int
	to    int
	m     swarm.Msg
	tick  bool // a timeout check of node to
	quit  bool // node to leaves
	ready bool // a piece the receiver's downlink has taken in
}

type eventQueue []event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

func (s *netSim) push(e event) {
	s.seq++
	e.seq = s.seq
	heap.Push(&s.q, e)
}

// msgSize is a message's bytes on the wire: its body and the frame.
func msgSize(m swarm.Msg) int64 { return int64(m.BodySize()) + 6 }

// apply sends what node i's machine asked, over its uplink.
func (s *netSim) apply(i int, rd swarm.Ready) {
	for _, o := range rd.Send {
		j := s.index[o.To]
		size := msgSize(o.Msg)
		rate := s.o.Mbps * 1e6 / 8
		depart := later(s.now, s.upFree[i]).Add(secs(float64(size) / rate))
		s.upFree[i] = depart
		s.up[i] += size
		arrive := depart.Add(s.o.RTT / 2)
		if s.o.Loss > 0 && o.Msg.Kind == swarm.KindPiece {
			packets := (size + wire.MSS - 1) / wire.MSS
			if s.r.Float64() < 1-math.Pow(1-s.o.Loss, float64(packets)) {
				arrive = arrive.Add(wire.RTO(s.o.RTT))
			}
		}
		s.push(event{at: arrive, from: i, to: j, m: o.Msg})
	}
	for range rd.Done {
		s.last[i] = s.now
	}
	if s.nodes[i].Wanting() > 0 && !s.ticking[i] {
		// One timeout check at a time per node.
		s.ticking[i] = true
		s.push(event{at: s.now.Add(tickEvery), to: i, tick: true})
	}
}

// idleEnd ends a simulation in which nothing but timeout checks happened
// for this long.
const idleEnd = time.Minute

// tickEvery is how often (simulated) a node with messages in flight
// checks its timeouts.
const tickEvery = 500 * time.Millisecond

func (s *netSim) leaveAt(i int, at time.Time) { s.push(event{at: at, to: i, quit: true}) }

// run delivers events until none is left.
func (s *netSim) run() {
	rate := s.o.Mbps * 1e6 / 8
	progress := s.start
	for s.q.Len() > 0 {
		e := heap.Pop(&s.q).(event)
		s.events++
		s.now = e.at
		if !e.tick {
			progress = s.now
		} else if s.now.Sub(progress) > idleEnd {
			// Only timeout checks for a while: what is left is held by
			// nobody (nodes that left with it).
			break
		}
		switch {
		case e.quit:
			s.gone[e.to] = true
			for _, j := range s.edges[e.to] {
				if !s.gone[j] {
					s.apply(j, s.nodes[j].RemovePeer(nodeName(e.to), s.now))
				}
			}
		case s.gone[e.to]:
		case e.tick:
			s.ticking[e.to] = false
			s.apply(e.to, s.nodes[e.to].Tick(s.now))
		case s.gone[e.from]:
		default:
			// The receiver's downlink serialises the message.
			size := msgSize(e.m)
			if e.m.Kind == swarm.KindPiece && !e.ready {
				// The receiver's downlink takes it in after what it is
				// already taking in.
				in := later(s.now, s.dnFree[e.to]).Add(secs(float64(size) / rate))
				s.dnFree[e.to] = in
				e.at, e.ready = in, true
				s.push(e)
				continue
			}
			s.down[e.to] += size
			s.apply(e.to, s.nodes[e.to].Step(nodeName(e.from), e.m, s.now))
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func secs(x float64) time.Duration { return time.Duration(x * float64(time.Second)) }
