package tokenizer

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzLoad: a rank file either loads into a tokenizer whose saved form
// loads back to the same ranks, or is refused; never a panic.
func FuzzLoad(f *testing.F) {
	var full bytes.Buffer
	for b := range 256 {
		full.WriteString(b64([]byte{byte(b)}) + " " + itoa(b) + "\n")
	}
	f.Add(full.Bytes())
	f.Add(append(bytes.Clone(full.Bytes()), "YWI= 256\n"...))
	f.Add([]byte("QQ== 0\nQQ== 1\n"))
	f.Add([]byte("QQ== 70000\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := Load(bytes.NewReader(data), GPT2)
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := tok.Save(&out); err != nil {
			t.Fatal(err)
		}
		back, err := Load(&out, GPT2)
		if err != nil || back.Vocab() != tok.Vocab() {
			t.Fatalf("a saved tokenizer does not load back: %v", err)
		}
	})
}

// FuzzEncode: any bytes, cut by either pattern, encode to ids that decode
// back to exactly those bytes, and the pieces cover the text.
func FuzzEncode(f *testing.F) {
	tok, err := Train([]byte("the cat sat on the mat; the cat's hat. 123 4567 \n\n  naïve"), 300, GPT2, nil)
	if err != nil {
		f.Fatal(err)
	}
	cl, err := New(CL100K, tok.vocab)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"the cat", "I'M 'll \r\n\r\n  x", "\xff\xfe\xc3", "1234567 ٣٤٥", "  \u3000\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		for _, tk := range []*Tokenizer{tok, cl} {
			var pieces []byte
			tk.Pattern().Split(text, func(p []byte) {
				if len(p) == 0 {
					t.Fatalf("%s: an empty piece of %q", tk.Pattern(), text)
				}
				pieces = append(pieces, p...)
			})
			if !bytes.Equal(pieces, text) {
				t.Fatalf("%s: the pieces of %q are %q", tk.Pattern(), text, pieces)
			}
			back, err := tk.Decode(nil, tk.Encode(nil, text))
			if err != nil || !bytes.Equal(back, text) {
				t.Fatalf("%s: %q decodes to %q (%v)", tk.Pattern(), text, back, err)
			}
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	text := shakespeare(b)
	tok, err := Train(text, 4096, GPT2, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		tok.Encode(nil, text)
	}
}

// FuzzLoadHF: any input either loads a tokenizer that round-trips text or
// fails with an error; it never panics.
func FuzzLoadHF(f *testing.F) {
	f.Add(`{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}}`)
	f.Add(`{"model": {"type": "BPE", "vocab": {}, "merges": ["a b"]}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": []}}`)
	f.Add(`{"added_tokens": [{"id": 1048575, "content": "x"}], "model": {"type": "BPE", "vocab": {}}}`)
	f.Fuzz(func(t *testing.T, doc string) {
		tok, err := LoadHF(strings.NewReader(doc))
		if err != nil {
			return
		}
		text := []byte("the cat sat, 42 times.\n")
		back, err := tok.Decode(nil, tok.Encode(nil, text))
		if err != nil || string(back) != string(text) {
			t.Fatalf("round trip: %q, %v", back, err)
		}
	})
}
