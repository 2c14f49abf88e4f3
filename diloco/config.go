// Package diloco is the round protocol of Cairn's decentralised training:
// DiLoCo (Douillard et al., arXiv:2311.08105) between an aggregator and
// permissionless workers. It is deterministic logic only: the Aggregator is
// a state machine that takes joins, contributions, departures and the time
// as inputs and returns decisions and updates; the Worker runs the inner
// optimisation of one round. Transports, storage and timers belong to the
// caller (package node), so a whole network can run in one test.
//
// A round r: every participating worker holds the global weights θr, runs H
// inner AdamW steps on data assigned by (run seed, round, worker id, step),
// and sends Δ = θr − θlocal, compressed (int8 with error feedback by
// default). The aggregator waits until every participant has sent or the
// round's deadline passes (late contributions are dropped), screens and
// combines the contributions robustly (below), takes a Nesterov SGD step
// (lr 0.7, momentum 0.9 by default) and publishes the resulting change of
// θ, compressed with its own error feedback; every node applies exactly
// the published change, so all hold bitwise the same θr+1, checked by
// hash.
//
// # Screening and robust aggregation
//
// Contributions come from permissionless workers, so the aggregator
// assumes some are bad. Submit refuses what cannot be honest on its face
// (wrong sizes, non-finite values, values beyond RunConfig.MaxDelta). At
// the close, package verify screens every contribution in worker-id
// order: its norm against the round's median, its cosine similarity with
// the others, byte-identical payloads (of this round, or of the last
// PayloadHistory rounds, which the aggregator remembers and snapshots),
// and its held-out loss before and after applying a quarter of it
// (verify.HeldOut on a slice of the worker's assigned data, measured by
// the caller as contributions arrive and given with SetHeldOut; the round
// waits up to HeldOutWait for missing ones, then screens them without a
// loss score). Contributions with a certain finding (non-finite, a copy,
// a zero Δ claiming tokens, a held-out loss after it that is not finite)
// are excluded (RoundResult.Excluded, with the reason; not an error of the
// round, though a round whose every contribution is excluded is
// abandoned). The rest are clipped to RunConfig.Robust's ClipMultiple
// (default 2) times their median norm and combined by a coordinate-wise
// trimmed mean (default 20% at each end) weighted by tokens, so that a
// minority of bad contributions moves θ little even before verification
// catches it. RoundResult.Screening carries every contribution's score and
// flags: the validators' sampling (verify.Sample) recomputes the
// suspicious ones besides a random draw.
//
// On a small model (TestRobustRoundAgainstAdversaries: 4 honest workers
// and one adversary of the seven kinds of package verify's measurements),
// a round with an aggregated adversary (noise of the honest norm, x50,
// lazy, negated) publishes an update 0.07 to 0.09 (relative L2) away from
// the honest workers' round, about what a fifth honest worker changes
// (0.06), where the plain weighted mean would have been 0.17 to 10 away;
// the zeros and the copier are excluded and the int8 overflow refused, so
// their rounds are bitwise the honest one. With honest workers only the
// update is within 0.05 of the plain mean's.
//
// The closed round's θ depends only on the set of contributions and the
// held-out losses given (bit for bit: every sum runs in worker-id order),
// whatever the order of arrival, and the losses only through the
// exclusion of a contribution whose loss after is not finite. The losses
// come from the aggregator's own evaluation on its kernel path; they
// differ in the last bits across paths, so one node, the aggregator,
// screens each round and the others take its published update.
//
// A worker's contribution is a function of the run, its id, the round, θr
// and its LocalState (inner AdamW moments and step count, int8
// error-feedback residual), which it can export, restore and hash
// canonically. A Recomputer reruns any worker's round through the
// worker's own code (Worker.Train) from a revealed start state: on the
// same kernel path it gives bitwise the submitted payload and end state,
// which is how package verify checks contributions (Recomputer.Verify).
package diloco

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/dp"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/tokenizer"
	"github.com/cairnlabs/cairn/train"
	"github.com/cairnlabs/cairn/verify"
)

