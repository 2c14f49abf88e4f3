package secagg

import (
	"bytes"
	"errors"
	"testing"
)

func TestShamirRoundTrip(t *testing.T) {
	s, err := newSharer()
	if err != nil {
		t.Fatal(err)
	}
	var secret [32]byte
	for i := range secret {
		secret[i] = byte(7*i + 3)
	}
	points := []uint64{1, 2, 3, 4, 5, 6, 7, 8}
	shares, err := s.split(secret, points, 5, []byte("key"))
	if err != nil {
		t.Fatal(err)
	}
	// Any 5 reconstruct it; so do the last 5 in another order.
	got, err := s.combine(points[:5], shares[:5], 5)
	if err != nil || got != secret {
		t.Fatalf("first 5: %x, %v", got, err)
	}
	got, err = s.combine([]uint64{8, 3, 6, 7, 4}, [][]byte{shares[7], shares[2], shares[5], shares[6], shares[3]}, 5)
	if err != nil || got != secret {
		t.Fatalf("another 5: %x, %v", got, err)
	}
	// Fewer than t are refused; t−1 shares with a wrong threshold do not
	// give the secret.
	if _, err := s.combine(points[:4], shares[:4], 5); err == nil {
		t.Fatal("4 shares accepted for threshold 5")
	}
	if got, err := s.combine(points[:4], shares[:4], 4); err == nil && got == secret {
		t.Fatal("4 shares of a threshold-5 sharing gave the secret")
	}
	// A tampered share is detected, not turned into a wrong secret.
	bad := bytes.Clone(shares[2])
	bad[20] ^= 1
	if _, err := s.combine(points[:5], [][]byte{shares[0], shares[1], bad, shares[3], shares[4]}, 5); !errors.Is(err, errInconsistent) {
		t.Fatalf("tampered share: %v", err)
	}
	// Shares are a function of the key: the same key, the same shares.
	again, _ := s.split(secret, points, 5, []byte("key"))
	for i := range shares {
		if !bytes.Equal(again[i], shares[i]) {
			t.Fatal("split is not a function of its key")
		}
	}
	if _, err := s.combine(points[:5], [][]byte{shares[0], shares[1], shares[2][:10], shares[3], shares[4]}, 5); err == nil {
		t.Fatal("a truncated share was accepted")
	}
}
