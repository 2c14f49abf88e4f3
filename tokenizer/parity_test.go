package tokenizer

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTiktokenParity compares Encode with OpenAI's own tokenizer on the
// ids scripts/tiktoken/run.sh wrote (CAIRN_TIKTOKEN_DIR): every document,
// both encodings, every id. Without the directory it skips, unless
// CAIRN_TIKTOKEN=require (as in CI), where it fails.
func TestTiktokenParity(t *testing.T) {
	dir := referenceDir(t)
	for _, enc := range []struct {
		name string
		p    Pattern
	}{{"gpt2", GPT2}, {"cl100k_base", CL100K}} {
		f, err := os.Open(filepath.Join(dir, enc.name+".tiktoken"))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := Load(f, enc.p)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", enc.name, err)
		}
		docs := referenceDocs(t, dir, enc.name)
		var bytes, ids int
		var took time.Duration
		for _, d := range docs {
			text, want := d.text, d.want
			start := time.Now()
			got := tok.Encode(nil, text)
			took += time.Since(start)
			bytes += len(text)
			ids += len(got)
			for i := range max(len(got), len(want)) {
				if i >= len(got) || i >= len(want) || got[i] != want[i] {
					from := max(0, i-3)
					t.Errorf("%s %s: %d ids, tiktoken %d; first difference at %d: ours %v, tiktoken %v", enc.name, d.name, len(got), len(want), i,
						show(tok, got[from:min(len(got), i+4)]), show(tok, want[from:min(len(want), i+4)]))
					break
				}
			}
		}
		t.Logf("parity %s: %d documents, %d bytes, %d ids identical to tiktoken's; encoded at %.1f MB/s", enc.name, len(docs), bytes, ids,
			float64(bytes)/took.Seconds()/1e6)
	}
}

// TestHFParity loads GPT-2's tokenizer.json (written by run.sh from
// OpenAI's original files in Hugging Face's format) with LoadHF and checks
// that it encodes every gpt2 document to tiktoken's ids. It skips or fails
// as TestTiktokenParity does.
func TestHFParity(t *testing.T) {
	dir := referenceDir(t)
	raw, err := os.ReadFile(filepath.Join(dir, "gpt2-tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := LoadHF(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Pattern() != GPT2 || tok.Vocab() != 50257 {
		t.Fatalf("tokenizer.json: pattern %s, %d tokens; want gpt2, 50257", tok.Pattern(), tok.Vocab())
	}
	// Written back, the merges are OpenAI's, in their order.
	var out bytes.Buffer
	if err := tok.SaveHF(&out); err != nil {
		t.Fatal(err)
	}
	var orig, back struct{ Model struct{ Merges []string } }
	if err := json.Unmarshal(raw, &orig); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(orig.Model.Merges, back.Model.Merges) {
		t.Errorf("SaveHF wrote %d merges, not the file's %d in order", len(back.Model.Merges), len(orig.Model.Merges))
	}
	docs := referenceDocs(t, dir, "gpt2")
	ids := 0
	for _, d := range docs {
		got := tok.Encode(nil, d.text)
		if len(got) != len(d.want) {
			t.Errorf("%s: %d ids, tiktoken %d", d.name, len(got), len(d.want))
			continue
		}
		for i, w := range d.want {
			if got[i] != w {
				t.Errorf("%s: id %d is %d, tiktoken %d", d.name, i, got[i], w)
				break
			}
		}
		ids += len(got)
	}
	t.Logf("parity gpt2 from tokenizer.json: %d documents, %d ids identical to tiktoken's; SaveHF wrote its %d merges back in order", len(docs), ids, len(orig.Model.Merges))
}

func show(tok *Tokenizer, ids []int) []string {
	var out []string
	for _, id := range ids {
		b, _ := tok.Token(id)
		out = append(out, strconv.Itoa(id)+":"+strconv.Quote(string(b)))
	}
	return out
}

// referenceDir is the directory of reference ids scripts/tiktoken/run.sh
// wrote (CAIRN_TIKTOKEN_DIR). Without it the test skips, unless
// CAIRN_TIKTOKEN=require (as in CI), where it fails.
func referenceDir(t *testing.T) string {
	dir := os.Getenv("CAIRN_TIKTOKEN_DIR")
	if dir == "" {
		if os.Getenv("CAIRN_TIKTOKEN") == "require" {
			t.Fatal("CAIRN_TIKTOKEN=require but no CAIRN_TIKTOKEN_DIR: run scripts/tiktoken/run.sh")
		}
		t.Skip("no reference ids: scripts/tiktoken/run.sh makes them")
	}
	return dir
}

// refDoc is a test document and the ids tiktoken gave it.
type refDoc struct {
	name string
	text []byte
	want []int
}

// referenceDocs reads the documents of encoding enc under dir (NAME.text
// beside NAME.ids); it fails when there are none.
func referenceDocs(t *testing.T, dir, enc string) []refDoc {
	texts, err := filepath.Glob(filepath.Join(dir, enc, "*.text"))
	if err != nil || len(texts) == 0 {
		t.Fatalf("%s: no documents (%v)", enc, err)
	}
	var docs []refDoc
	for _, path := range texts {
		text, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(strings.TrimSuffix(path, ".text") + ".ids")
		if err != nil {
			t.Fatal(err)
		}
		d := refDoc{name: filepath.Base(path), text: text}
		for _, f := range strings.Fields(string(raw)) {
			id, err := strconv.Atoi(f)
			if err != nil {
				t.Fatal(err)
			}
			d.want = append(d.want, id)
		}
		docs = append(docs, d)
	}
	return docs
}
