package gpt

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/cairnlabs/cairn/attention"
	"github.com/cairnlabs/cairn/kernels"
)

// BenchmarkAttention times causal attention alone, forward and backward,
// at the anchor's width-384 shape (B 8, T 256, 6 heads of 64).
func BenchmarkAttention(b *testing.B) {
	B, T, C, NH := 8, 256, 384, 6
	if v := os.Getenv("ATTN_T"); v != "" {
		T, _ = strconv.Atoi(v)
		B = 8 * 256 / T
	}
	p := kernels.NewPool(1)
	defer p.Close()
	r := rand.New(rand.NewPCG(1, 2))
	f := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		return x
	}
	qkv, dy := f(B*T*3*C), f(B*T*C)
	y, dqkv := make([]float32, B*T*C), make([]float32, B*T*3*C)
	scratch := [][]float32{make([]float32, attention.Scratch(T))}
	for _, bwd := range []bool{false, true} {
		name := map[bool]string{false: "fwd", true: "bwd"}[bwd]
		b.Run(name, func(b *testing.B) {
			j := attnJob{pool: p, qkv: qkv, y: y, dy: dy, dqkv: dqkv, scratch: scratch, T: T, C: C, NH: NH, scale: 0.125}
			j.backward = bwd
			for b.Loop() {
				clear(dqkv)
				p.Run(B*NH, &j)
			}
		})
	}
}
