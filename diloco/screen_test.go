package diloco

import (
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/verify"
)

// openRound has ids poll a's current round and opens it at time when (or
// finds it open).
func openRound(t *testing.T, a *Aggregator, when float64, ids ...string) {
	t.Helper()
	a.Grace = 0
	for _, id := range ids {
		a.Poll(id, a.Round(), a.Hash(), at(when))
	}
	mustTick(t, a, at(when))
	if a.Phase() != Open {
		t.Fatalf("round %d did not open (%v)", a.Round(), a.Phase())
	}
}

// TestHeldOutWait: a round whose contributions are all in waits for their
// held-out losses, closes as soon as the last one is given, and otherwise
// closes HeldOutWait after it could have, screening the unmeasured
// contribution without a loss. Without HeldOutWait it never waits.
func TestHeldOutWait(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	n := cfg.Model.NumParams()
	tps := cfg.TokensPerStep()
	pa, pb := encode(t, cfg.Codec, constDelta(n, 0.01)), encode(t, cfg.Codec, constDelta(n, 0.012))
	for _, measureB := range []bool{true, false} {
		a, _ := NewAggregator(cfg)
		a.HeldOutWait = 2 * time.Second
		openRound(t, a, 0, "a", "b")
		for _, s := range []struct {
			id string
			p  []byte
		}{{"a", pa}, {"b", pb}} {
			if err := a.Submit(s.id, 0, a.Hash(), tps, s.p, at(1)); err != nil {
				t.Fatal(err)
			}
		}
		if ev := mustTick(t, a, at(1)); ev.Closed != nil {
			t.Fatal("closed without waiting for the held-out losses")
		}
		if err := a.SetHeldOut("a", 0, verify.PayloadDigest(pa), 3.0, 2.9); err != nil {
			t.Fatal(err)
		}
		if ev := mustTick(t, a, at(1.5)); ev.Closed != nil {
			t.Fatal("closed while a loss is missing")
		}
		var ev Event
		if measureB {
			if err := a.SetHeldOut("b", 0, verify.PayloadDigest(pb), 3.0, 2.95); err != nil {
				t.Fatal(err)
			}
			ev = mustTick(t, a, at(1.6))
		} else {
			if ev = mustTick(t, a, at(2.99)); ev.Closed != nil {
				t.Fatal("closed before HeldOutWait passed")
			}
			ev = mustTick(t, a, at(3))
		}
		if ev.Closed == nil {
			t.Fatalf("measured b %v: the round did not close", measureB)
		}
		r := ev.Closed
		want := []Contribution{{Worker: "a", Payload: verify.PayloadDigest(pa), Tokens: tps, Measured: true, LossBefore: 3, LossAfter: 2.9},
			{Worker: "b", Payload: verify.PayloadDigest(pb), Tokens: tps, Measured: measureB}}
		if measureB {
			want[1].LossBefore, want[1].LossAfter = 3, 2.95
		}
		if !reflect.DeepEqual(r.Accepted, want) || len(r.Excluded) != 0 {
			t.Fatalf("measured b %v: accepted %+v, excluded %+v", measureB, r.Accepted, r.Excluded)
		}
		if g := r.Screening[0].Gain; math.Abs(g-0.1) > 1e-12 || (r.Screening[1].Gain != 0) != measureB {
			t.Fatalf("gains %v %v", g, r.Screening[1].Gain)
		}
	}
	// Without HeldOutWait the round closes at once, unmeasured.
	a, _ := NewAggregator(cfg)
	openRound(t, a, 0, "a")
	a.Submit("a", 0, a.Hash(), tps, pa, at(1))
	if ev := mustTick(t, a, at(1)); ev.Closed == nil || ev.Closed.Accepted[0].Measured {
		t.Fatalf("a round without HeldOutWait: %+v", ev.Closed)
	}
}

