package verify_test

import (
	"fmt"

	"github.com/cairnlabs/cairn/verify"
)

// A round of five contributions, one of them fifty times too large: it is
// flagged by screening, picked for recomputation, and clipped by the
// robust aggregate, which stays near the honest ones.
func Example() {
	deltas := [][]float32{
		{0.010, -0.020, 0.030},
		{0.012, -0.018, 0.028},
		{0.50, -1.0, 1.5}, // x50
		{0.011, -0.021, 0.031},
		{0.009, -0.019, 0.029},
	}
	var cs []verify.Contribution
	for i, d := range deltas {
		cs = append(cs, verify.Contribution{Worker: fmt.Sprint("w", i), Payload: verify.Digest{byte(i)}, Delta: d})
	}
	sc, _ := verify.Screen(7, cs, nil, verify.DefaultScreenOptions())
	fmt.Printf("%s: norm ratio %.0f, %s\n", sc[2].Worker, sc[2].NormRatio, sc[2].Flags)

	picks, _ := verify.Sample([]byte("hash of the block that closed the commits"), 7, sc,
		verify.SampleOptions{P: 0, Suspects: 1, Threshold: 1})
	fmt.Println("recompute:", picks[0].Worker, "suspicious:", picks[0].Suspicious)

	agg, _ := verify.NewAggregator(verify.DefaultAggregateOptions())
	out := make([]float32, 3)
	st, _ := agg.Aggregate(out, deltas, []float64{1, 1, 1, 1, 1})
	fmt.Printf("clipped by %.3f, trimmed %d each end: %.4f\n", st.Scales[2], st.Trim, out)
	// Output:
	// w2: norm ratio 50, norm-high
	// recompute: w2 suspicious: true
	// clipped by 0.040, trimmed 1 each end: [0.0110 -0.0200 0.0300]
}

// Judging a recomputation: the same kernel path must give the same bytes.
func ExampleJudge() {
	j, _ := verify.NewJudge(3, verify.DefaultTolerance)
	payload := []byte{'C', 'Z', 1, 1, 3, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64} // fp32 [1 2 3]
	start := verify.Digest{1}
	c := verify.Claim{Round: 3, Worker: "w", Path: "avx2/avx2", Payload: payload, Start: start, Revealed: start, WantStart: start}
	v, err := j.Judge(c, verify.Recomputation{Path: "avx2/avx2", Payload: payload})
	fmt.Println(v.Reason, v.Distance, err)
	// Output: passed 0 <nil>
}
