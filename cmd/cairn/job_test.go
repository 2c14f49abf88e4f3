package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/store"
)

// TestExportSamples: the dataset's text holds the verified samples only;
// its manifest lists every judged sample with its verdict.
func TestExportSamples(t *testing.T) {
	dir := t.TempDir()
	s, err := store.OpenSamples(filepath.Join(dir, store.SamplesFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	at := time.Unix(1_767_225_600, 0)
	for _, x := range []store.Sample{
		{Prompt: "2 5 10 -> 20:", Solution: " 10*2=20\n", Worker: [32]byte{1}, At: at},
		{Prompt: "2 5 10 -> 20:", Solution: " 10*2=21\n", Worker: [32]byte{2}, At: at, Wrong: true},
	} {
		if _, err := s.Put(x); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "samples.txt")
	var stdout bytes.Buffer
	if err := exportSamples(s, out, &stdout); err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(out)
	if err != nil || string(text) != "2 5 10 -> 20: 10*2=20\n" {
		t.Fatalf("the dataset's text: %q %v", text, err)
	}
	var man []struct{ Verdict string }
	b, err := os.ReadFile(out + ".manifest.json")
	if err == nil {
		err = json.Unmarshal(b, &man)
	}
	if err != nil || len(man) != 2 || man[0].Verdict != "verified" || man[1].Verdict != "wrong" {
		t.Fatalf("the manifest: %+v %v", man, err)
	}
	if !strings.HasPrefix(stdout.String(), "1 verified samples") {
		t.Fatalf("stdout: %q", stdout.String())
	}
}