// RunConfig is what every node of a run must agree on. The aggregator owns
// it and sends it to workers when they join.
type RunConfig struct {
	Model       gpt.Config     `json:"model"`
	Batch       int            `json:"batch"`       // sequences per inner step, per worker
	InnerSteps  int            `json:"inner_steps"` // H
	Rounds      int            `json:"rounds"`
	InnerLR     float64        `json:"inner_lr"`
	InnerMinLR  float64        `json:"inner_min_lr"`
	Warmup      int            `json:"warmup"` // inner steps
	Beta1       float64        `json:"beta1"`
	Beta2       float64        `json:"beta2"`
	Eps         float64        `json:"eps"`
	WeightDecay float64        `json:"weight_decay"`
	GradClip    float64        `json:"grad_clip"`
	OuterLR     float64        `json:"outer_lr"`
	Momentum    float64        `json:"outer_momentum"`
	Codec       compress.Codec `json:"codec"`
	// FeedbackDecay is the workers' error-feedback decay β of a sparse
	// codec (SparseLoCo: e ← β·e + Δ before choosing the top k; 0.95 in
	// Templar's runs); 0 means 1, plain error feedback, the only value
	// the dense codecs take.
	FeedbackDecay float64 `json:"feedback_decay,omitempty"`
	// DownCodec encodes the published updates; empty means Codec. A
	// top-k run's update is the union of its workers' top entries, so it
	// wants a denser top-k than theirs (k times the workers, say); a
	// random-mask run's update has its contributions' positions (see
	// MaskSeed), so the same mask codec fits it.
	DownCodec compress.Codec `json:"down_codec,omitempty"`
	// OverlapSteps (τ), when positive, hides a round's communication
	// behind the next round's compute (Streaming DiLoCo's overlap with an
	// eager stand-in): a worker that contributed to round r starts round
	// r+1 at once, training its first τ inner steps from θr less its own
	// contribution (the stand-in for the aggregate it has not received),
	// then moves its weights by θr+1 less that stand-in and trains the
	// rest; its pseudo-gradient is relative to θr+1, as without overlap.
	// A worker that did not contribute to round r trains round r+1 from
	// θr+1. Zero: no overlap.
	OverlapSteps int    `json:"overlap_steps,omitempty"`
	Seed         uint64 `json:"seed"`
	DataHash     string `json:"data_hash"` // SHA-256 of the training text
	// Tokenizer, when set, is the ID of the BPE tokenizer (tokenizer.ID)
	// whose token ids the run trains on, instead of bytes; every node
	// must hold that tokenizer (Tok, set with SetTokenizer). Omitted for a
	// byte-level run.
	Tokenizer string `json:"tokenizer,omitempty"`
	// Tok is the tokenizer itself, local to each node (never encoded).
	Tok *tokenizer.Tokenizer `json:"-"`
	// RoundTimeout is how long a round waits for contributions.
	RoundTimeout Duration `json:"round_timeout"`
	// Quorum is the fewest contributions a round may close with; a round
	// that has fewer at its deadline is extended.
	Quorum int `json:"quorum"`
	// Robust sets how the aggregator screens and combines a round's
	// contributions; its zero value (and a config saved before it
	// existed) takes verify's defaults.
	Robust Robust `json:"robust,omitzero"`
	// DP, when set, makes the aggregate differentially private at the
	// level of contributors: every contribution is clipped to DP.Clip and
	// Gaussian noise of standard deviation DP.Noise·DP.Clip is added to
	// their sum before it is averaged, in place of the robust rule (a
	// trimmed mean's sensitivity is not that of a sum).
	DP *DP `json:"dp,omitempty"`
	// Private, when set, lets workers contribute by training on data only
	// they hold (their commits say so, ledger.CommitTx.Private). Nobody
	// can recompute such a contribution, so the run's validator judges it
	// by its effect on the public held-out loss instead (see Private).
	Private *Private `json:"private,omitempty"`
}

