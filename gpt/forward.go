package gpt

import (
	"fmt"

	"github.com/cairnlabs/cairn/llama"

	"github.com/cairnlabs/cairn/vecmath"
)

// Forward runs the model on B sequences of T tokens (inputs, row-major) and
// keeps the activations for Backward. With targets it returns the mean
// cross-entropy over the B*T positions (those whose target is IgnoreTarget
// left out; 0 if every one is); with nil targets it returns 0 and
// only the logits (see Logits) are meaningful. It returns an error, and
// computes nothing, for a batch that does not fit the model: T past the
// block size, wrong lengths or tokens outside the vocabulary.
func (m *Model) Forward(inputs, targets []int32, B, T int) (float32, error) {
	if m.ll != nil {
		return m.ll.Forward(inputs, targets, B, T)
	}
	if err := m.checkBatch(inputs, targets, B, T); err != nil {
		return 0, err
	}
	c := m.Config
	a := m.ensureActs(B, T)
	a.inputs, a.targets = inputs, targets
	C, V, NH, BT := c.NEmbd, c.VocabSize, c.NHead, B*T
	eps := float32(c.LayerNormEps)
	p, J, P := m.pool, &m.jobs, m.prof
	hd := c.HeadDim()

	P.Begin()
	J.embed = embedJob{out: a.encoded, wte: m.w.wte, wpe: m.w.wpe, tokens: inputs, T: T, C: C}
	p.Run(BT, &J.embed)
	P.End("embedding fwd", 0)
	x := a.encoded
	for l := range a.layers {
		w, la := &m.w.layers[l], &a.layers[l]
		P.Begin()
		J.ln = lnFwdJob{out: la.ln1, mean: la.ln1Mean, rstd: la.ln1Rstd, in: x, w: w.ln1w, b: w.ln1b, C: C, eps: eps}
		p.Run(BT, &J.ln)
		P.End("layernorm fwd", 0)
		m.linear("qkv", la.qkv, la.ln1, w.attnW, w.attnB, nil, BT, C, 3*C)
		P.Begin()
		J.attn = attnJob{pool: p, qkv: la.qkv, y: la.atty, scratch: a.scratch, T: T, C: C, NH: NH, scale: J.attnScale}
		p.Run(B*NH, &J.attn)
		P.End("attention fwd", float64(B*NH)*causalFLOPs(T, hd, 2))
		m.linear("attn proj", la.res2, la.atty, w.projW, w.projB, x, BT, C, C)
		P.Begin()
		J.ln = lnFwdJob{out: la.ln2, mean: la.ln2Mean, rstd: la.ln2Rstd, in: la.res2, w: w.ln2w, b: w.ln2b, C: C, eps: eps}
		p.Run(BT, &J.ln)
		P.End("layernorm fwd", 0)
		m.linear("mlp fc", la.fch, la.ln2, w.fcW, w.fcB, nil, BT, C, 4*C)
		P.Begin()
		J.gelu = geluJob{out: la.fchGelu, in: la.fch, N: 4 * C}
		p.Run(BT, &J.gelu)
		P.End("gelu fwd", 0)
		m.linear("mlp proj", la.res3, la.fchGelu, w.fcProjW, w.fcProjB, la.res2, BT, 4*C, C)
		x = la.res3
	}
	P.Begin()
	J.ln = lnFwdJob{out: a.lnf, mean: a.lnfMean, rstd: a.lnfRstd, in: x, w: m.w.lnfw, b: m.w.lnfb, C: C, eps: eps}
	p.Run(BT, &J.ln)
	P.End("layernorm fwd", 0)
	m.linear("lm head", a.logits, a.lnf, m.w.lmW, m.w.lmB, nil, BT, C, V)
	P.Begin()
	J.ce = crossEntropyJob{logits: a.logits, probs: a.probs, losses: a.losses, targets: targets, V: V}
	p.Run(BT, &J.ce)
	P.End("softmax+cross-entropy fwd", 0)
	if targets == nil {
		return 0, nil
	}
	var sum float64
	for _, l := range a.losses[:BT] {
		sum += float64(l)
	}
	a.counted = llama.CountTargets(targets)
	if a.counted == 0 {
		return 0, nil
	}
	return float32(sum / float64(a.counted)), nil
}

// linear computes out = in·Wᵀ + bias (+ residual), in [rows, nin], W
// [nout, nin] as PyTorch stores it, adding the bias and residual inside the
// product (bias + residual first, then the product, as ever). name labels
// it in a profile.
func (m *Model) linear(name string, out, in, W, bias, residual []float32, rows, nin, nout int) {
	P := m.prof
	P.Begin()
	m.pool.SgemmInit(false, true, rows, nout, nin, in, nin, W, nin, out, nout, bias, residual)
	if P != nil {
		P.End("matmul fwd "+name, 2*float64(rows)*float64(nin)*float64(nout))
		P.shape("matmul fwd "+name, rows, nin, nout)
	}
}

// linearBackward accumulates the weight and bias gradients of
// out = in·Wᵀ + b given dout, and writes din = dout·W (unless din is nil).
func (m *Model) linearBackward(name string, din, dW, db, dout, in, W []float32, rows, nin, nout int) {
	P := m.prof
	P.Begin()
	m.pool.Sgemm(true, false, nout, nin, rows, dout, nout, in, nin, dW, nin, true)
	flops := 2 * float64(rows) * float64(nin) * float64(nout)
	if P != nil {
		P.End("matmul dW "+name, flops)
		P.shape("matmul dW "+name, nout, rows, nin)
	}
	m.jobs.colSum = colSumJob{dst: db, src: dout, rows: rows, cols: nout, ld: nout}
	m.pool.Run((nout+63)/64, &m.jobs.colSum)
	P.End("bias grad", 0)
	if din != nil {
		m.pool.Sgemm(false, false, rows, nin, nout, dout, nout, W, nin, din, nin, false)
		if P != nil {
			P.End("matmul dX "+name, flops)
			P.shape("matmul dX "+name, rows, nout, nin)
		}
	}
}

