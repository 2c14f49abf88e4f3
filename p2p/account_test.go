package p2p

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cairnlabs/cairn/ledger"
)

// TestAccountOfIdentity: a node's peer ID, its ledger account and the
// ledger key of its identity all name the same ed25519 key, and the
// conversions invert each other.
func TestAccountOfIdentity(t *testing.T) {
	priv, err := LoadIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	acct, err := AccountOf(id.String())
	if err != nil {
		t.Fatal(err)
	}
	key, err := LedgerKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if ledger.KeyOf(key) != acct {
		t.Fatalf("ledger key's account %s, peer ID's %s", ledger.KeyOf(key), acct)
	}
	if got := PeerIDOf(acct); got != id.String() {
		t.Fatalf("PeerIDOf gives %s, want %s", got, id)
	}
	// The key signs what the ledger verifies.
	raw, err := ledger.SignTx("c", key, 1, &ledger.WithdrawTx{})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := ledger.DecodeTx(raw)
	if err != nil || tx.Sender != acct || !tx.VerifySig("c") {
		t.Fatalf("transaction signed with the identity: %v", err)
	}
	for _, s := range []string{id.String(), acct.String()} {
		if k, err := ParseAccount(s); err != nil || k != acct {
			t.Errorf("ParseAccount(%s) = %s, %v", s, k, err)
		}
	}
}

// TestAccountOfRefusesOtherKeys: identities that are not ed25519 have no
// ledger account, and the error says so.
func TestAccountOfRefusesOtherKeys(t *testing.T) {
	secp, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa, _, err := crypto.GenerateRSAKeyPair(2048, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		key  crypto.PrivKey
		want string
	}{
		{"secp256k1", secp, "is a Secp256k1 key; ledger accounts are ed25519"},
		{"rsa", rsa, "does not embed an ed25519 key"},
	} {
		id, err := peer.IDFromPrivateKey(tc.key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := AccountOf(id.String()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: AccountOf: %v, want %q", tc.name, err, tc.want)
		}
		if _, err := ParseAccount(id.String()); err == nil || !strings.Contains(err.Error(), "not the peer ID of an ed25519 key") {
			t.Errorf("%s: ParseAccount: %v", tc.name, err)
		}
		if _, err := LedgerKey(tc.key); err == nil || !strings.Contains(err.Error(), "ledger keys are ed25519") {
			t.Errorf("%s: LedgerKey: %v", tc.name, err)
		}
	}
	for _, bad := range []string{"", "bob", "12D3KooW", strings.Repeat("0", 63)} {
		if _, err := AccountOf(bad); err == nil || !strings.Contains(err.Error(), "is not a peer ID") {
			t.Errorf("AccountOf(%q): %v", bad, err)
		}
		if _, err := ParseAccount(bad); err == nil || !strings.Contains(err.Error(), "neither a peer ID nor 64 hex digits") {
			t.Errorf("ParseAccount(%q): %v", bad, err)
		}
	}
	if _, err := LedgerKey(nil); err == nil {
		t.Error("LedgerKey(nil) succeeded")
	}
}

// FuzzAccountOf: any string either fails or gives an account whose peer
// ID converts back to it.
func FuzzAccountOf(f *testing.F) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	f.Add(PeerIDOf(ledger.KeyOf(priv)))
	f.Add("12D3KooWAbc")
	f.Add("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := AccountOf(s)
		if err != nil {
			return
		}
		back, err := AccountOf(PeerIDOf(k))
		if err != nil || back != k {
			t.Fatalf("%q -> %s -> %s, %v", s, k, back, err)
		}
		if p, err := ParseAccount(s); err != nil || p != k {
			t.Fatalf("ParseAccount(%q) = %s, %v; AccountOf gave %s", s, p, err, k)
		}
	})
}
