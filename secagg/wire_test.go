package secagg

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestWireRoundTripAndRefusals(t *testing.T) {
	cfg := Config{Parties: []uint64{1, 2, 3}, Threshold: 2, Dim: 5, Bits: 11}
	m := Masked{ID: 7, Y: []uint32{0, 1, 2047, 1024, 5}}
	b := m.Marshal(cfg)
	if len(b) != 8+7 { // 55 bits in 7 bytes
		t.Fatalf("5 values of 11 bits in %d bytes", len(b)-8)
	}
	got, err := ParseMasked(cfg, b)
	if err != nil || got.ID != 7 || !slices.Equal(got.Y, m.Y) {
		t.Fatalf("masked round trip: %+v, %v", got, err)
	}
	b[len(b)-1] |= 0x80 // a padding bit
	if _, err := ParseMasked(cfg, b); err == nil || !strings.Contains(err.Error(), "padding") {
		t.Fatalf("padding bit: %v", err)
	}
	if _, err := ParseMasked(cfg, b[:10]); err == nil {
		t.Fatal("a short masked input was read")
	}
	r := Reveal{ID: 2, Self: []Share{{Of: 1, Share: bytes.Repeat([]byte{1}, ShareSize)}}, Mask: []Share{{Of: 3, Share: bytes.Repeat([]byte{3}, ShareSize)}}}
	rb := r.Marshal()
	back, err := ParseReveal(rb)
	if err != nil || back.ID != 2 || len(back.Self) != 1 || back.Mask[0].Of != 3 || !bytes.Equal(back.Mask[0].Share, r.Mask[0].Share) {
		t.Fatalf("reveal round trip: %+v, %v", back, err)
	}
	huge := slices.Clone(rb[:16])
	huge[8] = 0xff // 4 billion shares announced in 16 bytes
	if _, err := ParseReveal(huge); err == nil || !strings.Contains(err.Error(), "more than a cohort") {
		t.Fatalf("huge count: %v", err)
	}
	if _, err := ParseReveal(rb[:len(rb)-1]); err == nil {
		t.Fatal("a truncated reveal was read")
	}
	k := Keys{ID: 3, Enc: [32]byte{1}, Mask: [32]byte{2}}
	if kk, err := ParseKeys(k.Marshal()); err != nil || kk != k {
		t.Fatalf("keys round trip: %+v, %v", kk, err)
	}
	if _, err := ParseKeys(k.Marshal()[1:]); err == nil {
		t.Fatal("short keys read")
	}
	x := Box{From: 1, To: 2, Sealed: bytes.Repeat([]byte{9}, BoxSize-16)}
	if xx, err := ParseBox(x.Marshal()); err != nil || xx.From != 1 || xx.To != 2 || !bytes.Equal(xx.Sealed, x.Sealed) {
		t.Fatalf("box round trip: %+v, %v", xx, err)
	}
	if _, err := ParseBox(x.Marshal()[:40]); err == nil {
		t.Fatal("a short box was read")
	}
}

// FuzzParse feeds every decoder arbitrary bytes: none panics, and what one
// accepts marshals back to the same bytes.
func FuzzParse(f *testing.F) {
	cfg := Config{Parties: []uint64{1, 2, 3}, Threshold: 2, Dim: 9, Bits: 13}
	f.Add(Keys{ID: 1}.Marshal())
	f.Add(Masked{ID: 1, Y: make([]uint32, 9)}.Marshal(cfg))
	f.Add(Reveal{ID: 1, Self: []Share{{Of: 2, Share: make([]byte, ShareSize)}}}.Marshal())
	f.Add(Box{Sealed: make([]byte, BoxSize-16)}.Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		if k, err := ParseKeys(b); err == nil && !bytes.Equal(k.Marshal(), b) {
			t.Fatal("keys do not round-trip")
		}
		if x, err := ParseBox(b); err == nil && !bytes.Equal(x.Marshal(), b) {
			t.Fatal("box does not round-trip")
		}
		if m, err := ParseMasked(cfg, b); err == nil && !bytes.Equal(m.Marshal(cfg), b) {
			t.Fatal("masked input does not round-trip")
		}
		if r, err := ParseReveal(b); err == nil && !bytes.Equal(r.Marshal(), b) {
			t.Fatal("reveal does not round-trip")
		}
		// A share's bytes reach lattigo's decoder at reconstruction.
		if len(b) == ShareSize {
			s, _ := newSharer()
			s.combine([]uint64{1, 2}, [][]byte{b, b}, 2)
		}
	})
}
