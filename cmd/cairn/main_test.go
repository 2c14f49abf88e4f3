package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/p2p"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

// wantBadInput runs the CLI with args and fails t unless it exits 2 with
// nothing on stdout and one line on stderr that contains want.
func wantBadInput(t *testing.T, want string, args ...string) {
	t.Helper()
	code, o, e := runCLI(args...)
	if code != 2 || strings.Count(e, "\n") != 1 || !strings.Contains(e, want) || o != "" {
		t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and one line containing %q", args, code, o, e, want)
	}
}

// TestBadInput: each kind of bad input gives exit status 2 and one line on
// stderr that says what is wrong.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.txt")
	os.WriteFile(empty, nil, 0o644)
	short := filepath.Join(dir, "short.txt")
	os.WriteFile(short, []byte("To be, or not to be"), 0o644)
	ckptDir := filepath.Join(dir, "ckpt")
	if code, _, e := runCLI("train", "--steps", "1", "--d", "16", "--layers", "1", "--heads", "2", "--ctx", "8", "--batch", "2", "--eval-batches", "1", "--out", ckptDir); code != 0 {
		t.Fatalf("tiny training run failed (%d): %s", code, e)
	}
	peer := p2p.PeerIDOf(ledger.PubKey{1})
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"train", "--data", empty}, "is empty"},
		{[]string{"train", "--data", short}, "shorter than the context"},
		{[]string{"train", "--d", "30", "--heads", "4"}, "not divisible"},
		{[]string{"train", "--layers", "0"}, "at least 1"},
		{[]string{"train", "--data", filepath.Join(dir, "missing.txt")}, "missing.txt"},
		{[]string{"train", "--resume", "--out", filepath.Join(dir, "none")}, "no checkpoint"},
		{[]string{"train", "--resume", "--out", ckptDir, "--ctx", "64"}, "longer than the checkpoint's block size"},
		{[]string{"train", "--bogus"}, "bogus"},
		{[]string{"sample", "--ckpt", ckptDir, "--ctx", "64"}, "longer than the checkpoint's block size"},
		{[]string{"sample", "--ckpt", filepath.Join(dir, "missing.safetensors")}, "missing.safetensors"},
		{[]string{"sample", "--ckpt", empty}, "empty.txt"},
		{[]string{"bench", "--d", "30", "--heads", "4", "--steps", "1"}, "not divisible"},
		{[]string{"bench", "--text", short, "--steps", "1"}, "shorter than the context"},
		{[]string{"parity"}, "usage"},
		{[]string{"parity", dir}, "model.safetensors"},
		{[]string{"nonsense"}, "unknown command"},
		{[]string{"node"}, "usage"},
		{[]string{"node", "work"}, "--join"},
		{[]string{"node", "work", "--join", "/ip4/1.2.3.4/tcp/1"}, "needs /p2p/ID"},
		{[]string{"node", "work", "--join", "garbage"}, "bad multiaddr"},
		{[]string{"node", "aggregate", "--codec", "int4"}, "int4"},
		{[]string{"node", "aggregate", "--codec", "topk:0/4096"}, "k 0"},
		{[]string{"node", "aggregate", "--update-codec", "topk:64/4096:3"}, "update-codec"},
		{[]string{"node", "aggregate", "--codec", "int8", "--feedback-decay", "0.9"}, "feedback decay"},
		{[]string{"node", "aggregate", "--inner-steps", "0"}, "inner steps"},
		{[]string{"node", "aggregate", "--d", "30", "--heads", "4"}, "not divisible"},
		{[]string{"node", "aggregate", "--data", empty}, "is empty"},
		{[]string{"node", "aggregate", "--init", filepath.Join(dir, "missing.safetensors"), "--data-dir", filepath.Join(dir, "agg")}, "missing.safetensors"},
		{[]string{"node", "aggregate", "--trim", "0.6"}, "trim fraction"},
		{[]string{"demo", "--clip", "-1"}, "clip multiple"},
		{[]string{"node", "aggregate", "--stake", "nope"}, "PEERID=AMOUNT"},
		{[]string{"node", "aggregate", "--stake", "nope=5"}, "nope"},
		{[]string{"node", "aggregate", "--fund", peer + "=lots"}, "not a whole number"},
		{[]string{"node", "aggregate", "--stake", peer + "=1", "--stake", peer + "=18446744073709551615"}, "more than 2^64-1"},
		{[]string{"node", "aggregate", "--min-stake", "-1"}, "min-stake"},
		{[]string{"demo", "--workers", "0"}, "--workers"},
		{[]string{"experiment", "bandwidth", "--workers", "0"}, "--workers"},
		{[]string{"experiment", "bandwidth", "--link-rtt", "-1ms"}, "--link-rtt"},
		{[]string{"demo", "--link-rtt", "-1s"}, "--link-rtt"},
		{[]string{"demo", "--link-loss", "1"}, "--link-loss"},
		{[]string{"experiment", "bandwidth", "--link-loss", "-0.1"}, "--link-loss"},
		{[]string{"experiment", "bandwidth", "--overlap-steps", "51"}, "overlap steps"},
		{[]string{"experiment", "bandwidth", "--sparse", "int8"}, "not a sparse (topk or mask) codec"},
		{[]string{"experiment", "bandwidth", "--feedback-decay", "1.5"}, "--feedback-decay must be in (0, 1]"},
		{[]string{"experiment", "bandwidth", "--sparse-outer-lr", "0"}, "--sparse-outer-lr must be positive"},
		{[]string{"experiment", "bandwidth", "--sparse-momentum", "1"}, "--sparse-momentum in [0, 1)"},
		{[]string{"node", "work", "--join", "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWAAZoAMxvXyz6ghUZGY8ojq9nPAZv1oyJ3YyXJjW2Vs4a", "--link-rtt", "-5ms"}, "--link-rtt"},
		{[]string{"demo", "--chain", "-1"}, "--chain"},
		{[]string{"chain"}, "usage"},
		{[]string{"watermark"}, "usage"},
		{[]string{"watermark", "detect", "--key", "k"}, "usage"},
		{[]string{"watermark", "detect", filepath.Join(dir, "x")}, "--key"},
		{[]string{"watermark", "detect", "--key", "k", filepath.Join(dir, "missing.txt")}, "missing.txt"},
		{[]string{"watermark", "detect", "--key", "k", "--gamma", "1.5", filepath.Join(dir, "x")}, "gamma"},
		{[]string{"watermark", "detect", "--key", "k", "--min-entropy", "-1", filepath.Join(dir, "x")}, "min-entropy"},
		{[]string{"watermark", "detect", "--key", "k", "--ckpt", filepath.Join(dir, "none.safetensors"), empty}, "none.safetensors"},
		{[]string{"watermark", "detect", "--key", "k", "--seeding", "middle", filepath.Join(dir, "x")}, "seeding"},
		{[]string{"sample", "--watermark-key", "k", "--delta", "-1", "--ckpt", dir}, "--delta"},
		{[]string{"chain", "nope"}, "unknown"},
		{[]string{"chain", "init", "--validators", "0", "--out", filepath.Join(dir, "net")}, "--validators"},
		{[]string{"chain", "init", "--bench-accounts", "-1", "--out", filepath.Join(dir, "net")}, "--bench-accounts"},
		{[]string{"chain", "init", "--authority", "nope", "--out", filepath.Join(dir, "net")}, "nope"},
		{[]string{"chain", "start"}, "--home"},
		{[]string{"chain", "start", "--home", dir}, "config.toml"},
		{[]string{"chain", "bench"}, "--rpc"},
		{[]string{"chain", "verify"}, "--rpc"},
		{[]string{"chain", "bench", "--rpc", "127.0.0.1:1", "--rate", "0"}, "--rate"},
		{[]string{"node", "aggregate", "--ledger", "nowhere"}, "--ledger"},
		{[]string{"node", "work", "--join", "/ip4/1.2.3.4/tcp/1/p2p/" + peer, "--ledger", "nowhere"}, "--ledger"},
		{[]string{"demo", "--data", short}, "too short"},
		{[]string{"experiment"}, "usage"},
		{[]string{"experiment", "diloco", "--rounds", "0"}, "rounds"},
		{[]string{"experiment", "adversaries", "--rounds", "0"}, "rounds"},
		{[]string{"experiment", "adversaries", "--p", "0"}, "--p must be in (0, 1]"},
		{[]string{"experiment", "adversaries", "--p", "1.5"}, "--p must be in (0, 1]"},
		{[]string{"experiment", "adversaries", "--honest", "0"}, "--honest"},
		{[]string{"experiment", "adversaries", "--adversaries", "noise,sneaky"}, `unknown adversary "sneaky"`},
		{[]string{"experiment", "adversaries", "--threads", "-1"}, "--threads"},
		{[]string{"experiment", "adversaries", "--mixed-paths", "--honest", "1"}, "at least 2"},
		{[]string{"experiment", "adversaries", "--mixed-paths", "--paths", "avx9000"}, `"avx9000" is not available`},
		{[]string{"experiment", "adversaries", "--mixed-paths", "--paths", ","}, "no kernel path"},
		{[]string{"experiment", "adversaries", "stray"}, "unexpected argument"},
		{[]string{"node", "work", "--join", "x", "--kernel", "avx9000"}, "--kernel avx9000: not available on this CPU"},
		{[]string{"bench", "--kernel", "avx9000"}, "--kernel avx9000: not available"},
		{[]string{"train", "--kernel", "sse"}, "--kernel sse: not available"},
		{[]string{"demo", "--adversaries", "--workers", "0"}, "--workers"},
	}
	for _, c := range cases {
		code, _, stderr := runCLI(c.args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", c.args, code, stderr)
		}
		if strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: stderr %q, want one line containing %q", c.args, stderr, c.want)
		}
	}
}

