package swarm

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// ID names a blob: the SHA-256 of its manifest's encoding, so that a
// blob's size, piece size and every piece's hash follow from its ID and
// any piece can be checked on arrival, before the rest of the blob.
type ID [32]byte

// String is the ID's first 8 bytes in hex, for logs.
func (id ID) String() string { return hex.EncodeToString(id[:8]) }

// Manifest describes a blob: its size, the size of its pieces (the last
// one may be shorter) and each piece's SHA-256.
type Manifest struct {
	Size      int64
	PieceSize int
	Pieces    [][32]byte
}

// Limits bound what a node accepts from peers.
const (
	// MinPieceSize and MaxPieceSize bound a manifest's piece size.
	MinPieceSize = 1 << 10
	MaxPieceSize = 1 << 20
	// DefaultPieceSize is the piece size NewManifest callers use unless
	// they have a reason not to.
	DefaultPieceSize = 64 << 10
	manifestHeader   = 8 + 4
)

// NewManifest cuts data into pieces of pieceSize bytes and hashes them. It
// fails if pieceSize is outside [MinPieceSize, MaxPieceSize] or data is
// empty.
func NewManifest(data []byte, pieceSize int) (Manifest, error) {
	if pieceSize < MinPieceSize || pieceSize > MaxPieceSize {
		return Manifest{}, fmt.Errorf("swarm: piece size %d outside [%d, %d]", pieceSize, MinPieceSize, MaxPieceSize)
	}
	if len(data) == 0 {
		return Manifest{}, errors.New("swarm: empty blob")
	}
	m := Manifest{Size: int64(len(data)), PieceSize: pieceSize}
	for off := 0; off < len(data); off += pieceSize {
		m.Pieces = append(m.Pieces, sha256.Sum256(data[off:min(off+pieceSize, len(data))]))
	}
	return m, nil
}

// NumPieces is how many pieces a blob of size bytes has.
func NumPieces(size int64, pieceSize int) int {
	return int((size + int64(pieceSize) - 1) / int64(pieceSize))
}

// PieceLen is the length of piece i.
func (m Manifest) PieceLen(i int) int {
	return int(min(int64(m.PieceSize), m.Size-int64(i)*int64(m.PieceSize)))
}

// MarshalBinary encodes the manifest: size (uint64), piece size (uint32),
// then the piece hashes, big-endian.
func (m Manifest) MarshalBinary() ([]byte, error) {
	b := make([]byte, manifestHeader, manifestHeader+32*len(m.Pieces))
	binary.BigEndian.PutUint64(b, uint64(m.Size))
	binary.BigEndian.PutUint32(b[8:], uint32(m.PieceSize))
	for _, h := range m.Pieces {
		b = append(b, h[:]...)
	}
	return b, nil
}

// ID is the SHA-256 of the manifest's encoding.
func (m Manifest) ID() ID {
	b, _ := m.MarshalBinary()
	return sha256.Sum256(b)
}

// DecodeManifest parses an encoded manifest, refusing one whose hash is
// not want, whose piece size is out of bounds, whose blob is larger than
// maxSize, or whose piece count does not match its size.
func DecodeManifest(b []byte, want ID, maxSize int64) (Manifest, error) {
	if len(b) < manifestHeader {
		return Manifest{}, fmt.Errorf("swarm: manifest of %d bytes is shorter than its %d-byte header", len(b), manifestHeader)
	}
	if ID(sha256.Sum256(b)) != want {
		return Manifest{}, fmt.Errorf("swarm: manifest does not hash to blob %s", want)
	}
	size := binary.BigEndian.Uint64(b)
	ps := binary.BigEndian.Uint32(b[8:])
	if ps < MinPieceSize || ps > MaxPieceSize {
		return Manifest{}, fmt.Errorf("swarm: manifest piece size %d outside [%d, %d]", ps, MinPieceSize, MaxPieceSize)
	}
	if size == 0 || size > uint64(maxSize) {
		return Manifest{}, fmt.Errorf("swarm: manifest blob size %d outside [1, %d]", size, maxSize)
	}
	n := NumPieces(int64(size), int(ps))
	if len(b) != manifestHeader+32*n {
		return Manifest{}, fmt.Errorf("swarm: manifest of a %d-byte blob in %d-byte pieces has %d bytes, want %d", size, ps, len(b), manifestHeader+32*n)
	}
	m := Manifest{Size: int64(size), PieceSize: int(ps), Pieces: make([][32]byte, n)}
	for i := range m.Pieces {
		copy(m.Pieces[i][:], b[manifestHeader+32*i:])
	}
	return m, nil
}
