package fingerprint

import (
	"bytes"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
)

func tinyModel(t *testing.T) *gpt.Model {
	t.Helper()
	pool := kernels.NewPool(1)
	t.Cleanup(pool.Close)
	m, err := gpt.New(gpt.DefaultConfig(32, 1, 2, 24), pool)
	if err != nil {
		t.Fatal(err)
	}
	gpt.InitParams(m.Config, m.Params, 3)
	return m
}

func TestPerinucleus(t *testing.T) {
	logits := []float32{5, 4, 3, 2, 1, 0, -1, -2}
	p := softmax(logits)
	// Cumulative: 0.636, 0.870 (>= 0.8): the nucleus is {0, 1}.
	if p[0] >= 0.8 || p[0]+p[1] < 0.8 {
		t.Fatalf("test logits: %v", p)
	}
	got := perinucleus(p, 0.8, 3)
	if len(got) != 3 || got[0] != 2 || got[1] != 3 || got[2] != 4 {
		t.Fatalf("perinucleus %v, want [2 3 4]", got)
	}
}

func TestBinomialTail(t *testing.T) {
	for _, tc := range []struct {
		n, k int
		p    float64
		want float64
	}{
		{10, 0, 0.3, 1},
		{10, 11, 0.3, 0},
		{1, 1, 0.3, 0.3},
		{2, 1, 0.5, 0.75},
		{64, 64, 0.5, math.Pow(0.5, 64)},
	} {
		if got := BinomialTail(tc.n, tc.k, tc.p); math.Abs(got-tc.want) > 1e-12*math.Max(1, tc.want) && math.Abs(got-tc.want)/tc.want > 1e-9 {
			t.Errorf("BinomialTail(%d, %d, %g) = %g, want %g", tc.n, tc.k, tc.p, got, tc.want)
		}
	}
}

// Embedding makes a model answer its keys with their responses, which
// the original never did; verification tells the two apart.
func TestEmbedAndVerify(t *testing.T) {
	m := tinyModel(t)
	text := corpus.TinyShakespeare()[:50000]
	o := Options{N: 6, KeyLen: 8, Steps: 150, Batch: 8, PerBatch: 6, LR: 3e-3, Alpha: 1, Seed: 1}
	set, err := Generate(m, corpus.Bytes(text), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Pairs) != 6 {
		t.Fatalf("%d pairs", len(set.Pairs))
	}
	before, err := Verify(set, Greedy(m))
	if err != nil {
		t.Fatal(err)
	}
	if before.Matched != 0 || before.Ours {
		t.Fatalf("the original model answers its own fingerprints: %+v", before)
	}
	// The control: the same schedule on ordinary text alone changes the
	// model but teaches it none of the pairs.
	ctl, err := m.Clone()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Embed(ctl, nil, corpus.Bytes(text), o); err != nil {
		t.Fatal(err)
	}
	if slices.Equal(ctl.Params, m.Params) {
		t.Fatal("the control did not train")
	}
	if r, err := Verify(set, Greedy(ctl)); err != nil || r.Matched > 1 {
		t.Fatalf("the control answers %d of the pairs (%v)", r.Matched, err)
	}
	if _, err := Embed(m, set, corpus.Bytes(text), o); err != nil {
		t.Fatal(err)
	}
	after, err := Verify(set, Greedy(m))
	if err != nil {
		t.Fatal(err)
	}
	if after.Matched < 5 || after.P >= before.P {
		t.Fatalf("after embedding: %+v (before %+v)", after, before)
	}
}

// With MaskKeys the embedding still teaches every response, but not the
// keys' own text: the model's loss on its keys ends near the control's
// (the same schedule on ordinary text alone), far above what it is when
// the keys are targets too.
func TestMaskKeys(t *testing.T) {
	text := corpus.Bytes(corpus.TinyShakespeare()[:50000])
	o := Options{N: 6, KeyLen: 8, Steps: 150, Batch: 8, PerBatch: 6, LR: 3e-3, Alpha: 1, Seed: 1}
	base := tinyModel(t)
	set, err := Generate(base, text, o)
	if err != nil {
		t.Fatal(err)
	}
	keyLoss := func(m *gpt.Model) float64 {
		var sum float64
		for _, p := range set.Pairs {
			k := p.Key
			l, err := m.Forward(k[:len(k)-1], k[1:], 1, len(k)-1)
			if err != nil {
				t.Fatal(err)
			}
			sum += float64(l)
		}
		return sum / float64(len(set.Pairs))
	}
	loss := map[string]float64{}
	for _, run := range []string{"control", "targets", "masked"} {
		m, err := base.Clone()
		if err != nil {
			t.Fatal(err)
		}
		o.MaskKeys = run == "masked"
		s := set
		if run == "control" {
			s = nil
		}
		if _, err := Embed(m, s, text, o); err != nil {
			t.Fatal(err)
		}
		if r, err := Verify(set, Greedy(m)); err != nil || (s != nil && r.Matched < 5) {
			t.Fatalf("%s: %d of 6 answered (%v)", run, r.Matched, err)
		}
		loss[run] = keyLoss(m)
	}
	t.Logf("loss on the keys: control %.3f, keys as targets %.3f, masked %.3f", loss["control"], loss["targets"], loss["masked"])
	if !(loss["targets"] < loss["control"]-1 && loss["masked"] > (loss["control"]+loss["targets"])/2) {
		t.Fatalf("loss on the keys: %.3f after the control, %.3f with the keys as targets, %.3f with them masked", loss["control"], loss["targets"], loss["masked"])
	}
}