// Private is how a run judges contributions trained on private data.
// Screening measures every contribution's held-out gain g (loss before
// minus after applying the fraction verify.HeldOut.Step of it, on the
// run's public held-out data at the round's weights). A private
// contribution is failed, and its worker slashed, when g < −Tolerance, or
// when it is not finite or is zero while claiming tokens; otherwise it is
// paid as verified when it was aggregated.
type Private struct {
	// Tolerance, in nats, is how much a private contribution may worsen
	// the held-out loss before it is failed.
	Tolerance float64 `json:"tolerance"`
	// SecAgg, when set, makes private workers contribute only through
	// secure aggregation (package secagg): the private participants of a
	// round form a cohort whose masked inputs the aggregator can only
	// sum, so it never sees one private Δ. The cohort's mean is screened
	// and aggregated as one contribution; a private worker whose round
	// has no cohort (too few private workers) sits the round out. With DP
	// each member clips its own Δ to DP.Clip before masking, and the
	// aggregator's noise is added after the secure aggregation.
	SecAgg *SecAgg `json:"secagg,omitempty"`
}

// SecAgg is how a run's cohorts aggregate securely.
type SecAgg struct {
	// MinCohort is the fewest private workers a cohort has (at least 2).
	MinCohort int `json:"min_cohort"`
	// Bits is the width of the fixed-point values (8 to 32): the masked
	// inputs travel at Bits bits a value.
	Bits int `json:"bits"`
	// Clip bounds each value of a Δ before it is put in fixed point (the
	// scale is the largest at which a cohort's sum cannot wrap, see
	// secagg.ScaleFor); an honest Δ of H AdamW steps stays within H·lr.
	Clip float64 `json:"clip"`
}

// CohortThreshold is the threshold t of a cohort of n: more than two
// thirds of it must stay to the end (6 of 8).
func CohortThreshold(n int) int { return 2*n/3 + 1 }

// DefaultSecAgg is the secure aggregation of a run of config c: cohorts
// of at least 3, 16-bit values, each clipped to H·lr.
func (c RunConfig) DefaultSecAgg() *SecAgg {
	return &SecAgg{MinCohort: 3, Bits: 16, Clip: float64(c.InnerSteps) * max(c.InnerLR, c.InnerMinLR)}
}

// DP is a run's differential privacy: the clipping bound, the noise
// multiplier z, and the budget (ε at δ) the whole run must stay within,
// every contributor in every round (sampling rate 1) in the Rényi
// accountant of package dp.
type DP struct {
	Clip   float64 `json:"clip"`
	Noise  float64 `json:"noise"`
	Delta  float64 `json:"delta"`
	Budget float64 `json:"budget"`
}

// Spent is ε after rounds rounds.
func (d DP) Spent(rounds int) (float64, error) { return dp.Spent(d.Noise, 1, rounds, d.Delta) }

// Robust sets the screening thresholds and the robust aggregation rule of
// a run. A zero field takes verify's default (DefaultScreenOptions,
// DefaultAggregateOptions); a zero Robust is omitted from the config's
// JSON, so a run that keeps the defaults encodes as it did before the
// field existed.
type Robust struct {
	// ClipMultiple bounds each contribution's norm to this multiple of
	// the round's median norm (default 2).
	ClipMultiple float64 `json:"clip_multiple,omitempty"`
	// Trim is the fraction of contributions dropped at each end of every
	// coordinate (default 0.2; see verify.Trimmed); a negative value
	// drops none (the clipped weighted mean). With a sparse codec each
	// coordinate is averaged over the workers that sent it, untrimmed,
	// and a positive Trim is refused.
	Trim float64 `json:"trim,omitempty"`
	// Screening thresholds (see verify.ScreenOptions): norm ratios to the
	// median that flag a contribution (defaults 1.5 and 0.6), the unit of
	// held-out loss gains (0.01 nats), the drop in similarity that flags
	// (0.5) and the least median similarity the score applies to (0.05).
	MaxNormRatio   float64 `json:"max_norm_ratio,omitempty"`
	MinNormRatio   float64 `json:"min_norm_ratio,omitempty"`
	LossFloor      float64 `json:"loss_floor,omitempty"`
	SimilarityDrop float64 `json:"similarity_drop,omitempty"`
	MinSimilarity  float64 `json:"min_similarity,omitempty"`
}

