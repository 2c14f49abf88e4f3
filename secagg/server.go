package secagg

import (
	"crypto/ecdh"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/crypto/chacha20poly1305"
)

// Server is the aggregator's side of a round: it collects keys, routes the
// sealed shares, collects masked inputs and the shares that unmask their
// sum. It sees each contributor's input only masked, and learns only the
// sum of the survivors' inputs. Each Add method refuses, with the reason, a
// message that does not fit the round (a stranger, a second message from
// one party, a wrong size, a step already closed) and leaves the server as
// it was; each closing method moves the round on or says why it cannot.
type Server struct {
	cfg     Config
	step    int
	keys    map[uint64]Keys
	boxes   map[uint64][]Box // sender → its boxes
	u2      []uint64
	masked  map[uint64][]uint32
	u3      []uint64
	reveals map[uint64]Reveal
	sharer  *sharer
}

// NewServer starts the server's side of the round described by cfg.
func NewServer(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sh, err := newSharer()
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, keys: map[uint64]Keys{}, boxes: map[uint64][]Box{}, masked: map[uint64][]uint32{}, reveals: map[uint64]Reveal{}, sharer: sh}, nil
}

// AddKeys takes a party's advertised keys.
func (s *Server) AddKeys(k Keys) error {
	if s.step != 0 {
		return errors.New("secagg: keys arrived after the key step closed")
	}
	if !slices.Contains(s.cfg.Parties, k.ID) {
		return fmt.Errorf("secagg: keys from party %d, not in the cohort", k.ID)
	}
	if _, dup := s.keys[k.ID]; dup {
		return fmt.Errorf("secagg: second keys from party %d", k.ID)
	}
	for _, o := range s.keys {
		if o.Enc == k.Enc || o.Mask == k.Mask || o.Enc == k.Mask || o.Mask == k.Enc || k.Enc == k.Mask {
			return fmt.Errorf("secagg: party %d advertised a key already in use", k.ID)
		}
	}
	s.keys[k.ID] = k
	return nil
}

// Keys closes the key step and returns the keys to send every party that
// advertised. It fails below the threshold: the round cannot go on.
func (s *Server) Keys() ([]Keys, error) {
	if s.step != 0 {
		return nil, errors.New("secagg: the key step is closed")
	}
	if len(s.keys) < s.cfg.Threshold {
		return nil, fmt.Errorf("secagg: keys from %d parties, below the threshold %d", len(s.keys), s.cfg.Threshold)
	}
	s.step = 1
	var out []Keys
	for _, id := range sortedIDs(s.keys) {
		out = append(out, s.keys[id])
	}
	return out, nil
}

// AddBoxes takes a party's sealed shares: one box for every other party
// that advertised keys, each of the sealed size.
func (s *Server) AddBoxes(from uint64, boxes []Box) error {
	if s.step != 1 {
		return fmt.Errorf("secagg: boxes at step %d", s.step)
	}
	if _, ok := s.keys[from]; !ok {
		return fmt.Errorf("secagg: boxes from party %d, which advertised no keys", from)
	}
	if _, dup := s.boxes[from]; dup {
		return fmt.Errorf("secagg: second boxes from party %d", from)
	}
	to := map[uint64]bool{}
	for _, b := range boxes {
		if b.From != from {
			return fmt.Errorf("secagg: party %d sent a box from party %d", from, b.From)
		}
		if _, ok := s.keys[b.To]; !ok || b.To == from || to[b.To] {
			return fmt.Errorf("secagg: party %d sent a box for party %d, not another advertised party or twice", from, b.To)
		}
		if len(b.Sealed) != 2*ShareSize+chacha20poly1305.Overhead {
			return fmt.Errorf("secagg: party %d sent a box of %d bytes, expected %d", from, len(b.Sealed), 2*ShareSize+chacha20poly1305.Overhead)
		}
		to[b.To] = true
	}
	if len(to) != len(s.keys)-1 {
		return fmt.Errorf("secagg: party %d sent boxes for %d of the %d other parties", from, len(to), len(s.keys)-1)
	}
	s.boxes[from] = boxes
	return nil
}

