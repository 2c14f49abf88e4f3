package tokenizer

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func shakespeare(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "shared", "data", "tinyshakespeare.txt"))
	if err != nil {
		t.Fatalf("the corpus (../shared/data): %v", err)
	}
	return b
}

// Pieces as OpenAI's patterns cut them (checked by hand against the
// regular expressions' semantics; the parity test checks the ids).
func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		p    Pattern
		text string
		want []string
	}{
		{GPT2, "Hello world", []string{"Hello", " world"}},
		{GPT2, "I'm  here's", []string{"I", "'m", " ", " here", "'s"}},
		{GPT2, "DON'T", []string{"DON", "'", "T"}},
		{GPT2, "a   b\n\n", []string{"a", "  ", " b", "\n\n"}},
		{GPT2, "x = 12345!!", []string{"x", " =", " 12345", "!!"}},
		{GPT2, "tab\tthen", []string{"tab", "\t", "then"}},
		{CL100K, "DON'T", []string{"DON", "'T"}},
		{CL100K, "x = 12345!!", []string{"x", " =", " ", "123", "45", "!!"}},
		{CL100K, "hello\n\n  world", []string{"hello", "\n\n", " ", " world"}},
		{CL100K, "a.\n\nb", []string{"a", ".\n\n", "b"}},
		{CL100K, "  \n  x", []string{"  \n", " ", " x"}},
		{CL100K, "'hello", []string{"'hello"}},
		{CL100K, "\xff\xfeabc", []string{"\xff\xfe", "abc"}},
	} {
		var got []string
		tc.p.Split([]byte(tc.text), func(b []byte) { got = append(got, string(b)) })
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s %q: pieces %q, want %q", tc.p, tc.text, got, tc.want)
		}
	}
}

// Training on tiny shakespeare: the vocabulary it asks for, deterministic,
// well under 10 s, and it round-trips any bytes, UTF-8 or not, in fewer
// tokens than bytes.
func TestTrainRoundTrip(t *testing.T) {
	text := shakespeare(t)
	start := time.Now()
	tok, err := Train(text, 1024, GPT2, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("trained 1024 tokens in %s", time.Since(start))
	if tok.Vocab() != 1024 {
		t.Fatalf("vocab %d, want 1024", tok.Vocab())
	}
	again, err := Train(text, 1024, GPT2, nil)
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	tok.Save(&a)
	again.Save(&b)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("training twice gives two vocabularies")
	}
	loaded, err := Load(&a, GPT2)
	if err != nil || loaded.Vocab() != 1024 {
		t.Fatalf("reloading: %v", err)
	}
	for _, s := range [][]byte{text[:5000], []byte("\xff\xfe\x00 naïve café 東京 🙂 \r\n\t  "), {}} {
		ids := loaded.Encode(nil, s)
		back, err := loaded.Decode(nil, ids)
		if err != nil || !bytes.Equal(back, s) {
			t.Fatalf("%q: decoded %q (%v)", s[:min(len(s), 40)], back[:min(len(back), 40)], err)
		}
		if len(s) > 1000 && len(ids)*2 > len(s) {
			t.Fatalf("%d bytes of the training text in %d tokens: want at least 2 bytes a token", len(s), len(ids))
		}
	}
	if _, err := loaded.Decode(nil, []int{1024}); err == nil {
		t.Fatal("an id outside the vocabulary decoded")
	}
}

// Rank files that do not describe a vocabulary are refused with the line.
func TestLoadRefuses(t *testing.T) {
	var full strings.Builder
	for b := range 256 {
		full.WriteString(b64([]byte{byte(b)}))
		full.WriteString(" " + itoa(b) + "\n")
	}
	if _, err := Load(strings.NewReader(full.String()), GPT2); err != nil {
		t.Fatalf("the 256 bytes: %v", err)
	}
	for _, tc := range []struct{ file, want string }{
		{"", "no tokens"},
		{"QQ== 0\n", "has no token"},
		{"QQ== 0 1\n", "line 1"},
		{"!!! 0\n", "line 1"},
		{"QQ== -1\n", "rank"},
		{"QQ== 0\nQg== 0\n", "given twice"},
		{"QQ== 0\nQg== 2\n", "rank 1 missing"},
		{"QQ== 0\nQQ== 1\n", "same bytes"},
		{"QQ== 99999999\n", "rank"},
		{" 0\n", "line 1"},
	} {
		if _, err := Load(strings.NewReader(tc.file), GPT2); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.file, err, tc.want)
		}
	}
}