// causalFLOPs counts the multiply-adds of `products` T×T×hd products of
// which the causal mask keeps the lower triangle: 2·hd per kept element.
func causalFLOPs(T, hd, products int) float64 {
	return float64(products) * 2 * float64(hd) * float64(T*(T+1)/2)
}

// layerNormBackward accumulates into dx, dw and db the gradients of
// LayerNorm(x) given dout.
func (m *Model) layerNormBackward(dx, dw, db, dout, x, w, mean, rstd []float32, rows int) {
	a, C := m.acts, m.Config.NEmbd
	chunks := (rows + lnChunk - 1) / lnChunk
	m.prof.Begin()
	defer m.prof.End("layernorm bwd", 0)
	m.jobs.lnBwd = lnBwdJob{dx: dx, dout: dout, x: x, w: w, mean: mean, rstd: rstd, partial: a.lnPartial, rows: rows, C: C}
	m.pool.Run(chunks, &m.jobs.lnBwd)
	m.jobs.colSum = colSumJob{dst: dw, src: a.lnPartial, rows: chunks, cols: C, ld: 2 * C}
	m.pool.Run((C+63)/64, &m.jobs.colSum)
	m.jobs.colSum = colSumJob{dst: db, src: a.lnPartial[C:], rows: chunks, cols: C, ld: 2 * C}
	m.pool.Run((C+63)/64, &m.jobs.colSum)
}

// Backward accumulates into Grads the gradient of the mean loss of the last
// Forward. It fails if that pass had no targets.
func (m *Model) Backward() error {
	if m.ll != nil {
		return m.ll.Backward()
	}
	a := m.acts
	if a == nil || a.targets == nil {
		return fmt.Errorf("backward needs a forward pass with targets first")
	}
	c := m.Config
	B, T := a.B, a.T
	C, V, NH, BT := c.NEmbd, c.VocabSize, c.NHead, B*T
	p, J, g, w, P := m.pool, &m.jobs, &m.g, &m.w, m.prof
	hd := c.HeadDim()

	P.Begin()
	J.ce = crossEntropyJob{probs: a.probs, targets: a.targets, V: V, backward: true, invRows: 1 / float32(max(a.counted, 1))}
	p.Run(BT, &J.ce)
	P.End("softmax+cross-entropy bwd", 0)
	dlogits := a.probs
	a.targets = nil // the probabilities are gone now
	m.linearBackward("lm head", a.dln, g.lmW, g.lmB, dlogits, a.lnf, w.lmW, BT, C, V)
	clear(a.dres)
	last := a.encoded
	if L := len(a.layers); L > 0 {
		last = a.layers[L-1].res3
	}
	m.layerNormBackward(a.dres, g.lnfw, g.lnfb, a.dln, last, w.lnfw, a.lnfMean, a.lnfRstd, BT)

	for l := len(a.layers) - 1; l >= 0; l-- {
		la, wl, gl := &a.layers[l], &w.layers[l], &g.layers[l]
		x := a.encoded
		if l > 0 {
			x = a.layers[l-1].res3
		}
		m.linearBackward("mlp proj", a.dfch, gl.fcProjW, gl.fcProjB, a.dres, la.fchGelu, wl.fcProjW, BT, 4*C, C)
		P.Begin()
		J.gelu = geluJob{out: a.dfch, in: la.fch, N: 4 * C, backward: true}
		p.Run(BT, &J.gelu)
		P.End("gelu bwd", 0)
		m.linearBackward("mlp fc", a.dln, gl.fcW, gl.fcB, a.dfch, la.ln2, wl.fcW, BT, C, 4*C)
		m.layerNormBackward(a.dres, gl.ln2w, gl.ln2b, a.dln, la.res2, wl.ln2w, la.ln2Mean, la.ln2Rstd, BT)
		m.linearBackward("attn proj", a.datty, gl.projW, gl.projB, a.dres, la.atty, wl.projW, BT, C, C)
		P.Begin()
		J.attn = attnJob{pool: p, qkv: la.qkv, dy: a.datty, dqkv: a.dqkv, scratch: a.scratch, T: T, C: C, NH: NH, scale: J.attnScale, backward: true}
		p.Run(B*NH, &J.attn)
		// The useful products only: the backward also recomputes the
		// scores (package attention), which is not counted.
		P.End("attention bwd", float64(B*NH)*causalFLOPs(T, hd, 4))
		m.linearBackward("qkv", a.dln, gl.attnW, gl.attnB, a.dqkv, la.ln1, wl.attnW, BT, C, 3*C)
		m.layerNormBackward(a.dres, gl.ln1w, gl.ln1b, a.dln, x, wl.ln1w, la.ln1Mean, la.ln1Rstd, BT)
	}

	P.Begin()
	J.embedBwd = embedBwdJob{dwpe: g.wpe, dres: a.dres, B: B, T: T, C: C}
	p.Run(T, &J.embedBwd)
	for r, tok := range a.inputs { // in order: rows sharing a token add up alike for any thread count
		vecmath.Add(g.wte[int(tok)*C:int(tok)*C+C], a.dres[r*C:r*C+C])
	}
	P.End("embedding bwd", 0)
	return nil
}
