package gpt

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cairnlabs/cairn/attention"
	"github.com/cairnlabs/cairn/kernels"
)

// BenchmarkAttention times causal attention alone, forward and backward,
// on one thread, at the anchor's width-384 shape (6 heads of 64) and
// 2,048 positions a batch: 8 sequences of 256, and 2 of 1,024.
func BenchmarkAttention(b *testing.B) {
	const C, NH = 384, 6
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
	for _, T := range []int{256, 1024} {
		B := 2048 / T
		qkv, dy := f(B*T*3*C), f(B*T*C)
		y, dqkv := make([]float32, B*T*C), make([]float32, B*T*3*C)
		scratch := [][]float32{make([]float32, attention.Scratch(T))}
		for _, bwd := range []bool{false, true} {
			b.Run(fmt.Sprintf("T=%d/%s", T, map[bool]string{false: "fwd", true: "bwd"}[bwd]), func(b *testing.B) {
				j := attnJob{pool: p, qkv: qkv, y: y, dy: dy, dqkv: dqkv, scratch: scratch, T: T, C: C, NH: NH, scale: 0.125, backward: bwd}
				for b.Loop() {
					p.Run(B*NH, &j)
				}
			})
		}
	}
}
