package tokenizer

import (
	"bytes"
	"container/heap"
	"fmt"
	"slices"
)

// Train learns a byte-level BPE vocabulary of vocab tokens from text cut
// by pattern p: the 256 single bytes (ids 0..255, the byte's value), then
// one token per merge, each the most frequent adjacent pair of tokens
// within the pieces (ties: the pair of lowest ids), its id the next rank.
// A merge whose bytes are already a token (reached by another pair) merges
// to that token and adds none. Training stops early when no pair occurs
// twice. progress, if set, is told of each token added. It fails for a
// vocab outside 256..MaxVocab or an unknown pattern.
func Train(text []byte, vocab int, p Pattern, progress func(tokens int)) (*Tokenizer, error) {
	if _, err := ParsePattern(string(p)); err != nil {
		return nil, err
	}
	if vocab < 256 || vocab > MaxVocab {
		return nil, fmt.Errorf("tokenizer: vocab %d, want 256..%d", vocab, MaxVocab)
	}
	// The distinct pieces and their counts.
	counts := map[string]int{}
	p.Split(text, func(piece []byte) { counts[string(piece)]++ })
	tr := &trainer{pairs: map[uint64]int{}, where: map[uint64][]int32{}, ids: map[string]int32{}}
	for b := range 256 {
		tok := []byte{byte(b)}
		tr.toks = append(tr.toks, tok)
		tr.ids[string(tok)] = int32(b)
	}
	for piece, n := range counts {
		w := word{n: n, syms: make([]int32, len(piece))}
		for i := range len(piece) {
			w.syms[i] = int32(piece[i])
		}
		tr.words = append(tr.words, w)
	}
	// Words in a fixed order (map iteration is random), so that training
	// is deterministic.
	sortWords(tr.words)
	for i := range tr.words {
		tr.count(int32(i), +1)
	}
	for len(tr.toks) < vocab {
		pair, n := tr.best()
		if n < 2 {
			break
		}
		a, b := int32(pair>>32), int32(uint32(pair))
		merged := append(bytes.Clone(tr.toks[a]), tr.toks[b]...)
		id, ok := tr.ids[string(merged)]
		if !ok {
			id = int32(len(tr.toks))
			tr.toks = append(tr.toks, merged)
			tr.ids[string(merged)] = id
			if progress != nil {
				progress(len(tr.toks))
			}
		}
		tr.apply(pair, id)
	}
	return New(p, tr.toks)
}

type word struct {
	n    int // occurrences in the text
	syms []int32
}

func sortWords(ws []word) {
	// By count descending, then by symbols: any total order will do.
	less := func(x, y word) int {
		if x.n != y.n {
			return y.n - x.n
		}
		for i := range min(len(x.syms), len(y.syms)) {
			if x.syms[i] != y.syms[i] {
				return int(x.syms[i] - y.syms[i])
			}
		}
		return len(x.syms) - len(y.syms)
	}
	slices.SortFunc(ws, less)
}

type trainer struct {
	words []word
	toks  [][]byte
	ids   map[string]int32
	pairs map[uint64]int     // pair -> occurrences (weighted by word counts)
	where map[uint64][]int32 // pair -> words that held it when counted (may be stale or repeated)
	h     pairHeap
}

func pairOf(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// count adds (sign +1) or removes (-1) word i's pairs.
func (t *trainer) count(i int32, sign int) {
	w := &t.words[i]
	for j := 0; j+1 < len(w.syms); j++ {
		p := pairOf(w.syms[j], w.syms[j+1])
		t.pairs[p] += sign * w.n
		if sign > 0 {
			t.where[p] = append(t.where[p], i)
			heap.Push(&t.h, pairCount{p, t.pairs[p]})
		}
	}
}

// best is the most frequent pair (ties: lowest ids) and its count.
func (t *trainer) best() (uint64, int) {
	for t.h.Len() > 0 {
		top := t.h[0]
		if cur := t.pairs[top.pair]; cur != top.n {
			heap.Pop(&t.h)
			if cur > 0 {
				heap.Push(&t.h, pairCount{top.pair, cur})
			}
			continue
		}
		return top.pair, top.n
	}
	return 0, 0
}

// apply merges every occurrence of pair into id, left to right.
func (t *trainer) apply(pair uint64, id int32) {
	a, b := int32(pair>>32), int32(uint32(pair))
	ws := t.where[pair]
	delete(t.where, pair)
	done := map[int32]bool{}
	for _, i := range ws {
		if done[i] {
			continue
		}
		done[i] = true
		w := &t.words[i]
		has := false
		for j := 0; j+1 < len(w.syms); j++ {
			if w.syms[j] == a && w.syms[j+1] == b {
				has = true
				break
			}
		}
		if !has {
			continue
		}
		t.count(i, -1)
		out := w.syms[:0]
		for j := 0; j < len(w.syms); j++ {
			if j+1 < len(w.syms) && w.syms[j] == a && w.syms[j+1] == b {
				out = append(out, id)
				j++
				continue
			}
			out = append(out, w.syms[j])
		}
		w.syms = out
		t.count(i, +1)
	}
	delete(t.pairs, pair)
}

type pairCount struct {
	pair uint64
	n    int
}

// pairHeap is a max-heap by count, then by lowest pair.
type pairHeap []pairCount

func (h pairHeap) Len() int { return len(h) }
func (h pairHeap) Less(i, j int) bool {
	if h[i].n != h[j].n {
		return h[i].n > h[j].n
	}
	return h[i].pair < h[j].pair
}
func (h pairHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)   { *h = append(*h, x.(pairCount)) }
func (h *pairHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
