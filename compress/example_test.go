package compress_test

import (
	"fmt"
	"log"

	"github.com/cairnlabs/cairn/compress"
)

func Example() {
	codec, err := compress.ParseCodec("int8")
	if err != nil {
		log.Fatal(err)
	}
	delta := []float32{0.5, -1.25, 3, 0.001, 0, -0.02}

	// A worker encodes its pseudo-gradient each round. What int8 cannot
	// represent stays in the encoder's residual and goes out in later
	// rounds.
	enc := compress.NewEncoder(codec, len(delta))
	sum := make([]float32, len(delta))
	const rounds = 10
	for round := 1; round <= rounds; round++ {
		payload, err := enc.Encode(delta)
		if err != nil {
			log.Fatal(err)
		}
		c, n, _ := compress.DecodedSize(payload)

		// The aggregator knows n; it decodes, or accumulates weighted
		// contributions without a temporary vector.
		got := make([]float32, n)
		if err := compress.Decode(payload, got); err != nil {
			log.Fatal(err)
		}
		if err := compress.DecodeAdd(payload, 1, sum); err != nil {
			log.Fatal(err)
		}
		if round == 1 {
			fmt.Printf("round 1 (%s): %.4f\n", c, got)
		}
	}
	// Summed over rounds, nothing is lost: the total stays within half a
	// quantisation step (3/127/2 here) of rounds*delta.
	want := make([]float32, len(delta))
	for i, v := range delta {
		want[i] = rounds * v
	}
	fmt.Printf("sum of %d:     %.4f\n", rounds, sum)
	fmt.Printf("%d*delta:      %.4f\n", rounds, want)

	err = compress.Decode([]byte("CZ\x01\x02\x06\x00\x00\x00"), make([]float32, 6))
	fmt.Println(err)
	_, err = compress.ParseCodec("int4")
	fmt.Println(err)
	// Output:
	// round 1 (int8): [0.4961 -1.2520 3.0000 0.0000 0.0000 -0.0236]
	// sum of 10:     [5.0079 -12.4961 30.0000 0.0000 0.0000 -0.1890]
	// 10*delta:      [5.0000 -12.5000 30.0000 0.0100 0.0000 -0.2000]
	// compress: int8 payload is 8 bytes, shorter than the 12-byte header
	// compress: unknown codec "int4" (valid: fp32, int8, topk:K/CHUNK:BITS, mask:K/CHUNK:BITS)
}
