package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func encodeBlob(t testing.TB, data []byte, chunk int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := writeBlob(&b, data, chunk); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// chunkOffset returns the offset of chunk i's length field in an encoding
// with the given chunk size.
func chunkOffset(i, chunk int) int { return blobHeaderSize + i*(chunk+8) }

func TestBlobRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"one byte", 1},
		{"small", 1000},
		{"exactly one chunk", ChunkSize},
		{"chunk+1", ChunkSize + 1},
		{"several MB", 5*ChunkSize + 12345},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := randBytes(tt.size, uint64(tt.size))
			var b bytes.Buffer
			if err := WriteBlob(&b, data); err != nil {
				t.Fatal(err)
			}
			enc := b.Bytes()
			if int64(len(enc)) != EncodedBlobSize(int64(tt.size)) {
				t.Fatalf("encoded %d bytes, EncodedBlobSize says %d", len(enc), EncodedBlobSize(int64(tt.size)))
			}
			got, err := ReadBlob(bytes.NewReader(enc), int64(tt.size))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("ReadBlob returned different bytes")
			}
			dst := make([]byte, tt.size)
			if err := ReadBlobInto(iotest.HalfReader(bytes.NewReader(enc)), dst); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dst, data) {
				t.Fatal("ReadBlobInto returned different bytes")
			}
		})
	}
}

func TestBlobOverPipe(t *testing.T) {
	// Writer and reader run concurrently, with a control message before
	// and after the blob on the same stream.
	data := randBytes(3*ChunkSize+7, 3)
	pr, pw := io.Pipe()
	go func() {
		err := WriteMsg(pw, 1, []byte("blob follows"))
		if err == nil {
			err = WriteBlob(pw, data)
		}
		if err == nil {
			err = WriteMsg(pw, 2, nil)
		}
		pw.CloseWithError(err)
	}()
	if _, _, err := ReadMsg(pr, 100); err != nil {
		t.Fatal(err)
	}
	got, err := ReadBlob(pr, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("different bytes")
	}
	if kind, _, err := ReadMsg(pr, 100); err != nil || kind != 2 {
		t.Fatalf("trailing message: kind %d, %v", kind, err)
	}
	if _, err := ReadBlob(pr, 10); err != io.EOF {
		t.Fatalf("at end got %v, want io.EOF", err)
	}
}

func TestSmallChunks(t *testing.T) {
	for _, chunk := range []int{1, 2, 7, 64, MaxChunkSize} {
		for _, size := range []int{0, 1, 6, 7, 8, 100} {
			data := randBytes(size, uint64(chunk*1000+size))
			got, err := ReadBlob(bytes.NewReader(encodeBlob(t, data, chunk)), 100)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("chunk %d, size %d: %v", chunk, size, err)
			}
		}
	}
}

