package experiment

import (
	"context"
	"math"
	"testing"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/gpt"
)

// The efficiency comparison trains every architecture on the same stream
// for the dense GPT's FLOPs (to a step), measures what it reports, and
// the variants are the four it names.
func TestEfficiency(t *testing.T) {
	base := gpt.DefaultConfig(16, 1, 2, 16)
	vs := EfficiencyVariants(base)
	if len(vs) != 4 || vs[2].Config.Experts != 8 || vs[3].Config.KVLoraRank != 4 || vs[1].Config.Arch != gpt.Llama {
		t.Fatalf("variants %+v", vs)
	}
	rows, err := Efficiency(context.Background(), EfficiencyOptions{Text: corpus.TinyShakespeare()[:20000], Steps: 4, Threads: 1, Variants: vs})
	if err != nil {
		t.Fatal(err)
	}
	budget := rows[0].FLOPsPerToken * float64(rows[0].Tokens)
	for _, r := range rows {
		spent := r.FLOPsPerToken * float64(r.Tokens)
		perStep := spent / float64(r.Steps)
		if math.Abs(spent-budget) > perStep/2+1 || !(r.ValLoss > 0) || r.BitsPerByte != r.ValLoss/math.Ln2 || r.Params == 0 || r.KVBytes == 0 {
			t.Fatalf("%+v: want the dense GPT's FLOPs (%.3g) to a step and measured fields", r, budget)
		}
	}
	if rows[3].KVBytes >= rows[1].KVBytes {
		t.Fatalf("latent attention caches %d bytes a token, multi-head %d", rows[3].KVBytes, rows[1].KVBytes)
	}
}
