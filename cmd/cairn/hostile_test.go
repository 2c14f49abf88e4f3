package main

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cairnlabs/cairn/p2p"
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

// TestDataDirInUse: a second node started on a data directory a running
// node holds fails at once, exit status 2, with one line naming the
// directory and saying it is in use (before, two workers shared an
// identity and the second was refused as a duplicate with no hint why).
func TestDataDirInUse(t *testing.T) {
	bin := cairnBinary(t)
	dir := t.TempDir()
	wdir := filepath.Join(dir, "worker")
	key, err := p2p.LoadIdentity(filepath.Join(dir, "nobody"))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	// An aggregator that is not there: the first worker keeps retrying.
	join := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", freePort(t), id)
	first := start(t, bin, "node", "work", "--join", join, "--data-dir", wdir, "--listen", "/ip4/127.0.0.1/tcp/0", "--threads", "1")
	first.waitFor(t, "worker started", 20*time.Second)
	var stderr bytes.Buffer
	second := exec.Command(bin, "node", "work", "--join", join, "--data-dir", wdir, "--listen", "/ip4/127.0.0.1/tcp/0", "--threads", "1")
	second.Stderr = &stderr
	began := time.Now()
	err = second.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || time.Since(began) > 10*time.Second {
		t.Fatalf("second worker on the same directory: %v after %v, stderr:\n%s", err, time.Since(began), stderr.String())
	}
	if e := stderr.String(); strings.Count(e, "\n") != 1 || !strings.Contains(e, wdir) || !strings.Contains(e, "in use") {
		t.Fatalf("stderr %q, want one line naming %s as in use", e, wdir)
	}
	// Once the first is gone (even killed), the directory is free.
	first.cmd.Process.Kill()
	<-first.done
	lock, err := p2p.LockDir(wdir)
	if err != nil {
		t.Fatalf("the directory is still locked after its node died: %v", err)
	}
	lock.Close()
}
