package bench

import (
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/kernels"
)

func TestProfileAccountsForTheStep(t *testing.T) {
	pool := kernels.NewPool(2)
	defer pool.Close()
	text, err := corpus.Load("")
	if err != nil {
		t.Fatal(err)
	}
	c := Config{D: 32, Layers: 2, Heads: 2, Ctx: 16, Batch: 3, Steps: 4, Threads: 2, Profile: true}
	res, err := Run(c, text, pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	var timed, matmulFLOPs float64
	seen := map[string]bool{}
	for _, op := range res.Ops {
		timed += op.Seconds
		seen[op.Name] = true
		if strings.HasPrefix(op.Name, "matmul ") {
			matmulFLOPs += op.FLOPs
			if op.Shape == "" {
				t.Errorf("%s has no shape", op.Name)
			}
		}
		if op.Calls%c.Steps != 0 {
			t.Errorf("%s ran %d times in %d steps", op.Name, op.Calls, c.Steps)
		}
	}
	if timed <= 0 || timed > res.Seconds {
		t.Fatalf("the ops took %.6f s of a %.6f s run", timed, res.Seconds)
	}
	for _, name := range []string{"attention fwd", "attention bwd", "layernorm fwd", "layernorm bwd", "gelu fwd", "gelu bwd",
		"softmax+cross-entropy fwd", "softmax+cross-entropy bwd", "embedding fwd", "embedding bwd", "adamw", "matmul fwd qkv", "matmul dW lm head"} {
		if !seen[name] {
			t.Errorf("no %q in the profile", name)
		}
	}
	// Every linear layer is three products (forward, dW, dX) of 2·rows·in·out.
	C, BT := float64(c.D), float64(c.Batch*c.Ctx)
	perLayer := 3*C*C + C*C + 4*C*C + 4*C*C
	want := 6 * BT * (float64(c.Layers)*perLayer + C*256) * float64(c.Steps)
	if matmulFLOPs != want {
		t.Fatalf("the profile counts %.0f matmul FLOPs, the layers need %.0f", matmulFLOPs, want)
	}
	if peak := SgemmPeak(pool, 64, 2); !(peak > 0) {
		t.Fatalf("SGEMM peak %v", peak)
	}
}
