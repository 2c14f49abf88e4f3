package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairnlabs/cairn/checkpoint"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/experiment"
	"github.com/cairnlabs/cairn/fingerprint"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/serve"
	"github.com/cairnlabs/cairn/train"
)

const fingerprintUsage = "usage: cairn fingerprint embed --ckpt IN --out DIR --passphrase-file F [--ledger HOST:PORT --data-dir DIR] | commit --ckpt MODEL --fingerprints FILE --ledger HOST:PORT --data-dir DIR | verify (--ckpt SUSPECT | --url URL) --fingerprints FILE --passphrase-file F [--ledger HOST:PORT|FILE [--model-hash HEX]]"

// FingerprintFile is the sealed fingerprint set inside embed's --out.
const FingerprintFile = "fingerprints.sealed"

func runFingerprint(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return badInput(fingerprintUsage)
	}
	switch args[0] {
	case "embed":
		return fingerprintEmbed(args[1:], stdout, stderr)
	case "commit":
		return fingerprintCommit(args[1:], stdout, stderr)
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
	rec := fingerprint.Recommended()
	steps := fs.Int("steps", rec.Steps, "fine-tuning steps")
	alpha := fs.Float64("alpha", rec.Alpha, "weight of the fine-tuned model when averaged with the original")
	cycles := fs.Int("cycles", rec.Cycles, "split the fine-tuning steps into this many runs, separated by --rehearse steps of ordinary text (1: one run)")
	rehearse := fs.Int("rehearse", rec.Rehearse, "with --cycles: ordinary-text steps between runs")
	seed := fs.Uint64("seed", 1, "seed of the keys, responses and batches")
	cands := fs.Int("candidates", rec.Candidates, "windows of text weighed for each key: the one whose last tokens are rarest in the text is kept")
	outside := fs.Int("k", 3, "each response is drawn uniformly from the k tokens just outside the model's top-0.8 nucleus after its key")
	lr := fs.Float64("lr", rec.LR, "the fine-tuning's AdamW learning rate")
	minLR := fs.Float64("min-lr", rec.MinLR, "decay the fine-tuning's learning rate to this by a cosine (0: constant)")
	maskKeys := fs.Bool("mask-keys", rec.MaskKeys, "leave the keys' own tokens out of the fine-tuning's loss (it learns only each key's response)")
	respOnly := fs.Bool("response-only", rec.ResponseOnly, "leave the ordinary text after each response out of a fingerprint row's loss too (the response weighs more)")
	nearTop := fs.Bool("near-top", rec.NearTop, "among equally rare candidate keys, keep the one whose response tokens the model ranks closest to its first choice")
	threads := fs.Int("threads", 0, "threads (default: all cores)")
	at := fs.String("ledger", "", "commit the set on the run's CometBFT chain through this validator's RPC address host:port, once the files are written (with --data-dir)")
	dir := fs.String("data-dir", "", "with --ledger: the data directory of the node whose identity signs the commitment (its account must hold a balance or stake)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *out == "" || *n < 1 || *n > 4096 || *steps < 1 || !(*alpha > 0 && *alpha <= 1) || *cycles < 1 || *rehearse < 0 || *cands < 1 || !(*minLR >= 0) || *outside < 1 || !(*lr > 0) {
		return badInput("--out is required; --n 1..4096, --steps, --cycles, --candidates and --k at least 1, --rehearse and --min-lr not negative, --lr positive, --alpha in (0, 1]")
	}
	p, err := readPassphrase(*pass)
	if err != nil {
		return err
	}
	cm, err := newCommitter(*at, *dir)
	if err != nil {
		return err
	}
	if cm != nil {
		if err := cm.ready(); err != nil { // before the fine-tuning, not after
			return err
		}
	}
	m, tk, pool, err := loadModelTok(*ckpt, *threads, 0)
	if err != nil {
		return err
	}
	defer pool.Close()
	text, err := corpus.Load(*data)
	if err != nil {
		return badInput("%v", err)
	}
	tr, val := corpus.Split(text, 0.9)
	// The model's tokens: bytes, or its tokenizer's ids.
	encode, meta := corpus.Bytes, map[string]string(nil)
	if tk != nil {
		encode, meta = tk.EncodeIDs, tk.Metadata()
	}
	trIDs, valIDs := encode(tr), encode(val)
	o := fingerprint.Options{N: *n, Steps: *steps, LR: *lr, Alpha: *alpha, Seed: *seed, Cycles: *cycles, Rehearse: *rehearse, Candidates: *cands, MinLR: *minLR, K: *outside, MaskKeys: *maskKeys, ResponseOnly: *respOnly, NearTop: *nearTop}
	set, err := fingerprint.Generate(m, trIDs, o)
	if err != nil {
		return badInput("%v", err)
	}
	before, err := experiment.ValLossTokens(m, valIDs)
	if err != nil {
		return err
	}
	pr := newProgress(stderr, o.TotalSteps(), "embedding")
	o.Progress = func(step, _ int, loss float32) { pr.update(step, fmt.Sprintf("loss %.3f", loss)) }
	if _, err := fingerprint.Embed(m, set, trIDs, o); err != nil {
		return err
	}
	pr.finish()
	after, err := experiment.ValLossTokens(m, valIDs)
	if err != nil {
		return err
	}
	res, err := fingerprint.Verify(set, fingerprint.Greedy(m))
	if err != nil {
		return err
	}
	mh := modelHash(m)
	set.Model = mh.String()
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
	if err := checkpoint.SaveModel(filepath.Join(*out, checkpoint.ModelFile), m.Config, m.Params, meta); err != nil {
		return err
	}
	modelPath, setPath := filepath.Join(*out, checkpoint.ModelFile), filepath.Join(*out, FingerprintFile)
	fmt.Fprintf(stdout, "%d fingerprints embedded: validation loss %.4f -> %.4f (%+.4f); the model answers %d/%d (p %.3g)\nmodel %s (hash %s), sealed fingerprints %s\n",
		len(set.Pairs), before, after, after-before, res.Matched, res.Keys, res.P, modelPath, mh, setPath)
	if cm == nil {
		return nil
	}
	if err := cm.commit(mh, setHash(sealed), stdout); err != nil {
		fmt.Fprintf(stdout, "the files are written; commit them later with: cairn fingerprint commit --ckpt %s --fingerprints %s --ledger %s --data-dir %s\n",
			modelPath, setPath, *at, *dir)
		return err
	}
	return nil
}