// TestSetHeldOutRefusals: a loss for another round, an unknown worker,
// another payload, twice, or once the round has closed is refused with
// the reason; a loss whose before is not finite counts as unmeasured.
func TestSetHeldOutRefusals(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	n := cfg.Model.NumParams()
	a, _ := NewAggregator(cfg)
	a.HeldOutWait = time.Minute
	openRound(t, a, 0, "a", "b")
	pa := encode(t, cfg.Codec, constDelta(n, 0.01))
	pb := encode(t, cfg.Codec, constDelta(n, 0.011))
	da := verify.PayloadDigest(pa)
	a.Submit("a", 0, a.Hash(), cfg.TokensPerStep(), pa, at(1))
	for _, c := range []struct {
		id    string
		round int
		d     verify.Digest
		want  string
	}{
		{"a", 1, da, "round 1"},
		{"b", 0, da, "has not contributed"},
		{"a", 0, verify.PayloadDigest(pb), "but a contributed"},
	} {
		if err := a.SetHeldOut(c.id, c.round, c.d, 1, 1); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v", c, err)
		}
	}
	if err := a.SetHeldOut("a", 0, da, math.NaN(), 1); err != nil {
		t.Fatal(err)
	}
	if err := a.SetHeldOut("a", 0, da, 1, 1); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("second loss: %v", err)
	}
	a.Submit("b", 0, a.Hash(), cfg.TokensPerStep(), pb, at(1))
	a.SetHeldOut("b", 0, verify.PayloadDigest(pb), 2, 1.9)
	ev, err := a.Tick(at(1))
	if err != nil || ev.Closed == nil {
		t.Fatalf("round did not close: %v", err)
	}
	if ev.Closed.Accepted[0].Measured || !ev.Closed.Accepted[1].Measured {
		t.Fatalf("a loss with a NaN before counts as measured: %+v", ev.Closed.Accepted)
	}
	if err := a.SetHeldOut("b", 0, verify.PayloadDigest(pb), 2, 1.9); err == nil || !strings.Contains(err.Error(), "unpublished") {
		t.Errorf("loss for a closed round: %v", err)
	}
}

// TestCertainFindingsExcluded: two workers sending the same bytes in one
// round are both excluded (neither copy counts), as is a contribution
// whose held-out loss after it is not finite; the rest are aggregated.
// When every contribution is excluded the round is abandoned with the
// reasons, the weights and payload memory untouched.
func TestCertainFindingsExcluded(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	n := cfg.Model.NumParams()
	tps := cfg.TokensPerStep()
	a, _ := NewAggregator(cfg)
	openRound(t, a, 0, "a", "b", "c", "d")
	same := encode(t, cfg.Codec, constDelta(n, 0.01))
	pc := encode(t, cfg.Codec, constDelta(n, 0.011))
	pd := encode(t, cfg.Codec, constDelta(n, 0.012))
	for id, p := range map[string][]byte{"a": same, "b": same, "c": pc, "d": pd} {
		if err := a.Submit(id, 0, a.Hash(), tps, p, at(1)); err != nil {
			t.Fatal(err)
		}
	}
	a.SetHeldOut("c", 0, verify.PayloadDigest(pc), 3, math.Inf(1))
	a.SetHeldOut("d", 0, verify.PayloadDigest(pd), 3, 2.9)
	ev := mustTick(t, a, at(1))
	if ev.Closed == nil {
		t.Fatal("round did not close")
	}
	r := ev.Closed
	if len(r.Accepted) != 1 || r.Accepted[0].Worker != "d" || len(r.Excluded) != 3 || !slices.Equal(r.Contributors, []string{"a", "b", "c", "d"}) {
		t.Fatalf("accepted %+v, excluded %+v", r.Accepted, r.Excluded)
	}
	for i, want := range []struct {
		f      verify.Flag
		reason string
	}{{verify.Duplicate, "byte for byte b's in this round"}, {verify.Duplicate, "byte for byte a's in this round"}, {verify.LossWorse, "after applying it is +Inf"}} {
		if x := r.Excluded[i]; x.Flags != want.f || !strings.Contains(x.Reason, want.reason) {
			t.Errorf("excluded %d: %+v, want %q saying %q", i, x, want.f, want.reason)
		}
	}
	if r.Tokens != 4*tps || len(r.Screening) != 4 || r.Screening[0].Score != verify.MaxScore {
		t.Errorf("tokens %d, screening %+v", r.Tokens, r.Screening)
	}

	// Round 1: both contributions are copies of round 0's.
	seen := slices.Clone(a.Snapshot().Seen)
	theta := slices.Clone(a.Weights())
	a.Leave("b")
	a.Leave("c")
	openRound(t, a, 2, "a", "d")
	a.Submit("a", 1, a.Hash(), tps, pd, at(3))
	a.Submit("d", 1, a.Hash(), tps, same, at(3))
	ev, err := a.Tick(at(3))
	if !ev.Abandoned || err == nil || !strings.Contains(err.Error(), "excluded every contribution (a: its payload is byte for byte d's of round 0; d: its payload is byte for byte a's of round 0)") {
		t.Fatalf("all excluded: %+v, %v", ev, err)
	}
	if !slices.Equal(a.Weights(), theta) || !slices.Equal(a.Snapshot().Seen, seen) || a.Round() != 1 || a.Submitted() != 0 {
		t.Fatal("an abandoned round changed the state")
	}
}

