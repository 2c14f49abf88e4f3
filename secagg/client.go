package secagg

import (
	"crypto/ecdh"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/crypto/chacha20poly1305"
)

// Client is one contributor's side of a round. Its methods are the
// protocol's steps, called in order, each once: NewClient (advertise keys),
// ShareKeys, MaskInput, Unmask. A step called out of order, or with
// messages that do not fit the round, fails with an error that says why
// and leaves the client where it was.
type Client struct {
	cfg        Config
	id         uint64
	seed       [32]byte
	enc, mask  *ecdh.PrivateKey
	self       [32]byte // self-mask seed b
	step       int
	keys       map[uint64]Keys
	maskShares map[uint64][]byte // party → its share of that party's mask key, held here
	selfShares map[uint64][]byte // party → its share of that party's self-mask seed
	u2         []uint64          // parties whose shares arrived, this one included
	sharer     *sharer
}

// NewClient starts party id's side of the round described by cfg. Every
// secret the client uses (its two X25519 keys, its self-mask seed, the
// randomness of its Shamir polynomials) is derived from seed and the
// session, so seed must be secret, fresh randomness of the caller's. It
// returns the keys to advertise. It fails if cfg is invalid or id is not in
// the cohort.
func NewClient(cfg Config, id uint64, seed [32]byte) (*Client, Keys, error) {
	if err := cfg.Validate(); err != nil {
		return nil, Keys{}, err
	}
	if !slices.Contains(cfg.Parties, id) {
		return nil, Keys{}, fmt.Errorf("secagg: party %d is not in the cohort", id)
	}
	c := &Client{cfg: cfg, id: id, seed: seed}
	var err error
	if c.enc, err = keyPair(seed, cfg.Session, "enc"); err != nil {
		return nil, Keys{}, err
	}
	if c.mask, err = keyPair(seed, cfg.Session, "mask"); err != nil {
		return nil, Keys{}, err
	}
	if c.self, err = derive(seed[:], cfg.Session, "self"); err != nil {
		return nil, Keys{}, err
	}
	if c.sharer, err = newSharer(); err != nil {
		return nil, Keys{}, err
	}
	k := Keys{ID: id}
	copy(k.Enc[:], c.enc.PublicKey().Bytes())
	copy(k.Mask[:], c.mask.PublicKey().Bytes())
	return c, k, nil
}

// ShareKeys takes the keys the server collected (at least the threshold,
// this party's own included, each party once) and returns one sealed box
// for every other party: its shares of this party's mask key and
// self-mask seed, encrypted to that party alone.
func (c *Client) ShareKeys(keys []Keys) ([]Box, error) {
	if c.step != 0 {
		return nil, errors.New("secagg: keys already shared")
	}
	m, err := c.cfg.checkKeys(keys)
	if err != nil {
		return nil, err
	}
	if mine, ok := m[c.id]; !ok || mine.Enc != [32]byte(c.enc.PublicKey().Bytes()) || mine.Mask != [32]byte(c.mask.PublicKey().Bytes()) {
		return nil, errors.New("secagg: the collected keys do not hold this party's own")
	}
	points := sortedIDs(m)
	var maskSecret [32]byte
	copy(maskSecret[:], c.mask.Bytes())
	shk, err := derive(c.seed[:], c.cfg.Session, "shamir mask")
	if err != nil {
		return nil, err
	}
	maskShares, err := c.sharer.split(maskSecret, points, c.cfg.Threshold, shk[:])
	if err != nil {
		return nil, err
	}
	if shk, err = derive(c.seed[:], c.cfg.Session, "shamir self"); err != nil {
		return nil, err
	}
	selfShares, err := c.sharer.split(c.self, points, c.cfg.Threshold, shk[:])
	if err != nil {
		return nil, err
	}
	var boxes []Box
	c.maskShares, c.selfShares = map[uint64][]byte{}, map[uint64][]byte{}
	for k, to := range points {
		if to == c.id {
			c.maskShares[c.id], c.selfShares[c.id] = maskShares[k], selfShares[k]
			continue
		}
		key, err := agree(c.enc, m[to].Enc, c.cfg.Session, "box", c.id, to)
		if err != nil {
			return nil, fmt.Errorf("secagg: party %d's encryption key: %v", to, err)
		}
		aead, err := chacha20poly1305.NewX(key[:])
		if err != nil {
			return nil, err
		}
		plain := append(append([]byte{}, maskShares[k]...), selfShares[k]...)
		boxes = append(boxes, Box{From: c.id, To: to, Sealed: aead.Seal(nil, boxNonce(c.id, to), plain, boxAD(c.cfg.Session, c.id, to))})
	}
	c.keys = m
	c.step = 1
	return boxes, nil
}

