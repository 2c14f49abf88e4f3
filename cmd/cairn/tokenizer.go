package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/tokenizer"
)

const tokenizerUsage = "usage: cairn tokenizer train --data FILE --vocab N --out FILE | cairn tokenizer encode --tokenizer FILE [--pattern P] FILE"

// runTokenizer is 'cairn tokenizer': byte-level BPE (package tokenizer).
func runTokenizer(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return badInput(tokenizerUsage)
	}
	switch args[0] {
	case "train":
		return tokenizerTrain(args[1:], stdout, stderr)
	case "encode":
		return tokenizerEncode(args[1:], stdout, stderr)
	}
	return badInput(tokenizerUsage)
}

func patternFlag(s string) (tokenizer.Pattern, error) {
	p, err := tokenizer.ParsePattern(s)
	if err != nil {
		return "", badInput("--pattern: %v", err)
	}
	return p, nil
}

func tokenizerTrain(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("tokenizer train", stderr)
	data := fs.String("data", "", "training text (default: the embedded tiny shakespeare)")
	vocab := fs.Int("vocab", 4096, "tokens in the vocabulary (the 256 bytes and the merges)")
	out := fs.String("out", "", "where the tokenizer is written: a tiktoken rank file, or a Hugging Face tokenizer.json when the name ends in .json")
	pat := fs.String("pattern", string(tokenizer.GPT2), "pre-tokenisation pattern: gpt2 or cl100k")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *out == "" {
		return badInput("--out is required: where the tokenizer is written")
	}
	p, err := patternFlag(*pat)
	if err != nil {
		return err
	}
	if *vocab < 256 || *vocab > tokenizer.MaxVocab {
		return badInput("--vocab %d: want 256..%d", *vocab, tokenizer.MaxVocab)
	}
	text := corpus.TinyShakespeare()
	if *data != "" {
		if text, err = os.ReadFile(*data); err != nil {
			return badInput("--data: %v", err)
		}
	}
	bar := newProgress(stderr, *vocab, "merges")
	start := time.Now()
	tok, err := tokenizer.Train(text, *vocab, p, func(n int) {
		if bar.bar != nil && n%64 == 0 {
			bar.update(n, fmt.Sprintf("%d tokens", n))
		}
	})
	bar.finish()
	if err != nil {
		return err
	}
	took := time.Since(start)
	var buf bytes.Buffer
	save := tok.Save
	if strings.HasSuffix(*out, ".json") {
		save = tok.SaveHF
	}
	if err := save(&buf); err != nil {
		return err
	}
	if err := writeFileAtomic(*out, buf.Bytes()); err != nil {
		return err
	}
	start = time.Now()
	ids := tok.Encode(nil, text)
	enc := time.Since(start)
	fmt.Fprintf(stdout, "trained %d tokens (pattern %s) on %s in %s (%.2f MB/s); the text encodes to %d tokens, %.2f bytes a token, at %.1f MB/s; written to %s\n",
		tok.Vocab(), p, human(uint64(len(text))), took.Round(time.Millisecond), float64(len(text))/took.Seconds()/1e6,
		len(ids), float64(len(text))/float64(max(len(ids), 1)), float64(len(text))/enc.Seconds()/1e6, *out)
	return nil
}

func tokenizerEncode(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("tokenizer encode", stderr)
	file := fs.String("tokenizer", "", "a tiktoken rank file (from 'tokenizer train', or OpenAI's gpt2 / cl100k_base) or a Hugging Face tokenizer.json of a byte-level BPE")
	pat := fs.String("pattern", string(tokenizer.GPT2), "pre-tokenisation pattern the tokenizer was made with: gpt2 or cl100k")
	if err := parseFlags(fs, args, 1); err != nil {
		return err
	}
	if *file == "" || fs.NArg() != 1 {
		return badInput(tokenizerUsage)
	}
	tok, err := loadTokenizer(*file, *pat)
	if err != nil {
		return err
	}
	text, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return badInput("%v", err)
	}
	start := time.Now()
	ids := tok.Encode(nil, text)
	took := time.Since(start)
	w := bufio.NewWriter(stdout)
	for i, id := range ids {
		if i > 0 {
			w.WriteByte(' ')
		}
		w.WriteString(strconv.Itoa(id))
	}
	w.WriteByte('\n')
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%d bytes, %d tokens, %.1f MB/s\n", len(text), len(ids), float64(len(text))/took.Seconds()/1e6)
	return nil
}
