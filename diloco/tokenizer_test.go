package diloco

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/tokenizer"
)

// A run on BPE token ids: the config names the tokenizer (its ID travels
// in the JSON, the ranks do not), every node must hold that very
// tokenizer, and a worker trains on its ids.
func TestRunConfigTokenizer(t *testing.T) {
	text := []byte(strings.Repeat("the cat sat on the mat; the dog sat on the log. ", 200))
	tok, err := tokenizer.Train(text, 280, tokenizer.GPT2, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := tokenizer.Train(text[:len(text)/2], 270, tokenizer.GPT2, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := tinyCfg(compress.Int8)
	cfg.SetTokenizer(tok)
	if err := cfg.Validate(); err != nil || cfg.Model.VocabSize != tok.Vocab() {
		t.Fatalf("with its tokenizer: %v (vocab %d)", err, cfg.Model.VocabSize)
	}
	b, err := json.Marshal(cfg)
	if err != nil || !strings.Contains(string(b), tok.ID()) || len(b) > 4096 {
		t.Fatalf("the config's JSON (%d bytes) should name the tokenizer: %s", len(b), b)
	}
	var got RunConfig
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if err := got.Validate(); err == nil || !strings.Contains(err.Error(), "no tokenizer") {
		t.Fatalf("a node without the tokenizer: %v", err)
	}
	got.Tok = other
	if err := got.Validate(); err == nil || !strings.Contains(err.Error(), "give it the run's") {
		t.Fatalf("a node with another tokenizer: %v", err)
	}
	got.Tok = tok
	if err := got.Validate(); err != nil {
		t.Fatalf("with the run's tokenizer: %v", err)
	}
	if ids := cfg.Encode(text); len(ids) >= len(text)/2 {
		t.Fatalf("%d bytes in %d tokens", len(text), len(ids))
	}
	pool := kernels.NewPool(1)
	defer pool.Close()
	w, err := NewWorker("w1", cfg, text, pool)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := NewReplica(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetWeights(0, rep.Weights(), rep.Hash()); err != nil {
		t.Fatal(err)
	}
	payload, tokens, err := w.Train(t.Context(), 2, nil)
	if err != nil || tokens != 2*cfg.TokensPerStep() {
		t.Fatalf("training on token ids: %d tokens (%v)", tokens, err)
	}
	if _, refused, err := rep.Close(0, []Submitted{{Worker: "w1", Tokens: tokens, Payload: payload}}); err != nil || len(refused) > 0 {
		t.Fatalf("the replica refused the contribution: %v %v", refused, err)
	}
}
