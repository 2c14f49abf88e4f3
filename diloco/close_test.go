package diloco

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/compress"
)

// TestPoisonedCloseIsAllOrNothing: a round whose contributions sum to
// something the outer step cannot take (one decoded at the int8 decoder's
// largest values, 127 times its largest scale) is abandoned without
// touching the weights, momentum, update residual or round, however often
// it is ticked; its buffers go back to the free list once, and the next
// round gives bitwise what an aggregator that never saw the poison gives
// (no contribution's buffer is shared with another's).
func TestPoisonedCloseIsAllOrNothing(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	n := cfg.Model.NumParams()
	tps := cfg.TokensPerStep()
	poisoned, _ := NewAggregator(cfg)
	clean, _ := NewAggregator(cfg)
	for _, a := range []*Aggregator{poisoned, clean} {
		a.Grace = 0
		// One honest round first, so that momentum and residual are not zero.
		a.Poll("a", 0, a.Hash(), at(0))
		mustTick(t, a, at(0))
		if err := a.Submit("a", 0, a.Hash(), tps, encode(t, cfg.Codec, constDelta(n, 0.003)), at(1)); err != nil {
			t.Fatal(err)
		}
		if ev := mustTick(t, a, at(1)); ev.Closed == nil {
			t.Fatal("round 0 did not close")
		}
	}
	a := poisoned
	before := a.Snapshot()
	theta := slices.Clone(before.Theta)
	momentum := slices.Clone(before.Momentum)
	residual := slices.Clone(before.Residual)
	update := slices.Clone(before.LastUpdate)
	hash := a.Hash()

	a.Poll("a", 1, hash, at(2))
	a.Poll("b", 1, hash, at(2))
	mustTick(t, a, at(2))
	if err := a.Submit("a", 1, hash, tps, encode(t, cfg.Codec, constDelta(n, 0.01)), at(3)); err != nil {
		t.Fatal(err)
	}
	if err := a.Submit("b", 1, hash, tps, encode(t, cfg.Codec, constDelta(n, -0.02)), at(3)); err != nil {
		t.Fatal(err)
	}
	// What a payload whose chunk scales sit at the decoder's maximum
	// decodes to: finite, but the outer step overflows.
	huge := float32(127 * math.Nextafter32(math.MaxFloat32/127, 0))
	for _, id := range []string{"a", "b"} {
		for i := range a.subs[id].delta {
			a.subs[id].delta[i] = huge
		}
	}
	for tick := 0; tick < 3; tick++ {
		ev, err := a.Tick(at(3 + float64(tick)))
		if tick == 0 && (err == nil || !ev.Abandoned || !strings.Contains(err.Error(), "not finite")) {
			t.Fatalf("a poisoned round closed: %+v, %v", ev, err)
		}
		if a.Round() != 1 || a.Hash() != hash || (tick == 0 && a.Phase() != Waiting) || a.Submitted() != 0 {
			t.Fatalf("tick %d: round %d, phase %v, %d contributions held after the poisoned round", tick, a.Round(), a.Phase(), a.Submitted())
		}
		s := a.Snapshot()
		if !slices.Equal(s.Theta, theta) || !slices.Equal(s.Momentum, momentum) || !slices.Equal(s.Residual, residual) || !slices.Equal(s.LastUpdate, update) {
			t.Fatalf("tick %d: the poisoned round changed the durable state", tick)
		}
	}
	if len(a.free) != 2 || &a.free[0][0] == &a.free[1][0] {
		t.Fatalf("free list holds %d buffers after the abandoned round, want 2 distinct", len(a.free))
	}
	// The round runs again (it reopened for the workers present) with
	// honest contributions: bitwise what the clean aggregator gets.
	for _, b := range []*Aggregator{poisoned, clean} {
		b.Poll("a", 1, b.Hash(), at(5.5))
		b.Poll("b", 1, b.Hash(), at(5.5))
		mustTick(t, b, at(5.5))
		if b.Phase() != Open {
			t.Fatalf("round 1 is %v", b.Phase())
		}
		if err := b.Submit("a", 1, b.Hash(), tps, encode(t, cfg.Codec, constDelta(n, 0.01)), at(6)); err != nil {
			t.Fatal(err)
		}
		if err := b.Submit("b", 1, b.Hash(), 2*tps, encode(t, cfg.Codec, constDelta(n, -0.02)), at(6)); err != nil {
			t.Fatal(err)
		}
		if ev := mustTick(t, b, at(6)); ev.Closed == nil {
			t.Fatal("honest round did not close")
		}
	}
	if poisoned.Hash() != clean.Hash() || !slices.Equal(poisoned.Snapshot().Momentum, clean.Snapshot().Momentum) {
		t.Fatal("after the abandoned round the aggregator diverged from one that never saw it")
	}
	if len(poisoned.free) != 2 || &poisoned.free[0][0] == &poisoned.free[1][0] {
		t.Fatalf("free list holds %d buffers, want 2 distinct", len(poisoned.free))
	}
}
