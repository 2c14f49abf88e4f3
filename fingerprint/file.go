package fingerprint

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/scrypt"
)

// The fingerprint file: a magic line, a scrypt salt, an XChaCha20-Poly1305
// nonce and the sealed JSON of the Set. Only the owner's passphrase opens
// it; a changed byte fails authentication.
const (
	fileMagic = "cairn-fingerprints-v1\n"
	saltLen   = 16
	// MaxFileBytes bounds a fingerprint file.
	MaxFileBytes = 16 << 20
)

func fileKey(pass, salt []byte) ([]byte, error) {
	return scrypt.Key(pass, salt, 1<<15, 8, 1, chacha20poly1305.KeySize)
}

// Seal encrypts set with a key derived from passphrase.
func Seal(set *Set, passphrase []byte) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("fingerprint: empty passphrase")
	}
	plain, err := json.Marshal(set)
	if err != nil {
		return nil, err
	}
	salt := make([]byte, saltLen)
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	rand.Read(salt)
	rand.Read(nonce)
	k, err := fileKey(passphrase, salt)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(k)
	if err != nil {
		return nil, err
	}
	out := append([]byte(fileMagic), salt...)
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plain, []byte(fileMagic)), nil
}

// Open decrypts a file Seal wrote. It fails on a file that is not one, a
// wrong passphrase or any changed byte, and on a set without pairs.
func Open(b, passphrase []byte) (*Set, error) {
	if err := CheckFile(b); err != nil {
		return nil, err
	}
	b = b[len(fileMagic):]
	salt, nonce, sealed := b[:saltLen], b[saltLen:saltLen+chacha20poly1305.NonceSizeX], b[saltLen+chacha20poly1305.NonceSizeX:]
	k, err := fileKey(passphrase, salt)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(k)
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, nonce, sealed, []byte(fileMagic))
	if err != nil {
		return nil, errors.New("fingerprint: wrong passphrase or a damaged file")
	}
	var set Set
	if err := json.Unmarshal(plain, &set); err != nil {
		return nil, fmt.Errorf("fingerprint: %v", err)
	}
	if len(set.Pairs) == 0 || !(set.ChanceRate > 0 && set.ChanceRate < 1) {
		return nil, errors.New("fingerprint: the file holds no pairs or no chance rate")
	}
	if set.Model != "" && !isHash(set.Model) {
		return nil, errors.New("fingerprint: the file's model hash is not 64 lower-case hex digits")
	}
	return &set, nil
}

func isHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// CheckFile checks, without the passphrase, that b has the shape of a
// file Seal wrote: within MaxFileBytes, the magic line, and room for the
// salt, nonce and authentication tag. Only Open proves it is intact.
func CheckFile(b []byte) error {
	switch {
	case len(b) > MaxFileBytes:
		return fmt.Errorf("fingerprint: file of %d bytes exceeds %d", len(b), MaxFileBytes)
	case !bytes.HasPrefix(b, []byte(fileMagic)):
		return errors.New("fingerprint: not a fingerprint file")
	case len(b)-len(fileMagic) < saltLen+chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead:
		return errors.New("fingerprint: file too short")
	}
	return nil
}
