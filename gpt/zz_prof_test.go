package gpt

import (
	"os"
	"runtime/pprof"
	"testing"
	"math/rand/v2"
	"github.com/cairnlabs/cairn/kernels"
)

func TestProfStep(t *testing.T) {
	cfg := Config{VocabSize: 256, BlockSize: 128, NEmbd: 128, NHead: 4, NLayer: 4, Bias: true, LayerNormEps: 1e-5, Activation: "gelu"}
	pool := kernels.NewPool(2)
	m, err := New(cfg, pool)
	if err != nil { t.Fatal(err) }
	r := rand.New(rand.NewPCG(1, 2))
	in := make([]int32, 16*128); tg := make([]int32, 16*128)
	for i := range in { in[i] = int32(r.IntN(256)); tg[i] = int32(r.IntN(256)) }
	f, _ := os.Create("/tmp/step.prof")
	pprof.StartCPUProfile(f)
	for i := 0; i < 40; i++ {
		m.Forward(in, tg, 16, 128)
		m.Backward()
	}
	pprof.StopCPUProfile()
	f.Close()
}
