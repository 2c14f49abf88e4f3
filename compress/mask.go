package compress

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// The random-mask codec family "mask:K/CHUNK:BITS": K positions of every
// chunk of CHUNK, drawn from a seed that the payload carries, each sent as
// 1 or 2 bits like top-k's values, with no indices. See the package
// documentation.

const (
	codecMask  = 4
	headerMask = 25

	// DefaultMaskK is K of the bare name "mask": a quarter of each chunk
	// of DefaultTopKChunk, about the bytes of topk:256/4096:2.
	DefaultMaskK = 1024
)

// maskName is the canonical name of the mask codec with these parameters.
func maskName(k, chunk, nbits int) Codec { return sparseName("mask", k, chunk, nbits) }

// isMaskName reports whether s names the mask family (valid or not).
func isMaskName(s string) bool { return isFamilyName(s, "mask") }

// parseMask parses a name for which isMaskName holds.
func parseMask(s string) (k, chunk, nbits int, err error) {
	return parseSparse(s, "mask", DefaultMaskK)
}

// MaskCodec returns the canonical name of the random-mask codec that
// sends k values of every chunk consecutive ones, at positions drawn from
// the encoder's mask seed, with nbits-bit values, or an error if the
// parameters are out of range (those of TopKCodec).
func MaskCodec(k, chunk, nbits int) (Codec, error) {
	if err := checkTopK(int64(k), int64(chunk), int64(nbits)); err != nil {
		return "", fmt.Errorf("compress: mask: %v", err)
	}
	return maskName(k, chunk, nbits), nil
}

// Masked reports whether c names a valid random-mask codec.
func (c Codec) Masked() bool {
	if !isMaskName(string(c)) {
		return false
	}
	_, _, _, err := parseMask(string(c))
	return err == nil
}

// SetMaskSeed sets the seed from which the next Encode of a random-mask
// codec draws the positions it sends; encoders of other codecs ignore it.
// Encoders that send on the same seed send the same positions, so that
// their sum has no more entries than each of them.
func (e *Encoder) SetMaskSeed(seed uint64) { e.seed = seed }

// MaskSeed returns the mask seed a random-mask payload was encoded with.
// It reads only the header, and fails if the payload's header is invalid
// or its codec is not a random mask.
func MaskSeed(payload []byte) (uint64, error) {
	h, err := parseHeader(payload)
	if err != nil {
		return 0, err
	}
	if !h.mask {
		return 0, fmt.Errorf("compress: payload is %s, not a random-mask codec", h.name())
	}
	return h.seed, nil
}

// maskLayout is the section offsets of a mask payload, which follow from
// n, k, chunk and bits alone.
type maskLayout struct {
	m       int64 // chunks
	total   int64 // values sent
	nlev    int   // levels per chunk
	codeOff int64 // start of the code section
	size    int64 // payload length
}

func layoutMask(n int64, k, chunk, nbits int) maskLayout {
	c, kk := int64(chunk), int64(k)
	l := maskLayout{m: n / c, total: n / c * kk, nlev: nbits}
	if rem := n % c; rem > 0 {
		l.m++
		l.total += min(kk, rem)
	}
	l.codeOff = headerMask + 4*int64(l.nlev)*l.m
	l.size = l.codeOff + (l.total*int64(nbits)+7)/8
	return l
}

// maskSampler draws the positions of one chunk: need of the clen
// positions, in increasing order, each subset equally likely (selection
// sampling, Knuth's Algorithm S, with integer draws from a SplitMix64
// stream keyed by the seed and the chunk's number).
type maskSampler struct {
	state   uint64
	j, clen int // next position to consider, chunk length
	need    int // positions still to draw
}

func (s *maskSampler) start(seed uint64, chunk, clen, k int) {
	*s = maskSampler{state: seed ^ mix64(uint64(chunk)+0x6a09e667f3bcc909), clen: clen, need: min(k, clen)}
}