// TestPayloadHistory: a copy of a payload of one of the last
// PayloadHistory rounds is excluded, also after a restart from a snapshot;
// an older one is not remembered, nor is it kept in the snapshot.
func TestPayloadHistory(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	cfg.Rounds = 20
	n := cfg.Model.NumParams()
	tps := cfg.TokensPerStep()
	payload := func(r int) []byte { return encode(t, cfg.Codec, constDelta(n, 0.001*float32(r+1))) }
	a, _ := NewAggregator(cfg)
	round := func(a *Aggregator, when float64, p []byte) *RoundResult {
		openRound(t, a, when, "w", "v")
		a.Submit("w", a.Round(), a.Hash(), tps, payload(a.Round()), at(when+1))
		a.Submit("v", a.Round(), a.Hash(), tps, p, at(when+1))
		ev := mustTick(t, a, at(when+1))
		if ev.Closed == nil {
			t.Fatalf("round %d did not close", a.Round())
		}
		return ev.Closed
	}
	for r := 0; r < 6; r++ {
		round(a, float64(2*r), payload(-2-r))
	}
	s := a.Snapshot()
	if len(s.Seen) != 2*PayloadHistory || s.Seen[0].Round != 6-PayloadHistory || s.Seen[len(s.Seen)-1].Round != 5 {
		t.Fatalf("remembers %+v", s.Seen)
	}
	b, err := Restore(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []*Aggregator{a, b} {
		// Round 6: v copies w's payload of round 6−PayloadHistory = 2;
		// round 7: its own of round 2, now PayloadHistory+1 rounds back.
		if r := round(x, 12, payload(6-PayloadHistory)); len(r.Excluded) != 1 || r.Excluded[0].Worker != "v" ||
			!strings.Contains(r.Excluded[0].Reason, "w's of round 2") {
			t.Fatalf("copy of round 2 in round 6: %+v", r.Excluded)
		}
		if r := round(x, 14, payload(-2-2)); len(r.Excluded) != 0 {
			t.Fatalf("copy of round 2 in round 7: %+v", r.Excluded)
		}
	}
	if a.Hash() != b.Hash() {
		t.Fatal("the restored aggregator diverged")
	}
	// A snapshot's history is checked, and what is too old is dropped.
	bad := []struct {
		seen []SeenPayload
		want string
	}{
		{[]SeenPayload{{Worker: "w", Round: s.Round}}, "of round 6 at round 6"},
		{[]SeenPayload{{Worker: "", Round: 1}}, "worker id of 0 bytes"},
		{[]SeenPayload{{Worker: strings.Repeat("w", MaxWorkerID+1), Round: 1}}, "worker id of 257 bytes"},
		{[]SeenPayload{{Worker: "w", Round: 4}, {Worker: "w", Round: 3}}, "not in round order"},
	}
	for _, c := range bad {
		s2 := s
		s2.Seen = c.seen
		if _, err := Restore(s2); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.seen, err, c.want)
		}
	}
	s2 := s
	s2.Seen = []SeenPayload{{Worker: "old", Round: 1}, {Worker: "w", Round: 2}}
	if c, err := Restore(s2); err != nil || len(c.Snapshot().Seen) != 1 || c.Snapshot().Seen[0].Worker != "w" {
		t.Fatalf("restoring an old history: %v, %+v", err, c.Snapshot().Seen)
	}
}