func TestTrainResumeAndSample(t *testing.T) {
	dir := t.TempDir()
	args := []string{"train", "--d", "16", "--layers", "1", "--heads", "2", "--ctx", "8", "--batch", "2", "--eval-batches", "1", "--out", dir, "--eval-every", "2"}
	code, out, e := runCLI(append(args, "--steps", "3")...)
	if code != 0 || !strings.Contains(out, "val loss") || !strings.Contains(out, "wall time") {
		t.Fatalf("train: exit %d\n%s\n%s", code, out, e)
	}
	code, out, e = runCLI(append(args, "--steps", "5", "--resume")...)
	if code != 0 || !strings.Contains(out, "from step 3") || !strings.Contains(out, "step 5") {
		t.Fatalf("resume: exit %d\n%s\n%s", code, out, e)
	}
	code, out, e = runCLI("sample", "--ckpt", dir, "--prompt", "ROMEO:", "--tokens", "20", "--temperature", "0")
	if code != 0 || !strings.HasPrefix(out, "ROMEO:") || len(out) != len("ROMEO:")+20+1 {
		t.Fatalf("sample: exit %d %q %s", code, out, e)
	}
	// Watermarked samples: the same seed gives the same text; the
	// detector finds the mark with the key (exit 0) and not without it
	// (exit 1), nor in the unmarked sample.
	wm := []string{"sample", "--ckpt", dir, "--prompt", "ROMEO:", "--tokens", "300", "--watermark-key", "k1", "--seed", "7"}
	code, marked, e := runCLI(wm...)
	if _, again, _ := runCLI(wm...); code != 0 || again != marked {
		t.Fatalf("watermarked sample: exit %d, reproducible %v %s", code, again == marked, e)
	}
	_, plain, _ := runCLI("sample", "--ckpt", dir, "--prompt", "ROMEO:", "--tokens", "300", "--seed", "7")
	if plain == marked {
		t.Fatal("the watermark changed nothing")
	}
	for _, tc := range []struct {
		text, key string
		code      int
		verdict   string
	}{{marked, "k1", 0, ": watermarked"}, {marked, "k2", 1, "not watermarked"}, {plain, "k1", 1, "not watermarked"}} {
		f := filepath.Join(dir, "text.txt")
		if err := os.WriteFile(f, []byte(tc.text), 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, e := runCLI("watermark", "detect", "--key", tc.key, f)
		if code != tc.code || !strings.Contains(out, tc.verdict) {
			t.Fatalf("detect with %s: exit %d %q %s", tc.key, code, out, e)
		}
		// With the model, only the tokens it was unsure of are scored.
		code, sel, e := runCLI("watermark", "detect", "--key", tc.key, "--ckpt", dir, "--min-entropy", "0.5", f)
		if code != tc.code || !strings.Contains(sel, tc.verdict) || !strings.Contains(sel, "entropy >= 0.5 nats") {
			t.Fatalf("selective detect with %s: exit %d %q %s", tc.key, code, sel, e)
		}
	}
}

func TestParityCommand(t *testing.T) {
	code, out, e := runCLI("parity", filepath.Join("..", "..", "..", "shared", "fixtures", "gpt-tiny"))
	if code != 0 || !strings.Contains(out, "parity holds") || !strings.Contains(out, "grad.lm_head.weight") {
		t.Fatalf("parity: exit %d\n%s\n%s", code, out, e)
	}
}

func TestBenchPrintsAnchorLine(t *testing.T) {
	code, out, e := runCLI("bench", "--d", "16", "--layers", "1", "--heads", "2", "--ctx", "16", "--batch", "2", "--steps", "2", "--threads", "1")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	if code != 0 || !strings.HasPrefix(last, "tokens/s=") || !strings.Contains(last, "GFLOP/s=") || !strings.Contains(last, " -> ") {
		t.Fatalf("bench: exit %d, last line %q\n%s", code, last, e)
	}
}
