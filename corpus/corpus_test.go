package corpus

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEmbeddedCorpus(t *testing.T) {
	b := TinyShakespeare()
	if len(b) != 1115394 || !strings.HasPrefix(string(b), "First Citizen:") {
		t.Fatalf("embedded corpus: %d bytes starting %q", len(b), b[:20])
	}
	train, val := Split(b, 0.9)
	if len(train) != 1003854 || len(train)+len(val) != len(b) {
		t.Fatalf("split %d + %d", len(train), len(val))
	}
}

func TestSamplerIsAFunctionOfSeedStreamStep(t *testing.T) {
	data := TinyShakespeare()[:10000]
	s1, _ := NewSampler(data, 3, 8, 7)
	s2, _ := NewSampler(data, 3, 8, 7)
	a, at := make([]int32, 24), make([]int32, 24)
	b, bt := make([]int32, 24), make([]int32, 24)
	s1.Batch(0, 5, a, at)
	s2.Batch(0, 9, b, bt) // another step in between must not matter
	s2.Batch(0, 5, b, bt)
	for i := range a {
		if a[i] != b[i] || at[i] != bt[i] {
			t.Fatalf("same (seed, stream, step) gave different batches")
		}
	}
	starts := s1.Batch(0, 5, a, at)
	for r, st := range starts {
		for i := 0; i < 8; i++ {
			if a[r*8+i] != int32(data[st+i]) || at[r*8+i] != int32(data[st+i+1]) {
				t.Fatalf("row %d is not the window at %d", r, st)
			}
		}
	}
	s1.Batch(1, 5, b, bt)
	same := true
	for i := range a {
		same = same && a[i] == b[i]
	}
	if same {
		t.Fatal("streams 0 and 1 drew the same batch")
	}
}

func TestBadData(t *testing.T) {
	if _, err := NewSampler([]byte("abc"), 1, 3, 0); err == nil || !strings.Contains(err.Error(), "shorter than the context") {
		t.Fatalf("short data: %v", err)
	}
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.txt")
	os.WriteFile(empty, nil, 0o644)
	if _, err := Load(empty); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty file: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.txt")); err == nil {
		t.Fatal("missing file loaded")
	}
}