// TestRobustConfig: a run config saved before the robust options existed
// loads with verify's defaults and encodes as before; options given are
// used, a negative trim turns trimming off, and bad ones are refused.
func TestRobustConfig(t *testing.T) {
	cfg := DefaultConfig()
	old, _ := json.Marshal(cfg)
	if strings.Contains(string(old), "robust") {
		t.Fatalf("a config with the default options encodes them: %s", old)
	}
	var back RunConfig
	if err := json.Unmarshal(old, &back); err != nil || back != cfg || back.Validate() != nil {
		t.Fatalf("old config: %v", err)
	}
	if back.AggregateOptions() != verify.DefaultAggregateOptions() || back.ScreenOptions() != verify.DefaultScreenOptions() {
		t.Fatal("an old config does not take verify's defaults")
	}
	cfg.Robust = Robust{ClipMultiple: 3, Trim: -1, MaxNormRatio: 2, MinSimilarity: 0.1}
	b, _ := json.Marshal(cfg)
	if err := json.Unmarshal(b, &back); err != nil || back != cfg {
		t.Fatalf("round trip: %v", err)
	}
	if o := back.AggregateOptions(); o.ClipMultiple != 3 || o.Trim != 0 {
		t.Fatalf("aggregate options %+v", o)
	}
	if o := back.ScreenOptions(); o.MaxNormRatio != 2 || o.MinSimilarity != 0.1 || o.MinNormRatio != verify.DefaultScreenOptions().MinNormRatio {
		t.Fatalf("screen options %+v", o)
	}
	for _, r := range []Robust{{Trim: 0.5}, {ClipMultiple: -1}, {ClipMultiple: math.Inf(1)}, {Trim: math.NaN()}, {MaxNormRatio: 0.9}, {MinNormRatio: 1}, {LossFloor: -1}, {SimilarityDrop: 2}} {
		c := DefaultConfig()
		c.Robust = r
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", r)
		}
		if _, err := NewAggregator(c); err == nil {
			t.Errorf("an aggregator with %+v", r)
		}
	}
	// Without trimming and with a loose clip, three contributions
	// aggregate to their plain mean.
	c := tinyCfg(compress.FP32)
	c.Robust = Robust{Trim: -1, ClipMultiple: 10}
	n := c.Model.NumParams()
	a, _ := NewAggregator(c)
	theta0 := slices.Clone(a.Weights())
	openRound(t, a, 0, "a", "b", "c")
	for i, id := range []string{"a", "b", "c"} {
		a.Submit(id, 0, a.Hash(), c.TokensPerStep(), encode(t, c.Codec, constDelta(n, 0.01*float32(i+1))), at(1))
	}
	if ev := mustTick(t, a, at(1)); ev.Closed == nil || ev.Closed.Clip.Trim != 0 {
		t.Fatal("round did not close untrimmed")
	}
	for i, v := range a.Weights() {
		want := float64(theta0[i]) - c.OuterLR*(1+c.Momentum)*float64(constDelta(n, 0.02)[i])
		if math.Abs(float64(v)-want) > 1e-6 {
			t.Fatalf("θ1[%d] = %v, want the plain mean's %v", i, v, want)
		}
	}
}

