package vecmath_test

import (
	"fmt"

	"github.com/cairnlabs/cairn/vecmath"
)

// A numerically stable softmax of one row of logits, followed by GELU of a
// few activations. The printed values are the same on every
// implementation.
func Example() {
	logits := []float32{2.0, 1.0, 0.1, -1e30, 3.5}
	probs := make([]float32, len(logits))
	sum := vecmath.ExpSub(probs, logits, vecmath.Max(logits))
	vecmath.Scale(1/sum, probs)
	fmt.Printf("softmax: %.4f\n", probs)

	x := []float32{-3, -1, 0, 0.5, 2}
	y := make([]float32, len(x))
	vecmath.GeluForward(y, x)
	fmt.Printf("gelu:    %.4f\n", y)
	// Output:
	// softmax: [0.1667 0.0613 0.0249 0.0000 0.7471]
	// gelu:    [-0.0040 -0.1587 0.0000 0.3457 1.9545]
}