// UpdateCodec is the codec of the published updates: DownCodec, or
// Codec when that is empty.
func (c RunConfig) UpdateCodec() compress.Codec {
	if c.DownCodec != "" {
		return c.DownCodec
	}
	return c.Codec
}

// AggregateOptions are the run's robust aggregation rule: Robust's
// fields with verify's defaults filled in.
func (c RunConfig) AggregateOptions() verify.AggregateOptions {
	o, r := verify.DefaultAggregateOptions(), c.Robust
	if r.ClipMultiple != 0 {
		o.ClipMultiple = r.ClipMultiple
	}
	switch {
	case r.Trim < 0:
		o.Trim = 0
	case r.Trim != 0: // NaN too, for Validate to refuse
		o.Trim = r.Trim
	}
	if _, _, _, sparse := c.Codec.Sparse(); sparse {
		// Each coordinate is averaged over the workers that sent it; a
		// trim given explicitly is kept for Validate to refuse.
		o.Sparse = true
		if r.Trim <= 0 {
			o.Trim = 0
		}
	}
	return o
}

// ScreenOptions are the run's screening thresholds: Robust's fields with
// verify's defaults filled in.
func (c RunConfig) ScreenOptions() verify.ScreenOptions {
	o, r := verify.DefaultScreenOptions(), c.Robust
	for _, f := range []struct {
		dst *float64
		v   float64
	}{
		{&o.MaxNormRatio, r.MaxNormRatio}, {&o.MinNormRatio, r.MinNormRatio}, {&o.LossFloor, r.LossFloor},
		{&o.SimilarityDrop, r.SimilarityDrop}, {&o.MinSimilarity, r.MinSimilarity},
	} {
		if f.v != 0 {
			*f.dst = f.v
		}
	}
	return o
}

// Duration is a time.Duration that encodes as a Go duration string.
type Duration time.Duration

// MarshalText encodes d as "1m30s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// DefaultConfig is the demo run: nanoGPT's small CPU model, 4 layers, width
// 128, block 64, batch 12 per worker, H = 50, int8 updates.
func DefaultConfig() RunConfig {
	return RunConfig{
		Model: gpt.DefaultConfig(128, 4, 4, 64), Batch: 12, InnerSteps: 50, Rounds: 10,
		InnerLR: 1e-3, InnerMinLR: 1e-4, Warmup: 100, Beta1: 0.9, Beta2: 0.99, Eps: 1e-8,
		WeightDecay: 0.1, GradClip: 1, OuterLR: 0.7, Momentum: 0.9, Codec: compress.Int8, Seed: 1337,
		RoundTimeout: Duration(2 * time.Minute), Quorum: 1,
	}
}

// SetTokenizer makes the run train on tok's token ids: it names tok in
// the config and sizes the model's vocabulary to it.
func (c *RunConfig) SetTokenizer(tok *tokenizer.Tokenizer) {
	c.Tok, c.Tokenizer, c.Model.VocabSize = tok, tok.ID(), tok.Vocab()
}

// Encode returns text as the run's token ids: the tokenizer's, or one per
// byte for a byte-level run.
func (c RunConfig) Encode(text []byte) []int32 {
	if c.Tok == nil {
		return corpus.Bytes(text)
	}
	return c.Tok.EncodeIDs(text)
}

