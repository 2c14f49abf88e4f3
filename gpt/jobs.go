package gpt

import (
	"math"

	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/vecmath"
)

// The jobs below are the model's parallel loops. Each is a struct the model
// owns and fills in before handing it to the pool, so that running one
// allocates nothing. Every output element is computed by exactly one call,
// in an order that does not depend on how the pool splits the work.
type jobs struct {
	embed     embedJob
	ln        lnFwdJob
	lnBwd     lnBwdJob
	gelu      geluJob
	attn      attnJob
	ce        crossEntropyJob
	colSum    colSumJob
	embedBwd  embedBwdJob
	pool      *kernels.Pool
	threads   int
	attnScale float32
}

func (j *jobs) init(m *Model) {
	j.pool = m.pool
	j.threads = m.pool.Threads()
	j.attn.pool = m.pool
	j.attnScale = float32(1 / math.Sqrt(float64(m.Config.HeadDim())))
}

// embedJob: out[r] = wte[tokens[r]] + wpe[r mod T].
type embedJob struct {
	out, wte, wpe []float32
	tokens        []int32
	T, C          int
}

func (j *embedJob) Do(_, lo, hi int) {
	C := j.C
	for r := lo; r < hi; r++ {
		o := j.out[r*C : r*C+C]
		copy(o, j.wte[int(j.tokens[r])*C:])
		vecmath.Add(o, j.wpe[(r%j.T)*C:(r%j.T)*C+C])
	}
}

// lnFwdJob: LayerNorm of each row of in.
type lnFwdJob struct {
	out, mean, rstd, in, w, b []float32
	C                         int
	eps                       float32
}

func (j *lnFwdJob) Do(_, lo, hi int) {
	C := j.C
	for r := lo; r < hi; r++ {
		j.mean[r], j.rstd[r] = vecmath.LayerNormForward(j.out[r*C:r*C+C], j.in[r*C:r*C+C], j.w, j.b, j.eps)
	}
}

// lnBwdJob: LayerNorm backward over chunks of lnChunk rows. dx accumulates;
// each chunk's weight and bias gradients go to its own slot of partial.
type lnBwdJob struct {
	dx, dout, x, w, mean, rstd, partial []float32
	rows, C                             int
}

func (j *lnBwdJob) Do(_, lo, hi int) {
	C := j.C
	for ch := lo; ch < hi; ch++ {
		p := j.partial[ch*2*C : ch*2*C+2*C]
		clear(p)
		for r := ch * lnChunk; r < min((ch+1)*lnChunk, j.rows); r++ {
			vecmath.LayerNormBackward(j.dx[r*C:r*C+C], p[:C], p[C:], j.dout[r*C:r*C+C], j.x[r*C:r*C+C], j.w, j.mean[r], j.rstd[r])
		}
	}
}

// geluJob: GELU forward (out = gelu(in)) or backward (dx = gelu'(in)·dx).
type geluJob struct {
	out, in  []float32
	N        int
	backward bool
}

func (j *geluJob) Do(_, lo, hi int) {
	o, in := j.out[lo*j.N:hi*j.N], j.in[lo*j.N:hi*j.N]
	if j.backward {
		vecmath.GeluBackward(o, in, o)
	} else {
		vecmath.GeluForward(o, in)
	}
}

// colSumJob: dst[c] += Σ_r src[r*ld + c], over columns in blocks of 64.
type colSumJob struct {
	dst, src       []float32
	rows, cols, ld int
}

func (j *colSumJob) Do(_, lo, hi int) {
	c0, c1 := lo*64, min(hi*64, j.cols)
	d := j.dst[c0:c1]
	for r := 0; r < j.rows; r++ {
		vecmath.Add(d, j.src[r*j.ld+c0:r*j.ld+c1])
	}
}

// crossEntropyJob: probs = softmax(logits) per row and the row's loss
// -log probs[target]; with backward set, turns probs into the gradient of
// the mean loss: (probs - onehot(target)) / rows, where rows counts the
// positions whose target is not IgnoreTarget (those get zero gradient).
type crossEntropyJob struct {
	logits, probs, losses []float32
	targets               []int32
	V                     int
	backward              bool
	invRows               float32
}

func (j *crossEntropyJob) Do(_, lo, hi int) {
	V := j.V
	for r := lo; r < hi; r++ {
		p := j.probs[r*V : r*V+V]
		if j.backward {
			if t := j.targets[r]; t == IgnoreTarget {
				clear(p)
			} else {
				p[t] -= 1
				vecmath.Scale(j.invRows, p)
			}
			continue
		}
		l := j.logits[r*V : r*V+V]
		mx := vecmath.Max(l)
		sum := vecmath.ExpSub(p, l, mx)
		vecmath.Scale(1/sum, p)
		if j.targets != nil {
			if t := j.targets[r]; t == IgnoreTarget {
				j.losses[r] = 0
			} else {
				j.losses[r] = float32(math.Log(float64(sum)) + float64(mx) - float64(l[t]))
			}
		}
	}
}

// embedBwdJob: position embedding gradients for positions [lo, hi), each
// summed over the batch in order.
type embedBwdJob struct {
	dwpe, dres []float32
	B, T, C    int
}

func (j *embedBwdJob) Do(_, lo, hi int) {
	C := j.C
	for t := lo; t < hi; t++ {
		d := j.dwpe[t*C : t*C+C]
		for b := 0; b < j.B; b++ {
			r := b*j.T + t
			vecmath.Add(d, j.dres[r*C:r*C+C])
		}
	}
}
