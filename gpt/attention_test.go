package gpt

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/cairnlabs/cairn/kernels"
)

// naiveAttention is causal attention and its backward in float64, straight
// from the definition: y = softmax(scale·q·kᵀ, masked)·v per (sequence,
// head), and dq, dk, dv from dy.
func naiveAttention(qkv, dy []float32, B, T, C, NH int, scale float64) (y, dqkv []float64) {
	hd := C / NH
	y, dqkv = make([]float64, B*T*C), make([]float64, B*T*3*C)
	at := func(b, t, part, h, x int) int { return (b*T+t)*3*C + part*C + h*hd + x }
	for b := range B {
		for h := range NH {
			P := make([][]float64, T)
			for i := range T {
				P[i] = make([]float64, i+1)
				mx := math.Inf(-1)
				for j := 0; j <= i; j++ {
					var s float64
					for x := range hd {
						s += float64(qkv[at(b, i, 0, h, x)]) * float64(qkv[at(b, j, 1, h, x)])
					}
					P[i][j] = s * scale
					mx = max(mx, P[i][j])
				}
				var sum float64
				for j := range P[i] {
					P[i][j] = math.Exp(P[i][j] - mx)
					sum += P[i][j]
				}
				for j := range P[i] {
					P[i][j] /= sum
					for x := range hd {
						y[(b*T+i)*C+h*hd+x] += P[i][j] * float64(qkv[at(b, j, 2, h, x)])
					}
				}
			}
			for i := range T {
				dP := make([]float64, i+1)
				var dot float64
				for j := 0; j <= i; j++ {
					for x := range hd {
						g := float64(dy[(b*T+i)*C+h*hd+x])
						dP[j] += g * float64(qkv[at(b, j, 2, h, x)])
						dqkv[at(b, j, 2, h, x)] += P[i][j] * g
					}
					dot += P[i][j] * dP[j]
				}
				for j := 0; j <= i; j++ {
					dS := P[i][j] * (dP[j] - dot) * scale
					for x := range hd {
						dqkv[at(b, i, 0, h, x)] += dS * float64(qkv[at(b, j, 1, h, x)])
						dqkv[at(b, j, 1, h, x)] += dS * float64(qkv[at(b, i, 0, h, x)])
					}
				}
			}
		}
	}
	return y, dqkv
}

// TestAttentionStrips: attention by strips of queries, at contexts of one
// strip, several, and several with a partial last one, matches the
// float64 definition forward and backward, and gives the same bits on one
// thread as on three.
func TestAttentionStrips(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, T := range []int{5, attnStrip, 2*attnStrip + 17} {
		const B, C, NH = 2, 24, 2
		qkv, dy := make([]float32, B*T*3*C), make([]float32, B*T*C)
		for i := range qkv {
			qkv[i] = float32(r.NormFloat64())
		}
		for i := range dy {
			dy[i] = float32(r.NormFloat64())
		}
		scale := float32(1 / math.Sqrt(C/NH))
		wantY, wantD := naiveAttention(qkv, dy, B, T, C, NH, float64(scale))
		var ref []float32
		for _, threads := range []int{1, 3} {
			p := kernels.NewPool(threads)
			scratch := make([][]float32, threads)
			for i := range scratch {
				scratch[i] = make([]float32, attnScratch(T))
			}
			y, dqkv := make([]float32, B*T*C), make([]float32, B*T*3*C)
			for i := range dqkv {
				dqkv[i] = float32(math.NaN()) // every element must be written
			}
			j := attnJob{pool: p, qkv: qkv, y: y, dy: dy, dqkv: dqkv, scratch: scratch, T: T, C: C, NH: NH, scale: scale}
			p.Run(B*NH, &j)
			j.backward = true
			p.Run(B*NH, &j)
			p.Close()
			for i, w := range wantY {
				if math.Abs(float64(y[i])-w) > 1e-5*(1+math.Abs(w)) {
					t.Fatalf("T=%d: y[%d] = %v, want %v", T, i, y[i], w)
				}
			}
			for i, w := range wantD {
				if !(math.Abs(float64(dqkv[i])-w) <= 1e-4*(1+math.Abs(w))) {
					t.Fatalf("T=%d: dqkv[%d] = %v, want %v", T, i, dqkv[i], w)
				}
			}
			got := append(y, dqkv...)
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