// mix64 is SplitMix64's finaliser.
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// next returns the chunk's next position; ok is false when all are drawn.
func (s *maskSampler) next() (j int, ok bool) {
	if s.need == 0 {
		return 0, false
	}
	for {
		j, left := s.j, s.clen-s.j
		s.j++
		take := s.need == left
		if !take {
			// Take position j with probability need/left: the high word
			// of a uniform 64-bit draw times left is uniform on [0, left)
			// up to a bias below left/2^64.
			s.state += 0x9e3779b97f4a7c15
			hi, _ := bits.Mul64(mix64(s.state), uint64(left))
			take = hi < uint64(s.need)
		}
		if take {
			s.need--
			return j, true
		}
	}
}

func (e *Encoder) encodeMask(x []float32) ([]byte, error) {
	if err := e.checkFeedback(x); err != nil {
		return nil, err
	}
	r := e.residual
	n, k, chunk, nbits := len(x), e.k, e.chunk, e.bits
	lay := layoutMask(int64(n), k, chunk, nbits)
	out := make([]byte, lay.size)
	putSparseHeader(out, codecMask, n, k, chunk, nbits)
	binary.LittleEndian.PutUint64(out[17:], e.seed)
	levels := out[headerMask:lay.codeOff]
	cw := bitWriter{buf: out[lay.codeOff:]}
	var s maskSampler
	for c := range int(lay.m) {
		lo := c * chunk
		hi := min(lo+chunk, n)
		y, a := e.loadChunk(x[lo:hi], r[lo:hi])
		e.sel = e.sel[:0]
		s.start(e.seed, c, hi-lo, k)
		for j, ok := s.next(); ok; j, ok = s.next() {
			e.sel = append(e.sel, int32(j))
		}
		quantizeChosen(y, a, e.sel, nbits, levels[4*lay.nlev*c:], &cw)
		copy(r[lo:hi], y)
	}
	cw.flush()
	if int64(cw.pos) != lay.size-lay.codeOff {
		panic("compress: encode: mask layout mismatch")
	}
	return out, nil
}

// maskIter walks the entries of a mask payload body in increasing index
// order, validating as it goes.
type maskIter struct {
	n, k, chunk, nbits int
	m                  int
	seed               uint64
	levels             []byte
	cr                 bitReader
	c                  int // next chunk to start
	base               int // current chunk's first index
	s                  maskSampler
	lvl                [2]float32
}

func (it *maskIter) next() (i int, v float32, ok bool, err error) {
	j, more := it.s.next()
	for !more {
		if it.c == it.m {
			return 0, 0, false, nil
		}
		c := it.c
		it.c++
		it.base = c * it.chunk
		it.s.start(it.seed, c, min(it.chunk, it.n-it.base), it.k)
		if it.lvl, err = readLevels(it.levels, c, it.nbits, "mask"); err != nil {
			return 0, 0, false, err
		}
		j, more = it.s.next()
	}
	code, okCode := it.cr.read(uint(it.nbits))
	if !okCode { // the length check gives the code section exactly T codes
		return 0, 0, false, fmt.Errorf("compress: mask code section is truncated")
	}
	v = it.lvl[code&1]
	if code>>(it.nbits-1) != 0 {
		v = -v
	}
	return it.base + j, v, true, nil
}

func (d *decoder) mask(body []byte, h header, out []float32, weight float32, add bool) error {
	n := len(out)
	k, chunk, nbits := int(h.k), int(h.chunk), int(h.bits)
	lay := layoutMask(int64(n), k, chunk, nbits)
	want := uint64(lay.size - headerMask)
	if uint64(len(body)) < want {
		return fmt.Errorf("compress: mask body is %d bytes, want %d: truncated", len(body), want)
	}
	if uint64(len(body)) > want {
		return fmt.Errorf("compress: mask body is %d bytes, want %d: trailing data", len(body), want)
	}
	codeOff := lay.codeOff - headerMask
	it := &d.maskIt
	*it = maskIter{
		n: n, k: k, chunk: chunk, nbits: nbits, m: int(lay.m), seed: h.seed,
		levels: body[:codeOff],
		cr:     bitReader{buf: body[codeOff:]},
	}
	if err := d.fill(it, out, weight, add); err != nil {
		return err
	}
	if _, padOK := it.cr.rest(); !padOK {
		return fmt.Errorf("compress: mask code section has non-zero padding bits")
	}
	return nil
}