// MaskInput opens the boxes addressed to this party (from at least
// threshold−1 others, each once) and returns x masked: x plus the
// self-mask, plus or minus a pairwise mask for every party whose box
// arrived, modulo 2^Bits. x must have the round's dimension and values
// below 2^Bits. A box that does
// not open names its sender in the error; nothing is masked then.
func (c *Client) MaskInput(x []uint32, boxes []Box) (Masked, error) {
	if c.step != 1 {
		return Masked{}, fmt.Errorf("secagg: MaskInput at step %d", c.step)
	}
	if len(x) != c.cfg.Dim {
		return Masked{}, fmt.Errorf("secagg: an input of %d values for a round of %d", len(x), c.cfg.Dim)
	}
	maskShares, selfShares := map[uint64][]byte{}, map[uint64][]byte{}
	for _, b := range boxes {
		if b.To != c.id {
			return Masked{}, fmt.Errorf("secagg: a box for party %d delivered to party %d", b.To, c.id)
		}
		pk, ok := c.keys[b.From]
		if !ok || b.From == c.id {
			return Masked{}, fmt.Errorf("secagg: a box from party %d, which advertised no keys this round", b.From)
		}
		if _, dup := maskShares[b.From]; dup {
			return Masked{}, fmt.Errorf("secagg: two boxes from party %d", b.From)
		}
		if len(b.Sealed) != 2*ShareSize+chacha20poly1305.Overhead {
			return Masked{}, &PartyError{Party: b.From, Reason: fmt.Sprintf("a box of %d bytes, expected %d", len(b.Sealed), 2*ShareSize+chacha20poly1305.Overhead)}
		}
		key, err := agree(c.enc, pk.Enc, c.cfg.Session, "box", b.From, c.id)
		if err != nil {
			return Masked{}, &PartyError{Party: b.From, Reason: err.Error()}
		}
		aead, err := chacha20poly1305.NewX(key[:])
		if err != nil {
			return Masked{}, err
		}
		plain, err := aead.Open(nil, boxNonce(b.From, c.id), b.Sealed, boxAD(c.cfg.Session, b.From, c.id))
		if err != nil {
			return Masked{}, &PartyError{Party: b.From, Reason: "its box does not open (tampered, replayed from another round, or sealed to another party)"}
		}
		maskShares[b.From], selfShares[b.From] = plain[:ShareSize], plain[ShareSize:]
	}
	if len(maskShares)+1 < c.cfg.Threshold {
		return Masked{}, fmt.Errorf("secagg: shares from %d parties and this one, below the threshold %d", len(maskShares), c.cfg.Threshold)
	}
	low := c.cfg.lowMask()
	for i, v := range x {
		if v > low {
			return Masked{}, fmt.Errorf("secagg: input value %d at %d is wider than %d bits", v, i, c.cfg.bits())
		}
	}
	y := make([]uint32, len(x))
	copy(y, x)
	addMask(y, c.self, +1)
	u2 := []uint64{c.id}
	for j := range maskShares {
		s, err := agree(c.mask, c.keys[j].Mask, c.cfg.Session, "mask", c.id, j)
		if err != nil {
			return Masked{}, &PartyError{Party: j, Reason: err.Error()}
		}
		addMask(y, s, pairSign(c.id, j))
		u2 = append(u2, j)
	}
	for i := range y {
		y[i] &= low
	}
	for j := range maskShares {
		c.maskShares[j], c.selfShares[j] = maskShares[j], selfShares[j]
	}
	slices.Sort(u2)
	c.u2 = u2
	c.step = 2
	return Masked{ID: c.id, Y: y}, nil
}

// pairSign is the sign with which party i adds the mask it shares with j:
// the lower of the two adds it, the higher subtracts it, so the pair's
// masks cancel in a sum.
func pairSign(i, j uint64) int {
	if i < j {
		return +1
	}
	return -1
}

// Unmask answers the server's list of survivors (the parties whose masked
// inputs it holds): this party's shares of every survivor's self-mask seed
// and of every other dropped party's mask key, never both for one party. It
// refuses a list below the threshold, one naming parties whose shares did
// not reach this party, and a second request.
func (c *Client) Unmask(survivors []uint64) (Reveal, error) {
	if c.step != 2 {
		return Reveal{}, fmt.Errorf("secagg: Unmask at step %d", c.step)
	}
	if len(survivors) < c.cfg.Threshold {
		return Reveal{}, fmt.Errorf("secagg: %d survivors, below the threshold %d", len(survivors), c.cfg.Threshold)
	}
	seen := map[uint64]bool{}
	for _, s := range survivors {
		if seen[s] {
			return Reveal{}, fmt.Errorf("secagg: party %d listed twice among the survivors", s)
		}
		seen[s] = true
		if !slices.Contains(c.u2, s) {
			return Reveal{}, fmt.Errorf("secagg: survivor %d shared no keys with this party", s)
		}
	}
	r := Reveal{ID: c.id}
	for _, j := range c.u2 {
		if seen[j] {
			r.Self = append(r.Self, Share{Of: j, Share: c.selfShares[j]})
		} else {
			r.Mask = append(r.Mask, Share{Of: j, Share: c.maskShares[j]})
		}
	}
	c.step = 3
	return r, nil
}
