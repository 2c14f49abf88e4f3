// Package optim holds the optimizer side of training: AdamW with PyTorch's
// semantics, gradient clipping by global norm and the warm-up plus cosine
// learning-rate schedule. It works on flat parameter and gradient buffers
// split into groups (tensors) that do or do not receive weight decay.
package optim

import (
	"fmt"
	"math"

	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/vecmath"
)

// Group is a contiguous range of the flat buffers with one decay setting.
type Group struct {
	Offset, Size int
	Decay        bool
}

// AdamW is torch.optim.AdamW: decoupled weight decay (p ← p·(1−lr·wd)),
// moment estimates with bias correction, eps added after the square root.
// M and V are the first and second moments, Step the number of updates
// taken; together they are the optimizer state a checkpoint saves.
type AdamW struct {
	Beta1, Beta2, Eps, WeightDecay float64
	M, V                           []float32
	Step                           int

	chunks []chunk
	job    adamJob
	norm   normJob
	pool   *kernels.Pool
}

type chunk struct {
	off, size int
	decay     bool
}

// chunkSize bounds the work of one parallel task; chunks never cross a
// group boundary.
const chunkSize = 1 << 14

// NewAdamW returns an optimizer for n parameters split into groups, which
// must cover [0, n) in order without gaps.
func NewAdamW(n int, groups []Group, beta1, beta2, eps, weightDecay float64, pool *kernels.Pool) (*AdamW, error) {
	o := &AdamW{Beta1: beta1, Beta2: beta2, Eps: eps, WeightDecay: weightDecay,
		M: make([]float32, n), V: make([]float32, n), pool: pool}
	off := 0
	for _, g := range groups {
		if g.Offset != off || g.Size < 0 {
			return nil, fmt.Errorf("optimizer groups must cover the parameters in order: group at %d, expected %d", g.Offset, off)
		}
		for s := 0; s < g.Size; s += chunkSize {
			o.chunks = append(o.chunks, chunk{off: g.Offset + s, size: min(chunkSize, g.Size-s), decay: g.Decay})
		}
		off += g.Size
	}
	if off != n {
		return nil, fmt.Errorf("optimizer groups cover %d of %d parameters", off, n)
	}
	o.job.o = o
	o.norm.partial = make([]float64, len(o.chunks))
	return o, nil
}

// Update takes one AdamW step with learning rate lr, moving params along
// grads. Step is incremented first, as PyTorch does.
func (o *AdamW) Update(params, grads []float32, lr float64) {
	o.Step++
	o.job.params, o.job.grads = params, grads
	bc1 := 1 - math.Pow(o.Beta1, float64(o.Step))
	bc2 := 1 - math.Pow(o.Beta2, float64(o.Step))
	o.job.lr, o.job.bc1, o.job.bc2 = float32(lr), float32(bc1), float32(bc2)
	o.pool.Run(len(o.chunks), &o.job)
	o.job.params, o.job.grads = nil, nil
}

type adamJob struct {
	o             *AdamW
	params, grads []float32
	lr, bc1, bc2  float32
}

func (j *adamJob) Do(_, lo, hi int) {
	o := j.o
	for _, c := range o.chunks[lo:hi] {
		wd := float32(0)
		if c.decay {
			wd = float32(o.WeightDecay)
		}
		e := c.off + c.size
		vecmath.AdamW(j.params[c.off:e], j.grads[c.off:e], o.M[c.off:e], o.V[c.off:e],
			j.lr, float32(o.Beta1), float32(o.Beta2), float32(o.Eps), wd, j.bc1, j.bc2)
	}
}

// GradNorm returns the Euclidean norm of grads, summed in a fixed order
// (per chunk, then over chunks) so it does not depend on the thread count.
func (o *AdamW) GradNorm(grads []float32) float64 {
	o.norm.grads, o.norm.chunks = grads, o.chunks
	o.pool.Run(len(o.chunks), &o.norm)
	o.norm.grads = nil
	var s float64
	for _, p := range o.norm.partial {
		s += p
	}
	return math.Sqrt(s)
}

type normJob struct {
	grads   []float32
	chunks  []chunk
	partial []float64
}

func (j *normJob) Do(_, lo, hi int) {
	for i := lo; i < hi; i++ {
		c := j.chunks[i]
		g := j.grads[c.off : c.off+c.size]
		var s float64
		for len(g) >= 1024 {
			s += float64(vecmath.Dot(g[:1024], g[:1024]))
			g = g[1024:]
		}
		s += float64(vecmath.Dot(g, g))
		j.partial[i] = s
	}
}

// ClipGradNorm scales grads so that their global norm is at most maxNorm,
// as torch.nn.utils.clip_grad_norm_ does (coefficient maxNorm/(norm+1e-6),
// applied only when below 1). It returns the norm before clipping. A
// non-positive maxNorm only measures.
func (o *AdamW) ClipGradNorm(grads []float32, maxNorm float64) float64 {
	norm := o.GradNorm(grads)
	if maxNorm > 0 {
		if coef := maxNorm / (norm + 1e-6); coef < 1 {
			vecmath.Scale(float32(coef), grads)
		}
	}
	return norm
}

// Schedule is nanoGPT's learning-rate schedule: linear warm-up over Warmup
// steps to LR, then cosine decay to MinLR at DecaySteps, and MinLR after.
type Schedule struct {
	LR, MinLR          float64
	Warmup, DecaySteps int
}

// At returns the learning rate of step it (counting from 0).
func (s Schedule) At(it int) float64 {
	if it < s.Warmup {
		return s.LR * float64(it+1) / float64(s.Warmup+1)
	}
	if s.DecaySteps <= s.Warmup {
		return s.LR
	}
	if it > s.DecaySteps {
		return s.MinLR
	}
	ratio := float64(it-s.Warmup) / float64(s.DecaySteps-s.Warmup)
	coef := 0.5 * (1 + math.Cos(math.Pi*ratio))
	return s.MinLR + coef*(s.LR-s.MinLR)
}
