package ledger

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// Size limits of the canonical encoding. Every length read from untrusted
// bytes is checked against these (and against the bytes remaining) before
// anything is allocated.
const (
	MaxTxBytes       = 2 << 20  // one encoded transaction
	MaxBlockBytes    = 16 << 20 // one encoded block, transactions included
	MaxBlockTxs      = 10000    // transactions in one block
	MaxContributions = 16384    // accepted or rejected contributions in one round result (a result of 16,384 is 1.2 MB)
	MaxEvidenceBytes = 2048     // evidence attached to one failed verdict
	MaxReasonBytes   = 200      // a verdict's, rejection's or result's reason
	MaxKernelBytes   = 32       // the kernel path a commit names
	MaxChainIDBytes  = 64       // the chain ID
	MaxAuthorities   = 16       // keys allowed to sign results, settlements and blocks
	MaxGenesisAccts  = 100000   // initial accounts in a genesis
	MaxUnbonding     = 16       // pending unbonding entries per account
	MaxTokens        = 1 << 40  // tokens one commit may claim
)

// PubKey is an account: a raw ed25519 public key (the node's libp2p
// identity key).
type PubKey [32]byte

// Hash is a SHA-256 digest.
type Hash [32]byte

// Signature is a raw ed25519 signature.
type Signature [64]byte

// String returns the key in lower-case hex.
func (k PubKey) String() string { return hex.EncodeToString(k[:]) }

// MarshalText encodes the key as hex.
func (k PubKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText decodes 64 hex digits; anything else is an error.
func (k *PubKey) UnmarshalText(b []byte) error { return unhex32((*[32]byte)(k), b, "key") }

// String returns the hash in lower-case hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText encodes the hash as hex.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes 64 hex digits; anything else is an error.
func (h *Hash) UnmarshalText(b []byte) error { return unhex32((*[32]byte)(h), b, "hash") }

// IsZero reports whether h is all zeros (the "none" value in records).
func (h Hash) IsZero() bool { return h == Hash{} }

func unhex32(dst *[32]byte, b []byte, what string) error {
	if len(b) != 64 {
		return fmt.Errorf("ledger: %s must be 64 hex digits, got %d characters", what, len(b))
	}
	if _, err := hex.Decode(dst[:], b); err != nil {
		return fmt.Errorf("ledger: %s is not hex: %v", what, err)
	}
	return nil
}

// ParsePubKey parses a key written as 64 hex digits.
func ParsePubKey(s string) (PubKey, error) {
	var k PubKey
	err := k.UnmarshalText([]byte(s))
	return k, err
}

// encoder appends the canonical encoding: fixed-width big-endian integers,
// raw fixed-size arrays, and uint32-length-prefixed byte strings.
type encoder struct{ b []byte }

func (e *encoder) u8(v uint8)     { e.b = append(e.b, v) }
func (e *encoder) u32(v uint32)   { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64)   { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *encoder) i64(v int64)    { e.u64(uint64(v)) }
func (e *encoder) fixed(v []byte) { e.b = append(e.b, v...) }
func (e *encoder) bytes(v []byte) { e.u32(uint32(len(v))); e.b = append(e.b, v...) }
func (e *encoder) str(v string)   { e.u32(uint32(len(v))); e.b = append(e.b, v...) }
func (e *encoder) boolean(v bool) {
	if v {
		e.u8(1)
	} else {
		e.u8(0)
	}
}

// errShort is returned for input that ends inside a field.
var errShort = errors.New("truncated")

// decoder reads the canonical encoding. The first error sticks; every
// later read returns zero values, so callers check err once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = errShort
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() uint8 {
	v := d.take(1)
	if v == nil {
		return 0
	}
	return v[0]
}

func (d *decoder) u32() uint32 {
	v := d.take(4)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint32(v)
}

func (d *decoder) u64() uint64 {
	v := d.take(8)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func (d *decoder) i64() int64 { return int64(d.u64()) }

func (d *decoder) fixed(dst []byte) {
	if v := d.take(len(dst)); v != nil {
		copy(dst, v)
	}
}

func (d *decoder) boolean(what string) bool {
	v := d.u8()
	if v > 1 {
		d.fail("%s: boolean byte %d, want 0 or 1", what, v)
	}
	return v == 1
}

// bytes reads a length-prefixed byte string of at most max bytes; the
// length is checked before the bytes are taken. The result aliases the
// input.
func (d *decoder) bytes(what string, max int) []byte {
	n := d.u32()
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(max) {
		d.fail("%s: %d bytes, limit %d", what, n, max)
		return nil
	}
	return d.take(int(n))
}

// str reads a length-prefixed string of at most max bytes that passes
// valid (when valid is not nil).
func (d *decoder) str(what string, max int, valid func(string) error) string {
	b := d.bytes(what, max)
	if d.err != nil {
		return ""
	}
	s := string(b)
	if valid != nil {
		if err := valid(s); err != nil {
			d.fail("%s: %v", what, err)
			return ""
		}
	}
	return s
}

// count reads a uint32 element count, at most max, and checks that the
// remaining input can hold that many elements of at least minSize bytes,
// so a lying count cannot make the caller allocate.
func (d *decoder) count(what string, max, minSize int) int {
	n := d.u32()
	if d.err != nil {
		return 0
	}
	if uint64(n) > uint64(max) {
		d.fail("%s: %d entries, limit %d", what, n, max)
		return 0
	}
	if uint64(n)*uint64(minSize) > uint64(len(d.b)) {
		d.err = errShort
		return 0
	}
	return int(n)
}

// finish returns the decoding error, if any, or an error for trailing
// bytes, prefixed with what was being decoded.
func (d *decoder) finish(what string) error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return fmt.Errorf("ledger: malformed %s: %v", what, d.err)
	}
	return nil
}

// printable accepts printable ASCII (space to tilde): reasons are shown on
// terminals and must not carry control sequences.
func printable(s string) error {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("byte %#x at %d is not printable ASCII", c, i)
		}
	}
	return nil
}

// identifier accepts 1+ characters from [a-z0-9._+/-] (chain IDs, kernel
// paths).
func identifier(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '+' || c == '/' || c == '-'
		if !ok {
			return fmt.Errorf("byte %#x at %d not in [a-z0-9._+/-]", c, i)
		}
	}
	return nil
}

// nonEmptyPrintable is printable and not empty.
func nonEmptyPrintable(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	return printable(s)
}

// clip makes a reason built from untrusted values fit a result: bytes
// that are not printable ASCII become '?', and it is cut to
// MaxReasonBytes.
func clip(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	if len(b) > MaxReasonBytes {
		b = append(b[:MaxReasonBytes-3], "..."...)
	}
	return string(b)
}
