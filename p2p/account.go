package p2p

import (
	"crypto/ed25519"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cairnlabs/cairn/ledger"
)

// A node's ledger account is its libp2p identity: the raw 32-byte ed25519
// public key that its peer ID embeds. These functions are the one place
// that converts between the two.

// AccountOf returns the ledger account of a peer ID (as Transport.ID and
// stream handlers report it). It fails, naming the peer ID, on a string
// that is not a peer ID and on a peer ID whose key is not ed25519 (RSA,
// secp256k1 or ECDSA identities have no ledger account).
func AccountOf(id string) (ledger.PubKey, error) {
	p, err := peer.Decode(id)
	if err != nil {
		return ledger.PubKey{}, fmt.Errorf("p2p: %q is not a peer ID: %v", id, err)
	}
	pk, err := p.ExtractPublicKey()
	if err != nil {
		// Peer IDs of RSA keys and of other large keys are hashes and do
		// not hold the key.
		return ledger.PubKey{}, fmt.Errorf("p2p: peer ID %s does not embed an ed25519 key; ledger accounts are ed25519", id)
	}
	if pk.Type() != crypto.Ed25519 {
		return ledger.PubKey{}, fmt.Errorf("p2p: peer ID %s is a %v key; ledger accounts are ed25519", id, pk.Type())
	}
	raw, err := pk.Raw()
	if err != nil || len(raw) != len(ledger.PubKey{}) {
		return ledger.PubKey{}, fmt.Errorf("p2p: peer ID %s: unreadable ed25519 key", id)
	}
	var k ledger.PubKey
	copy(k[:], raw)
	return k, nil
}

// PeerIDOf returns the peer ID of the node whose identity is the ed25519
// key k: what nodes print and what Transport.ID reports. Every 32-byte
// key has one, so it cannot fail; AccountOf(PeerIDOf(k)) == k.
func PeerIDOf(k ledger.PubKey) string {
	pk, err := crypto.UnmarshalEd25519PublicKey(k[:])
	if err == nil {
		var id peer.ID
		if id, err = peer.IDFromPublicKey(pk); err == nil {
			return id.String()
		}
	}
	// Unreachable with libp2p's ed25519 keys (any 32 bytes unmarshal and
	// hash); the hex form still names the account.
	return k.String()
}

// ParseAccount reads an account written by a person: a peer ID (of an
// ed25519 key) or 64 hex digits. It fails with a one-line error naming
// the input.
func ParseAccount(s string) (ledger.PubKey, error) {
	if k, err := ledger.ParsePubKey(s); err == nil {
		return k, nil
	}
	if _, err := peer.Decode(s); err != nil {
		return ledger.PubKey{}, fmt.Errorf("account %q is neither a peer ID nor 64 hex digits", s)
	}
	k, err := AccountOf(s)
	if err != nil {
		return ledger.PubKey{}, fmt.Errorf("account %s is not the peer ID of an ed25519 key", s)
	}
	return k, nil
}

// LedgerKey returns the ed25519 private key of a node's identity (as
// LoadIdentity returns it), which signs the node's ledger transactions
// and, on the aggregator, its blocks. It fails on a key that is not
// ed25519 or whose raw form is not a 64-byte ed25519 private key
// consistent with its public half.
func LedgerKey(k crypto.PrivKey) (ed25519.PrivateKey, error) {
	if k == nil {
		return nil, fmt.Errorf("p2p: no identity key")
	}
	if k.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("p2p: identity key is %v; ledger keys are ed25519", k.Type())
	}
	raw, err := k.Raw()
	if err != nil {
		return nil, fmt.Errorf("p2p: identity key: %v", err)
	}
	if len(raw) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("p2p: identity key of %d bytes, want %d", len(raw), ed25519.PrivateKeySize)
	}
	priv := ed25519.PrivateKey(raw)
	if !ed25519.NewKeyFromSeed(priv.Seed()).Equal(priv) {
		return nil, fmt.Errorf("p2p: identity key's public half does not match its seed")
	}
	return priv, nil
}
