// Package tokenizer is byte-level byte pair encoding: text is cut into
// pieces by a pre-tokenisation pattern (GPT-2's or cl100k's), and each
// piece, as bytes, is merged pair by pair in the order of the merges'
// ranks, exactly as OpenAI's tiktoken does. A tokenizer is its ranks:
// every byte sequence that is a token, with its id (a rank; lower ranks
// merge first). Every single byte is a token, so any input encodes, valid
// UTF-8 or not, and decodes back to itself. Ranks load from and save to
// tiktoken's rank file format (base64 of the token's bytes, a space, the
// rank, one per line), so OpenAI's encodings load as they are, and Train
// learns new ones.
package tokenizer

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
)

// Limits on a rank file: at most MaxVocab tokens of at most MaxTokenBytes
// bytes each.
const (
	MaxVocab      = 1 << 20
	MaxTokenBytes = 512
)

// Tokenizer encodes text to token ids and back. It is safe for concurrent
// use.
type Tokenizer struct {
	pattern Pattern
	ranks   map[string]int
	vocab   [][]byte // by id
}

// New makes a tokenizer from vocab (token bytes by id) and a
// pre-tokenisation pattern. It fails when a token is empty, too long or
// repeated, when a single byte has no token, or when the vocabulary is
// too large.
func New(p Pattern, vocab [][]byte) (*Tokenizer, error) {
	if _, err := ParsePattern(string(p)); err != nil {
		return nil, err
	}
	if len(vocab) > MaxVocab {
		return nil, fmt.Errorf("tokenizer: %d tokens, at most %d", len(vocab), MaxVocab)
	}
	t := &Tokenizer{pattern: p, ranks: make(map[string]int, len(vocab)), vocab: make([][]byte, len(vocab))}
	for id, tok := range vocab {
		if len(tok) == 0 || len(tok) > MaxTokenBytes {
			return nil, fmt.Errorf("tokenizer: token %d has %d bytes, want 1..%d", id, len(tok), MaxTokenBytes)
		}
		if prev, dup := t.ranks[string(tok)]; dup {
			return nil, fmt.Errorf("tokenizer: tokens %d and %d are the same bytes %q", prev, id, tok)
		}
		t.ranks[string(tok)] = id
		t.vocab[id] = bytes.Clone(tok)
	}
	for b := range 256 {
		if _, ok := t.ranks[string([]byte{byte(b)})]; !ok {
			return nil, fmt.Errorf("tokenizer: byte 0x%02x has no token: some input would not encode", b)
		}
	}
	return t, nil
}

// Pattern is the tokenizer's pre-tokenisation pattern.
func (t *Tokenizer) Pattern() Pattern { return t.pattern }

// Vocab is the number of tokens (ids are 0..Vocab-1).
func (t *Tokenizer) Vocab() int { return len(t.vocab) }

// Token returns the bytes of token id (shared: do not modify), or false
// for an id outside the vocabulary.
func (t *Tokenizer) Token(id int) ([]byte, bool) {
	if id < 0 || id >= len(t.vocab) {
		return nil, false
	}
	return t.vocab[id], true
}

// Encode appends the token ids of text to dst and returns it.
func (t *Tokenizer) Encode(dst []int, text []byte) []int {
	var parts []int
	t.pattern.Split(text, func(piece []byte) {
		if id, ok := t.ranks[string(piece)]; ok {
			dst = append(dst, id)
			return
		}
		dst, parts = t.merge(dst, piece, parts)
	})
	return dst
}

// EncodeIDs returns the token ids of text as a model takes them (int32).
func (t *Tokenizer) EncodeIDs(text []byte) []int32 {
	ids := t.Encode(nil, text)
	out := make([]int32, len(ids))
	for i, id := range ids {
		out[i] = int32(id)
	}
	return out
}

// merge appends the ids of piece's byte pair encoding: starting from
// single bytes, the adjacent pair whose concatenation has the lowest rank
// is merged until no pair is a token (ties: the leftmost), as tiktoken's
// byte_pair_merge does. parts is scratch.
func (t *Tokenizer) merge(dst []int, piece []byte, parts []int) ([]int, []int) {
	return t.mergeBelow(dst, piece, parts, math.MaxInt)
}

// mergeBelow is merge using only the tokens of rank below limit.
func (t *Tokenizer) mergeBelow(dst []int, piece []byte, parts []int, limit int) ([]int, []int) {
	// parts[i] is where part i starts; parts[len-1] == len(piece).
	parts = parts[:0]
	for i := range len(piece) + 1 {
		parts = append(parts, i)
	}
	rank := func(i int) int { // rank of parts i and i+1 merged
		if i+2 >= len(parts) {
			return math.MaxInt
		}
		if r, ok := t.ranks[string(piece[parts[i]:parts[i+2]])]; ok {
			return r
		}
		return math.MaxInt
	}
	ranks := make([]int, 0, len(parts))
	for i := range len(parts) - 1 {
		ranks = append(ranks, rank(i))
	}
	for len(parts) > 2 {
		best, at := math.MaxInt, -1
		for i, r := range ranks[:len(parts)-2] {
			if r < best {
				best, at = r, i
			}
		}
		if at < 0 || best >= limit {
			break
		}
		parts = append(parts[:at+1], parts[at+2:]...)
		ranks = append(ranks[:at+1], ranks[at+2:]...)
		ranks[at] = rank(at)
		if at > 0 {
			ranks[at-1] = rank(at - 1)
		}
	}
	for i := 0; i+1 < len(parts); i++ {
		dst = append(dst, t.ranks[string(piece[parts[i]:parts[i+1]])])
	}
	return dst, parts
}

