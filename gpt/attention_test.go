package gpt

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/cairnlabs/cairn/attention"
	"github.com/cairnlabs/cairn/kernels"
)

// TestAttentionJob: the model's attention over its [B·T, 3C] layout, at
// contexts of one strip and of several with a partial last one, writes
// every output and gradient element and gives the same bits on one thread
// as on three (package attention checks the values themselves).
func TestAttentionJob(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, T := range []int{5, 2*attention.Strip + 17} {
		const B, C, NH = 2, 24, 2
		qkv, dy := make([]float32, B*T*3*C), make([]float32, B*T*C)
		for i := range qkv {
			qkv[i] = float32(r.NormFloat64())
		}
		for i := range dy {
			dy[i] = float32(r.NormFloat64())
		}
		var ref []float32
		for _, threads := range []int{1, 3} {
			p := kernels.NewPool(threads)
			scratch := make([][]float32, threads)
			for i := range scratch {
				scratch[i] = make([]float32, attention.Scratch(T))
			}
			y, dqkv := make([]float32, B*T*C), make([]float32, B*T*3*C)
			nan := float32(math.NaN())
			for i := range y {
				y[i] = nan
			}
			for i := range dqkv {
				dqkv[i] = nan
			}
			j := attnJob{pool: p, qkv: qkv, y: y, dy: dy, dqkv: dqkv, scratch: scratch, T: T, C: C, NH: NH, scale: 0.3}
			p.Run(B*NH, &j)
			j.backward = true
			p.Run(B*NH, &j)
			p.Close()
			got := append(y, dqkv...)
			for i, v := range got {
				if math.IsNaN(float64(v)) {
					t.Fatalf("T=%d, %d threads: element %d not written", T, threads, i)
				}
			}
			if ref == nil {
				ref = got
				continue
			}
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(ref[i]) {
					t.Fatalf("T=%d: %d threads differ from 1 at %d", T, threads, i)
				}
			}
		}
	}
}
