package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairnlabs/cairn/checkpoint"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/fingerprint"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/train"
)

const fingerprintUsage = "usage: cairn fingerprint embed --ckpt IN --out DIR --passphrase-file F | verify (--ckpt SUSPECT | --url URL) --fingerprints FILE --passphrase-file F"

// FingerprintFile is the sealed fingerprint set inside embed's --out.
const FingerprintFile = "fingerprints.sealed"

func runFingerprint(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return badInput(fingerprintUsage)
	}
	switch args[0] {
	case "embed":
		return fingerprintEmbed(args[1:], stdout, stderr)
	case "verify":
		return fingerprintVerify(args[1:], stdout, stderr)
	}
	return badInput("%s (unknown %q)", fingerprintUsage, args[0])
}

func readPassphrase(path string) ([]byte, error) {
	if path == "" {
		return nil, badInput("--passphrase-file is required (the owner's secret that seals the fingerprints)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, badInput("%v", err)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) < 8 || len(b) > 4096 {
		return nil, badInput("%s: a passphrase of 8 to 4096 bytes, please", path)
	}
	return b, nil
}

func fingerprintEmbed(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("fingerprint embed", stderr)
	ckpt := fs.String("ckpt", "out/model.safetensors", "the model to fingerprint (file or checkpoint directory)")
	out := fs.String("out", "", "directory for the fingerprinted model and the sealed fingerprints (required)")
	n := fs.Int("n", 64, "fingerprints")
	pass := fs.String("passphrase-file", "", "file holding the owner's passphrase, which seals the fingerprint set (required)")
	data := fs.String("data", "", "text of the training distribution: keys are drawn from its first 90%, which also fills the batches (default: the embedded tiny shakespeare)")
	steps := fs.Int("steps", 600, "fine-tuning steps")
	alpha := fs.Float64("alpha", 0.7, "weight of the fine-tuned model when averaged with the original")
	seed := fs.Uint64("seed", 1, "seed of the keys, responses and batches")
	threads := fs.Int("threads", 0, "threads (default: all cores)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *out == "" || *n < 1 || *n > 4096 || *steps < 1 || !(*alpha > 0 && *alpha <= 1) {
		return badInput("--out is required; --n 1..4096, --steps at least 1, --alpha in (0, 1]")
	}
	p, err := readPassphrase(*pass)
	if err != nil {
		return err
	}
	m, pool, err := loadModel(*ckpt, *threads)
	if err != nil {
		return err
	}
	defer pool.Close()
	text, err := corpus.Load(*data)
	if err != nil {
		return badInput("%v", err)
	}
	tr, val := corpus.Split(text, 0.9)
	o := fingerprint.Options{N: *n, Steps: *steps, Alpha: *alpha, Seed: *seed}
	set, err := fingerprint.Generate(m, tr, o)
	if err != nil {
		return badInput("%v", err)
	}
	before, err := valLoss(m, val)
	if err != nil {
		return err
	}
	pr := newProgress(stderr, *steps, "embedding")
	o.Progress = func(step, _ int, loss float32) { pr.update(step, fmt.Sprintf("loss %.3f", loss)) }
	if _, err := fingerprint.Embed(m, set, tr, o); err != nil {
		return err
	}
	pr.finish()
	after, err := valLoss(m, val)
	if err != nil {
		return err
	}
	res, err := fingerprint.Verify(set, fingerprint.Greedy(m))
	if err != nil {
		return err
	}
	sealed, err := fingerprint.Seal(set, p)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(*out, FingerprintFile), sealed); err != nil {
		return err
	}
	if err := checkpoint.SaveModel(filepath.Join(*out, checkpoint.ModelFile), m.Config, m.Params, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d fingerprints embedded: validation loss %.4f -> %.4f (%+.4f); the model answers %d/%d (p %.3g)\nmodel %s, sealed fingerprints %s\n",
		len(set.Pairs), before, after, after-before, res.Matched, res.Keys, res.P,
		filepath.Join(*out, checkpoint.ModelFile), filepath.Join(*out, FingerprintFile))
	return nil
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func valLoss(m *gpt.Model, val []byte) (float64, error) {
	B, T := 12, m.Config.BlockSize
	return train.Evaluate(m, val, B, 0, make([]int32, B*T), make([]int32, B*T))
}

func fingerprintVerify(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("fingerprint verify", stderr)
	ckpt := fs.String("ckpt", "", "the suspect model file or checkpoint directory")
	url := fs.String("url", "", "instead, an OpenAI-compatible endpoint serving the suspect (base URL ending in /v1)")
	apiKey := fs.String("api-key", "", "the endpoint's API key")
	model := fs.String("model", "cairn", "the model name to ask the endpoint for")
	fps := fs.String("fingerprints", "", "the sealed fingerprint file (from fingerprint embed)")
	pass := fs.String("passphrase-file", "", "file holding the owner's passphrase")
	threads := fs.Int("threads", 0, "threads (default: all cores)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if (*ckpt == "") == (*url == "") || *fps == "" {
		return badInput("give --fingerprints and one of --ckpt or --url")
	}
	p, err := readPassphrase(*pass)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(*fps)
	if err != nil {
		return badInput("%v", err)
	}
	set, err := fingerprint.Open(b, p)
	if err != nil {
		return badInput("%v", err)
	}
	var answer fingerprint.Answer
	if *ckpt != "" {
		m, pool, err := loadModel(*ckpt, *threads)
		if err != nil {
			return err
		}
		defer pool.Close()
		answer = fingerprint.Greedy(m)
	} else {
		answer = endpointAnswer(strings.TrimRight(*url, "/"), *apiKey, *model)
	}
	res, err := fingerprint.Verify(set, answer)
	if err != nil {
		return err
	}
	verdict := "this is NOT the fingerprinted model"
	if res.Ours {
		verdict = "this IS the fingerprinted model"
	}
	fmt.Fprintf(stdout, "%d of %d keys answered with their fingerprint; a model without them would match as many with probability %.3g (chance %.3g per key): %s\n",
		res.Matched, res.Keys, res.P, set.ChanceRate, verdict)
	if !res.Ours {
		return failedCheck{"not this model"}
	}
	return nil
}

// endpointAnswer asks an OpenAI-compatible completions endpoint for the
// greedy next token (byte) after a key.
func endpointAnswer(base, key, model string) fingerprint.Answer {
	client := &http.Client{Timeout: time.Minute}
	return func(k []int32) (int32, error) {
		prompt := make([]byte, len(k))
		for i, t := range k {
			prompt[i] = byte(t)
		}
		body, _ := json.Marshal(map[string]any{"model": model, "prompt": string(prompt), "max_tokens": 1, "temperature": 0})
		req, err := http.NewRequestWithContext(context.Background(), "POST", base+"/completions", bytes.NewReader(body))
		if err != nil {
			return 0, badInput("--url: %v", err)
		}
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("the endpoint answered %d: %s", resp.StatusCode, bytes.TrimSpace(b))
		}
		var v struct {
			Choices []struct {
				Text string `json:"text"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(b, &v); err != nil || len(v.Choices) == 0 {
			return 0, fmt.Errorf("the endpoint's answer is not a completion: %s", b)
		}
		if v.Choices[0].Text == "" {
			return -1, nil
		}
		return int32(v.Choices[0].Text[0]), nil
	}
}
