package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/checkpoint"
	"github.com/cairnlabs/cairn/llama"
	"github.com/cairnlabs/cairn/tokenizer"
)

// A BPE tokenizer trained by the CLI, a model trained on its ids (the
// vocabulary is the tokenizer's, and the checkpoint carries it), resumed
// with it, and sampled back to text; bad tokenizer input refused.
func TestTrainWithTokenizer(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "tok.tiktoken")
	code, out, e := runCLI("tokenizer", "train", "--vocab", "300", "--out", tokFile)
	if code != 0 || !strings.Contains(out, "trained 300 tokens") {
		t.Fatalf("tokenizer train: exit %d\n%s\n%s", code, out, e)
	}
	ck := filepath.Join(dir, "run")
	args := []string{"train", "--d", "16", "--layers", "1", "--heads", "2", "--ctx", "8", "--batch", "2", "--eval-batches", "1", "--out", ck, "--eval-every", "2"}
	code, out, e = runCLI(append(args, "--steps", "3", "--tokenizer", tokFile)...)
	if code != 0 || !strings.Contains(out, "tokenizer: 300 tokens") || !strings.Contains(out, "bits a byte") {
		t.Fatalf("train: exit %d\n%s\n%s", code, out, e)
	}
	mpath, _ := checkpoint.Paths(ck)
	m, err := checkpoint.LoadModel(mpath)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.FromMetadata(m.Metadata)
	if err != nil || tok == nil || m.Config.VocabSize != 300 || tok.Vocab() != 300 {
		t.Fatalf("the checkpoint: vocab %d, tokenizer %v (%v)", m.Config.VocabSize, tok, err)
	}
	code, out, e = runCLI(append(args, "--steps", "5", "--resume")...)
	if code != 0 || !strings.Contains(out, "from step 3") || !strings.Contains(out, "tokenizer: 300 tokens") {
		t.Fatalf("resume: exit %d\n%s\n%s", code, out, e)
	}
	code, out, e = runCLI("sample", "--ckpt", ck, "--prompt", "ROMEO:", "--tokens", "20", "--temperature", "0")
	if code != 0 || !strings.HasPrefix(out, "ROMEO:") || len(out) <= len("ROMEO:")+20 {
		t.Fatalf("sample: exit %d %q %s", code, out, e)
	}
	// A DiLoCo run on the tokenizer's ids: the saved model carries it and
	// samples through it.
	demo := filepath.Join(dir, "demo")
	code, out, e = runCLI("demo", "--tokenizer", tokFile, "--workers", "2", "--rounds", "2", "--d", "16", "--layers", "1", "--heads", "2",
		"--ctx", "24", "--batch", "2", "--inner-steps", "3", "--http", "", "--out", demo)
	if code != 0 || !strings.Contains(out, "tokenizer: 300 tokens") || !strings.Contains(out, "validation loss") {
		t.Fatalf("demo: exit %d\n%s\n%s", code, out, e)
	}
	code, out, e = runCLI("sample", "--ckpt", demo, "--prompt", "KING:", "--tokens", "5")
	if code != 0 || !strings.HasPrefix(out, "KING:") {
		t.Fatalf("sample of the demo's model: exit %d %q %s", code, out, e)
	}
	// Fingerprints on a BPE model: keys and responses are its token ids;
	// the saved model keeps its tokenizer.
	pass := filepath.Join(dir, "pass")
	os.WriteFile(pass, []byte("a passphrase for the test"), 0o600)
	fp := filepath.Join(dir, "fp")
	code, out, e = runCLI("fingerprint", "embed", "--ckpt", demo, "--out", fp, "--passphrase-file", pass, "--n", "4", "--steps", "20", "--cycles", "1")
	if code != 0 || !strings.Contains(out, "4 fingerprints embedded") {
		t.Fatalf("fingerprint embed on a BPE model: exit %d\n%s\n%s", code, out, e)
	}
	if code, _, e := runCLI("fingerprint", "verify", "--ckpt", fp, "--fingerprints", filepath.Join(fp, FingerprintFile), "--passphrase-file", pass); code == 2 {
		t.Fatalf("fingerprint verify on a BPE model: %s", e)
	}
	if m, err := checkpoint.LoadModel(filepath.Join(fp, checkpoint.ModelFile)); err != nil || m.Metadata[tokenizer.MetaRanks] == "" {
		t.Fatalf("the fingerprinted model lost its tokenizer (%v)", err)
	}
	// A watermarked sample of the BPE model is found in its tokens, with
	// the model's tokenizer or the same rank file; another key finds none.
	code, marked, e := runCLI("sample", "--ckpt", demo, "--prompt", "KING:", "--tokens", "120", "--watermark-key", "k2", "--seed", "5")
	if code != 0 {
		t.Fatalf("watermarked sample: %s", e)
	}
	wm := filepath.Join(dir, "marked.txt")
	os.WriteFile(wm, []byte(marked), 0o644)
	for _, a := range [][]string{{"--ckpt", demo}, {"--tokenizer", tokFile}} {
		if code, out, e := runCLI(append(append([]string{"watermark", "detect", "--key", "k2"}, a...), wm)...); code != 0 || !strings.Contains(out, ": watermarked") {
			t.Fatalf("detect %v: exit %d %s %s", a, code, out, e)
		}
	}
	if code, _, _ := runCLI("watermark", "detect", "--key", "other", "--tokenizer", tokFile, wm); code != 1 {
		t.Fatalf("another key: exit %d, want 1", code)
	}
	// The watermark and fingerprint experiments read their text as the
	// model's tokens.
	code, out, e = runCLI("experiment", "watermark", "--ckpt", demo, "--samples", "2", "--tokens", "40", "--windows", "20")
	if code != 0 || !strings.Contains(out, "windows of 200 tokens") || !strings.Contains(out, "watermarked generations detected") {
		t.Fatalf("experiment watermark on a BPE model: exit %d\n%s\n%s", code, out, e)
	}
	code, out, e = runCLI("experiment", "fingerprint", "--ckpt", demo, "--n", "4", "--key-len", "8", "--steps", "20", "--cycles", "1", "--tune-steps", "100", "--others", "0")
	if code != 0 || !strings.Contains(out, "embedded 4 fingerprints") || !strings.Contains(out, "after 100 steps of fine-tuning") || !strings.Contains(out, "against the control") {
		t.Fatalf("experiment fingerprint on a BPE model: exit %d\n%s\n%s", code, out, e)
	}
	if code, _, e := runCLI("experiment", "serving", "--ckpt", demo); code != 2 || !strings.Contains(e, "byte-level models only") {
		t.Fatalf("a byte-level command on a BPE model: exit %d %s", code, e)
	}
	bad := filepath.Join(dir, "bad.tiktoken")
	os.WriteFile(bad, []byte("QQ== 0\n"), 0o644)
	for _, a := range [][]string{
		{"tokenizer", "train", "--vocab", "100", "--out", filepath.Join(dir, "x")},
		{"tokenizer", "encode", "--tokenizer", bad, tokFile},
		{"tokenizer", "encode", "--tokenizer", tokFile, "--pattern", "llama", tokFile},
		{"train", "--tokenizer", bad, "--steps", "1", "--out", filepath.Join(dir, "y")},
	} {
		if code, _, e := runCLI(a...); code != 2 || strings.Count(strings.TrimSpace(e), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q: want 2 and one line", a, code, e)
		}
	}
}

