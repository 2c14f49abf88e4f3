package serve

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/tokenizer"
)

// A model on BPE token ids: the prompt is counted in the tokenizer's
// tokens, the completion is the generated tokens' text (max_tokens of
// them, so more bytes than tokens), and a tokenizer that does not fit the
// model's vocabulary is refused.
func TestServeWithTokenizer(t *testing.T) {
	for _, cfg := range []gpt.Config{gpt.DefaultConfig(16, 1, 2, 32), gpt.LlamaConfig(16, 1, 4, 2, 48, 32)} {
		t.Run(cfg.Arch, func(t *testing.T) { serveWithTokenizer(t, cfg) })
	}
}

func serveWithTokenizer(t *testing.T, cfg gpt.Config) {
	text := strings.Repeat("the cat sat on the mat and the dog sat on the log. ", 50)
	tok, err := tokenizer.Train([]byte(text), 300, tokenizer.GPT2, nil)
	if err != nil {
		t.Fatal(err)
	}
	pool := kernels.NewPool(1)
	defer pool.Close()
	cfg.VocabSize = tok.Vocab()
	m, err := gpt.New(cfg, pool)
	if err != nil {
		t.Fatal(err)
	}
	gpt.InitParams(cfg, m.Params, 1)
	small := gpt.DefaultConfig(16, 1, 2, 32) // 256 tokens
	ms, _ := gpt.New(small, pool)
	if _, err := New(Options{Model: ms, Tokenizer: tok}); err == nil || !strings.Contains(err.Error(), "tokenizer of") {
		t.Fatalf("a tokenizer that does not fit the model: %v", err)
	}
	s, err := New(Options{Model: m, Tokenizer: tok, Keys: map[string]ledger.PubKey{"sk-alice-key": alice}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	req, _ := http.NewRequest("POST", hs.URL+"/v1/completions", strings.NewReader(`{"prompt": "the cat sat on", "max_tokens": 12, "temperature": 0}`))
	req.Header.Set("Authorization", "Bearer sk-alice-key")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var v struct {
		Choices []struct{ Text string } `json:"choices"`
		Usage   map[string]int          `json:"usage"`
	}
	if err := json.Unmarshal(body, &v); err != nil || res.StatusCode != 200 || len(v.Choices) != 1 {
		t.Fatalf("status %d: %s (%v)", res.StatusCode, body, err)
	}
	if want := len(tok.Encode(nil, []byte("the cat sat on"))); v.Usage["prompt_tokens"] != want || want >= len("the cat sat on") {
		t.Fatalf("usage %v: want %d prompt tokens", v.Usage, want)
	}
	// The same greedy generation, decoded by the tokenizer.
	g := m.NewGenerator()
	var seq []int32
	for _, id := range tok.Encode(nil, []byte("the cat sat on")) {
		seq = append(seq, int32(id))
	}
	if err := g.Start(seq); err != nil {
		t.Fatal(err)
	}
	var want []byte
	for range 12 {
		id := gpt.Sample(g.Logits(), gpt.Sampling{}, nil)
		b, _ := tok.Token(int(id))
		want = append(want, b...)
		if err := g.Append(id); err != nil {
			t.Fatal(err)
		}
	}
	// JSON carries text: each byte that is not UTF-8 arrives as U+FFFD.
	if v.Usage["completion_tokens"] != 12 || v.Choices[0].Text != perByte(want) {
		t.Fatalf("completion %q in %v: want the 12 greedy tokens' text %q", v.Choices[0].Text, v.Usage, want)
	}
}

// perByte replaces each byte of b that is not part of valid UTF-8 with
// U+FFFD, as encoding/json does.
func perByte(b []byte) string {
	var out strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		out.WriteRune(r)
		b = b[n:]
	}
	return out.String()
}
