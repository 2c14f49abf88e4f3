package diloco

import (
	"testing"

	"github.com/cairnlabs/cairn/compress"
)

// TestStartWith: a run told to start with three workers keeps its first
// round closed while two are present (their quorum of 1 long reached),
// opens it once the third polls and the grace period has passed, and,
// should the third never come, opens with the quorum at StartBy.
func TestStartWith(t *testing.T) {
	for _, third := range []bool{true, false} {
		cfg := tinyCfg(compress.FP32)
		a, err := NewAggregator(cfg)
		if err != nil {
			t.Fatal(err)
		}
		a.Grace, a.StartWith, a.StartBy = 0, 3, at(10)
		h0 := a.Hash()
		for _, id := range []string{"a", "b"} {
			if r := a.Poll(id, 0, h0, at(0)); r.Action != Wait {
				t.Fatalf("poll before the round opens: %v", r.Action)
			}
		}
		for _, s := range []float64{0, 1, 5, 9.9} {
			if ev := mustTick(t, a, at(s)); ev.Opened || a.Phase() != Waiting {
				t.Fatalf("third %v: round 0 opened at %gs with 2 of the 3 workers it starts with", third, s)
			}
		}
		if third {
			a.Poll("c", 0, h0, at(9.95))
			if ev := mustTick(t, a, at(9.95)); !ev.Opened {
				t.Fatal("round 0 did not open once the third worker was present")
			}
			if r := a.Poll("c", 0, h0, at(9.96)); r.Action != Train {
				t.Fatalf("the third worker was told %v", r.Action)
			}
			continue
		}
		if ev := mustTick(t, a, at(10)); !ev.Opened {
			t.Fatal("round 0 did not open with the quorum at StartBy")
		}
		if r := a.Poll("a", 0, h0, at(10.1)); r.Action != Train {
			t.Fatalf("a participant was told %v", r.Action)
		}
	}
}
