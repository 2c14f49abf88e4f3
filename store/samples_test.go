package store

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/records"
)

// TestSampleAndRecordStores: entries come back as stored, in number
// order; a second entry of the same hash is refused and nothing is
// written; the on-chain notes and a wrong sample's mark persist across a
// reopen.
func TestSampleAndRecordStores(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSamples(filepath.Join(dir, SamplesFileName))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1_767_225_600, 0)
	a := Sample{Prompt: "3 7 25 50 -> 325:", Solution: " 50*7=350, 350-25=325\n", Worker: [32]byte{1}, At: at}
	b := Sample{Prompt: "3 7 25 50 -> 325:", Solution: " 50*7=350, 350-25=326\n", Worker: [32]byte{2}, At: at, Wrong: true}
	for i, x := range []Sample{a, b} {
		if n, err := s.Put(x); err != nil || n != uint64(i) {
			t.Fatalf("put %d: %d %v", i, n, err)
		}
	}
	n, err := s.Put(a)
	held := 0
	s.Each(func(Sample) error { held++; return nil })
	if !errors.Is(err, ErrHeld) || n != 0 || held != 2 {
		t.Fatalf("the same sample again: %d %v, %d held", n, err, held)
	}
	if err := s.MarkOnChain([]uint64{1}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = OpenSamples(filepath.Join(dir, SamplesFileName)); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got []Sample
	s.Each(func(x Sample) error { got = append(got, x); return nil })
	if len(got) != 2 || got[1].Worker != b.Worker || got[0].Solution != a.Solution || !got[0].At.Equal(at) || s.OnChain(0) || !s.OnChain(1) ||
		got[0].Wrong || !got[1].Wrong || got[1].Prompt != b.Prompt || got[1].Solution != b.Solution {
		t.Fatalf("after a reopen: %+v", got)
	}
	rs, err := OpenRecords(filepath.Join(dir, RecordsFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	_, key, _ := ed25519.GenerateKey(nil)
	r := records.Sign(key, []byte("a record of a few words"), at.Unix(), "CC0-1.0", true)
	if n, err := rs.Put(r, 7, 0.25, at); err != nil || n != 0 {
		t.Fatal(n, err)
	}
	if _, err := rs.Put(r, 7, 0.25, at); !errors.Is(err, ErrTaken) {
		t.Fatalf("a record twice: %v", err)
	}
	rs.Each(func(tk Taken) error {
		if tk.Reward != 7 || tk.Similarity != 0.25 || !bytes.Equal(tk.Record.Content, r.Content) || !tk.Record.Verify() {
			t.Fatalf("the record back: %+v", tk)
		}
		return nil
	})
}

// FuzzDecodeStored: the decoders of stored samples and records reject
// what they cannot read, never panic, and re-encode what they accept.
func FuzzDecodeStored(f *testing.F) {
	s := Sample{Prompt: "1 2 3 -> 6:", Solution: " 1+2=3, 3+3=6\n", Worker: [32]byte{9}, At: time.Unix(5, 0)}
	f.Add(s.encode())
	_, key, _ := ed25519.GenerateKey(nil)
	t := Taken{Record: records.Sign(key, []byte("some words here and there"), 1, "CC0-1.0", true), Reward: 3, At: time.Unix(5, 0)}
	f.Add(t.encode())
	f.Add([]byte{})
	f.Fuzz(func(tt *testing.T, b []byte) {
		if x, err := decodeSample(0, b); err == nil && !bytes.Equal(x.encode(), b) {
			tt.Fatalf("a sample re-encodes differently")
		}
		if x, err := decodeTaken(0, b); err == nil && !bytes.Equal(x.encode(), b) {
			tt.Fatalf("a record re-encodes differently")
		}
	})
}
