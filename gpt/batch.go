package gpt

import (
	"errors"
	"fmt"

	"github.com/cairnlabs/cairn/vecmath"
)

// Batch advances several generators of one model by a token each at
// once: the matrix products of all their rows are one job over the
// weights (each weight row read once for the whole batch, one thread
// hand-off per product), while attention runs on each generator's own
// cache. The logits are bitwise those of Generator.Append: every output
// is the same dot product in the same order. A Batch is not safe for
// concurrent use; its generators must not be used elsewhere meanwhile.
type Batch struct {
	m                *Model
	max              int
	x, ln, qkv, y, h []float32 // [rows, width]
	mm               matMatJob
	attn             batchAttnJob
	rows             []*Generator
	dots             [][]float32 // per pool thread [max]
}

// NewBatch returns a batch of at most max generators of m.
func (m *Model) NewBatch(max int) *Batch {
	c := m.Config
	C := c.NEmbd
	b := &Batch{m: m, max: max, x: make([]float32, max*C), ln: make([]float32, max*C), qkv: make([]float32, max*3*C),
		y: make([]float32, max*C), h: make([]float32, max*4*C)}
	for range m.pool.Threads() {
		b.dots = append(b.dots, make([]float32, max))
	}
	return b
}

// Append appends toks[i] to gs[i] for every i and computes each one's
// next logits, as gs[i].Append(toks[i]) would. A generator whose cache
// is full (it recomputes its window) is advanced on its own. It fails,
// changing nothing, on more generators than the batch holds, generators
// of another model, lengths that differ, or a token outside the
// vocabulary.
func (b *Batch) Append(gs []*Generator, toks []int32) error {
	if len(gs) != len(toks) {
		return fmt.Errorf("gpt: batch of %d generators and %d tokens", len(gs), len(toks))
	}
	if len(gs) > b.max {
		return fmt.Errorf("gpt: batch of %d generators, room for %d", len(gs), b.max)
	}
	c := b.m.Config
	for i, g := range gs {
		if g.m != b.m {
			return errors.New("gpt: a generator of another model in the batch")
		}
		if toks[i] < 0 || int(toks[i]) >= c.VocabSize {
			return fmt.Errorf("token %d outside the vocabulary [0, %d)", toks[i], c.VocabSize)
		}
	}
	if b.m.ll != nil {
		// A Llama's generators advance one by one.
		for i, g := range gs {
			if err := g.Append(toks[i]); err != nil {
				return err
			}
		}
		return nil
	}
	b.rows = b.rows[:0]
	var rowToks []int32
	for i, g := range gs {
		if g.n == c.BlockSize {
			g.Append(toks[i]) // the window slides: recomputed alone
			continue
		}
		g.seq = append(g.seq, toks[i])
		b.rows = append(b.rows, g)
		rowToks = append(rowToks, toks[i])
	}
	if len(b.rows) > 0 {
		b.step(rowToks)
	}
	return nil
}

// step runs the rows' tokens at their next cache positions.
func (b *Batch) step(toks []int32) {
	m, c := b.m, b.m.Config
	C := c.NEmbd
	eps := float32(c.LayerNormEps)
	R := len(b.rows)
	row := func(buf []float32, i, w int) []float32 { return buf[i*w : i*w+w] }
	for i, g := range b.rows {
		x := row(b.x, i, C)
		copy(x, m.w.wte[int(toks[i])*C:int(toks[i])*C+C])
		vecmath.Add(x, m.w.wpe[g.n*C:g.n*C+C])
	}
	for l := range m.w.layers {
		w := &m.w.layers[l]
		for i := range R {
			vecmath.LayerNormForward(row(b.ln, i, C), row(b.x, i, C), w.ln1w, w.ln1b, eps)
		}
		b.matMat(R, b.qkv, 3*C, w.attnW, w.attnB, b.ln, C, false)
		b.attn = batchAttnJob{b: b, layer: l}
		m.pool.Run(R, &b.attn)
		b.matMat(R, b.x, C, w.projW, w.projB, b.y, C, true)
		for i := range R {
			vecmath.LayerNormForward(row(b.ln, i, C), row(b.x, i, C), w.ln2w, w.ln2b, eps)
		}
		b.matMat(R, b.h, 4*C, w.fcW, w.fcB, b.ln, C, false)
		vecmath.GeluForward(b.h[:R*4*C], b.h[:R*4*C])
		b.matMat(R, b.x, C, w.fcProjW, w.fcProjB, b.h, 4*C, true)
	}
	for i := range R {
		vecmath.LayerNormForward(row(b.ln, i, C), row(b.x, i, C), m.w.lnfw, m.w.lnfb, eps)
	}
	V := c.VocabSize
	b.mm = matMatJob{rows: R, outW: V, W: m.w.lmW, bias: m.w.lmB, in: b.ln, inW: C, dst: b.rows, dots: b.dots}
	m.pool.Run(V, &b.mm)
	for _, g := range b.rows {
		g.n++
	}
}

// batchAttnJob is one layer's attention for rows [lo, hi): each row's
// query against its own generator's cache.
type batchAttnJob struct {
	b     *Batch
	layer int
}

func (j *batchAttnJob) Do(_, lo, hi int) {
	C := j.b.m.Config.NEmbd
	for i := lo; i < hi; i++ {
		j.b.rows[i].attend(j.layer, j.b.qkv[i*3*C:i*3*C+3*C], j.b.y[i*C:i*C+C])
	}
}

// matMat computes out[i] = W·in[i] + b (+ out[i] if residual) for the
// first rows rows, split over the pool's threads by rows of W.
func (b *Batch) matMat(rows int, out []float32, outW int, W, bias, in []float32, inW int, residual bool) {
	b.mm = matMatJob{rows: rows, out: out, outW: outW, W: W, bias: bias, in: in, inW: inW, residual: residual, dots: b.dots}
	b.m.pool.Run(outW, &b.mm)
}

type matMatJob struct {
	rows, outW, inW int
	out, W, bias    []float32
	in              []float32
	residual        bool
	dst             []*Generator // when set, row i's output goes to dst[i].logits
	dots            [][]float32  // per thread scratch of rows
}

func (j *matMatJob) Do(worker, lo, hi int) {
	n := j.inW
	dots := j.dots[worker][:j.rows]
	for r := lo; r < hi; r++ {
		wr := j.W[r*n : r*n+n]
		vecmath.DotRows(dots, wr, j.in[:j.rows*n], n) // each as vecmath.Dot(wr, row)
		for i, d := range dots {
			v := d + j.bias[r]
			if j.dst != nil {
				j.dst[i].logits[r] = v
				continue
			}
			if j.residual {
				v += j.out[i*j.outW+r]
			}
			j.out[i*j.outW+r] = v
		}
	}
}
