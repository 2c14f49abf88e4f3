package parity

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/safetensors"
	"github.com/cairnlabs/cairn/vecmath"
)

// fixtures are PyTorch golden outputs: the shared gpt-tiny, plus shapes made
// with shared/anchors/make_fixture.py (see testdata/fixtures/README.md).
func fixtures(t *testing.T) []string {
	dirs := []string{filepath.Join("..", "..", "shared", "fixtures", "gpt-tiny")}
	more, err := filepath.Glob(filepath.Join("..", "testdata", "fixtures", "*", "case.safetensors"))
	if err != nil || len(more) < 4 {
		t.Fatalf("fixtures under testdata/fixtures: %v, %v", more, err)
	}
	for _, m := range more {
		dirs = append(dirs, filepath.Dir(m))
	}
	return dirs
}

// TestParity runs every fixture on every kernel path this CPU has.
func TestParity(t *testing.T) {
	savedK, savedV := kernels.Impl(), vecmath.Impl()
	defer kernels.SetImpl(savedK)
	defer vecmath.SetImpl(savedV)
	pool := kernels.NewPool(2)
	defer pool.Close()
	for _, impl := range kernels.Impls() {
		if err := kernels.SetImpl(impl); err != nil {
			t.Fatal(err)
		}
		vimpl := impl
		if err := vecmath.SetImpl(vimpl); err != nil {
			vimpl = "generic"
			vecmath.SetImpl(vimpl)
		}
		for _, dir := range fixtures(t) {
			rep, err := Run(dir, pool)
			if err != nil {
				t.Fatalf("%s: %v", dir, err)
			}
			for _, c := range rep.Checks {
				if !c.OK() {
					t.Errorf("%s with %s/%s: %s rel err %.3g > %.0e %s", dir, impl, vimpl, c.Name, c.Rel, c.Tol, c.Detail)
				}
			}
			if len(rep.Checks) != 2+len(rep.Config.Layout())+3 {
				t.Fatalf("%s: %d checks", dir, len(rep.Checks))
			}
		}
	}
}

func TestParityDetectsWrongWeights(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join("..", "..", "shared", "fixtures", "gpt-tiny")
	for _, f := range []string{"model.safetensors", "case.safetensors"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	pool := kernels.NewPool(1)
	defer pool.Close()
	rep, err := Run(dir, pool)
	if err != nil || !rep.OK() {
		t.Fatalf("copy of gpt-tiny: %v", err)
	}
	// Perturbing one weight by 1% must break parity.
	mpath := filepath.Join(dir, "model.safetensors")
	f, err := safetensors.ReadFile(mpath)
	if err != nil {
		t.Fatal(err)
	}
	w := f.Tensors["transformer.ln_f.weight"]
	v, _ := w.Float32s()
	v[3] *= 1.01
	f.Tensors["transformer.ln_f.weight"] = safetensors.NewF32(w.Shape, v)
	if err := safetensors.WriteFile(mpath, f.Tensors, f.Metadata); err != nil {
		t.Fatal(err)
	}
	rep, err = Run(dir, pool)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() {
		t.Fatal("parity held with a corrupted weight")
	}
}

func TestParityBadFixture(t *testing.T) {
	pool := kernels.NewPool(1)
	defer pool.Close()
	if _, err := Run(t.TempDir(), pool); err == nil || !strings.Contains(err.Error(), "model.safetensors") {
		t.Fatalf("empty directory: %v", err)
	}
}
