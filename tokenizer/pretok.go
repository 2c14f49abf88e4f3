package tokenizer

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Pattern is a pre-tokenisation rule: how text is cut into pieces before
// byte pair encoding, so that no token spans two words, or a word and the
// spaces after it. Each is a hand-written scanner equivalent to one of
// OpenAI's regular expressions (Go's regexp has no look-ahead), with
// Unicode classes from Go's unicode package: \s is unicode.IsSpace, \p{L}
// unicode.IsLetter, \p{N} unicode.IsNumber.
type Pattern string

const (
	// GPT2 is GPT-2's (and tiktoken's "gpt2", r50k and p50k):
	//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
	GPT2 Pattern = "gpt2"
	// CL100K is tiktoken's cl100k_base:
	//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
	//	 ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
	CL100K Pattern = "cl100k"
)

// Patterns are the known pre-tokenisation rules.
func Patterns() []Pattern { return []Pattern{GPT2, CL100K} }

// ParsePattern returns the pattern called s, or an error naming the known
// ones.
func ParsePattern(s string) (Pattern, error) {
	for _, p := range Patterns() {
		if string(p) == s {
			return p, nil
		}
	}
	return "", fmt.Errorf("tokenizer: unknown pre-tokenisation pattern %q (have %v)", s, Patterns())
}

// A byte that is not valid UTF-8 is a character of its own that is
// neither a letter, a number nor a space: text that is not UTF-8 is still
// cut and encoded losslessly (byte-level BPE falls back to single bytes).
func next(b []byte) (rune, int) {
	if len(b) == 0 {
		return -1, 0
	}
	if b[0] < utf8.RuneSelf {
		return rune(b[0]), 1
	}
	return utf8.DecodeRune(b) // RuneError, 1 for an invalid byte
}

func isSpace(r rune) bool  { return r >= 0 && unicode.IsSpace(r) && r != utf8.RuneError }
func isLetter(r rune) bool { return r >= 0 && unicode.IsLetter(r) }
func isNumber(r rune) bool { return r >= 0 && unicode.IsNumber(r) }
func isOther(r rune) bool  { return r >= 0 && !isSpace(r) && !isLetter(r) && !isNumber(r) }
func isNewline(r rune) bool {
	return r == '\r' || r == '\n'
}

// run returns the length in bytes of the longest prefix of b whose
// characters satisfy f, and how many characters that is (at most max; 0:
// no limit).
func run(b []byte, f func(rune) bool, max int) (n, chars int) {
	for n < len(b) && (max == 0 || chars < max) {
		r, w := next(b[n:])
		if !f(r) {
			break
		}
		n += w
		chars++
	}
	return n, chars
}

// Split calls piece with each piece of text in order; the pieces
// concatenate to text exactly.
func (p Pattern) Split(text []byte, piece func([]byte)) {
	for i := 0; i < len(text); {
		var n int
		if p == CL100K {
			n = cl100k(text[i:])
		} else {
			n = gpt2(text[i:])
		}
		piece(text[i : i+n])
		i += n
	}
}

// contraction returns the length of one of 's 't 're 've 'm 'll 'd at
// the start of b (0: none), ignoring case if fold (Unicode simple case
// folding, so the long s matches too).
func contraction(b []byte, fold bool) int {
	if len(b) < 2 || b[0] != '\'' {
		return 0
	}
	eq := func(r rune, c rune) bool {
		if r == c {
			return true
		}
		if !fold {
			return false
		}
		for f := unicode.SimpleFold(c); f != c; f = unicode.SimpleFold(f) {
			if r == f {
				return true
			}
		}
		return false
	}
	r1, w1 := next(b[1:])
	for _, c := range []rune{'s', 't', 'm', 'd'} {
		if eq(r1, c) {
			return 1 + w1
		}
	}
	r2, w2 := next(b[1+w1:])
	for _, c := range [][2]rune{{'r', 'e'}, {'v', 'e'}, {'l', 'l'}} {
		if eq(r1, c[0]) && eq(r2, c[1]) {
			return 1 + w1 + w2
		}
	}
	return 0
}

// spaces is the whitespace alternatives both patterns end with:
// \s+(?!\S)|\s+ at the start of b, which starts with whitespace.
func spaces(b []byte) int {
	n, chars := run(b, isSpace, 0)
	if n == len(b) || chars == 1 {
		return n // at the end, or a lone space before a non-space
	}
	// Give the last space back to the piece that follows it.
	_, w := utf8.DecodeLastRune(b[:n])
	return n - w
}

// gpt2 returns the length of the piece at the start of b (len(b) > 0).
func gpt2(b []byte) int {
	if n := contraction(b, false); n > 0 {
		return n
	}
	lead := 0
	if b[0] == ' ' {
		lead = 1
	}
	r, _ := next(b[lead:])
	for _, class := range []func(rune) bool{isLetter, isNumber, isOther} {
		if class(r) {
			n, _ := run(b[lead:], class, 0)
			return lead + n
		}
	}
	return spaces(b)
}

// cl100k returns the length of the piece at the start of b (len(b) > 0).
func cl100k(b []byte) int {
	if n := contraction(b, true); n > 0 {
		return n
	}
	r, w := next(b)
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if isLetter(r) {
		n, _ := run(b, isLetter, 0)
		return n
	}
	if !isNewline(r) && !isNumber(r) {
		if r2, _ := next(b[w:]); isLetter(r2) {
			n, _ := run(b[w:], isLetter, 0)
			return w + n
		}
	}
	// \p{N}{1,3}
	if isNumber(r) {
		n, _ := run(b, isNumber, 3)
		return n
	}
	// ?[^\s\p{L}\p{N}]+[\r\n]*
	lead := 0
	if b[0] == ' ' {
		lead = 1
	}
	if r, _ := next(b[lead:]); isOther(r) {
		n, _ := run(b[lead:], isOther, 0)
		nl, _ := run(b[lead+n:], isNewline, 0)
		return lead + n + nl
	}
	// \s*[\r\n]+: the longest run of whitespace that ends with a newline.
	n, _ := run(b, isSpace, 0)
	for j := n; j > 0; {
		r, w := utf8.DecodeLastRune(b[:j])
		if isNewline(r) {
			return j
		}
		j -= w
	}
	return spaces(b)
}
