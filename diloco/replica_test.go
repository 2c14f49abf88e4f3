package diloco

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/compress"
)

// Replicas closing rounds with the same contributions, in any order, hold
// bitwise the weights an aggregator reaches from those contributions, and
// refuse on arrival what it refuses.
func TestReplicaMatchesAggregator(t *testing.T) {
	for _, codec := range []compress.Codec{compress.Int8, compress.FP32} {
		t.Run(fmt.Sprint(codec), func(t *testing.T) {
			cfg := tinyCfg(codec)
			cfg.Rounds = 4
			agg, err := NewAggregator(cfg)
			if err != nil {
				t.Fatal(err)
			}
			agg.Grace = 0
			reps := make([]*Replica, 3)
			for i := range reps {
				if reps[i], err = NewReplica(cfg, nil); err != nil {
					t.Fatal(err)
				}
			}
			n := cfg.Model.NumParams()
			workers := []string{"w1", "w2", "w3", "w4"}
			encs := map[string]*compress.Encoder{}
			for _, w := range workers {
				encs[w] = compress.NewEncoder(codec, n)
			}
			now := at(0)
			for round := range cfg.Rounds {
				var cs []Submitted
				for i, w := range workers {
					r := rand.New(rand.NewPCG(uint64(round), uint64(i)))
					d := make([]float32, n)
					for j := range d {
						d[j] = float32(r.NormFloat64() * 0.003)
					}
					p, err := encs[w].Encode(d)
					if err != nil {
						t.Fatal(err)
					}
					c := Submitted{Worker: w, Tokens: cfg.TokensPerRound(), Payload: p}
					switch {
					case round == 1 && w == "w2":
						c.Payload = p[:len(p)/2] // does not decode
					case round == 2 && w == "w3":
						c.Tokens = cfg.TokensPerStep() + 1 // not whole steps
					}
					cs = append(cs, c)
				}
				// The aggregator: every worker polls, the round opens, all submit.
				for _, w := range workers {
					agg.Poll(w, agg.Round(), agg.Hash(), now)
				}
				mustTick(t, agg, now)
				// Presence is the aggregator's business (the ledger's in a run
				// without one): what it did not let take part is left out.
				var aggRefused []string
				var taken []Submitted
				for _, c := range cs {
					err := agg.Submit(c.Worker, round, agg.Hash(), c.Tokens, c.Payload, now)
					if err != nil && strings.Contains(err.Error(), "not a participant") {
						continue
					}
					if err != nil {
						aggRefused = append(aggRefused, c.Worker)
					}
					taken = append(taken, c)
				}
				cs = taken
				ev := mustTick(t, agg, now)
				if ev.Closed == nil { // it waits for a worker it refused on the header until the deadline
					now = now.Add(time.Duration(cfg.RoundTimeout))
					ev = mustTick(t, agg, now)
				}
				if ev.Closed == nil {
					t.Fatalf("round %d: the aggregator did not close", round)
				}
				for i, rep := range reps {
					order := slices.Clone(cs)
					rand.New(rand.NewPCG(uint64(i), 9)).Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
					res, refused, err := rep.Close(round, order)
					if err != nil {
						t.Fatalf("replica %d round %d: %v", i, round, err)
					}
					var names []string
					for _, x := range refused {
						names = append(names, x.Worker)
					}
					if !slices.Equal(names, aggRefused) {
						t.Fatalf("replica %d round %d refused %v, the aggregator %v", i, round, refused, aggRefused)
					}
					if rep.Hash() != agg.Hash() || res.Hash != ev.Closed.Hash || !slices.Equal(rep.Weights(), agg.Weights()) {
						t.Fatalf("replica %d round %d: weights %s, the aggregator's %s", i, round, rep.Hash(), agg.Hash())
					}
					if !bytes.Equal(rep.LastUpdate(), agg.lastUpdate) {
						t.Fatalf("replica %d round %d: the update differs", i, round)
					}
				}
			}
			if !reps[0].Done() {
				t.Fatal("replica not done after the last round")
			}
			if _, _, err := reps[0].Close(cfg.Rounds, nil); err == nil || !strings.Contains(err.Error(), "finished") {
				t.Fatalf("closing past the end: %v", err)
			}
		})
	}
}

func TestReplicaRefuses(t *testing.T) {
	cfg := tinyCfg(compress.FP32)
	rep, err := NewReplica(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := cfg.Model.NumParams()
	good := Submitted{Worker: "a", Tokens: cfg.TokensPerRound(), Payload: encode(t, compress.FP32, constDelta(n, 0.001))}
	h := rep.Hash()
	for _, tc := range []struct {
		round int
		cs    []Submitted
		want  string
	}{
		{1, []Submitted{good}, "replica is at round 0"},
		{0, []Submitted{good, good}, "contributes twice"},
		{0, nil, "no contribution"},
		{0, []Submitted{{Worker: "b", Tokens: 1, Payload: good.Payload}}, "no contribution"},
		{0, []Submitted{{Worker: "c", Tokens: good.Tokens, Payload: encode(t, compress.FP32, constDelta(n, 1e6))}}, "no contribution"},
	} {
		_, _, err := rep.Close(tc.round, tc.cs)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.cs, err, tc.want)
		}
		if rep.Hash() != h || rep.Round() != 0 {
			t.Fatal("a refused close changed the replica")
		}
	}
	if _, _, err := rep.Close(0, []Submitted{good}); err != nil || rep.Round() != 1 {
		t.Fatalf("a good round after refusals: %v", err)
	}
}

// A void round leaves the weights as they are and moves the run on: its
// update is zeros that a worker applies like any other, and the next round
// closes normally from the same weights.
func TestReplicaVoid(t *testing.T) {
	cfg := tinyCfg(compress.Int8)
	rep, err := NewReplica(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := cfg.Model.NumParams()
	good := Submitted{Worker: "a", Tokens: cfg.TokensPerRound(), Payload: encode(t, compress.Int8, constDelta(n, 0.001))}
	if _, _, err := rep.Close(0, []Submitted{good}); err != nil {
		t.Fatal(err)
	}
	theta := slices.Clone(rep.Weights())
	bad := Submitted{Worker: "a", Tokens: good.Tokens, Payload: encode(t, compress.Int8, constDelta(n, 1e6))}
	if _, _, err := rep.Close(1, []Submitted{bad}); err == nil {
		t.Fatal("a round of one absurd contribution closed")
	}
	if err := rep.Void(0); err == nil || !strings.Contains(err.Error(), "replica is at round 1") {
		t.Fatalf("voiding another round: %v", err)
	}
	if err := rep.Void(1); err != nil {
		t.Fatal(err)
	}
	if rep.Round() != 2 || rep.Hash() != HashWeights(2, theta) || !slices.Equal(rep.Weights(), theta) {
		t.Fatalf("after the void round: round %d, hash %s", rep.Round(), rep.Hash())
	}
	held := slices.Clone(theta)
	if err := applyUpdate(held, make([]float32, n), rep.LastUpdate()); err != nil || !slices.Equal(held, theta) {
		t.Fatalf("the void round's update changed the weights (%v)", err)
	}
	again := Submitted{Worker: "a", Tokens: good.Tokens, Payload: encode(t, compress.Int8, constDelta(n, 0.002))}
	if _, _, err := rep.Close(2, []Submitted{again}); err != nil || rep.Round() != 3 {
		t.Fatalf("the round after a void one: %v", err)
	}
}
