// Package wire implements the framing Cairn nodes use on their streams
// (go-libp2p streams, or any io.ReadWriter).
//
// Two frame types share a stream:
//
// Control messages (WriteMsg, ReadMsg, WriteJSON, ReadJSON, WriteError):
//
//	magic   1 byte   0xC7 (MsgMagic)
//	kind    1 byte   application-defined; 0xFF (KindError) is a refusal
//	length  4 bytes  uint32 big-endian, body length
//	body    length bytes
//
// Bulk blobs (WriteBlob, ReadBlob, ReadBlobInto):
//
//	magic   1 byte    0xC8 (BlobMagic)
//	size    8 bytes   uint64 big-endian, total blob size
//	sha256  32 bytes  SHA-256 of the whole blob
//	chunk   4 bytes   uint32 big-endian chunk size, 1 .. MaxChunkSize
//	then ceil(size/chunk) chunks, each:
//	  length  4 bytes  uint32 big-endian, must equal min(chunk, remaining)
//	  data    length bytes
//	  crc     4 bytes  uint32 big-endian CRC-32C (Castagnoli) of data
//
// Peers are untrusted. Readers check every length against the caller's
// limit before allocating, and malformed input yields an error, never a
// panic. Readers consume exactly the bytes of one frame and never read
// ahead, so frames can follow each other on an unbuffered stream. After any
// error other than a clean io.EOF the stream position is unspecified and the
// stream should be closed or reset. All errors produced by this package are
// one line and start with "wire: ".
//
// Counter, Count and CountStream count the bytes that cross a stream;
// Limiter, Limit and LimitStream throttle a stream to emulate a slow link.
package wire
