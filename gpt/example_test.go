package gpt_test

import (
	"fmt"

	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
)

// A model's forward pass on one sequence, its loss, and the gradient of
// that loss.
func Example() {
	pool := kernels.NewPool(2)
	defer pool.Close()
	cfg := gpt.DefaultConfig(32, 2, 4, 16) // width 32, 2 layers, 4 heads, context 16
	m, err := gpt.New(cfg, pool)
	if err != nil {
		panic(err)
	}
	gpt.InitParams(cfg, m.Params, 1)
	text := []byte("To be, or not to be")
	in, tg := make([]int32, 16), make([]int32, 16)
	for i := range in {
		in[i], tg[i] = int32(text[i]), int32(text[i+1])
	}
	loss, err := m.Forward(in, tg, 1, 16)
	if err != nil {
		panic(err)
	}
	if err := m.Backward(); err != nil {
		panic(err)
	}
	fmt.Printf("%d parameters, initial loss %.2f (ln 256 = 5.55)\n", cfg.NumParams(), loss)
	// Output: 42624 parameters, initial loss 5.57 (ln 256 = 5.55)
}
