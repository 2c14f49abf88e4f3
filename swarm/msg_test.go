package swarm

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func TestMsgRoundTrip(t *testing.T) {
	id := ID{1, 2, 3}
	for _, m := range []Msg{
		{Kind: KindBitfield, Blob: id, All: true},
		{Kind: KindBitfield, Blob: id, All: true, Ask: true},
		{Kind: KindBitfield, Blob: id, Bits: []byte{0xa0, 0x01}, Ask: true},
		{Kind: KindBitfield, Blob: id, Bits: []byte{}},
		{Kind: KindHave, Blob: id, Piece: 7},
		{Kind: KindWantManifest, Blob: id},
		{Kind: KindManifest, Blob: id, Data: []byte("manifest")},
		{Kind: KindRequest, Blob: id, Piece: MaxPieces - 1},
		{Kind: KindPiece, Blob: id, Piece: 3, Data: []byte{9, 8, 7}},
		{Kind: KindReject, Blob: id, Piece: 2, Reason: Busy},
		{Kind: KindReject, Blob: id, Piece: 2, Reason: Missing},
	} {
		kind, body := m.Encode()
		if len(body) != m.BodySize() {
			t.Errorf("%v: body of %d bytes, BodySize says %d", m.Kind, len(body), m.BodySize())
		}
		got, err := Decode(kind, body)
		if err != nil {
			t.Fatalf("%v: %v", m.Kind, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("%v: round trip gives %+v, want %+v", m.Kind, got, m)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	id := make([]byte, 32)
	u32 := func(v uint32) []byte { return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)} }
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	for _, tc := range []struct {
		kind Kind
		body []byte
		want string
	}{
		{0x10, id, "unknown message kind"},
		{KindHave, id[:31], "no blob ID"},
		{KindHave, id, "no piece number"},
		{KindHave, cat(id, u32(MaxPieces)), "beyond the limit"},
		{KindRequest, cat(id, u32(1), []byte{0}), "trailing bytes"},
		{KindBitfield, id, "no flag byte"},
		{KindBitfield, cat(id, []byte{4}), "unknown bits"},
		{KindBitfield, cat(id, []byte{1, 0xff}), "trailing bytes"},
		{KindBitfield, cat(id, []byte{0}, make([]byte, MaxPieces/8+1)), "exceeds the limit"},
		{KindPiece, cat(id, u32(0)), "outside [1,"},
		{KindPiece, cat(id, u32(0), make([]byte, MaxPieceSize+1)), "outside [1,"},
		{KindReject, cat(id, u32(0), []byte{3}), "unknown reject reason"},
		{KindWantManifest, cat(id, []byte{1}), "trailing bytes"},
		{KindManifest, cat(id, make([]byte, manifestHeader+32*MaxPieces+1)), "exceeds the limit"},
	} {
		_, err := Decode(uint8(tc.kind), tc.body)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v body of %d bytes: error %v, want %q", tc.kind, len(tc.body), err, tc.want)
		}
	}
}

func TestManifest(t *testing.T) {
	data := randomBlob(rand.New(rand.NewPCG(1, 1)), 3*MinPieceSize+1)
	m, err := NewManifest(data, MinPieceSize)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Pieces) != 4 || m.PieceLen(3) != 1 || m.PieceLen(0) != MinPieceSize {
		t.Fatalf("manifest %d pieces, last %d", len(m.Pieces), m.PieceLen(3))
	}
	enc, _ := m.MarshalBinary()
	got, err := DecodeManifest(enc, m.ID(), int64(len(data)))
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip: %v", err)
	}
	for _, tc := range []struct {
		b    []byte
		id   ID
		max  int64
		want string
	}{
		{enc[:5], m.ID(), 1 << 20, "shorter than"},
		{enc, ID{}, 1 << 20, "does not hash"},
		{enc, m.ID(), int64(len(data)) - 1, "blob size"},
	} {
		if _, err := DecodeManifest(tc.b, tc.id, tc.max); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
	if _, err := NewManifest(data, MinPieceSize-1); err == nil {
		t.Error("a piece size below the minimum was accepted")
	}
	if _, err := NewManifest(nil, MinPieceSize); err == nil {
		t.Error("an empty blob was accepted")
	}
}

func FuzzDecode(f *testing.F) {
	id := ID{7}
	for _, m := range []Msg{
		{Kind: KindBitfield, Blob: id, Bits: []byte{0xf0}},
		{Kind: KindPiece, Blob: id, Piece: 1, Data: []byte{1, 2}},
		{Kind: KindReject, Blob: id, Piece: 1, Reason: Busy},
		{Kind: KindManifest, Blob: id, Data: make([]byte, manifestHeader+32)},
	} {
		k, b := m.Encode()
		f.Add(k, b)
	}
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		m, err := Decode(kind, body)
		if err != nil {
			return
		}
		k, b := m.Encode()
		if k != kind || !bytes.Equal(b, body) {
			t.Fatalf("a decoded %v message does not encode to its bytes", m.Kind)
		}
		if m.Kind == KindManifest {
			// A manifest body is only trusted once it hashes to the ID.
			if man, err := DecodeManifest(m.Data, m.Blob, 1<<30); err == nil {
				enc, _ := man.MarshalBinary()
				if !bytes.Equal(enc, m.Data) {
					t.Fatal("manifest does not re-encode to its bytes")
				}
			}
		}
	})
}

func FuzzDecodeManifest(f *testing.F) {
	m, _ := NewManifest(make([]byte, 5000), MinPieceSize)
	enc, _ := m.MarshalBinary()
	f.Add(enc)
	f.Add(enc[:12])
	f.Fuzz(func(t *testing.T, b []byte) {
		// The ID is the bytes' own hash, so only the structure is checked.
		id := ID(sha256.Sum256(b))
		man, err := DecodeManifest(b, id, 1<<30)
		if err != nil {
			return
		}
		if man.ID() != id || NumPieces(man.Size, man.PieceSize) != len(man.Pieces) {
			t.Fatal("decoded manifest is inconsistent")
		}
	})
}
