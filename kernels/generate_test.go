package kernels

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestAssemblyIsFresh regenerates gemm_amd64.s and compares it with the
// checked-in file, so that the generator and the assembly cannot drift.
func TestAssemblyIsFresh(t *testing.T) {
	out := filepath.Join(t.TempDir(), "gemm_amd64.s")
	cmd := exec.Command("go", "run", "./internal/asmgen", "-out", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("asmgen: %v\n%s", err, b)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile("gemm_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, have) {
		t.Fatal("gemm_amd64.s is stale: run go generate ./kernels")
	}
}
