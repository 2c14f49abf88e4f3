package secagg

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/chacha20"
	"golang.org/x/crypto/chacha20poly1305"
)

// derive is HKDF-SHA256 of secret, salted with the session, for one
// purpose (info), giving 32 bytes.
func derive(secret []byte, session [32]byte, info string) ([32]byte, error) {
	var out [32]byte
	b, err := hkdf.Key(sha256.New, secret, session[:], "cairn secagg v1 "+info, 32)
	if err != nil {
		return out, err
	}
	copy(out[:], b)
	return out, nil
}

// keyPair derives an X25519 key pair from a seed and a purpose.
func keyPair(seed [32]byte, session [32]byte, info string) (*ecdh.PrivateKey, error) {
	b, err := derive(seed[:], session, info)
	if err != nil {
		return nil, err
	}
	return ecdh.X25519().NewPrivateKey(b[:])
}

// agree is the X25519 agreement of priv with the peer's public key pub,
// expanded for one purpose between parties a and b (in either order).
func agree(priv *ecdh.PrivateKey, pub [32]byte, session [32]byte, info string, a, b uint64) ([32]byte, error) {
	var out [32]byte
	peer, err := ecdh.X25519().NewPublicKey(pub[:])
	if err != nil {
		return out, fmt.Errorf("a malformed public key: %v", err)
	}
	shared, err := priv.ECDH(peer)
	if err != nil {
		// An all-zero agreement: a low-order point, which no honest key is.
		return out, fmt.Errorf("a degenerate public key: %v", err)
	}
	lo, hi := min(a, b), max(a, b)
	return derive(shared, session, fmt.Sprintf("%s %d %d", info, lo, hi))
}

// addMask adds (sign +1) or subtracts (sign −1) the ChaCha20 keystream of
// key, read as little-endian uint32 words, to y modulo 2^32.
func addMask(y []uint32, key [32]byte, sign int) {
	var nonce [chacha20.NonceSize]byte
	c, err := chacha20.NewUnauthenticatedCipher(key[:], nonce[:])
	if err != nil {
		panic(err) // key and nonce sizes are fixed
	}
	var buf [4096]byte
	for off := 0; off < len(y); off += len(buf) / 4 {
		n := min(len(buf)/4, len(y)-off)
		clear(buf[:4*n])
		c.XORKeyStream(buf[:4*n], buf[:4*n])
		for i := range n {
			w := binary.LittleEndian.Uint32(buf[4*i:])
			if sign > 0 {
				y[off+i] += w
			} else {
				y[off+i] -= w
			}
		}
	}
}

// boxNonce is the nonce of the box from one party to another: each box key
// serves one session and the two directions between a pair, so (from, to)
// never repeats under one key.
func boxNonce(from, to uint64) []byte {
	n := make([]byte, chacha20poly1305.NonceSizeX)
	binary.BigEndian.PutUint64(n, from)
	binary.BigEndian.PutUint64(n[8:], to)
	return n
}

// boxAD binds a box to its session and its two parties.
func boxAD(session [32]byte, from, to uint64) []byte {
	ad := make([]byte, 0, 48)
	ad = append(ad, session[:]...)
	ad = binary.BigEndian.AppendUint64(ad, from)
	return binary.BigEndian.AppendUint64(ad, to)
}