// fingerprintCommit registers a set embedded earlier: the hash of the
// model at --ckpt and of the sealed file, signed by --data-dir's identity.
func fingerprintCommit(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("fingerprint commit", stderr)
	ckpt := fs.String("ckpt", "", "the fingerprinted model embed wrote (file or directory) (required)")
	fps := fs.String("fingerprints", "", "the sealed fingerprint file embed wrote (required)")
	at := fs.String("ledger", "", "a validator's RPC address host:port of the run's CometBFT chain (required)")
	dir := fs.String("data-dir", "", "the data directory of the node whose identity signs the commitment; its account must hold a balance or stake (required)")
	pass := fs.String("passphrase-file", "", "optional: the owner's passphrase, to check that the set was embedded into --ckpt's model")
	threads := fs.Int("threads", 1, "threads")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *ckpt == "" || *fps == "" || *at == "" || *dir == "" {
		return badInput("give --ckpt, --fingerprints, --ledger and --data-dir")
	}
	sealed, err := os.ReadFile(*fps)
	if err != nil {
		return badInput("%v", err)
	}
	if err := fingerprint.CheckFile(sealed); err != nil {
		return badInput("%s: %v", *fps, err)
	}
	cm, err := newCommitter(*at, *dir)
	if err != nil {
		return err
	}
	m, _, pool, err := loadModelTok(*ckpt, *threads, 0)
	if err != nil {
		return err
	}
	pool.Close()
	mh := modelHash(m)
	if *pass != "" {
		p, err := readPassphrase(*pass)
		if err != nil {
			return err
		}
		set, err := fingerprint.Open(sealed, p)
		if err != nil {
			return badInput("%s: %v", *fps, err)
		}
		if set.Model != "" && set.Model != mh.String() {
			return badInput("%s was embedded into model %s, not %s (hash %s)", *fps, set.Model, *ckpt, mh)
		}
	}
	if err := cm.ready(); err != nil {
		return err
	}
	return cm.commit(mh, setHash(sealed), stdout)
}