// Decode appends the bytes of ids to dst. It fails on an id outside the
// vocabulary.
func (t *Tokenizer) Decode(dst []byte, ids []int) ([]byte, error) {
	for i, id := range ids {
		tok, ok := t.Token(id)
		if !ok {
			return dst, fmt.Errorf("tokenizer: id %d (at %d) outside the vocabulary of %d", id, i, len(t.vocab))
		}
		dst = append(dst, tok...)
	}
	return dst, nil
}

// Load reads a tiktoken rank file: lines of base64 token bytes, a space
// and the token's rank; the ranks must be exactly 0..n-1 (in any order).
// It fails with the line number on a malformed line, a repeated or
// missing rank, more than MaxVocab tokens, or a token New refuses.
func Load(r io.Reader, p Pattern) (*Tokenizer, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 4*MaxTokenBytes)
	var vocab [][]byte
	seen := 0
	for line := 1; sc.Scan(); line++ {
		f := bytes.Fields(sc.Bytes())
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("tokenizer: rank file line %d: want \"BASE64 RANK\", got %d fields", line, len(f))
		}
		tok, err := base64.StdEncoding.DecodeString(string(f[0]))
		if err != nil {
			return nil, fmt.Errorf("tokenizer: rank file line %d: %v", line, err)
		}
		rank, err := strconv.Atoi(string(f[1]))
		if err != nil || rank < 0 || rank >= MaxVocab {
			return nil, fmt.Errorf("tokenizer: rank file line %d: rank %q, want 0..%d", line, f[1], MaxVocab-1)
		}
		if rank >= len(vocab) {
			if rank >= 2*max(len(vocab), 1<<16) {
				return nil, fmt.Errorf("tokenizer: rank file line %d: rank %d far beyond the %d tokens read", line, rank, seen)
			}
			vocab = append(vocab, make([][]byte, rank+1-len(vocab))...)
		}
		if vocab[rank] != nil {
			return nil, fmt.Errorf("tokenizer: rank file line %d: rank %d given twice", line, rank)
		}
		if len(tok) == 0 {
			return nil, fmt.Errorf("tokenizer: rank file line %d: empty token", line)
		}
		vocab[rank] = tok
		seen++
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tokenizer: rank file: %v", err)
	}
	if seen != len(vocab) {
		for i, v := range vocab {
			if v == nil {
				return nil, fmt.Errorf("tokenizer: rank file: rank %d missing (ranks must be 0..%d)", i, len(vocab)-1)
			}
		}
	}
	if len(vocab) == 0 {
		return nil, errors.New("tokenizer: rank file holds no tokens")
	}
	return New(p, vocab)
}

// Save writes the tokenizer's ranks as a tiktoken rank file, by rank.
func (t *Tokenizer) Save(w io.Writer) error {
	bw := bufio.NewWriter(w)
	for id, tok := range t.vocab {
		bw.WriteString(base64.StdEncoding.EncodeToString(tok))
		bw.WriteByte(' ')
		bw.WriteString(strconv.Itoa(id))
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// Metadata keys under which a model file carries its tokenizer.
const (
	MetaRanks   = "tokenizer_ranks"   // the rank file's text
	MetaPattern = "tokenizer_pattern" // the pre-tokenisation pattern
)

// Metadata returns the tokenizer as model file metadata.
func (t *Tokenizer) Metadata() map[string]string {
	var b bytes.Buffer
	t.Save(&b) // a bytes.Buffer does not fail
	return map[string]string{MetaRanks: b.String(), MetaPattern: string(t.pattern)}
}

// FromMetadata reads the tokenizer a model file's metadata carries: nil
// (and no error) when it carries none, as a byte-level model's does. It
// fails when the tokenizer is incomplete or does not load.
func FromMetadata(md map[string]string) (*Tokenizer, error) {
	ranks, ok1 := md[MetaRanks]
	pat, ok2 := md[MetaPattern]
	switch {
	case !ok1 && !ok2:
		return nil, nil
	case !ok1 || !ok2:
		return nil, errors.New("tokenizer: the model file carries half a tokenizer (ranks and pattern go together)")
	}
	p, err := ParsePattern(pat)
	if err != nil {
		return nil, err
	}
	return Load(bytes.NewReader([]byte(ranks)), p)
}

// ID names the tokenizer: the hex SHA-256 of its pattern and rank file, so
// that the nodes of a run can check that they cut text alike.
func (t *Tokenizer) ID() string {
	h := sha256.New()
	h.Write([]byte(t.pattern))
	h.Write([]byte{'\n'})
	t.Save(h) // a hash does not fail
	return hex.EncodeToString(h.Sum(nil))
}