func TestReadBlobRejects(t *testing.T) {
	const chunk = 10
	data := randBytes(45, 9) // chunks 0..4, the last of 5 bytes
	valid := encodeBlob(t, data, chunk)
	mod := func(f func(b []byte) []byte) []byte {
		return f(bytes.Clone(valid))
	}
	put32 := func(off int, v uint32) []byte {
		return mod(func(b []byte) []byte { binary.BigEndian.PutUint32(b[off:], v); return b })
	}
	tests := []struct {
		name    string
		in      []byte
		maxSize int64
		want    string
	}{
		{"bad magic", mod(func(b []byte) []byte { b[0] = 0x42; return b }), 100,
			"wire: bad magic byte 0x42, want 0xc8 (blob)"},
		{"oversize", valid, 44,
			"wire: blob of 45 bytes exceeds the limit of 44"},
		{"negative limit", valid, -5,
			"wire: blob of 45 bytes exceeds the limit of 0"},
		{"huge declared size", mod(func(b []byte) []byte { binary.BigEndian.PutUint64(b[1:], 5000000000); return b }), 1 << 30,
			"wire: blob of 5000000000 bytes exceeds the limit of 1073741824"},
		{"size beyond hard cap", mod(func(b []byte) []byte { binary.BigEndian.PutUint64(b[1:], 1<<63); return b }), 1<<63 - 1,
			"wire: blob of 9223372036854775808 bytes exceeds the limit of 70368744177664"},
		{"chunk size zero", put32(41, 0), 100,
			"wire: blob chunk size 0 outside 1..16777216"},
		{"chunk size too big", put32(41, MaxChunkSize+1), 100,
			"wire: blob chunk size 16777217 outside 1..16777216"},
		{"first chunk length lies", put32(chunkOffset(0, chunk), 9), 100,
			"wire: chunk 0: length 9, want 10"},
		{"chunk length lies high", put32(chunkOffset(2, chunk), 0xFFFFFFFF), 100,
			"wire: chunk 2: length 4294967295, want 10"},
		{"last chunk length lies", put32(chunkOffset(4, chunk), 10), 100,
			"wire: chunk 4: length 10, want 5"},
		{"header chunk size disagrees", put32(41, 9), 100,
			"wire: chunk 0: length 10, want 9"},
		{"flipped bit in chunk 3", mod(func(b []byte) []byte { b[chunkOffset(3, chunk)+4+6] ^= 0x10; return b }), 100,
			"wire: chunk 3: CRC mismatch"},
		{"flipped bit in chunk 0", mod(func(b []byte) []byte { b[chunkOffset(0, chunk)+4] ^= 1; return b }), 100,
			"wire: chunk 0: CRC mismatch"},
		{"flipped bit in CRC of chunk 4", mod(func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b }), 100,
			"wire: chunk 4: CRC mismatch"},
		{"bad hash", mod(func(b []byte) []byte { b[9] ^= 1; return b }), 100,
			"wire: blob hash mismatch"},
		{"other message", encodeMsg(t, 3, []byte("hi")), 100,
			"wire: got control message kind 0x03 where a blob was expected"},
		{"long refusal", encodeMsg(t, KindError, make([]byte, MaxErrorText+1)), 100,
			"wire: message body of 1025 bytes exceeds the limit of 1024"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadBlob(bytes.NewReader(tt.in), tt.maxSize)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("got %v\nwant %s", err, tt.want)
			}
			if tt.maxSize < 45 {
				return
			}
			want := tt.want
			if strings.HasPrefix(want, "wire: blob of") {
				want = want[:strings.Index(want, " exceeds")] + " does not match the expected size of 45"
			}
			err = ReadBlobInto(bytes.NewReader(tt.in), make([]byte, len(data)))
			if err == nil || err.Error() != want {
				t.Fatalf("ReadBlobInto: got %v\nwant %s", err, want)
			}
		})
	}
}

// TestBlobHashMismatchWithValidCRCs replaces the data of a chunk and
// recomputes its CRC, so only the final SHA-256 can catch it.
func TestBlobHashMismatchWithValidCRCs(t *testing.T) {
	const chunk = 16
	data := randBytes(100, 4)
	enc := encodeBlob(t, data, chunk)
	off := chunkOffset(2, chunk) + 4
	c := enc[off : off+chunk]
	c[0] ^= 0xFF
	binary.BigEndian.PutUint32(enc[off+chunk:], crc32.Checksum(c, crc32.MakeTable(crc32.Castagnoli)))
	_, err := ReadBlob(bytes.NewReader(enc), 100)
	if err == nil || err.Error() != "wire: blob hash mismatch" {
		t.Fatalf("got %v", err)
	}
}

func TestReadBlobTruncatedEverywhere(t *testing.T) {
	for _, size := range []int{0, 1, 23} {
		valid := encodeBlob(t, randBytes(size, 5), 4)
		for i := range len(valid) {
			_, err := ReadBlob(bytes.NewReader(valid[:i]), 100)
			switch {
			case i == 0 && err != io.EOF:
				t.Fatalf("size %d, empty input: got %v, want io.EOF", size, err)
			case i > 0 && !errors.Is(err, io.ErrUnexpectedEOF):
				t.Fatalf("size %d, cut at %d: got %v, want io.ErrUnexpectedEOF", size, i, err)
			case i > 0 && (!strings.HasPrefix(err.Error(), "wire: ") || strings.Contains(err.Error(), "\n")):
				t.Fatalf("size %d, cut at %d: bad error text %q", size, i, err)
			}
			err2 := ReadBlobInto(bytes.NewReader(valid[:i]), make([]byte, size))
			if (i == 0 && err2 != io.EOF) || (i > 0 && err2.Error() != err.Error()) {
				t.Fatalf("size %d, cut at %d: ReadBlobInto got %v, ReadBlob %v", size, i, err2, err)
			}
		}
	}
}

