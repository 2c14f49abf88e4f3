package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"
)

// MaxHFBytes bounds a tokenizer.json that LoadHF reads (Llama 3's is 9 MB).
const MaxHFBytes = 64 << 20

// The pre-tokenisation regular expressions of GPT2 and CL100K as Hugging
// Face tokenizer.json files spell them (Llama 3's Split pattern is
// cl100k's); LoadHF accepts exactly these.
const (
	gpt2Regex   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	cl100kRegex = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// hfFile is the part of a Hugging Face tokenizer.json that LoadHF reads.
type hfFile struct {
	AddedTokens []struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
	} `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  *hfPreTokenizer `json:"pre_tokenizer"`
	Model         *hfModel        `json:"model"`
	PostProcessor json.RawMessage `json:"post_processor"`
}

type hfPreTokenizer struct {
	Type          string                   `json:"type"`
	UseRegex      *bool                    `json:"use_regex"`
	AddPrefix     bool                     `json:"add_prefix_space"`
	Pattern       *struct{ Regex *string } `json:"pattern"`
	Behavior      string                   `json:"behavior"`
	Invert        bool                     `json:"invert"`
	PreTokenizers []hfPreTokenizer         `json:"pretokenizers"`
}

type hfModel struct {
	Type         string            `json:"type"`
	Vocab        map[string]int    `json:"vocab"`
	Merges       []json.RawMessage `json:"merges"`
	ByteFallback bool              `json:"byte_fallback"`
	Prefix       string            `json:"continuing_subword_prefix"`
	Suffix       string            `json:"end_of_word_suffix"`
}

// byteLevel maps GPT-2's printable stand-ins for bytes back to the bytes
// (the bytes_to_unicode table of byte-level BPE).
var byteLevel = func() map[rune]byte {
	m := make(map[rune]byte, 256)
	n := 0
	for b := 0; b < 256; b++ {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF {
			m[rune(b)] = byte(b)
		} else {
			m[rune(256+n)] = byte(b)
			n++
		}
	}
	return m
}()

// fromByteLevel decodes a byte-level token string into its bytes.
func fromByteLevel(s string) ([]byte, bool) {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		b, ok := byteLevel[r]
		if !ok {
			return nil, false
		}
		out = append(out, b)
	}
	return out, true
}

// LoadHF reads a Hugging Face tokenizer.json of a byte-level BPE tokenizer
// with GPT-2's or cl100k's pre-tokenisation (GPT-2, Llama 3) and returns
// the tokenizer that encodes as it does: the model's vocabulary by id (added tokens included, as plain text) and
// the pre-tokenisation pattern its pre-tokenizer spells. It accepts only
// what it can reproduce exactly and fails, saying why, on anything else: a
// file over MaxHFBytes or not JSON, a model other than BPE, byte fallback
// (SentencePiece-style tokenizers) or subword prefixes, a normalizer, a
// pre-tokenizer other than byte-level with GPT-2's or cl100k's regular
// expression, a token that is not byte-level text, ids that are not
// 0..n-1, or merges out of id order (encoding by rank, as tiktoken does,
// then differs from applying the merges in their order). Post-processing
// (a beginning-of-text token added by the template) is not applied: the
// ids are those of the text alone.
func LoadHF(r io.Reader) (*Tokenizer, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxHFBytes+1))
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json: %v", err)
	}
	if len(data) > MaxHFBytes {
		return nil, fmt.Errorf("tokenizer.json: larger than %d bytes", MaxHFBytes)
	}
	var f hfFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %v", err)
	}
	m := f.Model
	switch {
	case m == nil:
		return nil, errors.New("tokenizer.json: no model")
	case m.Type != "BPE":
		return nil, fmt.Errorf("tokenizer.json: model type %q, only byte-level BPE is supported", m.Type)
	case m.ByteFallback:
		return nil, errors.New("tokenizer.json: byte fallback (a SentencePiece-style BPE) is not supported, only byte-level BPE")
	case m.Prefix != "" || m.Suffix != "":
		return nil, errors.New("tokenizer.json: subword prefixes or suffixes are not supported, only byte-level BPE")
	case len(f.Normalizer) > 0 && string(f.Normalizer) != "null":
		return nil, errors.New("tokenizer.json: a normalizer is not supported")
	}
	p, err := hfPattern(f.PreTokenizer)
	if err != nil {
		return nil, err
	}
	n := len(m.Vocab)
	for _, a := range f.AddedTokens {
		n = max(n, a.ID+1)
	}
	if n > MaxVocab {
		return nil, fmt.Errorf("tokenizer.json: %d tokens, at most %d", n, MaxVocab)
	}
	vocab := make([][]byte, n)
	for s, id := range m.Vocab {
		if id < 0 || id >= n {
			return nil, fmt.Errorf("tokenizer.json: token %q has id %d outside 0..%d", s, id, n-1)
		}
		b, ok := fromByteLevel(s)
		if !ok {
			return nil, fmt.Errorf("tokenizer.json: token %q (id %d) is not byte-level text", s, id)
		}
		if vocab[id] != nil {
			return nil, fmt.Errorf("tokenizer.json: id %d given twice", id)
		}
		vocab[id] = b
	}
	for _, a := range f.AddedTokens {
		if a.ID < 0 {
			return nil, fmt.Errorf("tokenizer.json: added token %q has id %d", a.Content, a.ID)
		}
		if vocab[a.ID] == nil {
			vocab[a.ID] = []byte(a.Content)
		}
	}
	for id, b := range vocab {
		if b == nil {
			return nil, fmt.Errorf("tokenizer.json: id %d has no token (ids must be 0..%d)", id, n-1)
		}
	}
	if err := checkMerges(m); err != nil {
		return nil, err
	}
	return New(p, vocab)
}

// hfPattern maps a byte-level pre-tokenizer to its Pattern.
func hfPattern(pt *hfPreTokenizer) (Pattern, error) {
	if pt == nil {
		return "", errors.New("tokenizer.json: no pre-tokenizer; only byte-level ones are supported")
	}
	if pt.Type == "ByteLevel" {
		if pt.UseRegex != nil && !*pt.UseRegex || pt.AddPrefix {
			return "", errors.New("tokenizer.json: a ByteLevel pre-tokenizer without GPT-2's regular expression, or adding a prefix space, is not supported")
		}
		return GPT2, nil
	}
	if pt.Type == "Sequence" && len(pt.PreTokenizers) == 2 {
		split, bl := pt.PreTokenizers[0], pt.PreTokenizers[1]
		if split.Type == "Split" && split.Pattern != nil && split.Pattern.Regex != nil && split.Behavior == "Isolated" && !split.Invert &&
			bl.Type == "ByteLevel" && bl.UseRegex != nil && !*bl.UseRegex && !bl.AddPrefix {
			switch *split.Pattern.Regex {
			case gpt2Regex:
				return GPT2, nil
			case cl100kRegex:
				return CL100K, nil
			}
			return "", fmt.Errorf("tokenizer.json: the pre-tokenizer's regular expression %q is neither GPT-2's nor cl100k's", trim(*split.Pattern.Regex))
		}
	}
	return "", fmt.Errorf("tokenizer.json: pre-tokenizer %q is not supported (byte-level with GPT-2's or cl100k's regular expression only)", pt.Type)
}

// checkMerges requires every merge to join two tokens into a token whose
// id grows with the merge's place in the list: then merging the adjacent
// pair of lowest id, as Encode does, applies the merges in their order.
func checkMerges(m *hfModel) error {
	ids := make(map[string]int, len(m.Vocab))
	for s, id := range m.Vocab {
		ids[s] = id
	}
	last := -1
	for i, raw := range m.Merges {
		var a, b string
		var pair []string
		var s string
		switch {
		case json.Unmarshal(raw, &s) == nil:
			l, r, ok := strings.Cut(s, " ")
			if !ok || strings.Contains(r, " ") {
				return fmt.Errorf("tokenizer.json: merge %d %q is not two tokens", i, trim(s))
			}
			a, b = l, r
		case json.Unmarshal(raw, &pair) == nil && len(pair) == 2:
			a, b = pair[0], pair[1]
		default:
			return fmt.Errorf("tokenizer.json: merge %d is neither \"a b\" nor [\"a\", \"b\"]", i)
		}
		_, okA := ids[a]
		_, okB := ids[b]
		id, okAB := ids[a+b]
		if !okA || !okB || !okAB {
			return fmt.Errorf("tokenizer.json: merge %d (%q, %q) joins tokens not all in the vocabulary", i, trim(a), trim(b))
		}
		if id <= last {
			return fmt.Errorf("tokenizer.json: merge %d makes token %d after a merge made %d: merges out of id order are not supported", i, id, last)
		}
		last = id
	}
	return nil
}

// trim shortens s for an error message.
func trim(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// LoadFile reads a tokenizer from path: a Hugging Face tokenizer.json
// (LoadHF, which brings its own pattern) when the file starts with '{',
// otherwise a tiktoken rank file made with pattern p (Load). Errors name
// the file.
func LoadFile(path string, p Pattern) (*Tokenizer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	first, _ := br.Peek(64)
	var tok *Tokenizer
	if t := bytes.TrimLeft(first, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		tok, err = LoadHF(br)
	} else {
		tok, err = Load(br, p)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return tok, nil
}

// SaveHF writes the tokenizer as a Hugging Face tokenizer.json (byte-level
// BPE, its pattern's pre-tokenizer), which LoadHF and the tokenizers
// library read. Each token beyond the single bytes is written as the merge
// of the two tokens that byte pair encoding with the tokens before it
// yields, or, where no merge builds it, as an added token of its text; it
// fails on a token that is neither (bytes that are not UTF-8).
func (t *Tokenizer) SaveHF(w io.Writer) error {
	toBL := make([]rune, 256)
	for r, b := range byteLevel {
		toBL[b] = r
	}
	str := func(b []byte) string {
		rs := make([]rune, len(b))
		for i, x := range b {
			rs[i] = toBL[x]
		}
		return string(rs)
	}
	vocab := make(map[string]int, len(t.vocab))
	var merges []string
	var added []any
	var parts []int
	for id, tok := range t.vocab {
		vocab[str(tok)] = id
		if len(tok) < 2 {
			continue
		}
		var ids []int
		ids, parts = t.mergeBelow(nil, tok, parts, id)
		switch {
		case len(ids) == 2:
			merges = append(merges, str(t.vocab[ids[0]])+" "+str(t.vocab[ids[1]]))
		case utf8.Valid(tok):
			// A token no merge builds, as GPT-2's <|endoftext|>: an added
			// token, as Hugging Face's files have it.
			added = append(added, map[string]any{"id": id, "content": string(tok), "single_word": false,
				"lstrip": false, "rstrip": false, "normalized": true, "special": true})
		default:
			return fmt.Errorf("tokenizer: token %d (%q) is neither the merge of two earlier tokens nor text", id, tok)
		}
	}
	byteLevelPT := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
	pre := any(byteLevelPT)
	if t.pattern == CL100K {
		pre = map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": cl100kRegex}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
		}}
	}
	doc := map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil, "added_tokens": added, "normalizer": nil,
		"pre_tokenizer": pre, "post_processor": byteLevelPT, "decoder": byteLevelPT,
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": "",
			"end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": true, "vocab": vocab, "merges": merges},
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(doc)
}