// The Llama block through the commands: trained (its architecture in the
// checkpoint), resumed, sampled, and in a DiLoCo demo run; bad flags
// refused.
func TestLlamaArchCommands(t *testing.T) {
	dir := t.TempDir()
	ck := filepath.Join(dir, "run")
	args := []string{"train", "--arch", "llama", "--kv-heads", "1", "--d", "16", "--layers", "1", "--heads", "2", "--ctx", "8", "--batch", "2",
		"--eval-batches", "1", "--out", ck, "--eval-every", "2"}
	code, out, e := runCLI(append(args, "--steps", "3")...)
	if code != 0 || !strings.Contains(out, "model: llama (1 key/value heads, SwiGLU 48)") {
		t.Fatalf("train: exit %d\n%s\n%s", code, out, e)
	}
	if code, out, e = runCLI(append(args, "--steps", "5", "--resume")...); code != 0 || !strings.Contains(out, "from step 3") {
		t.Fatalf("resume: exit %d\n%s\n%s", code, out, e)
	}
	mpath, _ := checkpoint.Paths(ck)
	if m, err := checkpoint.LoadModel(mpath); err != nil || m.Config.Arch != "llama" || m.Config.KVHeads != 1 {
		t.Fatalf("the checkpoint's config: %+v (%v)", m, err)
	}
	if code, out, e = runCLI("sample", "--ckpt", ck, "--prompt", "ROMEO:", "--tokens", "10", "--temperature", "0"); code != 0 || len(out) != len("ROMEO:")+10+1 {
		t.Fatalf("sample: exit %d %q %s", code, out, e)
	}
	code, out, e = runCLI("demo", "--arch", "llama", "--workers", "2", "--rounds", "2", "--d", "16", "--layers", "1", "--heads", "2",
		"--ctx", "16", "--batch", "2", "--inner-steps", "3", "--http", "", "--out", filepath.Join(dir, "demo"))
	if code != 0 || !strings.Contains(out, "validation loss") {
		t.Fatalf("demo: exit %d\n%s\n%s", code, out, e)
	}
	code, out, e = runCLI("train", "--arch", "llama", "--experts", "4", "--top-k-experts", "1", "--d", "16", "--layers", "1", "--heads", "2",
		"--ctx", "8", "--batch", "2", "--eval-batches", "1", "--steps", "3", "--eval-every", "3", "--out", filepath.Join(dir, "moe"))
	if code != 0 || !strings.Contains(out, "mixture of 4 experts (top 1, 1 shared") || !strings.Contains(out, "expert loads") {
		t.Fatalf("train with experts: exit %d\n%s\n%s", code, out, e)
	}
	code, out, e = runCLI("train", "--arch", "llama", "--latent", "4", "--d", "16", "--layers", "1", "--heads", "2",
		"--ctx", "8", "--batch", "2", "--eval-batches", "1", "--steps", "2", "--eval-every", "2", "--out", filepath.Join(dir, "mla"))
	if code != 0 || !strings.Contains(out, "latent attention (latent 4, rotary 4, positionless 4, values 8; KV cache 8 floats a token)") {
		t.Fatalf("train with latent attention: exit %d\n%s\n%s", code, out, e)
	}
	if code, out, e = runCLI("sample", "--ckpt", filepath.Join(dir, "mla"), "--prompt", "AB", "--tokens", "5", "--temperature", "0"); code != 0 || len(out) != 2+5+1 {
		t.Fatalf("sample with latent attention: exit %d %q %s", code, out, e)
	}
	for _, a := range [][]string{
		{"train", "--latent", "8", "--out", dir},
		{"train", "--arch", "llama", "--latent", "8", "--rope-dim", "3", "--out", dir},
		{"train", "--arch", "llama", "--experts", "2", "--top-k-experts", "3", "--out", dir},
		{"train", "--experts", "4", "--out", dir},
		{"train", "--arch", "rwkv", "--out", dir},
		{"train", "--hidden", "64", "--out", dir},
		{"train", "--arch", "llama", "--heads", "4", "--kv-heads", "3", "--out", dir},
	} {
		if code, _, e := runCLI(a...); code != 2 || strings.Count(strings.TrimSpace(e), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q: want 2 and one line", a, code, e)
		}
	}
}

