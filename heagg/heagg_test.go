package heagg

import (
	"crypto/sha256"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/multiparty"
)

type cohort struct {
	s       *Scheme
	parties []*Party
	pk      *rlwe.PublicKey
}

func setup(t testing.TB, n, threshold int) *cohort {
	s, err := NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	session := sha256.Sum256([]byte("heagg test"))
	c := &cohort{s: s}
	var shares []multiparty.PublicKeyGenShare
	for id := 1; id <= n; id++ {
		p, err := s.NewParty(uint64(id), threshold)
		if err != nil {
			t.Fatal(err)
		}
		c.parties = append(c.parties, p)
		sh, err := p.PublicKeyShare(session)
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, sh)
	}
	if c.pk, err = s.PublicKey(session, shares); err != nil {
		t.Fatal(err)
	}
	for _, from := range c.parties {
		for _, to := range c.parties {
			if err := to.AddKeyShare(from.KeyShareFor(to.ID)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return c
}

// TestThresholdSum: 6 parties at threshold 4 encrypt their values; the
// aggregator adds the ciphertexts; 4 of them (2 absent) decrypt the sum
// exactly; 3 cannot.
func TestThresholdSum(t *testing.T) {
	const n, threshold, dim = 6, 4, 10000
	c := setup(t, n, threshold)
	rng := rand.New(rand.NewPCG(1, 2))
	want := make([]uint64, dim)
	var agg []*rlwe.Ciphertext
	for range c.parties {
		x := make([]uint64, dim)
		for i := range x {
			x[i] = rng.Uint64N(Modulus)
			want[i] = (want[i] + x[i]) % Modulus
		}
		cts, err := c.s.Encrypt(c.pk, x)
		if err != nil {
			t.Fatal(err)
		}
		if agg == nil {
			agg = cts
		} else if err := c.s.Add(agg, cts); err != nil {
			t.Fatal(err)
		}
	}
	decrypt := func(active []uint64) []uint64 {
		var shares [][]multiparty.KeySwitchShare
		for _, id := range active {
			sh, err := c.parties[id-1].DecryptionShares(active, threshold, agg)
			if err != nil {
				t.Fatal(err)
			}
			shares = append(shares, sh)
		}
		got, err := c.s.Decrypt(agg, shares, dim)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := decrypt([]uint64{2, 3, 5, 6}); !slices.Equal(got, want) {
		t.Fatal("4 of 6 parties did not decrypt the exact sum")
	}
	if _, err := c.parties[0].DecryptionShares([]uint64{1, 4, 5}, threshold, agg); err == nil {
		t.Fatal("a decryption share for 3 parties, below the threshold, was made")
	}
	// Shares made for one active set do not decrypt with a party missing.
	var shares [][]multiparty.KeySwitchShare
	for _, id := range []uint64{1, 2, 3} {
		sh, _ := c.parties[id-1].DecryptionShares([]uint64{1, 2, 3, 4}, threshold, agg)
		shares = append(shares, sh)
	}
	if got, err := c.s.Decrypt(agg, shares, dim); err == nil && slices.Equal(got, want) {
		t.Fatal("3 of the 4 shares decrypted the sum")
	}
	if _, err := c.s.Encrypt(c.pk, []uint64{Modulus}); err == nil {
		t.Fatal("a value at the modulus was encrypted")
	}
}

// BenchmarkDemoRound: a contribution the size of the demo model (867,328
// values) encrypted, 8 such added, and one party's decryption share;
// bytes of a contribution against plain int8 (a byte a value).
func BenchmarkDemoRound(b *testing.B) {
	const n, threshold, dim = 8, 6, 867328
	c := setup(b, n, threshold)
	x := make([]uint64, dim)
	var enc, add, share time.Duration
	var bytes int
	for b.Loop() {
		start := time.Now()
		cts, err := c.s.Encrypt(c.pk, x)
		if err != nil {
			b.Fatal(err)
		}
		enc += time.Since(start)
		bytes = 0
		for _, ct := range cts {
			bytes += ct.BinarySize()
		}
		start = time.Now()
		for range n - 1 {
			c.s.Add(cts, cts)
		}
		add += time.Since(start)
		start = time.Now()
		if _, err := c.parties[0].DecryptionShares([]uint64{1, 2, 3, 4, 5, 6}, threshold, cts); err != nil {
			b.Fatal(err)
		}
		share += time.Since(start)
	}
	b.ReportMetric(float64(enc.Milliseconds())/float64(b.N), "encrypt-ms")
	b.ReportMetric(float64(add.Milliseconds())/float64(b.N), "add7-ms")
	b.ReportMetric(float64(share.Milliseconds())/float64(b.N), "decshare-ms")
	b.ReportMetric(float64(bytes)/dim, "bytes/int8")
}
