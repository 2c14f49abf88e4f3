package wire

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"
)

func FuzzReadMsg(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0xC7})
	f.Add(encodeMsg(f, 1, nil))
	f.Add(encodeMsg(f, 2, []byte("hello")))
	f.Add(encodeMsg(f, 3, []byte(`{"step":1,"names":["a"]}`)))
	f.Add(encodeMsg(f, KindError, []byte("refused")))
	f.Add(append(encodeMsg(f, 4, []byte("x")), encodeMsg(f, 5, []byte("yz"))...))
	f.Add([]byte{0xC7, 1, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3})
	f.Add([]byte{0xC8, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte("garbage that is not a frame"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxBody = 1 << 12
		r := bytes.NewReader(data)
		kind, body, err := ReadMsg(r, maxBody)
		if err != nil {
			if err != io.EOF && (!strings.HasPrefix(err.Error(), "wire: ") || strings.Contains(err.Error(), "\n")) {
				t.Fatalf("bad error text %q", err)
			}
		} else {
			if len(body) > maxBody {
				t.Fatalf("body of %d bytes over the limit", len(body))
			}
			consumed := data[:len(data)-r.Len()]
			if enc := encodeMsg(t, kind, body); !bytes.Equal(enc, consumed) {
				t.Fatalf("re-encoding gives %x, read %x", enc, consumed)
			}
		}
		// The JSON layer must not panic either.
		var v map[string]any
		ReadJSON(bytes.NewReader(data), 3, maxBody, &v)
	})
}

func FuzzReadBlob(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0xC8})
	f.Add(encodeBlob(f, nil, ChunkSize))
	f.Add(encodeBlob(f, []byte("x"), ChunkSize))
	f.Add(encodeBlob(f, []byte("hello, blob"), 4))
	f.Add(encodeBlob(f, randBytes(100, 1), 1))
	f.Add(encodeBlob(f, randBytes(300, 2), 64))
	f.Add(encodeBlob(f, randBytes(5000, 3), 4096))
	f.Add(encodeMsg(f, KindError, []byte("no such tensor")))
	f.Add(encodeMsg(f, 7, []byte("not a blob")))
	f.Add([]byte("garbage that is not a frame at all, but long enough for a header"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxSize = 1 << 16
		r := bytes.NewReader(data)
		blob, err := ReadBlob(r, maxSize)
		if err != nil {
			if err != io.EOF && (!strings.HasPrefix(err.Error(), "wire: ") || strings.Contains(err.Error(), "\n")) {
				t.Fatalf("bad error text %q", err)
			}
		} else {
			if len(blob) > maxSize {
				t.Fatalf("blob of %d bytes over the limit", len(blob))
			}
			consumed := data[:len(data)-r.Len()]
			chunk := int(binary.BigEndian.Uint32(consumed[blobHeaderSize-4:]))
			if enc := encodeBlob(t, blob, chunk); !bytes.Equal(enc, consumed) {
				t.Fatalf("re-encoding gives %x, read %x", enc, consumed)
			}
		}
		// ReadBlobInto agrees with ReadBlob when given the declared size.
		if len(data) >= 9 && data[0] == BlobMagic {
			size := binary.BigEndian.Uint64(data[1:9])
			if size <= maxSize {
				dst := make([]byte, size)
				err2 := ReadBlobInto(bytes.NewReader(data), dst)
				if (err == nil) != (err2 == nil) || (err == nil && !bytes.Equal(dst, blob)) {
					t.Fatalf("ReadBlob: %v, ReadBlobInto: %v", err, err2)
				}
			}
		}
	})
}
