package secagg

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// The messages' bytes on the wire, big-endian, every length checked
// against the round before anything is allocated:
//
//	Keys    id u64 | enc [32] | mask [32]
//	Box     from u64 | to u64 | sealed [2·ShareSize+16]
//	Masked  id u64 | values, Bits bits each, little-endian bit order, padded to a byte
//	Reveal  id u64 | nSelf u32 | nMask u32 | (of u64 | share [ShareSize]) × (nSelf+nMask)

// KeysSize, BoxSize and ShareEntrySize are the fixed message sizes.
const (
	KeysSize       = 8 + 32 + 32
	BoxSize        = 16 + 2*ShareSize + chacha20poly1305.Overhead
	ShareEntrySize = 8 + ShareSize
)

// Marshal returns k's bytes.
func (k Keys) Marshal() []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, KeysSize), k.ID)
	return append(append(b, k.Enc[:]...), k.Mask[:]...)
}

// ParseKeys reads Keys; it fails on any other length.
func ParseKeys(b []byte) (Keys, error) {
	var k Keys
	if len(b) != KeysSize {
		return k, fmt.Errorf("secagg: keys of %d bytes, expected %d", len(b), KeysSize)
	}
	k.ID = binary.BigEndian.Uint64(b)
	copy(k.Enc[:], b[8:40])
	copy(k.Mask[:], b[40:])
	return k, nil
}

// Marshal returns x's bytes.
func (x Box) Marshal() []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, BoxSize), x.From)
	b = binary.BigEndian.AppendUint64(b, x.To)
	return append(b, x.Sealed...)
}

// ParseBox reads a Box; it fails on any other length.
func ParseBox(b []byte) (Box, error) {
	if len(b) != BoxSize {
		return Box{}, fmt.Errorf("secagg: a box of %d bytes, expected %d", len(b), BoxSize)
	}
	return Box{From: binary.BigEndian.Uint64(b), To: binary.BigEndian.Uint64(b[8:]), Sealed: append([]byte(nil), b[16:]...)}, nil
}

// MaskedSize is the size of a masked input in the round cfg.
func MaskedSize(cfg Config) int { return 8 + (cfg.Dim*cfg.bits()+7)/8 }

// Marshal returns m's bytes in the round cfg, each value in cfg's Bits
// bits (higher bits of a value are dropped: they are zero in a masked
// input the round accepts).
func (m Masked) Marshal(cfg Config) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, MaskedSize(cfg)), m.ID)
	bits := cfg.bits()
	var acc uint64
	n := 0
	for _, v := range m.Y {
		acc |= uint64(v&cfg.lowMask()) << n
		n += bits
		for n >= 8 {
			b = append(b, byte(acc))
			acc >>= 8
			n -= 8
		}
	}
	if n > 0 {
		b = append(b, byte(acc))
	}
	return b
}

// ParseMasked reads a masked input of the round cfg; it fails on any
// length but MaskedSize(cfg) and on padding bits that are not zero.
func ParseMasked(cfg Config, b []byte) (Masked, error) {
	if err := cfg.Validate(); err != nil {
		return Masked{}, err
	}
	if len(b) != MaskedSize(cfg) {
		return Masked{}, fmt.Errorf("secagg: a masked input of %d bytes, expected %d", len(b), MaskedSize(cfg))
	}
	m := Masked{ID: binary.BigEndian.Uint64(b), Y: make([]uint32, cfg.Dim)}
	bits, low := cfg.bits(), uint64(cfg.lowMask())
	var acc uint64
	n, at := 0, 8
	for i := range m.Y {
		for n < bits {
			acc |= uint64(b[at]) << n
			at++
			n += 8
		}
		m.Y[i] = uint32(acc & low)
		acc >>= bits
		n -= bits
	}
	if acc != 0 {
		return Masked{}, errors.New("secagg: a masked input with padding bits set")
	}
	return m, nil
}

// Marshal returns r's bytes.
func (r Reveal) Marshal() []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 16+ShareEntrySize*(len(r.Self)+len(r.Mask))), r.ID)
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Self)))
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Mask)))
	for _, list := range [][]Share{r.Self, r.Mask} {
		for _, s := range list {
			b = binary.BigEndian.AppendUint64(b, s.Of)
			b = append(b, s.Share...)
		}
	}
	return b
}

// ParseReveal reads a Reveal; it fails where the counts exceed a cohort
// or do not match the length.
func ParseReveal(b []byte) (Reveal, error) {
	if len(b) < 16 {
		return Reveal{}, fmt.Errorf("secagg: a reveal of %d bytes", len(b))
	}
	r := Reveal{ID: binary.BigEndian.Uint64(b)}
	ns, nm := binary.BigEndian.Uint32(b[8:]), binary.BigEndian.Uint32(b[12:])
	if uint64(ns)+uint64(nm) > MaxParties {
		return Reveal{}, fmt.Errorf("secagg: a reveal of %d shares, more than a cohort holds", uint64(ns)+uint64(nm))
	}
	if want := 16 + ShareEntrySize*int(ns+nm); len(b) != want {
		return Reveal{}, fmt.Errorf("secagg: a reveal of %d bytes for %d shares, expected %d", len(b), ns+nm, want)
	}
	at := 16
	read := func(n uint32) []Share {
		if n == 0 {
			return nil
		}
		out := make([]Share, n)
		for i := range out {
			out[i] = Share{Of: binary.BigEndian.Uint64(b[at:]), Share: append([]byte(nil), b[at+8:at+ShareEntrySize]...)}
			at += ShareEntrySize
		}
		return out
	}
	r.Self = read(ns)
	r.Mask = read(nm)
	return r, nil
}
