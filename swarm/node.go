// Package swarm spreads content-addressed blobs among peers, BitTorrent
// fashion, as a deterministic state machine: messages and the time come in
// as arguments, messages to send and decisions come out, and the caller
// does all I/O (as etcd's raft leaves it to its caller).
//
// A blob is named by the hash of its manifest, which lists the SHA-256 of
// each piece, so every piece is checked on arrival and a peer serving
// bytes that do not match is named. A node fetches the pieces it lacks
// rarest first from several holders at once, serves what it holds, and
// uploads each piece at most Copies times while others hold it (once
// more to a peer it refused), so that a blob's publisher seeds it a few
// times and the swarm carries the rest.
package swarm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// Config configures a Node.
type Config struct {
	// Self is this node's name, which breaks ties differently on each
	// node so that requests spread.
	Self string
	// MaxBlob is the largest blob the node fetches (default 1 GiB).
	MaxBlob int64
	// Inflight bounds the requests outstanding to one peer (default 4).
	Inflight int
	// Copies is how often the node uploads one piece while other peers
	// hold it (default 2).
	Copies int
	// Timeout: a request unanswered this long is asked elsewhere, and the
	// peer is not asked for that blob for as long; a peer that refused as
	// busy is not asked for a tenth of it (default 10 s).
	Timeout time.Duration
	// Buffer, if set, gives the slice of size bytes that blob id's bytes
	// are kept in (and Publish's data copied to); default a new slice. A
	// simulation of many nodes in one process shares one per blob.
	Buffer func(id ID, size int64) []byte
}

