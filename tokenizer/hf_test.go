package tokenizer

import (
	"encoding/json"
	"strings"
	"testing"
)

// toByteLevel is the inverse of fromByteLevel.
func toByteLevel(b []byte) string {
	inv := map[byte]rune{}
	for r, x := range byteLevel {
		inv[x] = r
	}
	var s strings.Builder
	for _, x := range b {
		s.WriteRune(inv[x])
	}
	return s.String()
}

// hfJSON writes a tokenizer.json of byte-level BPE: the 256 bytes (ids in
// byte order), then one token per merge, in order; edit changes the
// document before it is written.
func hfJSON(t *testing.T, merges [][2]string, edit func(map[string]any)) string {
	t.Helper()
	vocab := map[string]int{}
	for b := 0; b < 256; b++ {
		vocab[toByteLevel([]byte{byte(b)})] = b
	}
	var ms []string
	for i, m := range merges {
		a, b := toByteLevel([]byte(m[0])), toByteLevel([]byte(m[1]))
		vocab[a+b] = 256 + i
		ms = append(ms, a+" "+b)
	}
	doc := map[string]any{
		"added_tokens":  []any{},
		"normalizer":    nil,
		"pre_tokenizer": map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
		"model":         map[string]any{"type": "BPE", "vocab": vocab, "merges": ms, "byte_fallback": false},
	}
	if edit != nil {
		edit(doc)
	}
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

var testMerges = [][2]string{{" ", "t"}, {"h", "e"}, {" t", "he"}, {"c", "at"}, {"a", "t"}}

func TestLoadHF(t *testing.T) {
	tok, err := LoadHF(strings.NewReader(hfJSON(t, testMerges[:3], nil)))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Vocab() != 259 || tok.Pattern() != GPT2 {
		t.Fatalf("%d tokens, pattern %s", tok.Vocab(), tok.Pattern())
	}
	got := tok.Encode(nil, []byte("the the\nthe"))
	want := []int{'t', 257, 258, '\n', 't', 257}
	if len(got) != len(want) {
		t.Fatalf("ids %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("ids %v, want %v", got, want)
		}
	}
	// Llama 3's form: a Split with cl100k's expression, then ByteLevel
	// without its own; merges as pairs; an added token beyond the vocabulary.
	doc := hfJSON(t, testMerges[:3], func(d map[string]any) {
		d["pre_tokenizer"] = map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": cl100kRegex}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": false},
		}}
		m := d["model"].(map[string]any)
		var pairs [][]string
		for _, s := range m["merges"].([]string) {
			a, b, _ := strings.Cut(s, " ")
			pairs = append(pairs, []string{a, b})
		}
		m["merges"] = pairs
		d["added_tokens"] = []any{map[string]any{"id": 259, "content": "<|begin_of_text|>", "special": true}}
	})
	tok, err = LoadHF(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Vocab() != 260 || tok.Pattern() != CL100K {
		t.Fatalf("%d tokens, pattern %s", tok.Vocab(), tok.Pattern())
	}
	if b, _ := tok.Token(259); string(b) != "<|begin_of_text|>" {
		t.Fatalf("added token %q", b)
	}
}

// TestLoadHFRefuses: what LoadHF cannot reproduce exactly it refuses, saying
// why.
func TestLoadHFRefuses(t *testing.T) {
	model := func(k string, v any) func(map[string]any) {
		return func(d map[string]any) { d["model"].(map[string]any)[k] = v }
	}
	for _, c := range []struct {
		name string
		doc  string
		want string
	}{
		{"not JSON", "{", "unexpected end"},
		{"no model", `{"pre_tokenizer": {"type": "ByteLevel"}}`, "no model"},
		{"unigram", hfJSON(t, nil, model("type", "Unigram")), `model type "Unigram"`},
		{"byte fallback", hfJSON(t, nil, model("byte_fallback", true)), "byte fallback"},
		{"prefix", hfJSON(t, nil, model("continuing_subword_prefix", "##")), "subword prefixes"},
		{"normalizer", hfJSON(t, nil, func(d map[string]any) { d["normalizer"] = map[string]any{"type": "NFC"} }), "normalizer"},
		{"metaspace", hfJSON(t, nil, func(d map[string]any) { d["pre_tokenizer"] = map[string]any{"type": "Metaspace"} }), `pre-tokenizer "Metaspace"`},
		{"prefix space", hfJSON(t, nil, func(d map[string]any) {
			d["pre_tokenizer"] = map[string]any{"type": "ByteLevel", "add_prefix_space": true, "use_regex": true}
		}), "prefix space"},
		{"other regex", hfJSON(t, nil, func(d map[string]any) {
			d["pre_tokenizer"] = map[string]any{"type": "Sequence", "pretokenizers": []any{
				map[string]any{"type": "Split", "pattern": map[string]any{"Regex": `\w+`}, "behavior": "Isolated"},
				map[string]any{"type": "ByteLevel", "use_regex": false},
			}}
		}), "neither GPT-2's nor cl100k's"},
		{"not byte-level", hfJSON(t, nil, func(d map[string]any) { d["model"].(map[string]any)["vocab"].(map[string]int)["\x01"] = 256 }), "not byte-level text"},
		{"gap in ids", hfJSON(t, nil, func(d map[string]any) { d["added_tokens"] = []any{map[string]any{"id": 300, "content": "<x>"}} }), "id 256 has no token"},
		{"id beyond", hfJSON(t, nil, func(d map[string]any) { d["model"].(map[string]any)["vocab"].(map[string]int)["Ġx"] = 300 }), "outside"},
		{"negative id", hfJSON(t, nil, func(d map[string]any) { d["model"].(map[string]any)["vocab"].(map[string]int)["Ġx"] = -1 }), "outside"},
		{"merges out of order", hfJSON(t, testMerges[:3], func(d map[string]any) {
			m := d["model"].(map[string]any)
			ms := m["merges"].([]string)
			ms[0], ms[1] = ms[1], ms[0]
		}), "out of id order"},
		{"merge of unknown tokens", hfJSON(t, testMerges[:1], func(d map[string]any) {
			d["model"].(map[string]any)["merges"] = []string{"Ġt zz"}
		}), "not all in the vocabulary"},
		{"merge of three", hfJSON(t, testMerges[:1], func(d map[string]any) {
			d["model"].(map[string]any)["merges"] = []string{"a b c"}
		}), "not two tokens"},
	} {
		_, err := LoadHF(strings.NewReader(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
}

// TestSaveHFRoundTrip: a trained tokenizer written as tokenizer.json loads
// back (LoadHF) with the same tokens and pattern, so the same ids.
func TestSaveHFRoundTrip(t *testing.T) {
	text := []byte(strings.Repeat("the cat sat on the mat; 12345 cats, ÄÖÜ café\r\n\t  x ", 40))
	for _, p := range Patterns() {
		tok, err := Train(text, 400, p, nil)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		if err := tok.SaveHF(&b); err != nil {
			t.Fatal(err)
		}
		back, err := LoadHF(strings.NewReader(b.String()))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if back.Pattern() != p || back.Vocab() != tok.Vocab() {
			t.Fatalf("%s: back as %s with %d tokens, want %d", p, back.Pattern(), back.Vocab(), tok.Vocab())
		}
		for id := range tok.Vocab() {
			x, _ := tok.Token(id)
			y, _ := back.Token(id)
			if string(x) != string(y) {
				t.Fatalf("%s: token %d %q came back %q", p, id, x, y)
			}
		}
	}
}
