package diloco

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/verify"
)

// abandon drops the round's contributions (their buffers go back to the
// free list) and sends the round back to waiting for workers; the weights,
// momentum, residual and payload history are untouched.
func (a *Aggregator) abandon() {
	for id, s := range a.subs {
		a.free = append(a.free, s.delta)
		delete(a.subs, id)
	}
	clear(a.participants)
	clear(a.waiting)
	clear(a.refused)
	a.clearCohorts()
	a.phase, a.openAt, a.readyAt = Waiting, time.Time{}, time.Time{}
}

// screen screens the round's contributions (in sorted worker order, so
// the result depends only on the set of contributions) and splits them
// into those to aggregate and those excluded for a certain finding.
func (a *Aggregator) screen(ids []string) (res *RoundResult, deltas [][]float32, weights []float64, err error) {
	cs := make([]verify.Contribution, len(ids))
	all := make([]Contribution, len(ids))
	for i, id := range ids {
		s := a.subs[id]
		cs[i] = verify.Contribution{Worker: id, Payload: s.digest, Delta: s.delta,
			Measured: s.measured, LossBefore: s.before, LossAfter: s.after}
		all[i] = Contribution{Worker: id, Payload: s.digest, Tokens: s.tokens, Members: s.members, Parts: s.parts,
			Measured: s.measured, LossBefore: s.before, LossAfter: s.after}
	}
	screened, err := verify.Screen(a.round, cs, a.prior(), a.Cfg.ScreenOptions())
	if err != nil {
		return nil, nil, nil, err
	}
	res = &RoundResult{Round: a.round, Contributors: ids, Screening: screened}
	for i, c := range all {
		res.Tokens += c.Tokens
		if f, why := certain(a.round, screened[i], c, a.Cfg.Private); f != 0 {
			res.Excluded = append(res.Excluded, Exclusion{Contribution: c, Flags: f, Reason: why})
			continue
		}
		res.Accepted = append(res.Accepted, c)
		deltas = append(deltas, cs[i].Delta)
		weights = append(weights, float64(c.Tokens))
	}
	if len(deltas) == 0 {
		why := make([]string, len(res.Excluded))
		for i, x := range res.Excluded {
			why[i] = x.Worker + ": " + x.Reason
		}
		return nil, nil, nil, fmt.Errorf("screening excluded every contribution (%s)", strings.Join(why, "; "))
	}
	return res, deltas, weights, nil
}

// close screens the round's contributions, aggregates those not excluded
// robustly, takes the outer Nesterov step and publishes the change. It is
// all or nothing: the aggregate, the new momentum, the update and the new
// weights are computed into scratch and checked to be finite before
// anything is committed, so on error the aggregator is exactly as before
// (the caller abandons the round).
func (a *Aggregator) close() (*RoundResult, error) {
	ids := make([]string, 0, len(a.subs))
	for id := range a.subs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	res, deltas, weights, err := a.screen(ids)
	if err != nil {
		return nil, err
	}
	if a.Cfg.DP != nil {
		if err := a.privateMean(res, deltas); err != nil {
			return nil, err
		}
	} else {
		clip, err := a.robust.Aggregate(a.sum, deltas, weights)
		if err != nil {
			return nil, err
		}
		res.Clip = verify.AggregateStats{Norms: slices.Clone(clip.Norms), Median: clip.Median, Bound: clip.Bound,
			Scales: slices.Clone(clip.Scales), Trim: clip.Trim}
	}
	if i, ok := within(a.sum, a.maxDelta); !ok && a.Cfg.DP == nil {
		return nil, fmt.Errorf("the aggregate contribution is not finite or absurd (value %d is %v, the bound %g)", i, a.sum[i], a.maxDelta)
	}
	// SGD with Nesterov momentum, as torch.optim.SGD(nesterov=True,
	// dampening=0): buf = μ·buf + Δ; step = Δ + μ·buf; θ −= lr·step. The
	// published change is lr·step, compressed with error feedback.
	mu, lr := float32(a.Cfg.Momentum), float32(a.Cfg.OuterLR)
	for i, d := range a.sum {
		b := mu*a.momentum[i] + d
		a.nextMomentum[i] = b
		a.sum[i] = lr * (d + mu*b)
	}
	if i, ok := allFinite(a.nextMomentum); !ok {
		return nil, fmt.Errorf("the outer momentum would not be finite (value %d is %v)", i, a.nextMomentum[i])
	}
	if i, ok := allFinite(a.sum); !ok {
		return nil, fmt.Errorf("the outer step is not finite (value %d is %v)", i, a.sum[i])
	}
	// Encode changes the residual on success: keep a copy to put back if
	// the update turns out not to apply.
	if r := a.down.Residual(); r != nil {
		a.residual = append(a.residual[:0], r...)
	}
	a.down.SetMaskSeed(a.Cfg.MaskSeed(a.round))
	payload, err := a.down.Encode(a.sum)
	if err != nil {
		return nil, fmt.Errorf("encoding the update: %v", err)
	}
	if err := compress.Decode(payload, a.scratch); err != nil {
		copy(a.down.Residual(), a.residual)
		return nil, fmt.Errorf("decoding the update: %v", err)
	}
	for i, u := range a.scratch {
		if v := a.theta[i] - u; !finite(v) {
			copy(a.down.Residual(), a.residual)
			return nil, fmt.Errorf("the update makes weight %d %v", i, v)
		}
	}
	// Commit.
	for i, u := range a.scratch {
		a.theta[i] -= u
	}
	a.momentum, a.nextMomentum = a.nextMomentum, a.momentum
	for _, id := range ids {
		a.free = append(a.free, a.subs[id].delta)
	}
	a.remember(a.round, ids)
	res.Missing, res.UpdateBytes = a.dropMissing(), len(payload)
	a.prev = a.hash
	a.round++
	a.hash = HashWeights(a.round, a.theta)
	a.maxDelta = a.Cfg.MaxDelta(absMax(a.theta))
	a.lastUpdate = payload
	res.Hash = a.hash
	clear(a.subs)
	clear(a.participants)
	clear(a.waiting)
	clear(a.refused)
	a.clearCohorts()
	a.phase, a.readyAt = Unpublished, time.Time{}
	return res, nil
}

