// Package checkpoint saves and loads models and their training state as
// safetensors files that PyTorch reads and writes too: the weights under
// nanoGPT's names in PyTorch's [out, in] layout with the model config in the
// metadata, and the AdamW moments in a second file beside them.
package checkpoint

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/safetensors"
)

// File names inside a checkpoint directory.
const (
	ModelFile     = "model.safetensors"
	OptimizerFile = "optimizer.safetensors"
)

// SaveModel writes the weights params (laid out as cfg.Layout()) to path,
// atomically, with the config and meta in the file's metadata.
func SaveModel(path string, cfg gpt.Config, params []float32, meta map[string]string) error {
	tensors := map[string]safetensors.Tensor{}
	for _, t := range cfg.Layout() {
		tensors[t.Name] = safetensors.NewF32(t.Shape, params[t.Offset:t.Offset+t.Size()])
	}
	md := map[string]string{"format": "pt", "config": cfg.JSON()}
	for k, v := range meta {
		md[k] = v
	}
	return safetensors.WriteFile(path, tensors, md)
}

// Model is a loaded model file.
type Model struct {
	Config   gpt.Config
	Params   []float32 // laid out as Config.Layout()
	Metadata map[string]string
}

// ignored are buffers that PyTorch state dicts may carry but that are not
// parameters (nanoGPT's causal mask).
func ignored(name string) bool {
	return strings.HasSuffix(name, ".attn.bias") || strings.HasSuffix(name, ".attn.masked_bias")
}

// LoadModel reads a model file. It fails, naming the file and the problem,
// if the file is unreadable or malformed, has no valid config, or lacks a
// parameter, or has one of the wrong shape or type.
func LoadModel(path string) (*Model, error) {
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return nil, err
	}
	fail := func(format string, args ...any) (*Model, error) {
		return nil, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...))
	}
	cs, ok := f.Metadata["config"]
	if !ok {
		return fail("no model config in the metadata (expected __metadata__.config)")
	}
	cfg, err := gpt.ParseConfig(cs)
	if err != nil {
		return fail("%v", err)
	}
	// The file must hold every tensor of the config's shape before the
	// parameters are allocated: a header cannot make us allocate memory
	// that the file's own bytes do not account for.
	if err := checkTensors(f, cfg.Layout(), ""); err != nil {
		return fail("%v", err)
	}
	m := &Model{Config: cfg, Params: make([]float32, cfg.NumParams()), Metadata: f.Metadata}
	if err := readTensors(f, cfg.Layout(), "", m.Params); err != nil {
		return fail("%v", err)
	}
	for _, name := range f.Names() {
		if ignored(name) {
			continue
		}
		if _, ok := findLayout(cfg, name); !ok {
			return fail("unexpected tensor %q for a model of this config", name)
		}
	}
	return m, nil
}

func findLayout(cfg gpt.Config, name string) (gpt.TensorInfo, bool) {
	for _, t := range cfg.Layout() {
		if t.Name == name {
			return t, true
		}
	}
	return gpt.TensorInfo{}, false
}

// checkTensors checks that f holds the tensors named prefix+t.Name for
// every t in layout, of t's shape.
func checkTensors(f *safetensors.File, layout []gpt.TensorInfo, prefix string) error {
	for _, t := range layout {
		name := prefix + t.Name
		st, ok := f.Tensors[name]
		if !ok {
			return fmt.Errorf("missing tensor %q", name)
		}
		if !sameShape(st.Shape, t.Shape) {
			return fmt.Errorf("tensor %q has shape %v, expected %v", name, st.Shape, t.Shape)
		}
	}
	return nil
}

// readTensors copies the tensors named prefix+t.Name for every t in layout
// into dst at t.Offset, checking type and shape.
func readTensors(f *safetensors.File, layout []gpt.TensorInfo, prefix string, dst []float32) error {
	for _, t := range layout {
		name := prefix + t.Name
		st, ok := f.Tensors[name]
		if !ok {
			return fmt.Errorf("missing tensor %q", name)
		}
		if !sameShape(st.Shape, t.Shape) {
			return fmt.Errorf("tensor %q has shape %v, expected %v", name, st.Shape, t.Shape)
		}
		v, err := st.Float32s()
		if err != nil {
			return fmt.Errorf("tensor %q: %v", name, err)
		}
		copy(dst[t.Offset:t.Offset+t.Size()], v)
	}
	return nil
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Optimizer is the AdamW state saved beside a model: moments laid out like
// the parameters, the number of updates taken, and free-form metadata that
// training uses for its own state.
type Optimizer struct {
	M, V     []float32
	Step     int
	Metadata map[string]string
}

// SaveOptimizer writes the optimizer state for a model of config cfg to
// path, atomically. Moments are stored as "exp_avg.<param>" and
// "exp_avg_sq.<param>", PyTorch's names for them.
func SaveOptimizer(path string, cfg gpt.Config, o Optimizer) error {
	tensors := map[string]safetensors.Tensor{}
	for _, t := range cfg.Layout() {
		tensors["exp_avg."+t.Name] = safetensors.NewF32(t.Shape, o.M[t.Offset:t.Offset+t.Size()])
		tensors["exp_avg_sq."+t.Name] = safetensors.NewF32(t.Shape, o.V[t.Offset:t.Offset+t.Size()])
	}
	md := map[string]string{"step": strconv.Itoa(o.Step)}
	for k, v := range o.Metadata {
		md[k] = v
	}
	return safetensors.WriteFile(path, tensors, md)
}

// LoadOptimizer reads optimizer state for a model of config cfg. It fails,
// naming the file, when a moment is missing or misshapen or the step is
// not a non-negative integer.
func LoadOptimizer(path string, cfg gpt.Config) (*Optimizer, error) {
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for _, prefix := range []string{"exp_avg.", "exp_avg_sq."} {
		if err := checkTensors(f, cfg.Layout(), prefix); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
	}
	n := cfg.NumParams()
	o := &Optimizer{M: make([]float32, n), V: make([]float32, n), Metadata: f.Metadata}
	step, err := strconv.Atoi(f.Metadata["step"])
	if err != nil || step < 0 {
		return nil, fmt.Errorf("%s: optimizer step %q is not a non-negative integer", path, f.Metadata["step"])
	}
	o.Step = step
	if err := readTensors(f, cfg.Layout(), "exp_avg.", o.M); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if err := readTensors(f, cfg.Layout(), "exp_avg_sq.", o.V); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return o, nil
}

// Paths returns the model and optimizer file paths inside dir.
func Paths(dir string) (model, optimizer string) {
	return filepath.Join(dir, ModelFile), filepath.Join(dir, OptimizerFile)
}
