package vecmath

import (
	"fmt"
	"testing"
)

// Benchmarks run every supported implementation at several row lengths.
// SetBytes counts the float32 traffic of one call (each array read or
// written once counts 4 bytes per element).

var benchLengths = []int{128, 4096}

func benchImpls(b *testing.B, lengths []int, bytesPerElem int, f func(b *testing.B, n int)) {
	old := Impl()
	defer SetImpl(old)
	for _, name := range implNames() {
		for _, n := range lengths {
			b.Run(fmt.Sprintf("%s/n=%d", name, n), func(b *testing.B) {
				if err := SetImpl(name); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(n * bytesPerElem))
				f(b, n)
			})
		}
	}
}

func BenchmarkSum(b *testing.B) {
	benchImpls(b, benchLengths, 4, func(b *testing.B, n int) {
		x := normal(newRand(1), n, 0, 1)
		for b.Loop() {
			Sum(x)
		}
	})
}

func BenchmarkDot(b *testing.B) {
	benchImpls(b, benchLengths, 8, func(b *testing.B, n int) {
		r := newRand(1)
		x, y := normal(r, n, 0, 1), normal(r, n, 0, 1)
		for b.Loop() {
			Dot(x, y)
		}
	})
}

func BenchmarkAxpy(b *testing.B) {
	benchImpls(b, benchLengths, 12, func(b *testing.B, n int) {
		r := newRand(1)
		x, y := normal(r, n, 0, 1), normal(r, n, 0, 1)
		for b.Loop() {
			Axpy(1e-9, x, y)
		}
	})
}

func BenchmarkExpSub(b *testing.B) {
	benchImpls(b, benchLengths, 8, func(b *testing.B, n int) {
		x := normal(newRand(1), n, 0, 3)
		y := make([]float32, n)
		m := Max(x)
		for b.Loop() {
			ExpSub(y, x, m)
		}
	})
}

func BenchmarkGeluForward(b *testing.B) {
	benchImpls(b, append(benchLengths, 1<<16), 8, func(b *testing.B, n int) {
		x := normal(newRand(1), n, 0, 2)
		y := make([]float32, n)
		for b.Loop() {
			GeluForward(y, x)
		}
	})
}

func BenchmarkGeluBackward(b *testing.B) {
	benchImpls(b, append(benchLengths, 1<<16), 12, func(b *testing.B, n int) {
		r := newRand(1)
		x, dy := normal(r, n, 0, 2), normal(r, n, 0, 1)
		dx := make([]float32, n)
		for b.Loop() {
			GeluBackward(dx, x, dy)
		}
	})
}

func BenchmarkLayerNormForward(b *testing.B) {
	// reads x (twice for the statistics, once for the output), w, b;
	// writes out.
	benchImpls(b, benchLengths, 24, func(b *testing.B, n int) {
		r := newRand(1)
		x, w, bb := normal(r, n, 0, 1), normal(r, n, 1, 0.1), normal(r, n, 0, 0.1)
		out := make([]float32, n)
		for b.Loop() {
			LayerNormForward(out, x, w, bb, 1e-5)
		}
	})
}

func BenchmarkLayerNormBackward(b *testing.B) {
	// pass 1 reads x, dout, w, dw, db and writes dw, db; pass 2 reads x,
	// dout, w, dx and writes dx.
	benchImpls(b, benchLengths, 44, func(b *testing.B, n int) {
		r := newRand(1)
		x, w, dout := normal(r, n, 0, 1), normal(r, n, 1, 0.1), normal(r, n, 0, 1)
		dx, dw, db := make([]float32, n), make([]float32, n), make([]float32, n)
		for b.Loop() {
			LayerNormBackward(dx, dw, db, dout, x, w, 0.1, 1.2)
		}
	})
}

func BenchmarkAdamW(b *testing.B) {
	// reads p, g, m, v; writes p, m, v.
	benchImpls(b, benchLengths, 28, func(b *testing.B, n int) {
		r := newRand(1)
		p, g, m := normal(r, n, 0, 0.02), normal(r, n, 0, 1e-2), normal(r, n, 0, 1e-3)
		v := uniform(r, n, 0, 1e-5)
		for b.Loop() {
			AdamW(p, g, m, v, 1e-12, 0.9, 0.999, 1e-8, 0, 0.5, 0.5)
		}
	})
}