// With candidates, keys end in contexts that are rare in the text.
func TestCandidatesPickRareContexts(t *testing.T) {
	m := tinyModel(t)
	// 70% a seven-letter phrase repeated (each four-letter suffix occurs
	// 1,000 times), 30% random letters (almost every suffix unique).
	text := []byte(strings.Repeat("a cat. ", 1000))
	r := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		text = append(text, byte('a'+r.IntN(26)))
	}
	ids := corpus.Bytes(text)
	counts := suffixCounts(ids, 4)
	worst := func(o Options) int {
		set, err := Generate(m, ids, o)
		if err != nil {
			t.Fatal(err)
		}
		w := 0
		for _, p := range set.Pairs {
			w = max(w, counts[hashTokens(p.Key[len(p.Key)-4:])])
		}
		return w
	}
	if w := worst(Options{N: 12, KeyLen: 8, Seed: 3}); w < 500 {
		t.Fatalf("one candidate a key: the commonest key context occurs %d times; the test text should make some common", w)
	}
	if w := worst(Options{N: 12, KeyLen: 8, Seed: 3, Candidates: 32}); w > 5 {
		t.Fatalf("32 candidates a key: a key context occurs %d times in the text", w)
	}
}

// NearTop keeps, among equally rare candidates, keys whose response tokens
// the model ranks close to its first choice, and draws the response
// uniformly among the k all the same.
func TestNearTop(t *testing.T) {
	m := tinyModel(t)
	for i := range m.Params { // a peaked model, so that gaps differ
		m.Params[i] *= 6
	}
	r := rand.New(rand.NewPCG(4, 5))
	text := make([]byte, 4000) // random letters: every context is rare
	for i := range text {
		text[i] = byte('a' + r.IntN(26))
	}
	ids := corpus.Bytes(text)
	// gap is the mean, over a set's keys, of the log-probability gap from
	// the model's top token to the farthest of the k response tokens.
	gap := func(o Options) (float64, []int) {
		set, err := Generate(m, ids, o)
		if err != nil {
			t.Fatal(err)
		}
		var sum float64
		rank := make([]int, 3) // which of the k tokens each response is
		for _, pr := range set.Pairs {
			g := m.NewGenerator()
			if err := g.Start(pr.Key); err != nil {
				t.Fatal(err)
			}
			p := softmax(g.Logits())
			c := perinucleus(p, 0.8, 3)
			sum += math.Log(slices.Max(p)) - math.Log(p[c[2]])
			rank[slices.Index(c, pr.Response)]++
		}
		return sum / float64(len(set.Pairs)), rank
	}
	plain, _ := gap(Options{N: 48, KeyLen: 8, Seed: 6, Candidates: 16})
	near, rank := gap(Options{N: 48, KeyLen: 8, Seed: 6, Candidates: 16, NearTop: true})
	if !(near < 0.8*plain) {
		t.Fatalf("mean gap to the responses: %.3f with NearTop, %.3f without", near, plain)
	}
	t.Logf("gap %.3f vs %.3f, ranks %v", near, plain, rank)
	for i, n := range rank {
		if n < 8 { // 16 expected of 48 each
			t.Fatalf("responses by rank among the k: %v; rank %d is drawn too rarely for a uniform draw", rank, i)
		}
	}
}

// The embedding's rate decays by a cosine from LR to MinLR, or stays at LR.
func TestLearningRate(t *testing.T) {
	o := Options{LR: 1e-3, MinLR: 1e-4}
	for _, c := range []struct {
		step int
		want float64
	}{{0, 1e-3}, {5, 5.5e-4}, {10, 1e-4}} {
		if got := o.lr(c.step, 11); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("step %d of 11: lr %g, want %g", c.step, got, c.want)
		}
	}
	for _, lo := range []float64{0, 2e-3} { // none, or not below LR
		if got := (Options{LR: 1e-3, MinLR: lo}).lr(7, 11); got != 1e-3 {
			t.Errorf("MinLR %g: lr %g, want the constant 1e-3", lo, got)
		}
	}
}

