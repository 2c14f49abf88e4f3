package wire

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math"
)

const (
	// ChunkSize is the chunk size WriteBlob uses.
	ChunkSize = 1 << 20
	// MaxChunkSize is the largest chunk size a reader accepts.
	MaxChunkSize = 16 << 20

	blobHeaderSize = 1 + 8 + sha256.Size + 4
	// hardMaxBlob caps what ReadBlob allocates whatever maxSize says, so
	// that a hostile size never reaches make's "len out of range" panic.
	hardMaxBlob = 1 << 46
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// EncodedBlobSize returns the number of bytes WriteBlob puts on the wire
// for a blob of size bytes (header, chunk lengths and CRCs included).
func EncodedBlobSize(size int64) int64 {
	chunks := (size + ChunkSize - 1) / ChunkSize
	return blobHeaderSize + size + 8*chunks
}

// WriteBlob writes data as a blob: a header carrying its size and SHA-256,
// then data in chunks of ChunkSize bytes, each with its length and CRC-32C.
// A zero-length blob is a header only. The SHA-256 is computed before
// anything is written. The only errors are those of w (wrapped); part of
// the blob may then have been written.
func WriteBlob(w io.Writer, data []byte) error {
	return writeBlob(w, data, ChunkSize)
}

// writeBlob is WriteBlob with a chosen chunk size (1 .. MaxChunkSize).
func writeBlob(w io.Writer, data []byte, chunk int) error {
	sum := sha256.Sum256(data)
	// Small fields are merged: the header with the first chunk length, and
	// each CRC with the next chunk length, so each chunk costs two writes.
	var buf [blobHeaderSize + 4]byte
	buf[0] = BlobMagic
	binary.BigEndian.PutUint64(buf[1:9], uint64(len(data)))
	copy(buf[9:9+sha256.Size], sum[:])
	binary.BigEndian.PutUint32(buf[9+sha256.Size:], uint32(chunk))
	pending := buf[:blobHeaderSize]
	for off := 0; off < len(data); {
		c := data[off : off+min(chunk, len(data)-off)]
		pending = binary.BigEndian.AppendUint32(pending, uint32(len(c)))
		if _, err := w.Write(pending); err != nil {
			return fmt.Errorf("wire: writing blob: %w", err)
		}
		if _, err := w.Write(c); err != nil {
			return fmt.Errorf("wire: writing blob: %w", err)
		}
		pending = binary.BigEndian.AppendUint32(buf[:0], crc32.Checksum(c, castagnoli))
		off += len(c)
	}
	if _, err := w.Write(pending); err != nil {
		return fmt.Errorf("wire: writing blob: %w", err)
	}
	return nil
}

type blobHeader struct {
	size  uint64
	sum   [sha256.Size]byte
	chunk int
}

// ReadBlob reads one blob written by WriteBlob and returns its bytes.
// The declared size is checked against maxSize before anything is
// allocated; every chunk's length and CRC-32C are checked as it arrives,
// and the SHA-256 of the whole blob at the end.
//
// Errors:
//   - io.EOF itself if r ends cleanly before the first byte;
//   - a *RemoteError if the peer sent a refusal with WriteError instead
//     of a blob; any other control message is an error too;
//   - a bad magic byte, or a chunk size outside 1 .. MaxChunkSize;
//   - a size above maxSize ("wire: blob of N bytes exceeds the limit of M");
//   - "wire: chunk I: length L, want W" when a chunk's length field lies,
//     "wire: chunk I: CRC mismatch" for a corrupt chunk (I counts from 0);
//   - "wire: blob hash mismatch" if the chunks pass but the SHA-256 does not;
//   - truncation anywhere inside the blob: an error wrapping
//     io.ErrUnexpectedEOF; any other error from r, wrapped.
func ReadBlob(r io.Reader, maxSize int64) ([]byte, error) {
	h, err := readBlobHeader(r)
	if err != nil {
		return nil, err
	}
	limit := min(max(maxSize, 0), hardMaxBlob)
	if h.size > uint64(limit) || h.size > math.MaxInt {
		return nil, fmt.Errorf("wire: blob of %d bytes exceeds the limit of %d", h.size, limit)
	}
	// Memory grows with the data that actually arrives, chunk by chunk,
	// so a header that promises a large blob costs its sender the bytes.
	data := make([]byte, 0, min(int(h.size), h.chunk))
	err = readChunks(r, &h, int(h.size), func(off, n int) []byte {
		data = append(data, make([]byte, n)...)
		return data[off : off+n]
	})
	if err != nil {
		return nil, err
	}
	return data, nil
}

// ReadBlobInto reads one blob whose size the caller knows into dst, without
// allocating. The header's size must equal len(dst); otherwise an error is
// returned before any of the body is read. It fails in the same ways as
// ReadBlob; after an error, dst may have been partly overwritten.
func ReadBlobInto(r io.Reader, dst []byte) error {
	h, err := readBlobHeader(r)
	if err != nil {
		return err
	}
	if h.size != uint64(len(dst)) {
		return fmt.Errorf("wire: blob of %d bytes does not match the expected size of %d", h.size, len(dst))
	}
	return readChunks(r, &h, len(dst), func(off, n int) []byte { return dst[off : off+n] })
}

func readBlobHeader(r io.Reader) (blobHeader, error) {
	var h blobHeader
	var buf [blobHeaderSize]byte
	if err := readFirst(r, buf[:1], "blob"); err != nil {
		return h, err
	}
	switch buf[0] {
	case BlobMagic:
	case MsgMagic:
		return h, readRefusal(r)
	default:
		return h, badMagic(buf[0], BlobMagic, "blob")
	}
	if err := readFull(r, buf[1:], "blob header"); err != nil {
		return h, err
	}
	h.size = binary.BigEndian.Uint64(buf[1:9])
	copy(h.sum[:], buf[9:9+sha256.Size])
	chunk := binary.BigEndian.Uint32(buf[9+sha256.Size:])
	if chunk < 1 || chunk > MaxChunkSize {
		return h, fmt.Errorf("wire: blob chunk size %d outside 1..%d", chunk, MaxChunkSize)
	}
	h.chunk = int(chunk)
	return h, nil
}

// readRefusal reads the rest of a control message found where a blob was
// expected (its magic byte already consumed) and returns it as an error.
func readRefusal(r io.Reader) error {
	var hdr [msgHeaderSize - 1]byte
	if err := readFull(r, hdr[:], "message header"); err != nil {
		return err
	}
	if hdr[0] != KindError {
		return fmt.Errorf("wire: got control message kind 0x%02x where a blob was expected", hdr[0])
	}
	_, body, err := readMsgBody(r, hdr[0], binary.BigEndian.Uint32(hdr[1:]), MaxErrorText)
	if err != nil {
		return err
	}
	return newRemoteError(body)
}

// readChunks reads the chunks of a blob of size bytes, each into the
// slice next(offset, length) returns, checking lengths, CRCs and the hash.
func readChunks(r io.Reader, h *blobHeader, size int, next func(off, n int) []byte) error {
	d := sha256.New()
	var field [4]byte
	for i, off := 0, 0; off < size; i++ {
		n := min(h.chunk, size-off)
		if got, err := io.ReadFull(r, field[:]); err != nil {
			return readErr(fmt.Sprintf("chunk %d: length", i), got, len(field), err)
		}
		if got := binary.BigEndian.Uint32(field[:]); uint64(got) != uint64(n) {
			return fmt.Errorf("wire: chunk %d: length %d, want %d", i, got, n)
		}
		c := next(off, n)
		if got, err := io.ReadFull(r, c); err != nil {
			return readErr(fmt.Sprintf("chunk %d: data", i), got, n, err)
		}
		if got, err := io.ReadFull(r, field[:]); err != nil {
			return readErr(fmt.Sprintf("chunk %d: CRC", i), got, len(field), err)
		}
		if crc32.Checksum(c, castagnoli) != binary.BigEndian.Uint32(field[:]) {
			return fmt.Errorf("wire: chunk %d: CRC mismatch", i)
		}
		d.Write(c)
		off += n
	}
	var sum [sha256.Size]byte
	if [sha256.Size]byte(d.Sum(sum[:0])) != h.sum {
		return fmt.Errorf("wire: blob hash mismatch")
	}
	return nil
}
