package llama

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/cairnlabs/cairn/safetensors"
)

// File names of a model directory in the Hugging Face layout.
const (
	ConfigFile = "config.json"
	ModelFile  = "model.safetensors"
)

// maxConfigBytes bounds config.json.
const maxConfigBytes = 1 << 20

// Save writes a model directory as Hugging Face lays one out: config.json
// and model.safetensors (F32, the config also in its metadata, meta
// added), each atomically. It creates dir if needed.
func Save(dir string, cfg Config, params []float32, meta map[string]string) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if int64(len(params)) != cfg.NumParams() {
		return fmt.Errorf("llama: %d parameters for a config of %d", len(params), cfg.NumParams())
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tensors := map[string]safetensors.Tensor{}
	for _, t := range cfg.Layout() {
		tensors[t.Name] = safetensors.NewF32(t.Shape, params[t.Offset:t.Offset+t.Size()])
	}
	md := map[string]string{"format": "pt", "config": cfg.JSON()}
	for k, v := range meta {
		md[k] = v
	}
	if err := safetensors.WriteFile(filepath.Join(dir, ModelFile), tensors, md); err != nil {
		return err
	}
	return safetensors.WriteAtomic(filepath.Join(dir, ConfigFile), []byte(cfg.JSON()+"\n"))
}

// Checkpoint is a loaded model directory.
type Checkpoint struct {
	Config   Config
	Params   []float32 // laid out as Config.Layout()
	Metadata map[string]string
}

// Load reads a model directory in the Hugging Face layout: config.json and
// model.safetensors with every tensor of the layout under its name, F32,
// BF16 or F16 (widened to float32). Without config.json the config comes
// from the safetensors metadata (as Save writes it). It fails, naming the
// file, on a missing or malformed file, a config Validate refuses, a
// missing tensor, or one of the wrong shape or type; tensors it does not
// know (rotary caches) are ignored.
func Load(dir string) (*Checkpoint, error) {
	mpath := filepath.Join(dir, ModelFile)
	f, err := safetensors.ReadFile(mpath)
	if err != nil {
		return nil, err
	}
	var cfg Config
	cpath := filepath.Join(dir, ConfigFile)
	raw, err := readLimited(cpath)
	switch {
	case err == nil:
		if cfg, err = ParseConfig(raw); err != nil {
			return nil, fmt.Errorf("%s: %v", cpath, err)
		}
	case errors.Is(err, os.ErrNotExist) && f.Metadata["config"] != "":
		if cfg, err = ParseConfig([]byte(f.Metadata["config"])); err != nil {
			return nil, fmt.Errorf("%s: metadata: %v", mpath, err)
		}
	default:
		return nil, fmt.Errorf("%s: %v", cpath, err)
	}
	// Every tensor present with its shape before the parameters are
	// allocated: their size is then bounded by the file's.
	layout := cfg.Layout()
	for _, t := range layout {
		ts, ok := f.Tensors[t.Name]
		if !ok {
			return nil, fmt.Errorf("%s: no tensor %q", mpath, t.Name)
		}
		if !slices.Equal(ts.Shape, t.Shape) {
			return nil, fmt.Errorf("%s: tensor %q has shape %v, the config wants %v", mpath, t.Name, ts.Shape, t.Shape)
		}
	}
	ck := &Checkpoint{Config: cfg, Params: make([]float32, cfg.NumParams()), Metadata: f.Metadata}
	for _, t := range layout {
		v, err := f.Tensors[t.Name].AsFloat32s()
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %v", mpath, t.Name, err)
		}
		copy(ck.Params[t.Offset:t.Offset+t.Size()], v)
	}
	return ck, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxConfigBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxConfigBytes)
	}
	return b, nil
}
