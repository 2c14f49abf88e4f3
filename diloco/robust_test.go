package diloco_test

import (
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/verify"
)

// sub is one contribution to submit to an aggregator.
type sub struct {
	id      string
	payload []byte
	tokens  int
}

// restored is an aggregator at the scenario's round, holding its weights
// (zero momentum and residual) and remembering the previous round's
// payloads, as an aggregator that ran the earlier rounds does.
func (s *scenario) restored(t testing.TB) *diloco.Aggregator {
	t.Helper()
	n := len(s.theta)
	var seen []diloco.SeenPayload
	for i, p := range s.prev {
		seen = append(seen, diloco.SeenPayload{Payload: verify.PayloadDigest(p), Worker: s.ids[i], Round: s.round - 1})
	}
	a, err := diloco.Restore(diloco.Snapshot{Cfg: s.cfg, Round: s.round, Theta: s.theta, Momentum: make([]float32, n),
		Residual: make([]float32, n), Seen: seen})
	if err != nil {
		t.Fatal(err)
	}
	a.Grace = 0
	return a
}

var rt0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// closeRound has the workers of subs take part in a's round and submit
// them in order (refusals are returned by id), gives each accepted one
// its held-out loss when ho is not nil, and ticks until the round
// closes. It returns the result and the change of θ (θr − θr+1).
func closeRound(t testing.TB, a *diloco.Aggregator, subs []sub, ho *verify.HeldOut) (*diloco.RoundResult, []float32, map[string]error) {
	t.Helper()
	round, h := a.Round(), a.Hash()
	before := slices.Clone(a.Weights())
	for _, c := range subs {
		if r := a.Poll(c.id, round, h, rt0); r.Action == diloco.Refused {
			t.Fatalf("%s refused: %s", c.id, r.Reason)
		}
	}
	if ev, err := a.Tick(rt0); err != nil || !ev.Opened {
		t.Fatalf("round %d did not open: %+v %v", round, ev, err)
	}
	refused := map[string]error{}
	n := len(before)
	for _, c := range subs {
		if err := a.Submit(c.id, round, h, c.tokens, c.payload, rt0.Add(time.Second)); err != nil {
			refused[c.id] = err
			continue
		}
		if ho != nil {
			d := make([]float32, n)
			if err := compress.Decode(c.payload, d); err != nil {
				t.Fatal(err)
			}
			lb, la, err := ho.Loss(before, d, diloco.Stream(c.id), round)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.SetHeldOut(c.id, round, verify.PayloadDigest(c.payload), lb, la); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, now := range []time.Time{rt0.Add(time.Second), a.Deadline()} {
		ev, err := a.Tick(now)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Closed != nil {
			u := make([]float32, n)
			for i, v := range a.Weights() {
				u[i] = before[i] - v
			}
			a.Publish(now)
			return ev.Closed, u, refused
		}
	}
	t.Fatalf("round %d did not close", round)
	return nil, nil, nil
}

// relDist is ‖x − y‖ / ‖y‖.
func relDist(x, y []float32) float64 { return verify.Distance(x, y) }

// robustOnce holds the scenario of the robust-aggregation tests: 5 honest
// workers of fastCfg trained through rounds 0 and 1 (worker-4 is the seat
// an adversary takes), and a held-out scorer.
var robustOnce struct {
	sync.Once
	s  *scenario
	ho *verify.HeldOut
}

func robustScenario(t *testing.T) (*scenario, *verify.HeldOut) {
	robustOnce.Do(func() {
		pool := kernels.NewPool(2) // lives as long as the test binary
		cfg := fastCfg()
		robustOnce.s = newScenario(t, cfg, 5, 1, pool)
		ho, err := verify.NewHeldOut(cfg.Model, robustOnce.s.train, cfg.Batch, 2, cfg.Seed, pool)
		if err != nil {
			t.Fatal(err)
		}
		robustOnce.ho = ho
	})
	if robustOnce.ho == nil {
		t.Fatal("the scenario failed to build")
	}
	return robustOnce.s, robustOnce.ho
}

// honestSubs are the first k honest workers' contributions, claiming a
// whole round's tokens.
func (s *scenario) honestSubs(k int) []sub {
	out := make([]sub, k)
	for i := range out {
		out[i] = sub{s.ids[i], s.payload[i], s.cfg.TokensPerRound()}
	}
	return out
}

// plainUpdate is what the token-weighted mean of payloads (equal tokens)
// publishes on a first outer step from zero momentum, before compression:
// lr·(1+μ)·mean.
func plainUpdate(t *testing.T, cfg diloco.RunConfig, payloads [][]byte) []float32 {
	t.Helper()
	n := cfg.Model.NumParams()
	m := make([]float64, n)
	d := make([]float32, n)
	for _, p := range payloads {
		if err := compress.Decode(p, d); err != nil {
			t.Fatal(err)
		}
		for i, v := range d {
			m[i] += float64(v) / float64(len(payloads))
		}
	}
	u := make([]float32, n)
	for i, v := range m {
		u[i] = float32(cfg.OuterLR * (1 + cfg.Momentum) * v)
	}
	return u
}

// TestRobustRoundAgainstAdversaries: a round of 4 honest workers (real
// training of a small model) and one adversary of each kind moves θ little
// relative to the round of the 4 honest workers alone (about as much as a
// fifth honest worker does, and far less than the plain weighted mean of
// the same contributions), excludes the certain cheats with their reason
// (their round is bitwise the honest one), and flags the suspicious ones;
// the honest workers are never flagged.
func TestRobustRoundAgainstAdversaries(t *testing.T) {
	s, ho := robustScenario(t)
	honest := s.honestSubs(4)
	_, ref, _ := closeRound(t, s.restored(t), honest, ho)
	_, fifth, _ := closeRound(t, s.restored(t), s.honestSubs(5), ho)
	t.Logf("a fifth honest worker moves the update by %.3f", relDist(fifth, ref))
	for _, tc := range []struct {
		adv      string
		refused  string      // Submit refuses it, saying this
		excluded verify.Flag // else excluded for this certain finding
		reason   string      // ... saying this
		flagged  verify.Flag // else screening flags at least these
	}{
		{adv: "noise", flagged: verify.Dissimilar},
		{adv: "x50", flagged: verify.NormHigh},
		{adv: "zeros", excluded: verify.NormLow, reason: "is zero, yet it claims 1280 tokens"},
		{adv: "copier", excluded: verify.Duplicate, reason: "byte for byte worker-1's of round 0"},
		{adv: "lazy", flagged: verify.NormLow},
		{adv: "negated", flagged: verify.LossWorse | verify.Dissimilar},
		{adv: "overflow", refused: "move a weight by less than"},
	} {
		var p []byte
		for _, x := range adversaries {
			if x.name == tc.adv {
				p = x.payload(s)
			}
		}
		res, u, refused := closeRound(t, s.restored(t), append(slices.Clone(honest), sub{"worker-4", p, s.cfg.TokensPerRound()}), ho)
		d, dp := relDist(u, ref), relDist(plainUpdate(t, s.cfg, append(slices.Clone(s.payload[:4]), p)), ref)
		sc := verify.Screening{Worker: "(refused)"}
		for _, x := range res.Screening {
			if x.Worker == "worker-4" {
				sc = x
			} else if x.Score >= 1 || x.Flags != 0 {
				t.Errorf("%s: honest %s flagged %q (score %.3g)", tc.adv, x.Worker, x.Flags.String(), x.Score)
			}
		}
		t.Logf("%-8s update %.3f from the honest round's (plain mean: %.3g); score %.3g, flags %q, norm ratio %.3f, similarity %.3f, gain %+.4f",
			tc.adv, d, dp, sc.Score, sc.Flags.String(), sc.NormRatio, sc.Similarity, sc.Gain)
		switch {
		case tc.refused != "":
			if err := refused["worker-4"]; err == nil || !strings.Contains(err.Error(), tc.refused) {
				t.Errorf("%s: Submit said %v, want a refusal saying %q", tc.adv, err, tc.refused)
			}
			if !slices.Equal(res.Missing, []string{"worker-4"}) { // refused: reported missing, on probation
				t.Errorf("%s: missing %v", tc.adv, res.Missing)
			}
		case tc.excluded != 0:
			if len(res.Excluded) != 1 {
				t.Fatalf("%s: excluded %+v", tc.adv, res.Excluded)
			}
			x := res.Excluded[0]
			if x.Worker != "worker-4" || x.Flags != tc.excluded || !strings.Contains(x.Reason, tc.reason) ||
				x.Payload != verify.PayloadDigest(p) || x.Tokens != s.cfg.TokensPerRound() || !x.Measured {
				t.Errorf("%s: excluded %+v, want %q saying %q", tc.adv, x, tc.excluded, tc.reason)
			}
			if sc.Score != verify.MaxScore || sc.Flags&tc.excluded == 0 {
				t.Errorf("%s: screened %+v", tc.adv, sc)
			}
		default:
			if len(res.Excluded) != 0 || len(res.Accepted) != 5 || sc.Score < 1 || sc.Flags&tc.flagged != tc.flagged {
				t.Errorf("%s: excluded %v, %d accepted, screened %q (score %.3g), want flags %q", tc.adv, res.Excluded, len(res.Accepted), sc.Flags.String(), sc.Score, tc.flagged.String())
			}
		}
		if tc.flagged == 0 {
			// Left out: the round is exactly the honest one.
			if !slices.Equal(u, ref) || len(res.Accepted) != 4 {
				t.Errorf("%s: the round without it differs from the honest round (distance %.3g, %d accepted)", tc.adv, d, len(res.Accepted))
			}
			continue
		}
		// Aggregated, clipped and trimmed: about what a fifth honest
		// worker does (0.06 here), and well under half the plain mean's.
		if d > 0.15 || d > 0.6*dp {
			t.Errorf("%s moves the update by %.3f of the honest round's (plain mean %.3f), want at most 0.15 and 0.6x", tc.adv, d, dp)
		}
		if tc.adv == "x50" && (res.Clip.Scales[4] > 1.0/20 || res.Clip.Bound != 2*res.Clip.Median) {
			t.Errorf("x50 clipped by %.3g to %g (median %g)", res.Clip.Scales[4], res.Clip.Bound, res.Clip.Median)
		}
	}
}

// TestRobustHonestRoundNearMean: rounds of honest workers only publish an
// update close to the plain token-weighted mean's (the trimmed mean drops
// each coordinate's extremes; clipping touches nobody), and accept every
// contribution unflagged.
func TestRobustHonestRoundNearMean(t *testing.T) {
	s, ho := robustScenario(t)
	for _, k := range []int{2, 4, 5} {
		res, u, _ := closeRound(t, s.restored(t), s.honestSubs(k), ho)
		d := relDist(u, plainUpdate(t, s.cfg, s.payload[:k]))
		t.Logf("%d honest workers: robust update %.4f from the plain mean's; clip scales %v", k, d, res.Clip.Scales)
		if d > 0.1 || len(res.Accepted) != k || len(res.Excluded) != 0 {
			t.Errorf("%d honest workers: distance %.3g from the plain mean, %d accepted, excluded %v", k, d, len(res.Accepted), res.Excluded)
		}
		for i, x := range res.Screening {
			if x.Flags != 0 || res.Clip.Scales[i] != 1 || !res.Accepted[i].Measured {
				t.Errorf("%d honest workers: %s screened %q, scaled by %g", k, x.Worker, x.Flags.String(), res.Clip.Scales[i])
			}
		}
	}
}

// TestRobustCloseOrderIndependent: the same contributions (honest and
// adversarial) with the same held-out losses, submitted and measured in
// any order, close the round to bitwise the same weights, update and
// screening.
func TestRobustCloseOrderIndependent(t *testing.T) {
	s, ho := robustScenario(t)
	subs := s.honestSubs(4)
	for _, a := range adversaries {
		if a.name == "noise" || a.name == "x50" || a.name == "negated" {
			subs = append(subs, sub{"adv-" + a.name, a.payload(s), s.cfg.TokensPerStep() * (1 + len(subs))})
		}
	}
	var first *diloco.RoundResult
	var firstHash diloco.Hash
	var firstUpdate []byte
	for _, order := range [][]int{{0, 1, 2, 3, 4, 5, 6}, {6, 5, 4, 3, 2, 1, 0}, {3, 6, 0, 4, 1, 5, 2}} {
		perm := make([]sub, len(order))
		for i, j := range order {
			perm[i] = subs[j]
		}
		a := s.restored(t)
		res, _, refused := closeRound(t, a, perm, ho)
		if len(refused) != 0 {
			t.Fatal(refused)
		}
		update := a.Snapshot().LastUpdate
		if first == nil {
			first, firstHash, firstUpdate = res, a.Hash(), slices.Clone(update)
			continue
		}
		res.Took, first.Took = 0, 0
		if a.Hash() != firstHash || !slices.Equal(update, firstUpdate) || !reflect.DeepEqual(res, first) {
			t.Fatalf("order %v: hash %s, want %s (results equal: %v)", order, a.Hash(), firstHash, reflect.DeepEqual(res, first))
		}
	}
	if len(first.Accepted) != 7 || first.Accepted[0].Worker != "adv-negated" {
		t.Fatalf("accepted %+v", first.Accepted)
	}
}