// TestSeenPayloadJSON: the payload history encodes its digests in hex and
// decodes back; a digest that is not 64 hex digits is refused.
func TestSeenPayloadJSON(t *testing.T) {
	in := []SeenPayload{{Payload: verify.PayloadDigest([]byte("x")), Worker: "w", Round: 3}, {Worker: "v", Round: 4}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"payload":"` + verify.PayloadDigest([]byte("x")).String() + `","worker":"w","round":3},{"payload":"` + strings.Repeat("0", 64) + `","worker":"v","round":4}]`
	if string(b) != want {
		t.Fatalf("encoded %s", b)
	}
	var out []SeenPayload
	if err := json.Unmarshal(b, &out); err != nil || !slices.Equal(in, out) {
		t.Fatalf("decoded %+v, %v", out, err)
	}
	for _, bad := range []string{`[{"payload":"zz"}]`, `[{"payload":"` + strings.Repeat("0", 62) + `"}]`, `[{"payload":1}]`, `{}`} {
		if err := json.Unmarshal([]byte(bad), &out); err == nil {
			t.Errorf("%s decoded", bad)
		}
	}
}

// FuzzRestoreSeen: any bytes as a snapshot's payload history either fail
// to decode or to restore with one line, or restore an aggregator whose
// history re-encodes to what it decoded.
func FuzzRestoreSeen(f *testing.F) {
	f.Add([]byte(`[{"payload":"` + strings.Repeat("ab", 32) + `","worker":"w","round":1}]`))
	f.Add([]byte(`[{"payload":"` + strings.Repeat("ab", 32) + `","worker":"w","round":-1}]`))
	f.Add([]byte(`[]`))
	cfg := tinyCfg(compress.Int8)
	base, _ := NewAggregator(cfg)
	snap := base.Snapshot()
	snap.Round = 2
	f.Fuzz(func(t *testing.T, b []byte) {
		var seen []SeenPayload
		if json.Unmarshal(b, &seen) != nil {
			return
		}
		s := snap
		s.Seen = seen
		a, err := Restore(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error of several lines: %q", err)
			}
			return
		}
		for _, x := range a.Snapshot().Seen {
			if x.Round < 0 || x.Round >= 2 || x.Worker == "" || len(x.Worker) > MaxWorkerID {
				t.Fatalf("restored %+v", x)
			}
		}
	})
}

// TestSparseCodecConfig: the codec must be written canonically (workers
// compare payload codecs with it as strings), and the feedback decay is a
// sparse codec's only, in (0, 1]; an old config without it encodes as
// before.
func TestSparseCodecConfig(t *testing.T) {
	if b, _ := json.Marshal(DefaultConfig()); strings.Contains(string(b), "feedback") {
		t.Fatalf("the default config encodes a feedback decay: %s", b)
	}
	for _, c := range []struct {
		codec compress.Codec
		decay float64
		bad   string
	}{
		{compress.TopK, 0, ""}, {compress.TopK, 0.95, ""}, {"topk:8/256:1", 1, ""},
		{"topk", 0, "canonically"}, {"topk:64/4096", 0.9, "canonically"},
		{compress.TopK, 1.5, "feedback decay"}, {compress.TopK, -0.1, "feedback decay"}, {compress.TopK, math.NaN(), "feedback decay"},
		{compress.Int8, 0.95, "feedback decay"}, {compress.FP32, 1, "feedback decay"},
	} {
		cfg := tinyCfg(c.codec)
		cfg.FeedbackDecay = c.decay
		err := cfg.Validate()
		if c.bad == "" && err != nil || c.bad != "" && (err == nil || !strings.Contains(err.Error(), c.bad)) {
			t.Errorf("%s decay %g: %v, want %q", c.codec, c.decay, err, c.bad)
		}
	}
	// Sparse contributions are averaged over their senders, untrimmed.
	sparse := tinyCfg(compress.TopK)
	if o := sparse.AggregateOptions(); !o.Sparse || o.Trim != 0 {
		t.Fatalf("topk aggregation options %+v", o)
	}
	if o := tinyCfg(compress.Int8).AggregateOptions(); o.Sparse || o.Trim == 0 {
		t.Fatalf("int8 aggregation options %+v", o)
	}
	sparse.Robust.Trim = 0.2
	if err := sparse.Validate(); err == nil || !strings.Contains(err.Error(), "sparse aggregation does not trim") {
		t.Fatalf("a trimmed topk run: %v", err)
	}
	sparse.Robust.Trim = -1
	if err := sparse.Validate(); err != nil {
		t.Fatal(err)
	}
	// The update codec defaults to the run's and is written canonically.
	if sparse.UpdateCodec() != compress.TopK {
		t.Fatalf("update codec %q, want the run's", sparse.UpdateCodec())
	}
	sparse.DownCodec = "topk:256/4096:2"
	if err := sparse.Validate(); err != nil || sparse.UpdateCodec() != "topk:256/4096:2" {
		t.Fatalf("update codec %q: %v", sparse.UpdateCodec(), err)
	}
	for _, bad := range []compress.Codec{"topk:256/4096", "lz4"} {
		sparse.DownCodec = bad
		if err := sparse.Validate(); err == nil || !strings.Contains(err.Error(), "update codec") {
			t.Errorf("update codec %q: %v", bad, err)
		}
	}
}