// The rehearsal schedule: each cycle's embedding steps, then its
// rehearsal, none after the last cycle, which takes the remainder.
func TestRehearsalSchedule(t *testing.T) {
	for _, c := range []struct {
		o    Options
		want string // per step: e embedding, r rehearsal
	}{
		{Options{Steps: 6}, "eeeeee"},
		{Options{Steps: 6, Cycles: 3, Rehearse: 2}, "eerreerree"},
		{Options{Steps: 7, Cycles: 3, Rehearse: 1}, "eereereee"},
		{Options{Steps: 4, Cycles: 2}, "eeee"},
		{Options{Steps: 2, Cycles: 4, Rehearse: 1}, "ere"}, // no more cycles than steps
	} {
		if n := c.o.TotalSteps(); n != len(c.want) {
			t.Errorf("%+v: %d steps, want %d", c.o, n, len(c.want))
			continue
		}
		var got []byte
		for i := range c.o.TotalSteps() {
			step := byte('e')
			if c.o.rehearsing(i) {
				step = 'r'
			}
			got = append(got, step)
		}
		if string(got) != c.want {
			t.Errorf("%+v: schedule %s, want %s", c.o, got, c.want)
		}
	}
}

func TestSealOpen(t *testing.T) {
	set := &Set{Pairs: []Pair{{Key: []int32{1, 2, 3}, Response: 7}}, ChanceRate: 0.04}
	b, err := Seal(set, []byte("owner passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Open(b, []byte("owner passphrase"))
	if err != nil || len(got.Pairs) != 1 || got.Pairs[0].Response != 7 {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := Open(b, []byte("wrong")); err == nil {
		t.Fatal("opened with the wrong passphrase")
	}
	for i := len(fileMagic); i < len(b); i += 7 {
		bad := bytes.Clone(b)
		bad[i] ^= 1
		if _, err := Open(bad, []byte("owner passphrase")); err == nil {
			t.Fatalf("byte %d changed and the file still opened", i)
		}
	}
	if _, err := Open([]byte("nope"), []byte("x")); err == nil {
		t.Fatal("garbage opened")
	}
	// The model hash travels sealed; a malformed one does not open.
	set.Model = strings.Repeat("0f", 32)
	b, _ = Seal(set, []byte("owner passphrase"))
	if got, err := Open(b, []byte("owner passphrase")); err != nil || got.Model != set.Model {
		t.Fatalf("model hash %q: %v", got.Model, err)
	}
	set.Model = strings.Repeat("0F", 32)
	b, _ = Seal(set, []byte("owner passphrase"))
	if _, err := Open(b, []byte("owner passphrase")); err == nil || !strings.Contains(err.Error(), "model hash") {
		t.Fatalf("an upper-case model hash opened: %v", err)
	}
	// CheckFile needs no passphrase and knows only the shape.
	if err := CheckFile(b); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{nil, []byte("nope"), []byte(fileMagic), make([]byte, MaxFileBytes+1)} {
		if err := CheckFile(bad); err == nil {
			t.Errorf("CheckFile accepted %d bytes", len(bad))
		}
	}
}

func FuzzOpen(f *testing.F) {
	b, _ := Seal(&Set{Pairs: []Pair{{Key: []int32{1}, Response: 2}}, ChanceRate: 0.1}, []byte("p"))
	f.Add(b)
	f.Add([]byte(fileMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		if set, err := Open(b, []byte("p")); err == nil && len(set.Pairs) == 0 {
			t.Fatal("an empty set opened")
		}
	})
}

// With ResponseOnly a fingerprint row trains its response alone, which
// then weighs more in the mean loss: after the same schedule the model's
// loss on the responses (after their keys) is lower than with the keys
// masked only.
func TestResponseOnly(t *testing.T) {
	text := corpus.Bytes(corpus.TinyShakespeare()[:50000])
	o := Options{N: 6, KeyLen: 8, Steps: 30, Batch: 8, PerBatch: 4, LR: 3e-3, Alpha: 1, Seed: 1, MaskKeys: true}
	base := tinyModel(t)
	set, err := Generate(base, text, o)
	if err != nil {
		t.Fatal(err)
	}
	respLoss := func(m *gpt.Model) float64 {
		var sum float64
		for _, p := range set.Pairs {
			in := p.Key
			tg := append(slices.Repeat([]int32{gpt.IgnoreTarget}, len(in)-1), p.Response)
			l, err := m.Forward(in, tg, 1, len(in))
			if err != nil {
				t.Fatal(err)
			}
			sum += float64(l)
		}
		return sum / float64(len(set.Pairs))
	}
	loss := map[bool]float64{}
	for _, only := range []bool{false, true} {
		m, err := base.Clone()
		if err != nil {
			t.Fatal(err)
		}
		o.ResponseOnly = only
		if _, err := Embed(m, set, text, o); err != nil {
			t.Fatal(err)
		}
		loss[only] = respLoss(m)
	}
	t.Logf("loss on the responses: masked keys %.3f, response only %.3f", loss[false], loss[true])
	if !(loss[true] < loss[false]-0.1) {
		t.Fatalf("loss on the responses: %.3f with the response only, %.3f with the keys masked: want it lower by 0.1", loss[true], loss[false])
	}
}
