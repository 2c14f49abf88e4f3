package checkpoint

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/safetensors"
)

func TestModelRoundTrip(t *testing.T) {
	cfg := gpt.DefaultConfig(24, 2, 3, 16)
	params := make([]float32, cfg.NumParams())
	gpt.InitParams(cfg, params, 3)
	path := filepath.Join(t.TempDir(), ModelFile)
	if err := SaveModel(path, cfg, params, map[string]string{"note": "x"}); err != nil {
		t.Fatal(err)
	}
	m, err := LoadModel(path)
	if err != nil {
		t.Fatal(err)
	}
	if m.Config != cfg || m.Metadata["note"] != "x" {
		t.Fatalf("config %+v metadata %v", m.Config, m.Metadata)
	}
	for i := range params {
		if params[i] != m.Params[i] {
			t.Fatalf("param %d differs", i)
		}
	}
	// nanoGPT names and PyTorch's [out, in] layout
	f, _ := safetensors.ReadFile(path)
	if s := f.Tensors["transformer.h.1.mlp.c_fc.weight"].Shape; len(s) != 2 || s[0] != 96 || s[1] != 24 {
		t.Fatalf("c_fc weight shape %v, want [96 24]", s)
	}
}

func TestLoadModelErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := gpt.DefaultConfig(8, 1, 2, 4)
	params := make([]float32, cfg.NumParams())
	good := filepath.Join(dir, "good.safetensors")
	if err := SaveModel(good, cfg, params, nil); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(good)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, data, 0o644)
		return p
	}
	tensors := map[string]safetensors.Tensor{}
	for _, ti := range cfg.Layout() {
		tensors[ti.Name] = safetensors.NewF32(ti.Shape, params[ti.Offset:ti.Offset+ti.Size()])
	}
	enc := func(mutate func(map[string]safetensors.Tensor), md map[string]string) []byte {
		ts := map[string]safetensors.Tensor{}
		for k, v := range tensors {
			ts[k] = v
		}
		mutate(ts)
		out, err := safetensors.Encode(ts, md)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	cj := map[string]string{"config": cfg.JSON()}
	cases := []struct {
		path, want string
	}{
		{write("truncated.safetensors", b[:len(b)-10]), "truncated"},
		{write("garbage.safetensors", []byte("not a safetensors file at all")), "garbage.safetensors"},
		{write("noconfig.safetensors", enc(func(map[string]safetensors.Tensor) {}, nil)), "no model config"},
		{write("badconfig.safetensors", enc(func(map[string]safetensors.Tensor) {}, map[string]string{"config": `{"n_embd": 10, "n_head": 3, "n_layer": 1, "block_size": 4}`})), "divisible"},
		{write("missing.safetensors", enc(func(m map[string]safetensors.Tensor) { delete(m, "lm_head.bias") }, cj)), `missing tensor "lm_head.bias"`},
		{write("shape.safetensors", enc(func(m map[string]safetensors.Tensor) {
			m["lm_head.bias"] = safetensors.NewF32([]int{255}, make([]float32, 255))
		}, cj)), "shape [255]"},
		{write("extra.safetensors", enc(func(m map[string]safetensors.Tensor) {
			m["foo"] = safetensors.NewF32([]int{1}, []float32{1})
		}, cj)), `unexpected tensor "foo"`},
		{filepath.Join(dir, "absent.safetensors"), "absent.safetensors"},
	}
	for _, c := range cases {
		_, err := LoadModel(c.path)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), filepath.Base(c.path)) {
			t.Errorf("%s: error %v, want the file name and %q", filepath.Base(c.path), err, c.want)
		}
	}
	// nanoGPT's causal-mask buffers are ignored
	p := write("buffers.safetensors", enc(func(m map[string]safetensors.Tensor) {
		m["transformer.h.0.attn.bias"] = safetensors.NewF32([]int{1, 1, 4, 4}, make([]float32, 16))
	}, cj))
	if _, err := LoadModel(p); err != nil {
		t.Fatalf("state dict with attn.bias buffer: %v", err)
	}
}

func TestOptimizerRoundTrip(t *testing.T) {
	cfg := gpt.DefaultConfig(8, 1, 2, 4)
	n := cfg.NumParams()
	o := Optimizer{M: make([]float32, n), V: make([]float32, n), Step: 17, Metadata: map[string]string{"k": "v"}}
	for i := range o.M {
		o.M[i], o.V[i] = float32(i), float32(2*i)
	}
	path := filepath.Join(t.TempDir(), OptimizerFile)
	if err := SaveOptimizer(path, cfg, o); err != nil {
		t.Fatal(err)
	}
	back, err := LoadOptimizer(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if back.Step != 17 || back.Metadata["k"] != "v" || back.M[n-1] != float32(n-1) || back.V[n-1] != float32(2*(n-1)) {
		t.Fatalf("round trip: step %d", back.Step)
	}
	if _, err := LoadOptimizer(path, gpt.DefaultConfig(16, 1, 2, 4)); err == nil {
		t.Fatal("optimizer state loaded for a model of another shape")
	}
}