func (c *Config) defaults() {
	if c.MaxBlob <= 0 {
		c.MaxBlob = 1 << 30
	}
	if c.Inflight <= 0 {
		c.Inflight = 4
	}
	if c.Copies <= 0 {
		c.Copies = 2
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
}

// Out is a message to send.
type Out struct {
	To  string
	Msg Msg
}

// Fault is a peer's misbehaviour: the caller drops the peer (the node
// already ignores it) and may report it.
type Fault struct {
	Peer   string
	Reason string
}

// Ready is what the node asks its caller to do after an input: send
// messages, and learn of completed blobs and faulty peers.
type Ready struct {
	Send   []Out
	Done   []ID
	Faults []Fault
}

// Stats counts a node's piece traffic.
type Stats struct {
	Uploaded, Downloaded int64 // piece bytes sent and accepted
	Served, Refused      int   // requests answered with a piece, and refused as busy
}

// Node is one peer's view of the swarm. It is not safe for concurrent use.
type Node struct {
	cfg    Config
	blobs  map[ID]*blob
	ids    []ID // blobs' IDs, sorted
	wanted []ID // IDs of the blobs being fetched, sorted
	cursor int  // where the next fill starts in wanted
	peers  map[string]*peer
	order  []string // peer names, sorted
	rd     Ready
	stats  Stats
}

type blob struct {
	id       ID
	man      *Manifest
	data     []byte
	have     []bool
	held     int
	want     bool
	pending  map[int]request  // piece → outstanding request
	asked    map[int][]string // piece → peers asked for it
	served   []int            // uploads of each piece
	refused  map[refusal]bool // (peer, piece) refused as busy once
	asks     map[string]int   // requests served or refused, per peer
	manifest request          // outstanding manifest request, if from != ""
}

type request struct {
	from string
	at   time.Time
}

type refusal struct {
	peer  string
	piece int
}

type peer struct {
	name     string
	inflight int
	blobs    map[ID]*holding
	bad      bool
}

// holding is what a peer told about one blob.
type holding struct {
	all       bool
	pieces    map[int]bool // before the manifest is known, or when not all
	bits      []byte       // a bitfield received before the manifest
	busyUntil time.Time
}

// New returns a node with no peers and no blobs.
func New(cfg Config) *Node {
	cfg.defaults()
	return &Node{cfg: cfg, blobs: map[ID]*blob{}, peers: map[string]*peer{}}
}

// Stats returns the node's traffic so far.
func (n *Node) Stats() Stats { return n.stats }

func (n *Node) ready() Ready {
	r := n.rd
	n.rd = Ready{}
	return r
}

func (n *Node) send(to string, m Msg) { n.rd.Send = append(n.rd.Send, Out{To: to, Msg: m}) }

func (n *Node) fault(p *peer, format string, args ...any) {
	if p.bad {
		return
	}
	p.bad = true
	n.rd.Faults = append(n.rd.Faults, Fault{Peer: p.name, Reason: fmt.Sprintf(format, args...)})
	n.forget(p)
}

// Publish makes the node hold data as a complete blob in pieces of
// pieceSize bytes and announces it to every peer. It returns the blob's
// ID; it fails on empty data, a piece size out of bounds or a blob larger
// than MaxBlob.
func (n *Node) Publish(data []byte, pieceSize int) (ID, Ready, error) {
	if int64(len(data)) > n.cfg.MaxBlob {
		return ID{}, Ready{}, fmt.Errorf("swarm: blob of %d bytes exceeds the limit of %d", len(data), n.cfg.MaxBlob)
	}
	m, err := NewManifest(data, pieceSize)
	if err != nil {
		return ID{}, Ready{}, err
	}
	id := m.ID()
	b := n.track(id)
	if b.held < len(m.Pieces) {
		n.setManifest(b, &m)
		copy(b.data, data)
		for i := range b.have {
			b.have[i] = true
		}
		b.held = len(b.have)
		n.setWanted(id, false)
		n.cancelPending(b)
		for _, name := range n.order {
			if p := n.peers[name]; !p.bad {
				n.send(name, Msg{Kind: KindBitfield, Blob: id, All: true})
			}
		}
	}
	return id, n.ready(), nil
}

// Want starts fetching blob id from the peers that hold it: the node tells
// every peer its bitfield, holders answer with theirs, and the node asks
// one of them for the manifest, then for the pieces. Ready.Done names the
// blob once it is whole.
func (n *Node) Want(id ID, now time.Time) Ready {
	b := n.track(id)
	if b.man != nil && b.held == len(b.have) {
		return n.ready()
	}
	n.setWanted(id, true)
	for _, name := range n.order {
		if p := n.peers[name]; !p.bad {
			n.tell(p, b, true)
		}
	}
	n.scheduleBlob(b, now)
	return n.ready()
}

// Drop forgets blob id (its data, pieces and what peers said of it).
func (n *Node) Drop(id ID) {
	b, ok := n.blobs[id]
	if !ok {
		return
	}
	n.cancelPending(b)
	n.setWanted(id, false)
	delete(n.blobs, id)
	if i, ok := slices.BinarySearchFunc(n.ids, id, cmpID); ok {
		n.ids = slices.Delete(n.ids, i, i+1)
	}
	for _, p := range n.peers {
		delete(p.blobs, id)
	}
}

// Data returns blob id's bytes once the node holds all of them. The slice
// is the node's own; callers must not change it.
func (n *Node) Data(id ID) ([]byte, bool) {
	b, ok := n.blobs[id]
	if !ok || b.man == nil || b.held < len(b.have) {
		return nil, false
	}
	return b.data, true
}

// Wanting is how many blobs the node is fetching.
func (n *Node) Wanting() int { return len(n.wanted) }

// Progress returns how many of blob id's pieces the node holds, and of
// how many (0 while its manifest is unknown).
func (n *Node) Progress(id ID) (held, pieces int) {
	b, ok := n.blobs[id]
	if !ok {
		return 0, 0
	}
	return b.held, len(b.have)
}

// Holders returns how many connected peers the node knows hold some of
// blob id, of how many peers (for a stalled fetch's error message).
func (n *Node) Holders(id ID) (holders, peers int) {
	for _, p := range n.peers {
		if h, ok := p.blobs[id]; ok && (h.all || len(h.pieces) > 0 || len(h.bits) > 0) {
			holders++
		}
	}
	return holders, len(n.peers)
}

// AddPeer connects a peer: the node sends it the bitfield of every blob it
// holds or wants. Adding a peer already present changes nothing.
func (n *Node) AddPeer(name string, now time.Time) Ready {
	if _, ok := n.peers[name]; ok || name == n.cfg.Self {
		return n.ready()
	}
	p := &peer{name: name, blobs: map[ID]*holding{}}
	n.peers[name] = p
	i, _ := slices.BinarySearch(n.order, name)
	n.order = slices.Insert(n.order, i, name)
	for _, id := range n.sortedBlobs() {
		if b := n.blobs[id]; b.want || b.held > 0 {
			n.tell(p, b, b.want)
		}
	}
	return n.ready()
}

// RemovePeer disconnects a peer; what was asked of it is asked elsewhere.
func (n *Node) RemovePeer(name string, now time.Time) Ready {
	p, ok := n.peers[name]
	if !ok {
		return n.ready()
	}
	n.forget(p)
	delete(n.peers, name)
	if i, ok := slices.BinarySearch(n.order, name); ok {
		n.order = slices.Delete(n.order, i, i+1)
	}
	n.schedule(now)
	return n.ready()
}

// forget cancels everything outstanding with p.
func (n *Node) forget(p *peer) {
	for _, b := range n.blobs {
		for piece, r := range b.pending {
			if r.from == p.name {
				delete(b.pending, piece)
			}
		}
		if b.manifest.from == p.name {
			b.manifest = request{}
		}
	}
	p.inflight = 0
	p.blobs = map[ID]*holding{}
}

// Tick asks elsewhere what a peer has left unanswered for Timeout.
func (n *Node) Tick(now time.Time) Ready {
	for _, id := range n.sortedBlobs() {
		b := n.blobs[id]
		if b.manifest.from != "" && now.Sub(b.manifest.at) >= n.cfg.Timeout {
			if p, ok := n.peers[b.manifest.from]; ok {
				p.holding(id).busyUntil = now.Add(n.cfg.Timeout)
			}
			b.manifest = request{}
		}
		for _, piece := range sortedKeys(b.pending) {
			r := b.pending[piece]
			if now.Sub(r.at) < n.cfg.Timeout {
				continue
			}
			delete(b.pending, piece)
			if p, ok := n.peers[r.from]; ok {
				p.inflight--
				p.holding(id).busyUntil = now.Add(n.cfg.Timeout)
			}
		}
	}
	n.schedule(now)
	return n.ready()
}

// Step takes a message from a peer. A peer that breaks the protocol (a
// piece or manifest that does not match its hash, a piece nobody asked it
// for, a bitfield or piece number that does not fit the blob) is named in
// Ready.Faults and ignored from then on; messages from unknown peers are
// ignored.
func (n *Node) Step(from string, m Msg, now time.Time) Ready {
	p, ok := n.peers[from]
	if !ok || p.bad {
		return n.ready()
	}
	b, tracked := n.blobs[m.Blob]
	switch m.Kind {
	case KindBitfield, KindHave:
		if tracked {
			n.announce(p, b, m)
		}
	case KindWantManifest:
		if tracked && b.man != nil {
			enc, _ := b.man.MarshalBinary()
			n.send(from, Msg{Kind: KindManifest, Blob: m.Blob, Data: enc})
		} else {
			n.send(from, Msg{Kind: KindReject, Blob: m.Blob, Piece: 0, Reason: Missing})
		}
	case KindManifest:
		if !tracked || b.man != nil {
			break
		}
		if b.manifest.from != from {
			n.fault(p, "sent the manifest of blob %s unasked", m.Blob)
			break
		}
		man, err := DecodeManifest(m.Data, m.Blob, n.cfg.MaxBlob)
		if err != nil {
			n.fault(p, "sent a bad manifest: %v", err)
			break
		}
		b.manifest = request{}
		n.setManifest(b, &man)
		for _, name := range n.order {
			q := n.peers[name]
			if h, ok := q.blobs[b.id]; ok && !q.bad {
				if err := h.resolve(len(b.have)); err != nil {
					n.fault(q, "announced blob %s wrongly: %v", b.id, err)
				}
			}
		}
	case KindRequest:
		n.serve(p, m.Blob, b, m.Piece)
	case KindPiece:
		if tracked {
			n.receive(p, b, m.Piece, m.Data)
		}
	case KindReject:
		if !tracked {
			break
		}
		if b.manifest.from == from {
			b.manifest = request{}
			p.holding(b.id).busyUntil = now.Add(n.cfg.Timeout)
			break
		}
		r, ok := b.pending[m.Piece]
		if !ok || r.from != from {
			break
		}
		delete(b.pending, m.Piece)
		p.inflight--
		h := p.holding(b.id)
		if m.Reason == Busy {
			// Ask the others first; this one serves a peer it refused
			// when asked again.
			h.busyUntil = now.Add(n.cfg.Timeout / 10)
		} else {
			h.all = false
			delete(h.pieces, m.Piece)
			if h.pieces == nil && b.man != nil {
				h.pieces = map[int]bool{}
			}
		}
	}
	switch {
	case p.bad:
		// What was asked of it goes elsewhere.
		n.schedule(now)
	case m.Kind == KindPiece || m.Kind == KindReject:
		n.scheduleBlob(b, now)
		n.fill(p, now)
	case tracked && m.Kind != KindRequest && m.Kind != KindWantManifest:
		n.scheduleBlob(b, now)
	}
	return n.ready()
}

// announce records a peer's bitfield or have, and answers a bitfield that
// asks with this node's own if it holds any of the blob.
func (n *Node) announce(p *peer, b *blob, m Msg) {
	h := p.holding(b.id)
	if m.Kind == KindBitfield {
		h.all, h.bits, h.pieces = m.All, nil, nil
		if len(m.Bits) > 0 {
			h.bits = slices.Clone(m.Bits)
		}
		if b.man != nil {
			if err := h.resolve(len(b.have)); err != nil {
				n.fault(p, "announced blob %s wrongly: %v", b.id, err)
				return
			}
		}
		if m.Ask && b.held > 0 {
			n.tell(p, b, false)
		}
		return
	}
	if b.man != nil && m.Piece >= len(b.have) {
		n.fault(p, "announced piece %d of blob %s, which has %d", m.Piece, b.id, len(b.have))
		return
	}
	if !h.all {
		if h.pieces == nil {
			h.pieces = map[int]bool{}
		}
		h.pieces[m.Piece] = true
		if b.man != nil && len(h.pieces) == len(b.have) {
			h.all, h.pieces = true, nil
		}
	}
}

// tell sends p this node's bitfield for b, asking for p's if ask.
func (n *Node) tell(p *peer, b *blob, ask bool) {
	m := Msg{Kind: KindBitfield, Blob: b.id, Ask: ask}
	switch {
	case b.man != nil && b.held == len(b.have):
		m.All = true
	case b.held > 0:
		m.Bits = make([]byte, (len(b.have)+7)/8)
		for i, ok := range b.have {
			if ok {
				m.Bits[i/8] |= 0x80 >> (i % 8)
			}
		}
	}
	n.send(p.name, m)
}

// serve answers a request for a piece. A peer that asks for more than
// twice a blob's pieces is flooding and faulted.
func (n *Node) serve(p *peer, id ID, b *blob, piece int) {
	if b == nil || b.man == nil || piece >= len(b.have) || !b.have[piece] {
		n.send(p.name, Msg{Kind: KindReject, Blob: id, Piece: piece, Reason: Missing})
		return
	}
	if b.asks == nil {
		b.asks = map[string]int{}
	}
	if b.asks[p.name]++; b.asks[p.name] > 2*len(b.have) {
		n.fault(p, "asked for %d pieces of blob %s, which has %d", b.asks[p.name], id, len(b.have))
		return
	}
	// Busy only while someone else holds the piece, and once per peer
	// and piece, so that no request is refused for ever.
	k := refusal{p.name, piece}
	if b.served[piece] >= n.cfg.Copies && !b.refused[k] && n.heldElsewhere(b, piece, p.name) {
		if b.refused == nil {
			b.refused = map[refusal]bool{}
		}
		b.refused[k] = true
		n.stats.Refused++
		n.send(p.name, Msg{Kind: KindReject, Blob: b.id, Piece: piece, Reason: Busy})
		return
	}
	off := piece * b.man.PieceSize
	data := b.data[off : off+b.man.PieceLen(piece)]
	b.served[piece]++
	n.stats.Served++
	n.stats.Uploaded += int64(len(data))
	n.send(p.name, Msg{Kind: KindPiece, Blob: b.id, Piece: piece, Data: data})
}

func (n *Node) heldElsewhere(b *blob, piece int, except string) bool {
	for _, name := range n.order {
		if q := n.peers[name]; name != except && !q.bad && q.blobs[b.id].has(piece) {
			return true
		}
	}
	return false
}

// receive checks and stores a piece.
func (n *Node) receive(p *peer, b *blob, piece int, data []byte) {
	if b.man == nil || piece >= len(b.have) {
		n.fault(p, "sent piece %d of blob %s, which it was not asked for", piece, b.id)
		return
	}
	if b.have[piece] {
		return // a late answer to a request asked again elsewhere
	}
	if !slices.Contains(b.asked[piece], p.name) {
		n.fault(p, "sent piece %d of blob %s, which it was not asked for", piece, b.id)
		return
	}
	if len(data) != b.man.PieceLen(piece) || sha256.Sum256(data) != b.man.Pieces[piece] {
		n.fault(p, "sent piece %d of blob %s that does not match its hash", piece, b.id)
		return
	}
	if r, ok := b.pending[piece]; ok {
		delete(b.pending, piece)
		if q, ok := n.peers[r.from]; ok {
			q.inflight--
		}
	}
	copy(b.data[piece*b.man.PieceSize:], data)
	b.have[piece] = true
	b.held++
	delete(b.asked, piece)
	n.stats.Downloaded += int64(len(data))
	for _, name := range n.order {
		if q := n.peers[name]; !q.bad {
			n.send(name, Msg{Kind: KindHave, Blob: b.id, Piece: piece})
		}
	}
	if b.held == len(b.have) {
		n.setWanted(b.id, false)
		b.asked = nil
		n.rd.Done = append(n.rd.Done, b.id)
	}
}

// schedule asks for manifests and pieces of every blob the node wants.
func (n *Node) schedule(now time.Time) {
	for _, id := range slices.Clone(n.wanted) {
		n.scheduleBlob(n.blobs[id], now)
	}
}

// fill gives p, which has room for requests, some from the blobs it
// holds: the wanted blobs are visited from a cursor that moves on each
// time, so that no blob waits behind the others.
func (n *Node) fill(p *peer, now time.Time) {
	k := len(n.wanted)
	if k == 0 {
		return
	}
	n.cursor = (n.cursor + 1) % k
	for i := 0; i < k && p.inflight < n.cfg.Inflight && !p.bad; i++ {
		id := n.wanted[(n.cursor+i)%k]
		b := n.blobs[id]
		if h := p.blobs[id]; h == nil || now.Before(h.busyUntil) || b.man != nil && b.held+len(b.pending) == len(b.have) {
			continue
		}
		n.scheduleBlob(b, now)
	}
}

// scheduleBlob asks for b's manifest, or for its missing pieces, rarest
// first, each from the least loaded holder that is not busy.
func (n *Node) scheduleBlob(b *blob, now time.Time) {
	if b == nil || !b.want {
		return
	}
	id := b.id
	if b.man == nil {
		if b.manifest.from == "" {
			if p := n.pick(b, -1, now); p != nil {
				b.manifest = request{from: p.name, at: now}
				n.send(p.name, Msg{Kind: KindWantManifest, Blob: id})
			}
		}
		return
	}
	if b.held+len(b.pending) == len(b.have) {
		return
	}
	type cand struct{ piece, holders, tie int }
	var cands []cand
	for i, ok := range b.have {
		if ok {
			continue
		}
		if _, busy := b.pending[i]; busy {
			continue
		}
		c := 0
		for _, name := range n.order {
			if q := n.peers[name]; !q.bad && q.blobs[id].has(i) {
				c++
			}
		}
		if c > 0 {
			cands = append(cands, cand{i, c, n.tie(id, i, "")})
		}
	}
	slices.SortFunc(cands, func(x, y cand) int {
		if x.holders != y.holders {
			return x.holders - y.holders
		}
		return x.tie - y.tie
	})
	for _, c := range cands {
		p := n.pick(b, c.piece, now)
		if p == nil {
			continue
		}
		b.pending[c.piece] = request{from: p.name, at: now}
		if !slices.Contains(b.asked[c.piece], p.name) {
			b.asked[c.piece] = append(b.asked[c.piece], p.name)
		}
		p.inflight++
		n.send(p.name, Msg{Kind: KindRequest, Blob: id, Piece: c.piece})
	}
}

// pick returns the holder of piece (any piece of b when piece < 0) with
// the fewest requests outstanding that is neither busy nor full.
func (n *Node) pick(b *blob, piece int, now time.Time) *peer {
	var best *peer
	bestTie := 0
	for _, name := range n.order {
		q := n.peers[name]
		h := q.blobs[b.id]
		if q.bad || h == nil || now.Before(h.busyUntil) || q.inflight >= n.cfg.Inflight {
			continue
		}
		if piece >= 0 && !h.has(piece) || piece < 0 && !h.any() {
			continue
		}
		t := n.tie(b.id, piece, name)
		if best == nil || q.inflight < best.inflight || q.inflight == best.inflight && t < bestTie {
			best, bestTie = q, t
		}
	}
	return best
}

// tie is a pseudo-random rank of (blob, piece, peer) that differs from
// node to node, so that nodes spread their requests.
func (n *Node) tie(id ID, piece int, name string) int {
	h := sha256.New()
	h.Write([]byte(n.cfg.Self))
	h.Write(id[:])
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(piece))
	h.Write(b[:])
	h.Write([]byte(name))
	return int(binary.BigEndian.Uint32(h.Sum(nil)) >> 1)
}

