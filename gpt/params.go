package gpt

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/cairnlabs/cairn/llama"
)

// TensorInfo names one parameter tensor and places it in the flat buffer.
type TensorInfo struct {
	Name   string
	Shape  []int
	Offset int
}

// Size is the number of elements of the tensor.
func (t TensorInfo) Size() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Matrix reports whether the tensor has two or more dimensions (the
// tensors that receive weight decay in nanoGPT's recipe).
func (t TensorInfo) Matrix() bool { return len(t.Shape) >= 2 }

// Layout lists the model's parameters in their order in the flat buffer,
// with nanoGPT's names and PyTorch's shapes.
func (c Config) Layout() []TensorInfo {
	if c.Arch == Llama {
		return llamaLayout(c)
	}
	C, V := c.NEmbd, c.VocabSize
	var ts []TensorInfo
	off := 0
	add := func(name string, shape ...int) {
		t := TensorInfo{Name: name, Shape: shape, Offset: off}
		off += t.Size()
		ts = append(ts, t)
	}
	add("transformer.wte.weight", V, C)
	add("transformer.wpe.weight", c.BlockSize, C)
	for l := 0; l < c.NLayer; l++ {
		p := fmt.Sprintf("transformer.h.%d.", l)
		add(p+"ln_1.weight", C)
		add(p+"ln_1.bias", C)
		add(p+"attn.c_attn.weight", 3*C, C)
		add(p+"attn.c_attn.bias", 3*C)
		add(p+"attn.c_proj.weight", C, C)
		add(p+"attn.c_proj.bias", C)
		add(p+"ln_2.weight", C)
		add(p+"ln_2.bias", C)
		add(p+"mlp.c_fc.weight", 4*C, C)
		add(p+"mlp.c_fc.bias", 4*C)
		add(p+"mlp.c_proj.weight", C, 4*C)
		add(p+"mlp.c_proj.bias", C)
	}
	add("transformer.ln_f.weight", C)
	add("transformer.ln_f.bias", C)
	add("lm_head.weight", V, C)
	add("lm_head.bias", V)
	return ts
}

// layerViews are one block's tensors as slices of a flat buffer.
type layerViews struct {
	ln1w, ln1b, attnW, attnB, projW, projB []float32
	ln2w, ln2b, fcW, fcB, fcProjW, fcProjB []float32
}

// views are all tensors as slices of a flat buffer (parameters or grads).
type views struct {
	wte, wpe   []float32
	layers     []layerViews
	lnfw, lnfb []float32
	lmW, lmB   []float32
}

func makeViews(c Config, buf []float32) views {
	byName := map[string][]float32{}
	for _, t := range c.Layout() {
		byName[t.Name] = buf[t.Offset : t.Offset+t.Size() : t.Offset+t.Size()]
	}
	v := views{
		wte: byName["transformer.wte.weight"], wpe: byName["transformer.wpe.weight"],
		lnfw: byName["transformer.ln_f.weight"], lnfb: byName["transformer.ln_f.bias"],
		lmW: byName["lm_head.weight"], lmB: byName["lm_head.bias"],
	}
	for l := 0; l < c.NLayer; l++ {
		p := fmt.Sprintf("transformer.h.%d.", l)
		v.layers = append(v.layers, layerViews{
			ln1w: byName[p+"ln_1.weight"], ln1b: byName[p+"ln_1.bias"],
			attnW: byName[p+"attn.c_attn.weight"], attnB: byName[p+"attn.c_attn.bias"],
			projW: byName[p+"attn.c_proj.weight"], projB: byName[p+"attn.c_proj.bias"],
			ln2w: byName[p+"ln_2.weight"], ln2b: byName[p+"ln_2.bias"],
			fcW: byName[p+"mlp.c_fc.weight"], fcB: byName[p+"mlp.c_fc.bias"],
			fcProjW: byName[p+"mlp.c_proj.weight"], fcProjB: byName[p+"mlp.c_proj.bias"],
		})
	}
	return v
}

// InitParams fills params (laid out as c.Layout()) the way nanoGPT
// initialises a model: weights and embeddings from N(0, 0.02²), the two
// residual projections of each block from N(0, (0.02/√(2·layers))²), biases
// zero and LayerNorm scales one. The same seed gives the same weights.
func InitParams(c Config, params []float32, seed uint64) {
	if c.Arch == Llama {
		llama.InitParams(c.llama(), params, seed)
		return
	}
	r := rand.New(rand.NewPCG(seed, 0x6a09e667f3bcc908))
	residStd := 0.02 / math.Sqrt(2*float64(c.NLayer))
	for _, t := range c.Layout() {
		p := params[t.Offset : t.Offset+t.Size()]
		switch {
		case len(t.Shape) == 1 && (hasSuffix(t.Name, "ln_1.weight") || hasSuffix(t.Name, "ln_2.weight") || hasSuffix(t.Name, "ln_f.weight")):
			for i := range p {
				p[i] = 1
			}
		case len(t.Shape) == 1:
			clear(p)
		default:
			std := 0.02
			if hasSuffix(t.Name, "c_proj.weight") {
				std = residStd
			}
			for i := range p {
				p[i] = float32(r.NormFloat64() * std)
			}
		}
	}
}

func hasSuffix(s, suffix string) bool {
	return len(s) >= len(suffix) && s[len(s)-len(suffix):] == suffix
}