func TestReadBlobTruncationMessages(t *testing.T) {
	valid := encodeBlob(t, randBytes(20, 6), 8) // chunks of 8, 8, 4
	tests := []struct {
		cut  int
		want string
	}{
		{10, "wire: blob header truncated after 9 of 44 bytes: unexpected EOF"},
		{chunkOffset(1, 8) + 2, "wire: chunk 1: length truncated after 2 of 4 bytes: unexpected EOF"},
		{chunkOffset(1, 8) + 4 + 3, "wire: chunk 1: data truncated after 3 of 8 bytes: unexpected EOF"},
		{chunkOffset(2, 8) + 4 + 4, "wire: chunk 2: CRC truncated after 0 of 4 bytes: unexpected EOF"},
	}
	for _, tt := range tests {
		_, err := ReadBlob(bytes.NewReader(valid[:tt.cut]), 100)
		if err == nil || err.Error() != tt.want {
			t.Errorf("cut at %d: got %v\nwant %s", tt.cut, err, tt.want)
		}
	}
}

func TestReadBlobIntoSizeMismatch(t *testing.T) {
	valid := encodeBlob(t, randBytes(30, 7), 8)
	for _, n := range []int{0, 29, 31} {
		r := bytes.NewReader(valid)
		err := ReadBlobInto(r, make([]byte, n))
		want := "wire: blob of 30 bytes does not match the expected size of"
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("dst %d: got %v", n, err)
		}
		// Only the header was consumed.
		if read := len(valid) - r.Len(); read != blobHeaderSize {
			t.Fatalf("dst %d: read %d bytes before failing, want %d", n, read, blobHeaderSize)
		}
	}
}

func TestBlobRemoteError(t *testing.T) {
	var b bytes.Buffer
	if err := WriteError(&b, "no such tensor"); err != nil {
		t.Fatal(err)
	}
	enc := b.Bytes()
	var re *RemoteError
	if _, err := ReadBlob(bytes.NewReader(enc), 100); !errors.As(err, &re) || re.Msg != "no such tensor" {
		t.Fatalf("ReadBlob: got %v", err)
	}
	if err := ReadBlobInto(bytes.NewReader(enc), make([]byte, 10)); !errors.As(err, &re) {
		t.Fatalf("ReadBlobInto: got %v", err)
	}
}

func TestReadBlobReaderError(t *testing.T) {
	boom := errors.New("boom")
	valid := encodeBlob(t, randBytes(20, 8), 8)
	for _, cut := range []int{0, 1, 50, 60, len(valid) - 1} {
		r := io.MultiReader(bytes.NewReader(valid[:cut]), iotest.ErrReader(boom))
		if _, err := ReadBlob(r, 100); !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "wire: reading ") {
			t.Fatalf("cut %d: got %v", cut, err)
		}
	}
}

func TestEncodedBlobSize(t *testing.T) {
	for _, n := range []int64{0, 1, ChunkSize, ChunkSize + 1} {
		want := int64(len(encodeBlob(t, make([]byte, n), ChunkSize)))
		if got := EncodedBlobSize(n); got != want {
			t.Errorf("EncodedBlobSize(%d) = %d, want %d", n, got, want)
		}
	}
}

func BenchmarkBlob(b *testing.B) {
	data := randBytes(8<<20, 1)
	var buf bytes.Buffer
	buf.Grow(int(EncodedBlobSize(int64(len(data)))))
	dst := make([]byte, len(data))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		buf.Reset()
		if err := WriteBlob(&buf, data); err != nil {
			b.Fatal(err)
		}
		if err := ReadBlobInto(&buf, dst); err != nil {
			b.Fatal(err)
		}
	}
}

// TestReadBlobAllocatesWhatArrives: a header promising a large blob,
// followed by little data, costs the reader little memory.
func TestReadBlobAllocatesWhatArrives(t *testing.T) {
	var b bytes.Buffer
	if err := WriteBlob(&b, bytes.Repeat([]byte{7}, 3*ChunkSize)); err != nil {
		t.Fatal(err)
	}
	raw := b.Bytes()
	binary.BigEndian.PutUint64(raw[1:9], 1<<30) // claim 1 GiB
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := ReadBlob(bytes.NewReader(raw), 2<<30); err == nil {
		t.Fatal("a truncated 1 GiB blob was accepted")
	}
	runtime.ReadMemStats(&after)
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 32<<20 {
		t.Fatalf("reading 3 MiB of a blob that claims 1 GiB allocated %d bytes", grown)
	}
}