// Validate reports the first problem with c, in one line.
func (c RunConfig) Validate() error {
	if err := c.Model.Validate(); err != nil {
		return err
	}
	switch {
	case c.Tokenizer == "" && c.Tok != nil:
		return errors.New("a tokenizer is set but the config does not name it (use SetTokenizer)")
	case c.Tokenizer != "" && c.Tok == nil:
		return fmt.Errorf("the run trains on the token ids of tokenizer %.16s…: this node has no tokenizer (give it the run's, --tokenizer)", c.Tokenizer)
	case c.Tokenizer != "" && c.Tok.ID() != c.Tokenizer:
		return fmt.Errorf("the run's tokenizer is %.16s…, this node's %.16s…: give it the run's", c.Tokenizer, c.Tok.ID())
	case c.Tok != nil && c.Tok.Vocab() != c.Model.VocabSize:
		return fmt.Errorf("the tokenizer has %d tokens, the model a vocabulary of %d", c.Tok.Vocab(), c.Model.VocabSize)
	}
	if err := canonical(c.Codec); err != nil {
		return err
	}
	if c.DownCodec != "" {
		if err := canonical(c.DownCodec); err != nil {
			return fmt.Errorf("update codec: %v", err)
		}
	}
	if _, _, _, sparse := c.Codec.Sparse(); c.FeedbackDecay != 0 && (!sparse || !(c.FeedbackDecay > 0 && c.FeedbackDecay <= 1)) {
		return fmt.Errorf("feedback decay %g: must be in (0, 1], with a sparse (topk) codec only", c.FeedbackDecay)
	}
	switch {
	case c.Batch < 1:
		return fmt.Errorf("batch must be positive, got %d", c.Batch)
	case c.InnerSteps < 1:
		return fmt.Errorf("inner steps (H) must be positive, got %d", c.InnerSteps)
	case c.Rounds < 1:
		return fmt.Errorf("rounds must be positive, got %d", c.Rounds)
	case c.OverlapSteps < 0 || c.OverlapSteps > c.InnerSteps:
		return fmt.Errorf("overlap steps must be between 0 and H=%d, got %d", c.InnerSteps, c.OverlapSteps)
	case !(c.InnerLR > 0) || c.InnerMinLR < 0:
		return fmt.Errorf("inner learning rates must be positive, got %g and %g", c.InnerLR, c.InnerMinLR)
	case !(c.OuterLR > 0) || c.Momentum < 0 || c.Momentum >= 1:
		return fmt.Errorf("outer lr must be positive and momentum in [0, 1), got %g and %g", c.OuterLR, c.Momentum)
	case c.Beta1 < 0 || c.Beta1 >= 1 || c.Beta2 < 0 || c.Beta2 >= 1:
		return fmt.Errorf("betas must be in [0, 1), got %g and %g", c.Beta1, c.Beta2)
	case c.RoundTimeout <= 0:
		return fmt.Errorf("round timeout must be positive")
	case c.Quorum < 1:
		return fmt.Errorf("quorum must be at least 1, got %d", c.Quorum)
	case c.InnerSteps > MaxInnerSteps || c.Rounds > MaxRounds || int64(c.Rounds)*int64(c.InnerSteps) > MaxRounds:
		return fmt.Errorf("inner steps (H) must be at most %d and rounds·H at most %d, got H=%d and %d rounds", MaxInnerSteps, MaxRounds, c.InnerSteps, c.Rounds)
	case c.Warmup < 0:
		return fmt.Errorf("warm-up steps must not be negative, got %d", c.Warmup)
	case c.Quorum > MaxQuorum:
		return fmt.Errorf("quorum must be at most %d, got %d", MaxQuorum, c.Quorum)
	}
	if err := c.AggregateOptions().Validate(); err != nil {
		return fmt.Errorf("robust aggregation: %v", err)
	}
	if d := c.DP; d != nil {
		if !(d.Clip > 0) || math.IsInf(d.Clip, 0) || !(d.Noise > 0) || math.IsInf(d.Noise, 0) || !(d.Delta > 0 && d.Delta < 1) || !(d.Budget > 0) {
			return fmt.Errorf("differential privacy: clip %g and noise multiplier %g must be positive, δ %g in (0, 1), the ε budget %g positive", d.Clip, d.Noise, d.Delta, d.Budget)
		}
		eps, err := d.Spent(c.Rounds)
		if err != nil {
			return fmt.Errorf("differential privacy: %v", err)
		}
		if eps > d.Budget {
			return fmt.Errorf("differential privacy: %d rounds at noise multiplier %g would spend ε %.3f (δ %g), past the run's budget of %g", c.Rounds, d.Noise, eps, d.Delta, d.Budget)
		}
	}
	if p := c.Private; p != nil && !(p.Tolerance >= 0 && p.Tolerance <= MaxPrivateTolerance) {
		return fmt.Errorf("private contributions: the held-out loss tolerance must be between 0 and %g nats, got %g", float64(MaxPrivateTolerance), p.Tolerance)
	}
	if p := c.Private; p != nil && p.SecAgg != nil {
		sa := p.SecAgg
		switch {
		case sa.MinCohort < 2 || sa.MinCohort > MaxCohort:
			return fmt.Errorf("secure aggregation: cohorts of at least %d private workers (2 to %d)", sa.MinCohort, MaxCohort)
		case sa.Bits < 8 || sa.Bits > 32:
			return fmt.Errorf("secure aggregation: values of %d bits (8 to 32)", sa.Bits)
		case !(sa.Clip > 0) || math.IsInf(sa.Clip, 0):
			return fmt.Errorf("secure aggregation: the clip on a value must be positive, got %g", sa.Clip)
		case c.Overlapped():
			return errors.New("secure aggregation with overlapped rounds is not supported yet")
		}
	}
	if err := c.ScreenOptions().Validate(); err != nil {
		return fmt.Errorf("screening: %v", err)
	}
	return c.Model.ValidateBatch(c.Batch)
}