// Route closes the sharing step and returns, for each party that shared,
// the boxes addressed to it. It fails below the threshold.
func (s *Server) Route() (map[uint64][]Box, error) {
	if s.step != 1 {
		return nil, fmt.Errorf("secagg: Route at step %d", s.step)
	}
	if len(s.boxes) < s.cfg.Threshold {
		return nil, fmt.Errorf("secagg: shares from %d parties, below the threshold %d", len(s.boxes), s.cfg.Threshold)
	}
	s.u2 = sortedIDs(s.boxes)
	out := map[uint64][]Box{}
	for _, from := range s.u2 {
		for _, b := range s.boxes[from] {
			if _, shared := s.boxes[b.To]; shared {
				out[b.To] = append(out[b.To], b)
			}
		}
	}
	s.step = 2
	return out, nil
}

// AddMasked takes a party's masked input.
func (s *Server) AddMasked(m Masked) error {
	if s.step != 2 {
		return fmt.Errorf("secagg: a masked input at step %d", s.step)
	}
	if !slices.Contains(s.u2, m.ID) {
		return fmt.Errorf("secagg: a masked input from party %d, which shared no keys", m.ID)
	}
	if _, dup := s.masked[m.ID]; dup {
		return fmt.Errorf("secagg: second masked input from party %d", m.ID)
	}
	if len(m.Y) != s.cfg.Dim {
		return fmt.Errorf("secagg: party %d's masked input has %d values, the round %d", m.ID, len(m.Y), s.cfg.Dim)
	}
	low := s.cfg.lowMask()
	for i, v := range m.Y {
		if v > low {
			return fmt.Errorf("secagg: party %d's masked value at %d is wider than %d bits", m.ID, i, s.cfg.bits())
		}
	}
	s.masked[m.ID] = m.Y
	return nil
}

// Survivors closes the input step and returns the parties whose masked
// inputs arrived, to be sent to each of them. It fails below the
// threshold: the round goes on without this cohort's sum.
func (s *Server) Survivors() ([]uint64, error) {
	if s.step != 2 {
		return nil, fmt.Errorf("secagg: Survivors at step %d", s.step)
	}
	if len(s.masked) < s.cfg.Threshold {
		return nil, fmt.Errorf("secagg: masked inputs from %d parties, below the threshold %d", len(s.masked), s.cfg.Threshold)
	}
	s.u3 = sortedIDs(s.masked)
	s.step = 3
	return slices.Clone(s.u3), nil
}

// AddReveal takes a survivor's shares: one of every survivor's self-mask
// seed and one of every dropped party's mask key, well formed.
func (s *Server) AddReveal(r Reveal) error {
	if s.step != 3 {
		return fmt.Errorf("secagg: a reveal at step %d", s.step)
	}
	if !slices.Contains(s.u3, r.ID) {
		return fmt.Errorf("secagg: a reveal from party %d, not a survivor", r.ID)
	}
	if _, dup := s.reveals[r.ID]; dup {
		return fmt.Errorf("secagg: second reveal from party %d", r.ID)
	}
	if err := s.checkShares(r.ID, r.Self, s.u3, "self-mask"); err != nil {
		return err
	}
	var dropped []uint64
	for _, id := range s.u2 {
		if !slices.Contains(s.u3, id) {
			dropped = append(dropped, id)
		}
	}
	if err := s.checkShares(r.ID, r.Mask, dropped, "mask-key"); err != nil {
		return err
	}
	s.reveals[r.ID] = r
	return nil
}

// checkShares checks that shares hold exactly one well-sized share of each
// party in want.
func (s *Server) checkShares(from uint64, shares []Share, want []uint64, what string) error {
	if len(shares) != len(want) {
		return fmt.Errorf("secagg: party %d revealed %d %s shares, expected %d", from, len(shares), what, len(want))
	}
	seen := map[uint64]bool{}
	for _, sh := range shares {
		if !slices.Contains(want, sh.Of) || seen[sh.Of] {
			return fmt.Errorf("secagg: party %d revealed a %s share of party %d, not asked for or twice", from, what, sh.Of)
		}
		if len(sh.Share) != ShareSize {
			return fmt.Errorf("secagg: party %d revealed a %s share of %d bytes, expected %d", from, what, len(sh.Share), ShareSize)
		}
		seen[sh.Of] = true
	}
	return nil
}

