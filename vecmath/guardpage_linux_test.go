//go:build linux

package vecmath

import (
	"syscall"
	"testing"
	"unsafe"
)

// guardRegion is an anonymous mapping followed by an inaccessible
// (PROT_NONE) page; slice returns float32 slices that end exactly at that
// page, so that any access past their end faults.
type guardRegion struct {
	mem  []byte
	page int
}

func newGuardRegion(t *testing.T, maxN int) *guardRegion {
	page := syscall.Getpagesize()
	data := (4*maxN + page - 1) / page * page
	mem, err := syscall.Mmap(-1, 0, data+page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	if err := syscall.Mprotect(mem[data:], syscall.PROT_NONE); err != nil {
		syscall.Munmap(mem)
		t.Skipf("mprotect: %v", err)
	}
	t.Cleanup(func() { syscall.Munmap(mem) })
	return &guardRegion{mem: mem, page: page}
}

func (g *guardRegion) slice(n int, fill float32) []float32 {
	end := len(g.mem) - g.page
	if n == 0 {
		return unsafe.Slice((*float32)(unsafe.Pointer(&g.mem[end-4])), 1)[:0]
	}
	s := unsafe.Slice((*float32)(unsafe.Pointer(&g.mem[end-4*n])), n)
	for i := range s {
		s[i] = fill
	}
	return s
}

// TestNoAccessPastEnd runs every kernel on slices that end at a guard
// page, for all tail lengths: a load or store past the end would crash the
// test binary.
func TestNoAccessPastEnd(t *testing.T) {
	const maxN = 1100
	var rs [6]*guardRegion
	for i := range rs {
		rs[i] = newGuardRegion(t, maxN)
	}
	forEachImpl(t, func(t *testing.T) {
		for n := 0; n <= maxN; n++ {
			if n > 70 && n%97 != 0 && n != maxN {
				continue
			}
			a, b, c := rs[0].slice(n, 0.5), rs[1].slice(n, 0.25), rs[2].slice(n, 1)
			d, e, f := rs[3].slice(n, 0.1), rs[4].slice(n, 0.2), rs[5].slice(n, 0.3)
			Sum(a)
			Dot(a, b)
			Max(a)
			Axpy(0.5, a, b)
			Scale(0.5, a)
			Add(a, b)
			ExpSub(a, b, 1)
			SoftmaxGrad(a, b, 0.5, 2)
			GeluForward(a, b)
			GeluBackward(a, b, c)
			LayerNormForward(a, b, c, d, 1e-5)
			LayerNormBackward(a, b, c, d, e, f, 0.1, 1.5)
			for i := range f {
				f[i] = 1e-4
			}
			AdamW(a, b, c, f, 1e-3, 0.9, 0.999, 1e-8, 0.1, 0.5, 0.5)
		}
	})
}