// Same reports whether c and o configure the same run: equal fields,
// those behind pointers (DP, Private) compared by value; the local
// tokenizer (Tok) is not compared, its ID is.
func (c RunConfig) Same(o RunConfig) bool {
	c.Tok, o.Tok = nil, nil
	a, errA := json.Marshal(c)
	b, errB := json.Marshal(o)
	return errA == nil && errB == nil && bytes.Equal(a, b)
}

// Bounds of a run's configuration (which workers take from the network).
const (
	MaxInnerSteps = 1 << 20
	MaxRounds     = 1 << 30 // and rounds·H, the run's inner steps
	MaxQuorum     = 1 << 16
	// MaxPrivateTolerance bounds Private.Tolerance: a larger one fails
	// nothing.
	MaxPrivateTolerance = 10
	// MaxCohort bounds a secure-aggregation cohort (secagg.MaxParties).
	MaxCohort = 1024
)

// TokensPerRound is what one worker trains on in a round of H inner steps.
func (c RunConfig) TokensPerRound() int { return c.InnerSteps * c.TokensPerStep() }

// deltaMargin is how many times the most an AdamW step can move a weight
// (lr·|m̂|/(√v̂+ε)) the bound of MaxDelta allows. With bias correction, and
// β1² < β2 as in every usual setting, |m̂|/√v̂ stays below
// (1−β1)/√((1−β2)(1−β1²/β2)), about 2.4 for the default betas 0.9 and 0.99,
// and an honest step moves a weight by at most a few lr; 100 is a margin
// for unusual betas and for the int8 error feedback a worker adds (below
// 1/254 of a chunk's largest value).
const deltaMargin = 100

// MaxDelta bounds the magnitude of every value of an honest contribution
// Δ = θr − θlocal in a run whose global weights are at most thetaAbsMax in
// magnitude. H AdamW steps at a learning rate of at most lr (the larger of
// InnerLR and InnerMinLR) move a weight by at most H·lr·A through the
// gradient term (A = deltaMargin, see there) and by at most H·lr·wd·|θ|
// through decoupled weight decay, where |θ| stays below
// thetaAbsMax + H·lr·A during the round:
//
//	MaxDelta = H·lr·(A + wd·(thetaAbsMax + H·lr·A))
//
// For the default run (H = 50, lr = 1e-3, wd = 0.1, |θ| < 1) that is about
// 5, against honest contributions of a few hundredths at most. Anything
// larger is not an honest worker's, and the aggregator refuses it before
// it can move the weights far (or, at the int8 decoder's largest values,
// overflow them).
func (c RunConfig) MaxDelta(thetaAbsMax float32) float32 {
	lr := max(c.InnerLR, c.InnerMinLR)
	hl := float64(c.InnerSteps) * lr
	b := hl * (deltaMargin + c.WeightDecay*(float64(thetaAbsMax)+hl*deltaMargin))
	return float32(min(b, math.MaxFloat32))
}

// TokensPerStep is what one worker trains on in one inner step.
func (c RunConfig) TokensPerStep() int { return c.Batch * c.Model.BlockSize }

