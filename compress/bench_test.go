package compress

import (
	"compress/flate"
	"fmt"
	"strings"
	"testing"
)

const benchN = 1 << 20

var benchInputs = []struct {
	name string
	gen  func() []float32
}{
	{"gauss", func() []float32 { return gaussian(benchN, 1, 1) }},
	{"mix-std1e-4-1e-2", func() []float32 { return mixture(benchN, 1e-4, 1e-2, 1) }},
	{"mix-var1e-4-1e-2", func() []float32 { return mixture(benchN, 1e-2, 1e-1, 1) }},
}

// BenchmarkFlateLevel compares compress/flate levels for the int8 stream:
// bytes per value of the first round's payload and encode/decode speed
// (MB/s of float32 values). The mixtures draw each value from N(0, s^2)
// with probability 0.9 and N(0, l^2) otherwise: mix-std1e-4-1e-2 has
// standard deviations s = 1e-4 and l = 1e-2, mix-var1e-4-1e-2 has those
// variances.
func BenchmarkFlateLevel(b *testing.B) {
	for _, lv := range []struct {
		name  string
		level int
	}{{"huffman", flate.HuffmanOnly}, {"bestspeed", flate.BestSpeed}, {"level2", 2}, {"default", flate.DefaultCompression}} {
		for _, in := range benchInputs {
			x := in.gen()
			b.Run(fmt.Sprintf("%s/%s/encode", lv.name, in.name), func(b *testing.B) {
				e := newEncoderLevel(Int8, benchN, lv.level)
				p, _ := e.Encode(x) // first round, zero residual
				b.SetBytes(4 * benchN)
				for b.Loop() {
					e.Encode(x)
				}
				b.ReportMetric(float64(len(p))/benchN, "B/value")
			})
			b.Run(fmt.Sprintf("%s/%s/decode", lv.name, in.name), func(b *testing.B) {
				p, _ := newEncoderLevel(Int8, benchN, lv.level).Encode(x)
				out := make([]float32, benchN)
				b.SetBytes(4 * benchN)
				for b.Loop() {
					if err := Decode(p, out); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkEncode measures Encode on 1<<20 Gaussian values (MB/s of
// float32 input).
func BenchmarkEncode(b *testing.B) {
	x := gaussian(benchN, 1, 1)
	for _, c := range []Codec{FP32, Int8} {
		b.Run(string(c), func(b *testing.B) {
			e := NewEncoder(c, benchN)
			p, _ := e.Encode(x) // first round, zero residual
			b.SetBytes(4 * benchN)
			b.ReportAllocs()
			for b.Loop() {
				e.Encode(x)
			}
			b.ReportMetric(float64(len(p))/benchN, "B/value")
		})
	}
}

// BenchmarkDecode measures Decode and DecodeAdd on 1<<20 Gaussian values
// (MB/s of float32 output).
func BenchmarkDecode(b *testing.B) {
	x := gaussian(benchN, 1, 1)
	for _, c := range []Codec{FP32, Int8} {
		p, _ := NewEncoder(c, benchN).Encode(x)
		out := make([]float32, benchN)
		b.Run(string(c), func(b *testing.B) {
			b.SetBytes(4 * benchN)
			b.ReportAllocs()
			for b.Loop() {
				if err := Decode(p, out); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(c)+"/add", func(b *testing.B) {
			b.SetBytes(4 * benchN)
			b.ReportAllocs()
			for b.Loop() {
				if err := DecodeAdd(p, 0.25, out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTopK measures the top-k codecs on 1<<20 Gaussian values (MB/s
// of float32 values): Encode with a residual from a previous round,
// Decode and DecodeAdd.
func BenchmarkTopK(b *testing.B) {
	x := gaussian(benchN, 1, 1)
	for _, c := range []Codec{TopK, "topk:128/4096:2", "topk:256/4096:2", "topk:64/4096:1", "topk:32/1024:2"} {
		e := NewEncoder(c, benchN)
		e.Encode(gaussian(benchN, 1, 2))
		p, _ := e.Encode(x)
		name := strings.ReplaceAll(string(c), "/", "of")
		b.Run(name+"/encode", func(b *testing.B) {
			b.SetBytes(4 * benchN)
			b.ReportAllocs()
			for b.Loop() {
				e.Encode(x)
			}
			b.ReportMetric(float64(len(p))/benchN, "B/value")
		})
		out := make([]float32, benchN)
		b.Run(name+"/decode", func(b *testing.B) {
			b.SetBytes(4 * benchN)
			b.ReportAllocs()
			for b.Loop() {
				if err := Decode(p, out); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/add", func(b *testing.B) {
			b.SetBytes(4 * benchN)
			b.ReportAllocs()
			for b.Loop() {
				if err := DecodeAdd(p, 0.25, out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
