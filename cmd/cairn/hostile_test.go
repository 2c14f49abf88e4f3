package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/safetensors"
)

// craftedCheckpoint writes a model file whose header claims n_embd
// 3221225472 (issue 7.6): the parameter count overflows an int, and a
// reader that trusts it panics in makeslice.
func craftedCheckpoint(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "crafted.safetensors")
	cfg := `{"vocab_size":256,"n_embd":3221225472,"n_layer":1,"n_head":1,"block_size":64,"bias":true,"layer_norm_eps":1e-5,"activation":"gelu_erf"}`
	tiny := map[string]safetensors.Tensor{"transformer.wte.weight": safetensors.NewF32([]int{1}, []float32{0})}
	if err := safetensors.WriteFile(path, tiny, map[string]string{"config": cfg}); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCraftedCheckpointHeader: the crafted header gives one line on stderr
// and exit status 2, in a real process (a panic would exit 2 too, but
// with a stack trace) and in-process, for sample and for a run's --init.
func TestCraftedCheckpointHeader(t *testing.T) {
	path := craftedCheckpoint(t)
	var stderr bytes.Buffer
	cmd := exec.Command(cairnBinary(t), "sample", "--ckpt", path)
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("cairn sample on a crafted header: %v, stderr:\n%s", err, stderr.String())
	}
	if strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "n_embd") {
		t.Fatalf("stderr %q, want one line about n_embd", stderr.String())
	}
	for _, args := range [][]string{
		{"sample", "--ckpt", path},
		{"node", "aggregate", "--init", path, "--data-dir", t.TempDir()},
	} {
		code, _, e := runCLI(args...)
		if code != 2 || strings.Count(e, "\n") != 1 || !strings.Contains(e, "n_embd") {
			t.Fatalf("%v: exit %d, stderr %q", args, code, e)
		}
	}
}
