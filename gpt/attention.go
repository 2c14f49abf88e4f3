package gpt

import (
	"github.com/cairnlabs/cairn/attention"
	"github.com/cairnlabs/cairn/kernels"
)

// attnJob is causal multi-head self-attention over (sequence, head) pairs,
// by package attention's strips. Forward: from qkv ([B*T, 3C], q|k|v) it
// writes y ([B*T, C]). Backward: from qkv and dy it writes dqkv. Each
// (sequence, head) is one thread's, so results do not depend on the
// thread count.
type attnJob struct {
	pool             *kernels.Pool
	qkv, y, dy, dqkv []float32
	scratch          [][]float32 // per thread, attention.Scratch(T) floats
	T, C, NH         int
	scale            float32
	backward         bool
}

func (j *attnJob) Do(worker, lo, hi int) {
	ws := j.pool.Workspace(worker)
	T, C, NH := j.T, j.C, j.NH
	hd, ld := C/NH, 3*C
	for u := lo; u < hi; u++ {
		b, h := u/NH, u%NH
		base := b*T*ld + h*hd
		head := attention.Head{Q: j.qkv[base:], K: j.qkv[base+C:], V: j.qkv[base+2*C:], QS: ld, KS: ld, VS: ld,
			T: T, DQK: hd, DV: hd, Scale: j.scale}
		yoff := b*T*C + h*hd
		if !j.backward {
			attention.Forward(ws, head, j.y[yoff:], C, j.scratch[worker])
			continue
		}
		attention.Backward(ws, head, j.dy[yoff:], C, j.dqkv[base:], ld, j.dqkv[base+C:], ld, j.dqkv[base+2*C:], ld, false, j.scratch[worker])
	}
}
