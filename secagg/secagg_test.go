package secagg

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// round is a whole cohort run in one process: the clients and the server,
// with the messages passed between them by the test.
type round struct {
	cfg     Config
	clients map[uint64]*Client
	server  *Server
	inputs  map[uint64][]uint32
}

func seedOf(id uint64, salt string) [32]byte {
	return sha256.Sum256(fmt.Appendf(nil, "test seed %s %d", salt, id))
}

func newRound(t testing.TB, n, threshold, dim int, salt string) *round {
	return newRoundBits(t, n, threshold, dim, 0, salt)
}

func newRoundBits(t testing.TB, n, threshold, dim, bits int, salt string) *round {
	t.Helper()
	cfg := Config{Session: sha256.Sum256([]byte("session " + salt)), Threshold: threshold, Dim: dim, Bits: bits}
	for i := 1; i <= n; i++ {
		cfg.Parties = append(cfg.Parties, uint64(i))
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &round{cfg: cfg, clients: map[uint64]*Client{}, server: srv, inputs: map[uint64][]uint32{}}
	rng := rand.New(rand.NewPCG(uint64(n), uint64(dim)))
	for _, id := range cfg.Parties {
		c, k, err := NewClient(cfg, id, seedOf(id, salt))
		if err != nil {
			t.Fatal(err)
		}
		r.clients[id] = c
		if err := srv.AddKeys(k); err != nil {
			t.Fatal(err)
		}
		x := make([]uint32, dim)
		for i := range x {
			x[i] = rng.Uint32() & cfg.lowMask()
		}
		r.inputs[id] = x
	}
	return r
}

// run plays the round to its end; parties in gone[step] stop answering
// before that step (1: sharing, 2: masked input, 3: reveal).
func (r *round) run(gone map[int][]uint64) ([]uint32, []uint64, error) {
	keys, err := r.server.Keys()
	if err != nil {
		return nil, nil, err
	}
	for i, k := range keys { // every message crosses the wire
		if keys[i], err = ParseKeys(k.Marshal()); err != nil {
			return nil, nil, err
		}
	}
	active := slices.Clone(r.cfg.Parties)
	drop := func(step int) {
		active = slices.DeleteFunc(active, func(id uint64) bool { return slices.Contains(gone[step], id) })
	}
	drop(1)
	for _, id := range active {
		boxes, err := r.clients[id].ShareKeys(keys)
		if err != nil {
			return nil, nil, err
		}
		for i, b := range boxes {
			if boxes[i], err = ParseBox(b.Marshal()); err != nil {
				return nil, nil, err
			}
		}
		if err := r.server.AddBoxes(id, boxes); err != nil {
			return nil, nil, err
		}
	}
	routed, err := r.server.Route()
	if err != nil {
		return nil, nil, err
	}
	drop(2)
	for _, id := range active {
		m, err := r.clients[id].MaskInput(r.inputs[id], routed[id])
		if err != nil {
			return nil, nil, err
		}
		if m, err = ParseMasked(r.cfg, m.Marshal(r.cfg)); err != nil {
			return nil, nil, err
		}
		if err := r.server.AddMasked(m); err != nil {
			return nil, nil, err
		}
	}
	surv, err := r.server.Survivors()
	if err != nil {
		return nil, nil, err
	}
	drop(3)
	for _, id := range active {
		rv, err := r.clients[id].Unmask(surv)
		if err != nil {
			return nil, nil, err
		}
		if rv, err = ParseReveal(rv.Marshal()); err != nil {
			return nil, nil, err
		}
		if err := r.server.AddReveal(rv); err != nil {
			return nil, nil, err
		}
	}
	return r.server.Sum()
}

func (r *round) plainSum(ids []uint64) []uint32 {
	sum := make([]uint32, r.cfg.Dim)
	for _, id := range ids {
		for i, v := range r.inputs[id] {
			sum[i] += v
		}
	}
	for i := range sum {
		sum[i] &= r.cfg.lowMask()
	}
	return sum
}

// TestDropouts: 8 parties at threshold 6; two drop out at each point of the
// round in turn (before sharing, after sharing, after sending their masked
// inputs) or one and one; the sum is exactly that of the inputs the server
// holds. Three dropouts leave 5 < 6 and the round refuses, saying so.
func TestDropouts(t *testing.T) {
	cases := []struct {
		name    string
		gone    map[int][]uint64
		covered []uint64 // nil: refused
		refusal string
	}{
		{"none", nil, []uint64{1, 2, 3, 4, 5, 6, 7, 8}, ""},
		{"two before sharing", map[int][]uint64{1: {2, 7}}, []uint64{1, 3, 4, 5, 6, 8}, ""},
		{"two after sharing", map[int][]uint64{2: {3, 8}}, []uint64{1, 2, 4, 5, 6, 7}, ""},
		{"two after their masked inputs", map[int][]uint64{3: {1, 5}}, []uint64{1, 2, 3, 4, 5, 6, 7, 8}, ""},
		{"one after sharing, one after its input", map[int][]uint64{2: {4}, 3: {6}}, []uint64{1, 2, 3, 5, 6, 7, 8}, ""},
		{"three after sharing", map[int][]uint64{2: {1, 2, 3}}, nil, "masked inputs from 5 parties, below the threshold 6"},
		{"three after their masked inputs", map[int][]uint64{3: {4, 5, 6}}, nil, "reveals from 5 survivors, below the threshold 6"},
		{"three before sharing", map[int][]uint64{1: {6, 7, 8}}, nil, "shares from 5 parties, below the threshold 6"},
	}
	for _, c := range cases {
		for _, bits := range []int{32, 16, 11} {
			t.Run(fmt.Sprintf("%s/%d bits", c.name, bits), func(t *testing.T) {
				r := newRoundBits(t, 8, 6, 1001, bits, c.name)
				sum, covered, err := r.run(c.gone)
				if c.covered == nil {
					if err == nil || !strings.Contains(err.Error(), c.refusal) {
						t.Fatalf("want refusal %q, got %v", c.refusal, err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(covered, c.covered) {
					t.Fatalf("sum covers %v, want %v", covered, c.covered)
				}
				if want := r.plainSum(c.covered); !slices.Equal(sum, want) {
					t.Fatalf("sum differs from the plain sum at %d of %d values", countDiff(sum, want), len(sum))
				}
			})
		}
	}
}

func countDiff(a, b []uint32) int {
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

// TestMaskedInputHidesInput: what the server holds of one party is
// uncorrelated with its input: over many values, the correlation between
// a masked input and the true one is within noise of zero, and the masked
// values are spread uniformly, whatever the input (here, mostly zeros).
func TestMaskedInputHidesInput(t *testing.T) {
	const dim = 1 << 14
	r := newRound(t, 4, 3, dim, "hide")
	for i := range r.inputs[1] {
		r.inputs[1][i] = uint32(i % 3) // a very regular input
	}
	keys, _ := r.server.Keys()
	routed := map[uint64][]Box{}
	for _, id := range r.cfg.Parties {
		boxes, err := r.clients[id].ShareKeys(keys)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range boxes {
			routed[b.To] = append(routed[b.To], b)
		}
	}
	m, err := r.clients[1].MaskInput(r.inputs[1], routed[1])
	if err != nil {
		t.Fatal(err)
	}
	x, y := make([]float64, dim), make([]float64, dim)
	var mean float64
	for i := range x {
		x[i], y[i] = float64(r.inputs[1][i]), float64(m.Y[i])/(1<<32)
		mean += y[i]
	}
	mean /= dim
	if c := corr(x, y); math.Abs(c) > 4/math.Sqrt(dim) {
		t.Fatalf("correlation of masked and true input %.4f, beyond 4/sqrt(n) = %.4f", c, 4/math.Sqrt(dim))
	}
	// Uniform on [0, 1): mean 1/2, standard error sqrt(1/12/n).
	if se := math.Sqrt(1.0 / 12 / dim); math.Abs(mean-0.5) > 4*se {
		t.Fatalf("masked values' mean %.4f, not uniform", mean)
	}
}

func corr(x, y []float64) float64 {
	var mx, my float64
	for i := range x {
		mx += x[i]
		my += y[i]
	}
	mx /= float64(len(x))
	my /= float64(len(y))
	var sxy, sxx, syy float64
	for i := range x {
		sxy += (x[i] - mx) * (y[i] - my)
		sxx += (x[i] - mx) * (x[i] - mx)
		syy += (y[i] - my) * (y[i] - my)
	}
	return sxy / math.Sqrt(sxx*syy)
}

// TestFixedPoint: clipped float inputs encoded at ScaleFor's scale sum
// exactly through a round and decode to the float sum within rounding.
func TestFixedPoint(t *testing.T) {
	const n, dim, clip, bits = 8, 512, 0.5, 16
	scale, err := ScaleFor(n, clip, bits)
	if err != nil {
		t.Fatal(err)
	}
	r := newRoundBits(t, n, 6, dim, bits, "fixed")
	rng := rand.New(rand.NewPCG(1, 2))
	want := make([]float64, dim)
	for _, id := range r.cfg.Parties {
		x := make([]float32, dim)
		for i := range x {
			x[i] = float32(rng.NormFloat64() * clip) // some beyond the clip
			want[i] += max(-clip, min(clip, float64(x[i])))
		}
		if err := Encode(r.inputs[id], x, clip, scale, bits); err != nil {
			t.Fatal(err)
		}
	}
	sum, _, err := r.run(nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]float32, dim)
	if err := Decode(got, sum, scale, bits); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		// Each input rounds by at most 1/2 a unit, the float32 result by
		// half an ulp.
		if d := math.Abs(float64(got[i]) - want[i]); d > float64(n)/2/scale+math.Abs(want[i])*0x1p-24 {
			t.Fatalf("value %d: %v, want %v", i, got[i], want[i])
		}
	}
	// The extreme: every input at the clip sums without wrapping.
	x := make([]float32, 1)
	one := make([]uint32, 1)
	var total uint32
	for range n {
		x[0] = -clip
		Encode(one, x, clip, scale, bits)
		total += one[0]
	}
	back := make([]float32, 1)
	Decode(back, []uint32{total & (1<<bits - 1)}, scale, bits)
	if back[0] != float32(-math.Round(clip*scale)*n/scale) {
		t.Fatalf("n inputs at -clip sum to %v: wrapped", back[0])
	}
	if _, err := ScaleFor(0, 1, 16); err == nil {
		t.Fatal("ScaleFor(0, 1, 16) accepted")
	}
	if _, err := ScaleFor(1000, 1, 8); err == nil {
		t.Fatal("8 bits accepted for the sum of 1000 inputs")
	}
	if err := Encode(one, []float32{float32(math.NaN())}, 1, 1, 16); err == nil {
		t.Fatal("Encode accepted NaN")
	}
}

// TestRefusals: the messages an attacker (or a broken peer) might send,
// each refused with its reason, and a tampered box names its sender.
func TestRefusals(t *testing.T) {
	r := newRound(t, 4, 3, 64, "refusals")
	other := newRound(t, 4, 3, 64, "another session")
	// Keys: a stranger, a second message, a reused key.
	if err := r.server.AddKeys(Keys{ID: 9}); err == nil || !strings.Contains(err.Error(), "not in the cohort") {
		t.Fatalf("stranger's keys: %v", err)
	}
	if err := r.server.AddKeys(Keys{ID: 2}); err == nil || !strings.Contains(err.Error(), "second keys") {
		t.Fatalf("second keys: %v", err)
	}
	keys, err := r.server.Keys()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.server.AddKeys(Keys{ID: 3}); err == nil || !strings.Contains(err.Error(), "after the key step closed") {
		t.Fatalf("late keys: %v", err)
	}
	// A client given a key list without its own keys, or reusing a key.
	if _, err := r.clients[1].ShareKeys(keys[1:]); err == nil {
		t.Fatal("a key list without the party's own was accepted")
	}
	dupe := slices.Clone(keys)
	dupe[2].Enc = dupe[3].Enc
	if _, err := r.clients[1].ShareKeys(dupe); err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("reused key: %v", err)
	}
	boxes := map[uint64][]Box{}
	for _, id := range r.cfg.Parties {
		b, err := r.clients[id].ShareKeys(keys)
		if err != nil {
			t.Fatal(err)
		}
		boxes[id] = b
	}
	// Boxes: wrong sender, missing one, wrong size.
	if err := r.server.AddBoxes(1, boxes[2]); err == nil || !strings.Contains(err.Error(), "sent a box from party 2") {
		t.Fatalf("boxes under another name: %v", err)
	}
	if err := r.server.AddBoxes(1, boxes[1][1:]); err == nil || !strings.Contains(err.Error(), "boxes for 2 of the 3") {
		t.Fatalf("missing box: %v", err)
	}
	short := slices.Clone(boxes[1])
	short[0].Sealed = short[0].Sealed[:10]
	if err := r.server.AddBoxes(1, short); err == nil || !strings.Contains(err.Error(), "a box of 10 bytes") {
		t.Fatalf("short box: %v", err)
	}
	for _, id := range r.cfg.Parties {
		if err := r.server.AddBoxes(id, boxes[id]); err != nil {
			t.Fatal(err)
		}
	}
	routed, err := r.server.Route()
	if err != nil {
		t.Fatal(err)
	}
	// A tampered box names its sender; a box replayed from another
	// session does not open either; neither changes the client.
	in := routed[1]
	tampered := slices.Clone(in)
	tampered[1].Sealed = slices.Clone(tampered[1].Sealed)
	tampered[1].Sealed[5] ^= 0x40
	var pe *PartyError
	if _, err := r.clients[1].MaskInput(r.inputs[1], tampered); !errors.As(err, &pe) || pe.Party != tampered[1].From {
		t.Fatalf("tampered box: %v", err)
	}
	okeys, _ := other.server.Keys()
	var replay Box
	for _, b := range mustShare(t, other.clients[3], okeys) {
		if b.To == 1 {
			replay = b
		}
	}
	replayed := slices.Clone(in)
	for i := range replayed {
		if replayed[i].From == 3 {
			replayed[i] = replay
		}
	}
	if _, err := r.clients[1].MaskInput(r.inputs[1], replayed); !errors.As(err, &pe) || pe.Party != 3 || !strings.Contains(pe.Reason, "does not open") {
		t.Fatalf("replayed box: %v", err)
	}
	if _, err := r.clients[1].MaskInput(r.inputs[1][:5], in); err == nil || !strings.Contains(err.Error(), "an input of 5 values") {
		t.Fatalf("short input: %v", err)
	}
	masked := map[uint64]Masked{}
	for _, id := range r.cfg.Parties {
		m, err := r.clients[id].MaskInput(r.inputs[id], routed[id])
		if err != nil {
			t.Fatal(err)
		}
		masked[id] = m
	}
	if err := r.server.AddMasked(Masked{ID: 2, Y: make([]uint32, 3)}); err == nil || !strings.Contains(err.Error(), "has 3 values") {
		t.Fatalf("short masked input: %v", err)
	}
	for _, id := range []uint64{1, 2, 3} { // 4 drops out
		if err := r.server.AddMasked(masked[id]); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.server.AddMasked(masked[1]); err == nil || !strings.Contains(err.Error(), "second masked input") {
		t.Fatalf("replayed masked input: %v", err)
	}
	surv, err := r.server.Survivors()
	if err != nil {
		t.Fatal(err)
	}
	// A client refuses a survivor list below the threshold, and answers
	// only once (no second list that would reveal both secrets of a party).
	if _, err := r.clients[1].Unmask(surv[:2]); err == nil {
		t.Fatal("a survivor list below the threshold was answered")
	}
	reveals := map[uint64]Reveal{}
	for _, id := range surv {
		rv, err := r.clients[id].Unmask(surv)
		if err != nil {
			t.Fatal(err)
		}
		reveals[id] = rv
	}
	if _, err := r.clients[1].Unmask([]uint64{1, 2, 4}); err == nil {
		t.Fatal("a second survivor list was answered")
	}
	// A reveal asking to unmask both secrets of a party, or with a wrong
	// share size, is refused.
	both := reveals[2]
	both.Mask = append(slices.Clone(both.Mask), Share{Of: 1, Share: both.Self[0].Share})
	if err := r.server.AddReveal(both); err == nil || !strings.Contains(err.Error(), "mask-key shares") {
		t.Fatalf("a reveal of both secrets: %v", err)
	}
	// A survivor that reveals an altered share is named.
	bad := reveals[3]
	bad.Self = slices.Clone(bad.Self)
	bad.Self[0].Share = slices.Clone(bad.Self[0].Share)
	bad.Self[0].Share[30] ^= 1
	// Three reveals at threshold 3 cannot tell whose share is wrong; the
	// round fails rather than returning a wrong sum.
	for _, id := range []uint64{1, 2} {
		if err := r.server.AddReveal(reveals[id]); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.server.AddReveal(bad); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.server.Sum(); err == nil {
		t.Fatal("a tampered share gave a sum")
	}
}

func mustShare(t *testing.T, c *Client, keys []Keys) []Box {
	t.Helper()
	b, err := c.ShareKeys(keys)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestInconsistentShareNamed: with more reveals than the threshold, the
// survivor whose revealed share disagrees with the others is named.
func TestInconsistentShareNamed(t *testing.T) {
	r := newRound(t, 8, 5, 32, "named")
	keys, _ := r.server.Keys()
	for _, id := range r.cfg.Parties {
		if err := r.server.AddBoxes(id, mustShare(t, r.clients[id], keys)); err != nil {
			t.Fatal(err)
		}
	}
	routed, _ := r.server.Route()
	for _, id := range r.cfg.Parties[:7] { // 8 drops before its input
		m, err := r.clients[id].MaskInput(r.inputs[id], routed[id])
		if err != nil {
			t.Fatal(err)
		}
		r.server.AddMasked(m)
	}
	surv, _ := r.server.Survivors()
	for _, id := range surv {
		rv, err := r.clients[id].Unmask(surv)
		if err != nil {
			t.Fatal(err)
		}
		if id == 6 { // alters its share of the dropped party's mask key
			rv.Mask = slices.Clone(rv.Mask)
			rv.Mask[0].Share = slices.Clone(rv.Mask[0].Share)
			rv.Mask[0].Share[40] ^= 2
		}
		if err := r.server.AddReveal(rv); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := r.server.Sum()
	var pe *PartyError
	if !errors.As(err, &pe) || pe.Party != 6 || !strings.Contains(pe.Reason, "party 8") {
		t.Fatalf("want party 6 named for its share of party 8's secret, got %v", err)
	}
}

// TestDeterministic: a client's messages are a function of its seed and
// the session.
func TestDeterministic(t *testing.T) {
	a, b := newRound(t, 3, 2, 8, "det"), newRound(t, 3, 2, 8, "det")
	ka, _ := a.server.Keys()
	kb, _ := b.server.Keys()
	if !slices.Equal(ka, kb) {
		t.Fatal("keys differ")
	}
	ba, bb := mustShare(t, a.clients[2], ka), mustShare(t, b.clients[2], kb)
	for i := range ba {
		if string(ba[i].Sealed) != string(bb[i].Sealed) {
			t.Fatal("boxes differ")
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{Parties: []uint64{1}, Threshold: 1, Dim: 1},
		{Parties: []uint64{1, 2, 3, 4}, Threshold: 2, Dim: 1}, // not more than half
		{Parties: []uint64{1, 2, 3}, Threshold: 2, Dim: 0},
		{Parties: []uint64{1, 0, 3}, Threshold: 2, Dim: 1},
		{Parties: []uint64{1, 3, 3}, Threshold: 2, Dim: 1},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if _, _, err := NewClient(Config{Parties: []uint64{1, 2, 3}, Threshold: 2, Dim: 1}, 4, [32]byte{}); err == nil {
		t.Error("a client outside the cohort was made")
	}
}