func (n *Node) track(id ID) *blob {
	b, ok := n.blobs[id]
	if !ok {
		b = &blob{id: id, pending: map[int]request{}, asked: map[int][]string{}}
		n.blobs[id] = b
		i, _ := slices.BinarySearchFunc(n.ids, id, cmpID)
		n.ids = slices.Insert(n.ids, i, id)
	}
	return b
}

// cancelPending forgets b's outstanding requests, freeing their peers.
func (n *Node) cancelPending(b *blob) {
	for _, r := range b.pending {
		if q, ok := n.peers[r.from]; ok {
			q.inflight--
		}
	}
	clear(b.pending)
}

func (n *Node) sortedBlobs() []ID { return n.ids }

// setWanted adds id to, or removes it from, the blobs being fetched.
func (n *Node) setWanted(id ID, want bool) {
	i, ok := slices.BinarySearchFunc(n.wanted, id, cmpID)
	switch {
	case want && !ok:
		n.wanted = slices.Insert(n.wanted, i, id)
	case !want && ok:
		n.wanted = slices.Delete(n.wanted, i, i+1)
	}
	n.blobs[id].want = want
}

func cmpID(a, b ID) int { return bytes.Compare(a[:], b[:]) }

func sortedKeys[V any](m map[int]V) []int {
	ks := make([]int, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func (n *Node) setManifest(b *blob, m *Manifest) {
	b.man = m
	if n.cfg.Buffer != nil {
		b.data = n.cfg.Buffer(b.id, m.Size)
	} else {
		b.data = make([]byte, m.Size)
	}
	b.have = make([]bool, len(m.Pieces))
	b.served = make([]int, len(m.Pieces))
	b.held = 0
}

func (p *peer) holding(id ID) *holding {
	h, ok := p.blobs[id]
	if !ok {
		h = &holding{}
		p.blobs[id] = h
	}
	return h
}

// resolve turns a bitfield received before the manifest into pieces and
// checks announced pieces against the blob's piece count.
func (h *holding) resolve(pieces int) error {
	if len(h.bits) > 0 {
		if len(h.bits) != (pieces+7)/8 {
			return fmt.Errorf("bitfield of %d bytes for %d pieces", len(h.bits), pieces)
		}
		if pieces%8 != 0 && h.bits[len(h.bits)-1]&(0xff>>(pieces%8)) != 0 {
			return fmt.Errorf("bitfield sets bits beyond piece %d", pieces-1)
		}
		if h.pieces == nil {
			h.pieces = map[int]bool{}
		}
		for i := range pieces {
			if h.bits[i/8]&(0x80>>(i%8)) != 0 {
				h.pieces[i] = true
			}
		}
	}
	h.bits = nil
	for i := range h.pieces {
		if i >= pieces {
			return fmt.Errorf("piece %d of %d", i, pieces)
		}
	}
	if len(h.pieces) == pieces {
		h.all, h.pieces = true, nil
	}
	return nil
}

func (h *holding) has(piece int) bool {
	return h != nil && (h.all || h.pieces[piece])
}

func (h *holding) any() bool {
	return h != nil && (h.all || len(h.pieces) > 0 || len(h.bits) > 0)
}