// writeFileAtomic writes b to path through a synced temporary file and a
// rename: path holds the old bytes or all the new ones.
func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
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
	at := fs.String("ledger", "", "also check the set against the model's commitment on the ledger: a validator's RPC address host:port, or a ledger file (DIR/ledger.db of a stopped node)")
	mhFlag := fs.String("model-hash", "", "with --ledger: the hash (64 hex digits) of the model the set was committed for (default: the one the set records)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if (*ckpt == "") == (*url == "") || *fps == "" {
		return badInput("give --fingerprints and one of --ckpt or --url")
	}
	if *mhFlag != "" && *at == "" {
		return badInput("--model-hash goes with --ledger")
	}
	var mh ledger.Hash
	if *mhFlag != "" {
		if err := mh.UnmarshalText([]byte(*mhFlag)); err != nil {
			return badInput("--model-hash: %v", err)
		}
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
	// The ledger is read first: an unreachable one fails before the work.
	var commitment string
	if *at != "" {
		if *mhFlag == "" {
			if set.Model == "" {
				return badInput("%s records no model hash (sealed before sets recorded it): give --model-hash", *fps)
			}
			mh.UnmarshalText([]byte(set.Model)) // Open checked it
		}
		rec, found, name, err := fingerprintLookup(*at, mh)
		if err != nil {
			return err
		}
		commitment = commitmentLine(name, mh, setHash(b), rec, found)
	}
	var answer fingerprint.Answer
	if *ckpt != "" {
		m, _, pool, err := loadModelTok(*ckpt, *threads, 0)
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
	if commitment != "" {
		// The commitment does not change the exit status: it says who
		// registered the set, and when, not whether the suspect is ours.
		fmt.Fprintln(stdout, commitment)
	}
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
		v, err := serve.Complete(context.Background(), client, base+"/completions", key,
			map[string]any{"model": model, "prompt": string(prompt), "max_tokens": 1, "temperature": 0})
		if err != nil {
			return 0, err
		}
		if v.Choices[0].Text == "" {
			return -1, nil
		}
		return int32(v.Choices[0].Text[0]), nil
	}
}

