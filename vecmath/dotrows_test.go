package vecmath

import (
	"math"
	"testing"
)

// DotRows must give every row bitwise what Dot gives it, on every path:
// the batched generator's logits equal a lone generator's only then.
func TestDotRowsMatchesDot(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := newRand(7)
		for _, n := range testLengths {
			for _, rows := range []int{1, 3, 4, 5, 8, 9} {
				for _, pad := range []int{0, 5} {
					stride := n + pad
					w := newGuarded(normal(r, n, 0, 1), 3)
					xs := normal(r, (rows-1)*stride+n, 0.5, 2)
					x := newGuarded(xs, 0)
					out := make([]float32, rows)
					DotRows(out, w.s(), x.s(), stride)
					for i := range rows {
						want := Dot(w.s(), x.s()[i*stride:i*stride+n])
						if math.Float32bits(out[i]) != math.Float32bits(want) {
							t.Fatalf("n=%d rows=%d stride=%d row %d: DotRows %g, Dot %g", n, rows, stride, i, out[i], want)
						}
					}
				}
			}
		}
	})
}

func TestDotRowsPanicsOnShortInput(t *testing.T) {
	for _, c := range []struct {
		rows, n, stride, xlen int
	}{{2, 4, 4, 7}, {2, 4, 3, 100}, {1, 4, 0, 3}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%+v: no panic", c)
				}
			}()
			DotRows(make([]float32, c.rows), make([]float32, c.n), make([]float32, c.xlen), c.stride)
		}()
	}
}

func BenchmarkDotRows(b *testing.B) {
	benchImpls(b, []int{128, 512}, 4, func(b *testing.B, n int) {
		r := newRand(1)
		w, x := normal(r, n, 0, 1), normal(r, 64*n, 0, 1)
		out := make([]float32, 64)
		b.Run("DotRows", func(b *testing.B) {
			for b.Loop() {
				DotRows(out, w, x, n)
			}
		})
		b.Run("Dot", func(b *testing.B) {
			for b.Loop() {
				for i := range out {
					out[i] = Dot(w, x[i*n:i*n+n])
				}
			}
		})
	})
}
