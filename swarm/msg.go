package swarm

import (
	"encoding/binary"
	"fmt"
)

// Kind is a message's type; its value is the wire message kind.
type Kind uint8

const (
	// KindBitfield tells which pieces of a blob the sender holds (Bits,
	// piece i in bit 7-i%8 of byte i/8); All instead says it holds all;
	// Ask asks the receiver for its own bitfield of the blob.
	KindBitfield Kind = 0x40 + iota
	// KindHave tells that the sender now holds one more piece.
	KindHave
	// KindWantManifest asks for a blob's manifest.
	KindWantManifest
	// KindManifest carries a blob's encoded manifest in Data.
	KindManifest
	// KindRequest asks for one piece.
	KindRequest
	// KindPiece carries one piece in Data.
	KindPiece
	// KindReject refuses a request (Reason says why).
	KindReject
)

var kindNames = map[Kind]string{KindBitfield: "bitfield", KindHave: "have", KindWantManifest: "want-manifest",
	KindManifest: "manifest", KindRequest: "request", KindPiece: "piece", KindReject: "reject"}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("kind(%#x)", uint8(k))
}

// Reason is why a request was refused.
type Reason uint8

const (
	// Busy: the sender has uploaded this piece as often as it will while
	// others hold it; ask them.
	Busy Reason = 1 + iota
	// Missing: the sender does not hold the piece (or the manifest).
	Missing
)

func (r Reason) String() string {
	switch r {
	case Busy:
		return "busy"
	case Missing:
		return "missing"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

const (
	flagAll = 1 << iota
	flagAsk
)

// MaxPieces bounds a blob's pieces: 4 GiB at the default piece size.
const MaxPieces = 1 << 16

// Msg is one message between two peers about one blob.
type Msg struct {
	Kind   Kind
	Blob   ID
	Piece  int    // have, request, piece, reject
	All    bool   // bitfield: the sender holds every piece
	Ask    bool   // bitfield: reply with yours
	Bits   []byte // bitfield
	Data   []byte // piece bytes; manifest encoding
	Reason Reason // reject
}

// MaxBody is the largest message body Decode accepts, for readers to
// size-check frames before reading them.
const MaxBody = 32 + 4 + manifestHeader + 32*MaxPieces

// Encode returns the message's wire kind and body: the blob ID, then per
// kind: a flag byte (1: all, 2: ask) and the bitfield unless all; a uint32 piece; the data; a uint32
// piece and the data; a uint32 piece and a reason byte.
func (m Msg) Encode() (uint8, []byte) {
	b := make([]byte, 32, m.BodySize())
	copy(b, m.Blob[:])
	switch m.Kind {
	case KindBitfield:
		var flags byte
		if m.All {
			flags |= flagAll
		}
		if m.Ask {
			flags |= flagAsk
		}
		b = append(b, flags)
		if !m.All {
			b = append(b, m.Bits...)
		}
	case KindHave, KindRequest:
		b = binary.BigEndian.AppendUint32(b, uint32(m.Piece))
	case KindManifest:
		b = append(b, m.Data...)
	case KindPiece:
		b = append(binary.BigEndian.AppendUint32(b, uint32(m.Piece)), m.Data...)
	case KindReject:
		b = append(binary.BigEndian.AppendUint32(b, uint32(m.Piece)), byte(m.Reason))
	}
	return uint8(m.Kind), b
}

// BodySize is the length of the body Encode returns, without encoding it.
func (m Msg) BodySize() int {
	n := 32
	switch m.Kind {
	case KindBitfield:
		n++
		if !m.All {
			n += len(m.Bits)
		}
	case KindHave, KindRequest:
		n += 4
	case KindManifest:
		n += len(m.Data)
	case KindPiece:
		n += 4 + len(m.Data)
	case KindReject:
		n += 5
	}
	return n
}

// Decode parses a message body of the given kind. It refuses unknown
// kinds, short or overlong bodies, piece numbers of MaxPieces or more,
// bitfields longer than MaxPieces bits, pieces longer than MaxPieceSize
// and unknown reasons. Data and Bits alias body.
func Decode(kind uint8, body []byte) (Msg, error) {
	k := Kind(kind)
	if _, ok := kindNames[k]; !ok {
		return Msg{}, fmt.Errorf("swarm: unknown message kind %#x", kind)
	}
	if len(body) < 32 {
		return Msg{}, fmt.Errorf("swarm: %v message of %d bytes has no blob ID", k, len(body))
	}
	m := Msg{Kind: k}
	copy(m.Blob[:], body)
	rest := body[32:]
	piece := func() error {
		if len(rest) < 4 {
			return fmt.Errorf("swarm: %v message has no piece number", k)
		}
		p := binary.BigEndian.Uint32(rest)
		if p >= MaxPieces {
			return fmt.Errorf("swarm: %v message names piece %d, beyond the limit of %d", k, p, MaxPieces)
		}
		m.Piece, rest = int(p), rest[4:]
		return nil
	}
	exact := func(n int) error { return exactLen(k, rest, n) }
	var err error
	switch k {
	case KindBitfield:
		switch {
		case len(rest) < 1:
			err = fmt.Errorf("swarm: bitfield message has no flag byte")
		case rest[0]&^(flagAll|flagAsk) != 0:
			err = fmt.Errorf("swarm: bitfield flags %#x has unknown bits", rest[0])
		case rest[0]&flagAll != 0:
			m.All, m.Ask, err = true, rest[0]&flagAsk != 0, exactLen(k, rest[1:], 0)
		case len(rest)-1 > MaxPieces/8:
			err = fmt.Errorf("swarm: bitfield of %d bytes exceeds the limit of %d", len(rest)-1, MaxPieces/8)
		default:
			m.Ask, m.Bits = rest[0]&flagAsk != 0, rest[1:]
		}
	case KindHave, KindRequest:
		if err = piece(); err == nil {
			err = exact(0)
		}
	case KindWantManifest:
		err = exact(0)
	case KindManifest:
		if len(rest) > manifestHeader+32*MaxPieces {
			err = fmt.Errorf("swarm: manifest of %d bytes exceeds the limit of %d", len(rest), manifestHeader+32*MaxPieces)
		}
		m.Data = rest
	case KindPiece:
		if err = piece(); err == nil {
			if len(rest) == 0 || len(rest) > MaxPieceSize {
				err = fmt.Errorf("swarm: piece of %d bytes outside [1, %d]", len(rest), MaxPieceSize)
			}
			m.Data = rest
		}
	case KindReject:
		if err = piece(); err == nil {
			if err = exact(1); err == nil {
				m.Reason = Reason(rest[0])
				if m.Reason != Busy && m.Reason != Missing {
					err = fmt.Errorf("swarm: unknown reject reason %d", rest[0])
				}
			}
		}
	}
	if err != nil {
		return Msg{}, err
	}
	return m, nil
}

func exactLen(k Kind, rest []byte, n int) error {
	if len(rest) != n {
		return fmt.Errorf("swarm: %v message has %d trailing bytes, want %d", k, len(rest), n)
	}
	return nil
}
