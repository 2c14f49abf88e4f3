package gpt

import (
	"fmt"
	"slices"
	"time"
)

// Profile accumulates where a model's training time goes: wall time and
// floating-point operations per kind of operation (each matrix-product
// shape, attention, LayerNorm, GELU, softmax and cross-entropy, embedding,
// and whatever the caller times itself, such as the optimizer). Attach it
// with Model.SetProfile; a model without one pays nothing. Timing every
// operation synchronises nothing the model does not already wait for: each
// pool run returns when its work is done.
type Profile struct {
	ops   []OpStat
	index map[string]int
	t0    time.Time
}

// OpStat is one kind of operation: Calls, total Seconds, and the FLOPs it
// performed (multiply and add counted as two; 0 for operations whose work
// is memory traffic rather than arithmetic worth counting).
type OpStat struct {
	Name    string
	Shape   string // for matrix products: rows×inner×columns
	Calls   int
	Seconds float64
	FLOPs   float64
}

// GFLOPs is the operation's rate in GFLOP/s (0 when it counts no FLOPs).
func (s OpStat) GFLOPs() float64 {
	if s.Seconds == 0 || s.FLOPs == 0 {
		return 0
	}
	return s.FLOPs / s.Seconds / 1e9
}

// NewProfile returns an empty profile.
func NewProfile() *Profile { return &Profile{index: map[string]int{}} }

// Begin starts timing an operation; End(name, flops) adds it. Calls do not
// nest. Both are no-ops on a nil Profile.
func (p *Profile) Begin() {
	if p != nil {
		p.t0 = time.Now()
	}
}

// End adds the time since Begin to the operation name.
func (p *Profile) End(name string, flops float64) {
	if p == nil {
		return
	}
	d := time.Since(p.t0).Seconds()
	i, ok := p.index[name]
	if !ok {
		i = len(p.ops)
		p.index[name] = i
		p.ops = append(p.ops, OpStat{Name: name})
	}
	s := &p.ops[i]
	s.Calls++
	s.Seconds += d
	s.FLOPs += flops
	p.t0 = time.Now()
}

// shape notes the shape of a matrix product the first time it is seen.
func (p *Profile) shape(name string, m, k, n int) {
	if i, ok := p.index[name]; ok && p.ops[i].Shape == "" {
		p.ops[i].Shape = fmt.Sprintf("%d×%d×%d", m, k, n)
	}
}

// Reset forgets everything measured so far (after warm-up steps, say).
func (p *Profile) Reset() {
	p.ops = p.ops[:0]
	clear(p.index)
}

// Ops lists the operations measured, the most time first.
func (p *Profile) Ops() []OpStat {
	ops := slices.Clone(p.ops)
	slices.SortStableFunc(ops, func(a, b OpStat) int {
		switch {
		case a.Seconds > b.Seconds:
			return -1
		case a.Seconds < b.Seconds:
			return 1
		}
		return 0
	})
	return ops
}

// SetProfile makes the model time its operations into p (nil: stop).
func (m *Model) SetProfile(p *Profile) { m.prof = p }
