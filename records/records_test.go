package records

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/corpus"
)

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func key(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("records test " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// paragraphs are n texts of about 80 words from far apart in the corpus.
func paragraphs(n int) []string {
	text := corpus.TinyShakespeare()
	var out []string
	for i := range n {
		off := 1000 + i*(len(text)-2000)/n
		w := strings.Fields(string(text[off : off+600]))
		out = append(out, strings.Join(w[1:min(len(w)-1, 81)], " "))
	}
	return out
}

// TestCollectorRefusesWithReasons is the collector's target: of a test
// set of clean records, exact duplicates, near-duplicates (three words
// changed), forged signatures, unlicensed records and malformed or stale
// ones, every dirty record is refused with its reason and every clean
// record taken.
func TestCollectorRefusesWithReasons(t *testing.T) {
	c, err := NewCollector(DefaultRules())
	if err != nil {
		t.Fatal(err)
	}
	alice, bob := key("alice"), key("bob")
	texts := paragraphs(200)
	at := now.Add(-time.Hour).Unix()
	for i, tx := range texts {
		r := Sign(alice, []byte(tx), at, "CC-BY-4.0", true)
		d, err := c.Check(&r, now)
		if err != nil {
			t.Fatalf("clean record %d refused: %v", i, err)
		}
		if d.Reward == 0 || d.Hash != sha256.Sum256([]byte(tx)) {
			t.Fatalf("clean record %d: %+v", i, d)
		}
		if !c.Add(&r) {
			t.Fatalf("clean record %d not added", i)
		}
	}
	type dirty struct {
		name string
		r    Record
		want Reason
	}
	var set []dirty
	for i, tx := range texts[:40] {
		set = append(set, dirty{"exact copy by another", Sign(bob, []byte(tx), at, "CC0-1.0", true), Duplicate})
		w := strings.Fields(tx)
		for j := 0; j < 3; j++ {
			w[(j*29+i)%len(w)] = "changed"
		}
		set = append(set, dirty{"three words changed", Sign(bob, []byte(strings.Join(w, " ")), at, "CC0-1.0", true), NearDuplicate})
		fresh := []byte(tx + " and a fresh ending of several more words here")
		forged := Sign(bob, fresh, at, "CC0-1.0", true)
		forged.Content = append(bytes.Clone(fresh), '!')
		set = append(set, dirty{"content changed after signing", forged, Forged})
		stolen := Sign(bob, fresh, at, "CC0-1.0", true)
		copy(stolen.Contributor[:], alice.Public().(ed25519.PublicKey))
		set = append(set, dirty{"claimed for another key", stolen, Forged})
		set = append(set, dirty{"no consent", Sign(bob, fresh, at, "CC0-1.0", false), Unlicensed})
		set = append(set, dirty{"unlicensed", Sign(bob, fresh, at, "proprietary", true), Unlicensed})
		set = append(set, dirty{"stale", Sign(bob, fresh, now.Add(-60*24*time.Hour).Unix(), "CC0-1.0", true), Stale})
		set = append(set, dirty{"from the future", Sign(bob, fresh, now.Add(time.Hour).Unix(), "CC0-1.0", true), Stale})
		set = append(set, dirty{"not text", Sign(bob, []byte{0xff, 0xfe, 'a', ' ', 'b', ' ', 'c', ' ', 'd', ' ', 'e'}, at, "CC0-1.0", true), Malformed})
		set = append(set, dirty{"too short", Sign(bob, []byte("four words only here"), at, "CC0-1.0", true), Malformed})
	}
	for _, d := range set {
		_, err := c.Check(&d.r, now)
		var ref *Refusal
		if !errors.As(err, &ref) || ref.Reason != d.want || ref.Detail == "" {
			t.Fatalf("%s: %v, want %v", d.name, err, d.want)
		}
	}
	if c.Len() != len(texts) {
		t.Fatalf("%d records held", c.Len())
	}
	// A record that shares less than the threshold is taken, its reward
	// cut by the similarity when LSH finds the record it resembles (with
	// probability 0.5 to 0.9 at these similarities).
	found := 0
	for i := range 20 {
		w := strings.Fields(texts[i])
		mix := strings.Join(append(w[:60:60], strings.Fields(texts[100+i])[:25]...), " ")
		r := Sign(bob, []byte(mix), at, "CC0-1.0", true)
		d, err := c.Check(&r, now)
		if err != nil {
			t.Fatalf("60 words of one record and 25 of another: %v", err)
		}
		if d.Similarity > 0 {
			found++
			if d.Similarity < 0.4 || d.Similarity >= 0.7 || d.Reward >= DefaultRules().Reward*6/10 {
				t.Fatalf("60 words of one record and 25 of another: %+v", d)
			}
		}
	}
	if found < 8 {
		t.Fatalf("LSH found the resembled record for %d of 20 mixes", found)
	}
	// An old record earns less than a fresh one.
	old := Sign(bob, []byte("an entirely new text of quite a few words that nobody wrote before"), now.Add(-20*24*time.Hour).Unix(), "CC0-1.0", true)
	newer := Sign(bob, []byte("another entirely new text of quite a few words that nobody wrote before either"), at, "CC0-1.0", true)
	do, _ := c.Check(&old, now)
	dn, _ := c.Check(&newer, now)
	if !(do.Reward < dn.Reward && do.Reward > 0) {
		t.Fatalf("an old record earns %d, a fresh one %d", do.Reward, dn.Reward)
	}
}

func TestMarshalParse(t *testing.T) {
	r := Sign(key("a"), []byte("some words of a record for the test"), now.Unix(), "CC-BY-4.0", true)
	b := r.Marshal()
	q, err := Parse(b)
	if err != nil || !q.Verify() || !bytes.Equal(q.Marshal(), b) {
		t.Fatalf("round trip: %v", err)
	}
	for i := range b {
		if _, err := Parse(b[:i]); err == nil {
			t.Fatalf("truncated at %d parsed", i)
		}
	}
	if _, err := Parse(append(bytes.Clone(b), 0)); err == nil {
		t.Fatal("a trailing byte parsed")
	}
}

func FuzzParse(f *testing.F) {
	r := Sign(key("a"), []byte("some words of a record for the test"), now.Unix(), "CC-BY-4.0", true)
	f.Add(r.Marshal())
	f.Add([]byte{0, 0, 0, 1, 'x'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Parse(b)
		if err != nil {
			return
		}
		if !bytes.Equal(r.Marshal(), b) {
			t.Fatalf("re-encoding differs")
		}
		c, _ := NewCollector(DefaultRules())
		c.Check(&r, now) // never panics
	})
}

func TestMulmod(t *testing.T) {
	for _, c := range [][3]uint64{{1, 2, 3}, {mersenne61 - 1, mersenne61 - 1, mersenne61 - 1}, {1 << 60, 1 << 60, 5}} {
		want := new(bigInt).mulmod(c[0], c[1], c[2])
		if got := mulmod(c[0], c[1], c[2]); got != want {
			t.Errorf("mulmod%v = %d, want %d", c, got, want)
		}
	}
}
