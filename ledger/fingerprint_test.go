package ledger_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/ledger"
)

// queryFingerprint asks the "fingerprint" query for model's commitment;
// nil means none.
func queryFingerprint(t *testing.T, l *ledger.Ledger, model ledger.Hash) *ledger.FingerprintRecord {
	t.Helper()
	raw, err := l.Query("fingerprint", model[:])
	if err != nil {
		t.Fatal(err)
	}
	var rec *ledger.FingerprintRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatalf("fingerprint query answered %s: %v", raw, err)
	}
	return rec
}

// Fingerprint commitments: the first commitment for a model is recorded
// with its owner, block and transaction; a second one for the same model,
// by anyone, is refused and changes nothing; an account that holds nothing
// cannot commit.
func TestFingerprintCommitments(t *testing.T) {
	org, staked, funded, stranger := keyFrom("org"), keyFrom("staked"), keyFrom("funded"), keyFrom("stranger")
	g := genesisFor(org, 1, staked, funded) // staked: balance and stake; funded: balance only
	c := newChain(t, g, org)
	m1, m2, m3 := hashOf("model 1"), hashOf("model 2"), hashOf("model 3")
	s1, s2 := hashOf("sealed set 1"), hashOf("sealed set 2")

	type want struct {
		code   ledger.Code // CodeOK: accepted
		reason string
		owner  *ledger.PubKey // the commitment for model afterwards (nil: none)
		set    ledger.Hash
	}
	ks, kf := ledger.KeyOf(staked), ledger.KeyOf(funded)
	cases := []struct {
		name string
		from string // the signer
		body *ledger.FingerprintTx
		want want
	}{
		{"accepted from a staked account", "staked", &ledger.FingerprintTx{Model: m1, Set: s1}, want{ledger.CodeOK, "", &ks, s1}},
		{"accepted from an account with a balance only", "funded", &ledger.FingerprintTx{Model: m2, Set: s2}, want{ledger.CodeOK, "", &kf, s2}},
		{"second commitment for the model by another account", "funded", &ledger.FingerprintTx{Model: m1, Set: s2},
			want{ledger.CodeDuplicateCommit, "already has a fingerprint commitment", &ks, s1}},
		{"second commitment for the model by its owner", "staked", &ledger.FingerprintTx{Model: m1, Set: s2},
			want{ledger.CodeDuplicateCommit, "already has a fingerprint commitment", &ks, s1}},
		{"the same commitment again", "staked", &ledger.FingerprintTx{Model: m1, Set: s1},
			want{ledger.CodeDuplicateCommit, "already has a fingerprint commitment", &ks, s1}},
		{"unknown sender", "stranger", &ledger.FingerprintTx{Model: m3, Set: s1},
			want{ledger.CodeUnauthorized, "holds nothing on the ledger", nil, ledger.Hash{}}},
	}
	keys := map[string]ledger.PubKey{"staked": ks, "funded": kf, "stranger": ledger.KeyOf(stranger)}
	privs := map[string]ed25519.PrivateKey{"staked": staked, "funded": funded, "stranger": stranger}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := c.tx(privs[tc.from], tc.body)
			defer func() {
				if tc.want.code != ledger.CodeOK {
					c.nonces[keys[tc.from]]-- // a refused transaction uses no nonce
				}
			}()
			if tc.want.code == ledger.CodeOK {
				b := c.block(raw)
				rec := queryFingerprint(t, c.l, tc.body.Model)
				wantRec := ledger.FingerprintRecord{Model: tc.body.Model, Set: tc.want.set, Owner: *tc.want.owner,
					Height: b.Header.Height, Index: 0, TxHash: sha256.Sum256(raw)}
				if rec == nil || *rec != wantRec {
					t.Fatalf("commitment %+v, want %+v", rec, wantRec)
				}
				if got, ok, err := c.l.Fingerprint(tc.body.Model); err != nil || !ok || got != wantRec {
					t.Fatalf("Fingerprint: %+v %v %v", got, ok, err)
				}
				hist, err := c.l.History(keys[tc.from])
				if err != nil || len(hist) == 0 || hist[len(hist)-1].Kind != ledger.KindFingerprint || hist[len(hist)-1].TxHash != wantRec.TxHash {
					t.Fatalf("the owner's history: %+v %v", hist, err)
				}
				return
			}
			// Refused at CheckTx and in a block, changing no state.
			var te *ledger.TxError
			if err := c.l.CheckTx(raw); !errors.As(err, &te) || te.Code != tc.want.code || !strings.Contains(te.Reason, tc.want.reason) {
				t.Fatalf("CheckTx: %v, want %v containing %q", err, tc.want.code, tc.want.reason)
			}
			root := c.l.StateRoot()
			res, err := c.l.FinalizeBlock(ledger.BlockInfo{Height: c.l.Tip().Height + 1, Time: c.now + 1}, [][]byte{raw})
			if err != nil {
				t.Fatal(err)
			}
			c.l.Discard()
			if res.Results[0].Code != tc.want.code || res.AppHash != root {
				t.Fatalf("in a block: %v %q; state changed %v", res.Results[0].Code, res.Results[0].Reason, res.AppHash != root)
			}
			rec := queryFingerprint(t, c.l, tc.body.Model)
			switch {
			case tc.want.owner == nil && rec != nil:
				t.Fatalf("a commitment %+v after a refusal", rec)
			case tc.want.owner != nil && (rec == nil || rec.Owner != *tc.want.owner || rec.Set != tc.want.set):
				t.Fatalf("commitment %+v, want owner %s set %s kept", rec, tc.want.owner, tc.want.set)
			}
		})
	}
	// The record decodes from the exported state like every other, and a
	// restored ledger answers it.
	var pairs []ledger.KV
	c.l.ExportState(func(k, v []byte) { pairs = append(pairs, ledger.KV{Key: k, Value: v}) })
	restored, err := ledger.Restore(c.g, c.l.Tip(), pairs)
	if err != nil {
		t.Fatal(err)
	}
	if rec, ok, err := restored.Fingerprint(m1); err != nil || !ok || rec.Owner != ks || rec.Set != s1 {
		t.Fatalf("restored: %+v %v %v", rec, ok, err)
	}
	key := append([]byte{'f'}, m1[:]...)
	if d := ledger.DescribeStateKey(key); !strings.Contains(d, "fingerprint commitment for model "+m1.String()) {
		t.Fatalf("described as %q", d)
	}
	for _, data := range [][]byte{nil, m1[:31], append(m1[:], 0)} {
		if _, err := c.l.Query("fingerprint", data); err == nil {
			t.Errorf("fingerprint query with %d bytes answered", len(data))
		}
	}
	if raw, err := c.l.Query("history", ks[:]); err != nil || !bytes.Contains(raw, []byte(`"kind":"fingerprint"`)) {
		t.Fatalf("history JSON does not name the kind: %s %v", raw, err)
	}
}

