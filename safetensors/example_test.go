package safetensors_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/cairnlabs/cairn/safetensors"
)

func Example() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "model.safetensors")

	tensors := map[string]safetensors.Tensor{
		"embed.weight": safetensors.NewF32([]int{2, 3}, []float32{0.5, 1, 1.5, 2, 2.5, 3}),
		"token_ids":    safetensors.NewI32([]int{4}, []int32{101, 7592, 2088, 102}),
	}
	if err := safetensors.WriteFile(path, tensors, map[string]string{"format": "pt"}); err != nil {
		log.Fatal(err)
	}

	f, err := safetensors.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	for _, name := range f.Names() {
		t := f.Tensors[name]
		fmt.Println(name, t.DType, t.Shape, t.NumElements())
	}
	w, err := f.Tensors["embed.weight"].Float32s()
	if err != nil {
		log.Fatal(err)
	}
	ids, err := f.Tensors["token_ids"].Int32s()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(w, ids, f.Metadata["format"])

	_, err = safetensors.Parse([]byte{1, 2, 3})
	fmt.Println(err)
	// Output:
	// embed.weight F32 [2 3] 6
	// token_ids I32 [4] 4
	// [0.5 1 1.5 2 2.5 3] [101 7592 2088 102] pt
	// safetensors: file is 3 bytes, shorter than the 8-byte header length
}
