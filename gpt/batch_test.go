package gpt

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// A batch gives every generator bitwise the logits it would have on its
// own, for sequences of different lengths, through the window sliding
// past the block size.
func TestBatchMatchesGenerators(t *testing.T) {
	c := DefaultConfig(24, 2, 3, 16)
	m := testModel(t, c, 3)
	r := rand.New(rand.NewPCG(1, 2))
	const n = 5
	var solo, batched []*Generator
	for i := range n {
		prompt := make([]int32, 1+3*i)
		for j := range prompt {
			prompt[j] = int32(r.IntN(c.VocabSize))
		}
		a, b := m.NewGenerator(), m.NewGenerator()
		if err := a.Start(prompt); err != nil {
			t.Fatal(err)
		}
		if err := b.Start(prompt); err != nil {
			t.Fatal(err)
		}
		solo, batched = append(solo, a), append(batched, b)
	}
	bt := m.NewBatch(n)
	toks := make([]int32, n)
	for step := range 30 { // past the block size of 16 for every sequence
		for i := range toks {
			toks[i] = int32(r.IntN(c.VocabSize))
			if err := solo[i].Append(toks[i]); err != nil {
				t.Fatal(err)
			}
		}
		if err := bt.Append(batched, toks); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if !slices.Equal(solo[i].Logits(), batched[i].Logits()) {
				t.Fatalf("step %d, generator %d: logits differ", step, i)
			}
			if !slices.Equal(solo[i].Sequence(), batched[i].Sequence()) {
				t.Fatalf("step %d, generator %d: sequences differ", step, i)
			}
		}
	}
	if err := bt.Append(batched, toks[:2]); err == nil {
		t.Fatal("mismatched lengths accepted")
	}
	if err := bt.Append(append(batched, m.NewGenerator()), append(toks, 1)); err == nil {
		t.Fatal("more generators than the batch holds accepted")
	}
	toks[0] = int32(c.VocabSize)
	if err := bt.Append(batched, toks); err == nil {
		t.Fatal("a token outside the vocabulary accepted")
	}
}

// A copied generator continues exactly as the original would, and the
// two are independent; a generator of another model is refused.
func TestGeneratorCopyFrom(t *testing.T) {
	c := DefaultConfig(24, 2, 3, 16)
	m := testModel(t, c, 3)
	a, b, ref := m.NewGenerator(), m.NewGenerator(), m.NewGenerator()
	prompt := []int32{1, 5, 9, 2}
	if err := a.Start(prompt); err != nil {
		t.Fatal(err)
	}
	if err := ref.Start(prompt); err != nil {
		t.Fatal(err)
	}
	if err := b.CopyFrom(a); err != nil {
		t.Fatal(err)
	}
	if err := a.Append(7); err != nil { // a goes its own way
		t.Fatal(err)
	}
	for step, tok := range []int32{3, 4, 8, 1, 0, 6, 2, 2, 5, 9, 11, 3, 7, 1} { // past the block size
		if err := b.Append(tok); err != nil {
			t.Fatal(err)
		}
		if err := ref.Append(tok); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(b.Logits(), ref.Logits()) || !slices.Equal(b.Sequence(), ref.Sequence()) {
			t.Fatalf("step %d: the copy differs from the original's path", step)
		}
	}
	other := testModel(t, c, 4)
	if err := other.NewGenerator().CopyFrom(a); err == nil {
		t.Fatal("a generator of another model copied")
	}
}