// privateMean is the aggregate of a run with differential privacy: each
// contribution clipped to DP.Clip, their sum plus Gaussian noise of
// standard deviation DP.Noise·DP.Clip (drawn from NoiseSeed and the
// round), divided by their number. A secure-aggregation cohort's sum of
// p inputs, each clipped by its member, counts as p contributions (the
// noise is added after the secure aggregation, to the sum of all); it is
// clipped to p·DP.Clip as a whole. Every value is computed in float64 in
// a fixed order, so the result is a function of the contributions and
// the seed.
func (a *Aggregator) privateMean(res *RoundResult, deltas [][]float32) error {
	d := a.Cfg.DP
	if a.NoiseSeed == ([32]byte{}) {
		return errors.New("a run with differential privacy needs a secret noise seed")
	}
	if len(deltas) == 0 {
		return errors.New("no contributions to aggregate")
	}
	acc := make([]float64, len(a.sum))
	res.Clip = verify.AggregateStats{Bound: d.Clip}
	k := 0.0
	for j, x := range deltas {
		parts := float64(max(res.Accepted[j].Parts, 1)) // a cohort's delta is the mean of its parts
		n := verify.Norm(x) * parts
		s := parts
		if n > d.Clip*parts {
			s = d.Clip * parts / n * parts
		}
		k += parts
		res.Clip.Norms = append(res.Clip.Norms, n)
		res.Clip.Scales = append(res.Clip.Scales, s/parts)
		for i, v := range x {
			acc[i] += float64(v) * s
		}
	}
	sorted := slices.Clone(res.Clip.Norms)
	slices.Sort(sorted)
	res.Clip.Median = sorted[(len(sorted)-1)/2]
	// The clipped mean must be sane before the noise, which is meant to
	// be large, is added.
	for i, v := range acc {
		if m := float32(v / k); !finite(m) || m > a.maxDelta || m < -a.maxDelta {
			return fmt.Errorf("the aggregate contribution is not finite or absurd (value %d is %v, the bound %g)", i, m, a.maxDelta)
		}
	}
	var key [32]byte
	binary.BigEndian.PutUint64(key[:], uint64(a.round))
	for i := range key {
		key[i] ^= a.NoiseSeed[i]
	}
	r := rand.New(rand.NewChaCha8(sha256.Sum256(key[:])))
	sigma := d.Noise * d.Clip
	for i := range acc {
		a.sum[i] = float32((acc[i] + sigma*r.NormFloat64()) / k)
	}
	eps, err := d.Spent(a.round + 1)
	if err != nil {
		return err
	}
	res.Epsilon = eps
	return nil
}

// finite reports whether v is neither infinite nor NaN.
func finite(v float32) bool { return math.Float32bits(v)&0x7f800000 != 0x7f800000 }

// allFinite returns the index of the first value of v that is not finite.
func allFinite(v []float32) (int, bool) {
	for i, x := range v {
		if !finite(x) {
			return i, false
		}
	}
	return 0, true
}

// within returns the index of the first value of v that is not finite or
// exceeds bound in magnitude.
func within(v []float32, bound float32) (int, bool) {
	for i, x := range v {
		if !(x <= bound && x >= -bound) { // false for NaN
			return i, false
		}
	}
	return 0, true
}

// absMax is the largest magnitude in v (+Inf if v holds a NaN).
func absMax(v []float32) float32 {
	var m float32
	for _, x := range v {
		if x != x {
			return float32(math.Inf(1))
		}
		m = max(m, x, -x)
	}
	return m
}