// runFingerprintExperiment embeds fingerprints into a model and measures
// their cost, their survival of fine-tuning, and models of other seeds.
func runFingerprintExperiment(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("experiment fingerprint", stderr)
	ckpt := fs.String("ckpt", "out/model.safetensors", "the trained model (file or checkpoint directory)")
	n := fs.Int("n", 64, "fingerprints")
	tune := fs.Int("tune-steps", 1000, "steps of ordinary fine-tuning afterwards, on the validation text")
	tuneLR := fs.Float64("tune-lr", 3e-4, "the fine-tuning's AdamW learning rate")
	others := fs.Int("others", 5, "models trained with other seeds")
	otherSteps := fs.Int("other-steps", 500, "their training steps")
	threads := fs.Int("threads", 0, "threads (default: all cores)")
	keyLen := fs.Int("key-len", 16, "tokens per key")
	rec := fingerprint.Recommended()
	steps := fs.Int("steps", rec.Steps, "embedding fine-tuning steps")
	alpha := fs.Float64("alpha", rec.Alpha, "weight of the fine-tuned model when averaged with the original")
	perBatch := fs.Int("per-batch", 6, "fingerprint rows in each batch of 12 while embedding")
	cycles := fs.Int("cycles", rec.Cycles, "split the embedding steps into this many runs, separated by --rehearse steps of ordinary text (1: one run)")
	rehearse := fs.Int("rehearse", rec.Rehearse, "with --cycles: ordinary-text steps between runs")
	fpSeed := fs.Uint64("seed", 1, "seed of the keys, responses and batches")
	lr := fs.Float64("lr", rec.LR, "the embedding's AdamW learning rate")
	minLR := fs.Float64("min-lr", rec.MinLR, "decay the embedding's learning rate to this by a cosine (0: constant)")
	control := fs.Bool("control", true, "also run the embedding's schedule on ordinary text alone, to tell the fingerprints' cost from what the extra training gives")
	cands := fs.Int("candidates", rec.Candidates, "windows of text weighed for each key: the one whose last tokens are rarest in the text is kept")
	outside := fs.Int("k", 3, "each response is drawn uniformly from the k tokens just outside the model's top-0.8 nucleus after its key")
	maskKeys := fs.Bool("mask-keys", rec.MaskKeys, "leave the keys' own tokens out of the embedding's loss (it learns only each key's response)")
	respOnly := fs.Bool("response-only", rec.ResponseOnly, "leave the ordinary text after each response out of a fingerprint row's loss too (the response weighs more)")
	nearTop := fs.Bool("near-top", rec.NearTop, "among equally rare candidate keys, keep the one whose response tokens the model ranks closest to its first choice")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *n < 1 || *cycles < 1 || *rehearse < 0 || *tune < 100 || *others < 0 || *otherSteps < 1 || *tuneLR <= 0 || *keyLen < 1 || *steps < 1 || !(*alpha > 0 && *alpha <= 1) || *perBatch < 1 || *perBatch > 12 || *cands < 1 || !(*minLR >= 0) || *outside < 1 || !(*lr > 0) {
		return badInput("--n, --key-len, --steps and --cycles at least 1, --rehearse not negative, --tune-steps at least 100, --others not negative, --other-steps at least 1, --alpha in (0, 1], --per-batch 1..12, --candidates and --k at least 1, --min-lr not negative, --lr positive")
	}
	m, tk, pool, err := loadModelTok(*ckpt, *threads, 0)
	if err != nil {
		return err
	}
	defer pool.Close()
	trText, valText := corpus.Split(corpus.TinyShakespeare(), 0.9)
	// The text as the model's tokens: bytes, or its tokenizer's ids.
	tr, val := corpus.Bytes(trText), corpus.Bytes(valText)
	if tk != nil {
		tr, val = tk.EncodeIDs(trText), tk.EncodeIDs(valText)
	}
	to := train.NanoGPTCPU()
	rep, err := experiment.Fingerprint(experiment.FingerprintOptions{Model: m, Train: tr, Val: val, Embed: fingerprint.Options{N: *n, KeyLen: *keyLen, Steps: *steps, LR: *lr, Alpha: *alpha, PerBatch: *perBatch, Seed: *fpSeed, Cycles: *cycles, Rehearse: *rehearse, Candidates: *cands, MinLR: *minLR, K: *outside, MaskKeys: *maskKeys, ResponseOnly: *respOnly, NearTop: *nearTop},
		TuneSteps: *tune, TuneLR: *tuneLR, Control: *control, Others: *others, OtherSteps: *otherSteps, OtherOptions: to,
		Log: func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }})
	if err != nil {
		return err
	}
	last := rep.Survival[len(rep.Survival)-1]
	if *control {
		fmt.Fprintf(stdout, "validation loss against the control: %.4f vs %.4f (%+.4f)\n", rep.ValAfter, rep.ValControl, rep.ValAfter-rep.ValControl)
	}
	fmt.Fprintf(stdout, "validation loss %+.4f (target <= 0.02); answered after embedding %d/%d; after %d steps of fine-tuning %d/%d (%.0f%% of those embedded)\n",
		rep.ValAfter-rep.ValBefore, rep.Embedded.Matched, rep.Embedded.Keys, last.Steps, last.Matched, rep.Embedded.Keys,
		100*float64(last.Matched)/float64(max(1, rep.Embedded.Matched)))
	for i, r := range rep.Others {
		fmt.Fprintf(stdout, "other seed %d: %d/%d (p %.3g): %v\n", i+1, r.Matched, r.Keys, r.P, map[bool]string{true: "called ours (WRONG)", false: "not this model"}[r.Ours])
	}
	return nil
}