// Sum closes the round: from the reveals of at least the threshold of
// survivors it rebuilds every survivor's self-mask seed and every dropped
// party's mask key, removes their masks, and returns the sum of the
// survivors' inputs modulo 2^Bits with the parties it covers. Shares that do
// not reconstruct one secret fail the round with a *PartyError naming the
// party whose share is the odd one out where enough shares exist to tell.
func (s *Server) Sum() ([]uint32, []uint64, error) {
	if s.step != 3 {
		return nil, nil, fmt.Errorf("secagg: Sum at step %d", s.step)
	}
	if len(s.reveals) < s.cfg.Threshold {
		return nil, nil, fmt.Errorf("secagg: reveals from %d survivors, below the threshold %d", len(s.reveals), s.cfg.Threshold)
	}
	sum := make([]uint32, s.cfg.Dim)
	for _, id := range s.u3 {
		for i, v := range s.masked[id] {
			sum[i] += v
		}
	}
	for _, id := range s.u3 {
		b, err := s.rebuild(id, func(r Reveal) []Share { return r.Self })
		if err != nil {
			return nil, nil, err
		}
		addMask(sum, b, -1)
	}
	for _, v := range s.u2 {
		if slices.Contains(s.u3, v) {
			continue
		}
		raw, err := s.rebuild(v, func(r Reveal) []Share { return r.Mask })
		if err != nil {
			return nil, nil, err
		}
		priv, err := ecdh.X25519().NewPrivateKey(raw[:])
		if err != nil {
			return nil, nil, err
		}
		if [32]byte(priv.PublicKey().Bytes()) != s.keys[v].Mask {
			return nil, nil, fmt.Errorf("secagg: party %d's rebuilt mask key does not match the key it advertised", v)
		}
		for _, u := range s.u3 {
			key, err := agree(priv, s.keys[u].Mask, s.cfg.Session, "mask", v, u)
			if err != nil {
				return nil, nil, &PartyError{Party: u, Reason: err.Error()}
			}
			addMask(sum, key, -pairSign(u, v))
		}
	}
	low := s.cfg.lowMask()
	for i := range sum {
		sum[i] &= low
	}
	s.step = 4
	return sum, slices.Clone(s.u3), nil
}

// rebuild reconstructs party of's secret from the shares the reveals hold.
func (s *Server) rebuild(of uint64, pick func(Reveal) []Share) ([32]byte, error) {
	var points []uint64
	var shares [][]byte
	for _, id := range sortedIDs(s.reveals) {
		for _, sh := range pick(s.reveals[id]) {
			if sh.Of == of {
				points, shares = append(points, id), append(shares, sh.Share)
			}
		}
	}
	t := s.cfg.Threshold
	secret, err := s.sharer.combine(points, shares, t)
	if err == nil {
		// Every further share must agree: rebuilding with it in place of
		// each of the first t in turn gives the same secret.
		for k := t; k < len(points); k++ {
			p2 := append(slices.Clone(points[1:t]), points[k])
			s2 := append(slices.Clone(shares[1:t]), shares[k])
			if again, err := s.sharer.combine(p2, s2, t); err != nil || again != secret {
				return secret, &PartyError{Party: points[k], Reason: fmt.Sprintf("its share of party %d's secret disagrees with the others'", of)}
			}
		}
		return secret, nil
	}
	if !errors.Is(err, errInconsistent) {
		return secret, err
	}
	// Find the one share whose removal makes the rest agree.
	for skip := range points {
		p2 := slices.Delete(slices.Clone(points), skip, skip+1)
		s2 := slices.Delete(slices.Clone(shares), skip, skip+1)
		if len(p2) >= t {
			if _, err := s.sharer.combine(p2, s2, t); err == nil {
				return secret, &PartyError{Party: points[skip], Reason: fmt.Sprintf("its share of party %d's secret disagrees with the others'", of)}
			}
		}
	}
	return secret, fmt.Errorf("secagg: the shares of party %d's secret do not agree, and too few arrived to tell whose is wrong", of)
}