// The commitment's encoding: it survives a round trip exactly; truncated,
// extended, oversized or zero-hash input does not decode.
func TestFingerprintTxCodec(t *testing.T) {
	key := keyFrom("owner")
	body := &ledger.FingerprintTx{Model: hashOf("m"), Set: hashOf("s")}
	raw, err := ledger.SignTx("cairn-test", key, 3, body)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := ledger.DecodeTx(raw)
	if err != nil || !reflect.DeepEqual(tx.Body, body) || tx.Body.Kind() != ledger.KindFingerprint || !bytes.Equal(tx.Encode(), raw) || !tx.VerifySig("cairn-test") {
		t.Fatalf("round trip: %+v %v", tx, err)
	}
	if want := 1 + 1 + 32 + 8 + 64 + 64; len(raw) != want {
		t.Fatalf("%d bytes, want %d", len(raw), want)
	}
	if ledger.KindFingerprint.String() != "fingerprint" || ledger.KindFingerprint <= ledger.KindReceipts {
		t.Fatalf("kind %d %q", ledger.KindFingerprint, ledger.KindFingerprint)
	}
	var k ledger.Kind
	if err := k.UnmarshalText([]byte("fingerprint")); err != nil || k != ledger.KindFingerprint {
		t.Fatalf("kind from its name: %v %v", k, err)
	}
	bad := map[string][]byte{
		"one byte more":   append(bytes.Clone(raw), 0),
		"over MaxTxBytes": append(bytes.Clone(raw), make([]byte, ledger.MaxTxBytes)...),
		"empty":           nil,
	}
	for n := 1; n < len(raw); n++ {
		bad[fmt.Sprintf("truncated to %d bytes", n)] = raw[:n]
	}
	for _, zero := range []*ledger.FingerprintTx{{Set: hashOf("s")}, {Model: hashOf("m")}} {
		if _, err := ledger.SignTx("cairn-test", key, 4, zero); err == nil {
			t.Errorf("a commitment with a zero hash signed: %+v", zero)
		}
		// Build the bytes by hand: the decoder refuses them too.
		b := bytes.Clone(raw)
		copy(b[2+32+8:], zero.Model[:])
		copy(b[2+32+8+32:], zero.Set[:])
		bad[fmt.Sprintf("zero model %v, zero set %v", zero.Model.IsZero(), zero.Set.IsZero())] = b
	}
	for name, b := range bad {
		if _, err := ledger.DecodeTx(b); err == nil || !strings.HasPrefix(err.Error(), "ledger: malformed transaction") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