// A model directory in the Hugging Face layout (config.json,
// model.safetensors, tokenizer.json written by `tokenizer train --out
// x.json`) samples text through its own tokenizer (serve loads it alike); a
// tokenizer.json of another vocabulary is refused.
func TestHFModelDirectory(t *testing.T) {
	dir := t.TempDir()
	tj := filepath.Join(dir, "tokenizer.json")
	code, out, e := runCLI("tokenizer", "train", "--vocab", "300", "--out", tj)
	if code != 0 || !strings.Contains(out, "trained 300 tokens") {
		t.Fatalf("tokenizer train: exit %d\n%s\n%s", code, out, e)
	}
	tok, err := tokenizer.LoadFile(tj, tokenizer.CL100K)
	if err != nil || tok.Vocab() != 300 || tok.Pattern() != tokenizer.GPT2 {
		t.Fatalf("tokenizer.json: %v %v", tok, err)
	}
	cfg := llama.Config{VocabSize: 300, Dim: 16, Hidden: 40, Layers: 1, Heads: 2, KVHeads: 1, NormEps: 1e-5, RopeTheta: 10000, BlockSize: 32}
	params := make([]float32, cfg.NumParams())
	llama.InitParams(cfg, params, 3)
	if err := llama.Save(dir, cfg, params, nil); err != nil {
		t.Fatal(err)
	}
	code, out, e = runCLI("sample", "--ckpt", dir, "--prompt", "ROMEO:", "--tokens", "10", "--temperature", "0")
	if code != 0 || !strings.HasPrefix(out, "ROMEO:") || len(out) <= len("ROMEO:") {
		t.Fatalf("sample of a Hugging Face directory: exit %d %q %s", code, out, e)
	}
	code, out, e = runCLI("tokenizer", "train", "--vocab", "280", "--out", tj)
	if code != 0 {
		t.Fatalf("tokenizer train: exit %d\n%s\n%s", code, out, e)
	}
	code, _, e = runCLI("sample", "--ckpt", dir, "--prompt", "x", "--tokens", "2")
	if code != 2 || !strings.Contains(e, "its tokenizer has 280 tokens, the model a vocabulary of 300") {
		t.Fatalf("a mismatched tokenizer.json: exit %d %s", code, e)
	}
}