// InnerOptions are the hyperparameters of a worker's inner training, as
// one long run over the run's inner steps (round·H + step): the learning
// rate warms up, then decays by a cosine to InnerMinLR at the end.
func (c RunConfig) InnerOptions() train.Options {
	return train.Options{Model: c.Model, Batch: c.Batch, Steps: c.Rounds * c.InnerSteps,
		LR: c.InnerLR, MinLR: c.InnerMinLR, Warmup: c.Warmup, DecaySteps: c.Rounds * c.InnerSteps,
		Beta1: c.Beta1, Beta2: c.Beta2, Eps: c.Eps, WeightDecay: c.WeightDecay, GradClip: c.GradClip, Seed: c.Seed}
}

// Hash is a SHA-256 digest. It identifies the global weights of a round
// (HashWeights: SHA-256 of the round number and the weights' float32 bits,
// little-endian) and a worker's local state (LocalState.Hash).
type Hash [32]byte

// String is the hash in hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// ParseHash reads a hash in hex.
func ParseHash(s string) (Hash, error) {
	var h Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("bad weights hash %q", s)
	}
	copy(h[:], b)
	return h, nil
}

// HashWeights hashes the weights of a round.
func HashWeights(round int, theta []float32) Hash {
	d := sha256.New()
	var b [4096]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(round))
	d.Write(b[:8])
	for len(theta) > 0 {
		n := min(len(theta), len(b)/4)
		for i, v := range theta[:n] {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		d.Write(b[:4*n])
		theta = theta[n:]
	}
	var h Hash
	d.Sum(h[:0])
	return h
}

// Stream maps a worker id to the data stream its batches are drawn from.
// With the run seed, round and step it fixes every batch a worker trains
// on, so anyone can recompute which bytes a contribution saw.
func Stream(workerID string) uint64 {
	s := sha256.Sum256([]byte("cairn/diloco/stream/" + workerID))
	return binary.LittleEndian.Uint64(s[:8])
}

// GlobalStep is the index of an inner step within the run, which keys both
// the data and the inner learning rate.
func (c RunConfig) GlobalStep(round, step int) int { return round*c.InnerSteps + step }

// MaskSeed is the seed of round's random mask: with a random-mask codec
// (compress.Codec.Masked) every worker's contribution and the round's
// update send the same positions, drawn from this seed, so the update
// has no more entries than one contribution and no indices are sent. It
// depends only on the run seed and the round.
func (c RunConfig) MaskSeed(round int) uint64 {
	z := c.Seed ^ 0x6d61736b5f736565 // "mask_see"
	z += uint64(round) * 0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// Overlapped says whether workers overlap communication with compute
// (OverlapSteps > 0); their local state then carries their last
// contribution (LocalState.Ahead).
func (c RunConfig) Overlapped() bool { return c.OverlapSteps > 0 }

// canonical checks that c names a codec as ParseCodec writes it: workers
// compare payload codecs with the run's as strings.
func canonical(c compress.Codec) error {
	cd, err := compress.ParseCodec(string(c))
	if err != nil {
		return err
	}
	if cd != c {
		return fmt.Errorf("codec %q is not written canonically: %q", c, cd)
	}
	return nil
}

// Assignment is the data worker trains on in round of a byte-level run
// whose training data (the first 90% of the run's text) is trainBytes long:
// for each of steps inner steps, the start offsets of its batch's
// windows, each Model.BlockSize+1 bytes long (the worker's sampler's,
// exactly). A run on a tokenizer's ids is an error: its offsets are in
// tokens, not in the text's bytes.
func Assignment(c RunConfig, trainBytes int, worker string, round, steps int) ([][]int, error) {
	if c.Tokenizer != "" {
		return nil, errors.New("the run trains on a tokenizer's ids: its windows are not byte offsets")
	}
	s, err := corpus.NewTokenSampler(make([]int32, trainBytes), c.Batch, c.Model.BlockSize, c.InnerOptions().Seed)
	if err != nil {
		return nil, err
	}
	n := c.Batch * c.Model.BlockSize
	in, tg := make([]int32, n), make([]int32, n)
	out := make([][]int, steps)
	for i := range out {
		out[i] = append([]int(nil), s.Batch(Stream(worker), uint64(c.GlobalStep(round, i)), in, tg)...)
	}
	return out, nil
}
