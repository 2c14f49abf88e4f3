// Package records is Cairn's crowdsourced data: records that people
// contribute as signed, licensed texts, and the collector's rules for
// taking them. A record carries its content, its contributor's key, the
// time the contributor says it was made, a licence and a consent flag,
// signed by the contributor. The collector (Collector) refuses, with a
// reason, what is malformed or oversized, forged, unlicensed, stale or
// from the future, an exact copy of a record it holds, or a near copy
// (MinHash with locality-sensitive hashing over word shingles, then the
// exact Jaccard similarity); it rewards the rest by freshness and
// uniqueness. Like every protocol package it is deterministic: no clock,
// no I/O, no randomness of its own; persistence is the caller's.
package records

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Record is one contribution.
type Record struct {
	Content     []byte
	Contributor [ed25519.PublicKeySize]byte
	Time        int64  // Unix seconds: when the contributor says it was made
	Licence     string // an SPDX identifier, e.g. "CC-BY-4.0"
	Consent     bool   // the contributor affirms the right to contribute it
	Sig         [ed25519.SignatureSize]byte
}

// Limits of a record on the wire.
const (
	MaxContent = 64 << 10 // bytes of content
	MaxLicence = 64       // bytes of licence identifier
	// MaxEncoded is the largest encoded record.
	MaxEncoded = 4 + MaxContent + 32 + 8 + 1 + MaxLicence + 1 + 64
)

// Hash is the SHA-256 of the content: the record's identity.
func (r *Record) Hash() [32]byte { return sha256.Sum256(r.Content) }

// signed is what the contributor signs: a domain, the content's hash,
// the key, the time, the licence and the consent.
func (r *Record) signed() []byte {
	h := r.Hash()
	b := append([]byte("cairn record v1\n"), h[:]...)
	b = append(b, r.Contributor[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time))
	b = append(b, byte(len(r.Licence)))
	b = append(b, r.Licence...)
	if r.Consent {
		return append(b, 1)
	}
	return append(b, 0)
}

// Sign makes a record of content signed by key.
func Sign(key ed25519.PrivateKey, content []byte, time int64, licence string, consent bool) Record {
	r := Record{Content: content, Time: time, Licence: licence, Consent: consent}
	copy(r.Contributor[:], key.Public().(ed25519.PublicKey))
	copy(r.Sig[:], ed25519.Sign(key, r.signed()))
	return r
}

// Verify reports whether the signature is the contributor's over the
// record.
func (r *Record) Verify() bool {
	return ed25519.Verify(r.Contributor[:], r.signed(), r.Sig[:])
}

// Marshal encodes r: content length (u32) and content, key, time (u64),
// consent (a byte), licence length (a byte) and licence, signature.
func (r *Record) Marshal() []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(r.Content)+106+len(r.Licence)), uint32(len(r.Content)))
	b = append(b, r.Content...)
	b = append(b, r.Contributor[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time))
	if r.Consent {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = append(b, byte(len(r.Licence)))
	b = append(b, r.Licence...)
	return append(b, r.Sig[:]...)
}

// Parse decodes what Marshal writes, checking every length before it
// takes the bytes: content of 1 to MaxContent bytes, a licence of at
// most MaxLicence printable ASCII bytes, a consent byte of 0 or 1, and
// nothing after the signature. It does not check the signature (see
// Verify) or the rules (see Collector).
func Parse(b []byte) (Record, error) {
	var r Record
	if len(b) > MaxEncoded {
		return r, fmt.Errorf("records: %d bytes, more than a record's %d", len(b), MaxEncoded)
	}
	if len(b) < 4 {
		return r, errors.New("records: truncated before the content's length")
	}
	n := binary.BigEndian.Uint32(b)
	if n == 0 || n > MaxContent {
		return r, fmt.Errorf("records: content of %d bytes (1 to %d)", n, MaxContent)
	}
	b = b[4:]
	if uint32(len(b)) < n+32+8+1+1 {
		return r, errors.New("records: truncated record")
	}
	r.Content = append([]byte(nil), b[:n]...)
	b = b[n:]
	copy(r.Contributor[:], b)
	r.Time = int64(binary.BigEndian.Uint64(b[32:]))
	switch b[40] {
	case 0:
	case 1:
		r.Consent = true
	default:
		return r, fmt.Errorf("records: consent byte %d, want 0 or 1", b[40])
	}
	l := int(b[41])
	b = b[42:]
	if l > MaxLicence || len(b) != l+64 {
		return r, fmt.Errorf("records: a licence of %d bytes and %d bytes after it, want at most %d and a 64-byte signature", l, len(b)-min(l, len(b)), MaxLicence)
	}
	for _, c := range b[:l] {
		if c < 0x21 || c > 0x7e {
			return r, errors.New("records: the licence is not printable ASCII without spaces")
		}
	}
	r.Licence = string(b[:l])
	copy(r.Sig[:], b[l:])
	return r, nil
}

// text reports whether content is UTF-8 text without NUL bytes.
func text(content []byte) bool {
	if !utf8.Valid(content) {
		return false
	}
	for _, c := range content {
		if c == 0 {
			return false
		}
	}
	return true
}
