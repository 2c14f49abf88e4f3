package experiment

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/synth"
	"github.com/cairnlabs/cairn/train"
)

// SyntheticOptions set 'cairn experiment synthetic': a model trained on a
// little seed data improves itself on Countdown problems by generating
// solutions, keeping those the verifier accepts and training on them,
// once with tree search and once with best-of-n sampling at the same
// generation compute.
type SyntheticOptions struct {
	Model      gpt.Config
	Difficulty synth.Difficulty
	Seed       uint64
	// SeedProblems are solved by the generator (the seed data);
	// SeedSteps train the seed model on them from scratch.
	SeedProblems, SeedSteps int
	// Iterations of generate, filter, train; each on Problems new
	// problems, with Budget model rows a problem, then TuneSteps of
	// fine-tuning on every verified solution so far (repeated to weigh at
	// least half as much as the seed data) and the seed data.
	Iterations, Problems, Budget, TuneSteps int
	Expand                                  int     // samples a call of the policy (an expansion, a batch)
	LR                                      float64 // peak of the seed training
	TuneLR                                  float64 // of the fine-tuning
	// TuneDecay makes each iteration's fine-tuning decay its learning
	// rate from TuneLR to a tenth of it (cosine), so that the model
	// evaluated is a settled one rather than a point of a constant-rate
	// walk.
	TuneDecay   bool
	Batch       int
	Temperature float64 // of the policy's sampling
	// Format is how solutions are written, in the seed data, the verified
	// data and the tree search's prefixes (synth.Plain when zero).
	Format synth.Format
	// Legal makes the tree search expand over every legal step, the
	// model's probabilities of writing them its priors
	// (synth.SearchOptions.Legal), in place of the steps its samples
	// begin with.
	Legal bool
	// UniformPriors gives every legal step the same prior (synth.Uniform,
	// charged as the model's scoring would be): an ablation of what the
	// model adds to the tree search over legal steps.
	UniformPriors bool
	Test          int // held-out problems, solved greedily
	// FinalTest more held-out problems (0: none) on which the seed model
	// and both arms' last models are compared at the end, problem by
	// problem, so that the difference between the arms is measured with
	// a paired standard error rather than read off two noisy rates.
	FinalTest int
	// Arms are the arms to run, ArmSearch and ArmSampled (nil: both).
	// One arm alone takes half the time, for sweeping a setting; the
	// arms are then not compared.
	Arms []string
	Pool *kernels.Pool
	Log  func(format string, args ...any)
}

// DefaultSyntheticOptions is the experiment's default run: the demo's
// width-128 model with a 128-byte context, four numbers up to 10, 24
// iterations of 400 problems, each with 600 fine-tuning steps decaying
// from 6e-4, the tree search over legal steps, 200 problems held out and
// 1,000 more for the final comparison: 49 minutes on two cores
// (2026-12-03).
func DefaultSyntheticOptions() SyntheticOptions {
	return SyntheticOptions{Model: gpt.DefaultConfig(128, 4, 4, 128), Difficulty: synth.Difficulty{Numbers: 4, Max: 10}, Seed: 1,
		SeedProblems: 3000, SeedSteps: 2000, Iterations: 24, Problems: 400, Budget: 2000, TuneSteps: 600, Expand: 8,
		LR: 1e-3, TuneLR: 6e-4, TuneDecay: true, Legal: true, Batch: 16, Temperature: 1, Test: 200, FinalTest: 1000}
}

// The arms of the experiment.
const (
	ArmSearch  = "search"  // tree search
	ArmSampled = "sampled" // best-of-n sampling
)

// SyntheticArm is one arm's iteration.
type SyntheticArm struct {
	Iteration int
	Solved    int     // problems of the iteration with a verified solution
	Rows      int64   // model rows spent generating
	SolveRate float64 // held-out, after training: greedy
	PassAt8   float64 // held-out, after training: any of 8 samples verifies
	Took      time.Duration
}

// SyntheticReport is the experiment's outcome: the seed model's held-out
// solve rate and each arm's curve.
type SyntheticReport struct {
	SeedRate, SeedPassAt8 float64
	Search, Sampled       []SyntheticArm
	// Final is the comparison on the final test (nil without one). An arm
	// not run has an empty curve.
	Final *SyntheticFinal
	// Models are the seed model and the tree search's and best-of-n's
	// last models (nil for an arm not run), to be saved or examined.
	Models [3]*gpt.Model
}

// SyntheticFinal compares the seed model and the arms' last models on
// the same held-out problems.
type SyntheticFinal struct {
	Problems int
	// Greedy and PassAt8 are the problems each model solves: the seed
	// model, the tree search's and best-of-n's (-1 for an arm not run).
	Greedy, PassAt8 [3]int
	// Greedy and pass@8 problems solved by the tree search's model and
	// not best-of-n's, and the other way round (0 unless both ran).
	GreedyOnlySearch, GreedyOnlySampled, PassOnlySearch, PassOnlySampled int
	// GreedyFaults counts each model's greedy failures by the verifier's
	// fault (indexed by synth.Fault; zero for an arm not run).
	GreedyFaults [3][synth.WrongTarget + 1]int
	// GreedyDeadEnds counts the greedy failures, of any fault, whose
	// valid steps had left the target out of reach (synth.DeadEnd): a
	// wrong plan, where the others slipped with a solution still possible.
	GreedyDeadEnds [3]int
}

// PairedDifference is the difference in solve rate between two models
// measured on the same n problems, onlyA of which only the first solves
// and onlyB only the second, with its standard error (of the mean of the
// per-problem differences, each -1, 0 or 1).
func PairedDifference(onlyA, onlyB, n int) (diff, se float64) {
	if n <= 0 {
		return 0, 0
	}
	N := float64(n)
	diff = float64(onlyA-onlyB) / N
	v := float64(onlyA+onlyB)/N - diff*diff
	return diff, math.Sqrt(max(v, 0) / N)
}

// Streams of problems: seed data, held-out test, each iteration's.
const (
	streamSeed = 1 + iota
	streamTest
	streamGen
	streamFinal
)

// Synthetic runs the experiment.
func Synthetic(o SyntheticOptions) (*SyntheticReport, error) {
	if err := o.Difficulty.Validate(); err != nil {
		return nil, err
	}
	if o.SeedProblems < 1 || o.SeedSteps < 1 || o.Iterations < 1 || o.Problems < 1 || o.Budget < 1 || o.TuneSteps < 1 || o.Expand < 1 || o.Test < 1 || o.FinalTest < 0 || !(o.LR > 0) || !(o.TuneLR > 0) || o.Batch < 1 || o.Temperature < 0 {
		return nil, errors.New("synthetic: every count and the learning rate must be positive")
	}
	if o.UniformPriors && !o.Legal {
		return nil, errors.New("synthetic: uniform priors are for the tree search over legal steps")
	}
	arms, err := o.arms()
	if err != nil {
		return nil, err
	}
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	problem := o.problem
	test := make([]synth.Problem, o.Test)
	for i := range test {
		test[i], _ = problem(streamTest, i)
	}
	var seedText strings.Builder
	for i := range o.SeedProblems {
		p, s := problem(streamSeed, i)
		seedText.WriteString(p.Prompt() + o.Format.Solution(p, s))
	}
	to := train.Options{Model: o.Model, Batch: o.Batch, Steps: o.SeedSteps, LR: o.LR, MinLR: o.LR / 10, Warmup: min(100, o.SeedSteps/10),
		DecaySteps: o.SeedSteps, Beta1: 0.9, Beta2: 0.99, Eps: 1e-8, WeightDecay: 0.1, GradClip: 1, Seed: o.Seed}
	seedData := []byte(seedText.String())
	for len(seedData) < 2*(o.Model.BlockSize+1) {
		seedData = append(seedData, seedData...)
	}
	t, err := train.New(to, seedData, nil, o.Pool)
	if err != nil {
		return nil, err
	}
	logf("seed model: %d problems with the generator's solutions (%d bytes), %d steps", o.SeedProblems, len(seedText.String()), o.SeedSteps)
	for range o.SeedSteps {
		if _, err := t.TrainStep(); err != nil {
			return nil, err
		}
	}
	rep := &SyntheticReport{}
	if rep.SeedRate, err = SolveRate(t.Model, test); err != nil {
		return nil, err
	}
	if rep.SeedPassAt8, err = PassAtK(t.Model, test, 8, o.Seed); err != nil {
		return nil, err
	}
	logf("seed model: held-out solve rate %.1f%% greedy, %.1f%% with 8 samples (%d problems)", 100*rep.SeedRate, 100*rep.SeedPassAt8, len(test))
	seedWeights := append([]float32(nil), t.Model.Params...)

	final := &rep.Models
	final[0] = t.Model
	for a, arm := range []string{ArmSearch, ArmSampled} {
		if !arms[arm] {
			continue
		}
		m, err := gpt.New(o.Model, o.Pool)
		if err != nil {
			return nil, err
		}
		final[a+1] = m
		copy(m.Params, seedWeights)
		pol := synth.NewModelPolicy(m, o.Temperature, o.Seed)
		var searchPol synth.Policy = pol
		if o.UniformPriors {
			searchPol = synth.Uniform{Policy: pol}
		}
		generated := ""
		for it := 1; it <= o.Iterations; it++ {
			start := time.Now()
			res := SyntheticArm{Iteration: it}
			var gen strings.Builder
			for j := range o.Problems {
				p, _ := problem(streamGen, (it-1)*o.Problems+j)
				pol.Reseed(o.Seed, uint64(it), uint64(j))
				var r synth.SearchResult
				if arm == ArmSearch {
					r, err = synth.MCTS(p, searchPol, synth.SearchOptions{Budget: o.Budget, Expand: o.Expand, Format: o.Format, Legal: o.Legal})
				} else {
					r, err = synth.BestOfN(p, pol, synth.SearchOptions{Budget: o.Budget, Expand: o.Expand, Format: o.Format})
				}
				if err != nil {
					return nil, err
				}
				res.Rows += int64(r.Cost)
				if r.Steps != nil {
					if err := synth.Check(p, r.Steps); err != nil { // never: both searches verify
						return nil, fmt.Errorf("synthetic: a search returned a wrong solution: %v", err)
					}
					res.Solved++
					gen.WriteString(p.Prompt() + o.Format.Solution(p, r.Steps))
				}
			}
			generated += gen.String()
			// The verified solutions so far, repeated to weigh at least half
			// as much as the seed data, and the seed data.
			data := generated
			for len(data) > 0 && 2*len(data) < len(seedText.String()) {
				data += generated
			}
			data += seedText.String()
			tr, err := newPlainTrainer(m, corpus.Bytes([]byte(data)), o.Batch, o.Model.BlockSize)
			if err != nil {
				return nil, err
			}
			for s := 1; s <= o.TuneSteps; s++ {
				lr := o.TuneLR
				if o.TuneDecay && o.TuneSteps > 1 {
					lr = o.TuneLR * (0.1 + 0.45*(1+math.Cos(math.Pi*float64(s-1)/float64(o.TuneSteps-1))))
				}
				if err := tr.step(uint64(it)<<32|uint64(s), lr); err != nil {
					return nil, err
				}
			}
			if res.SolveRate, err = SolveRate(m, test); err != nil {
				return nil, err
			}
			if res.PassAt8, err = PassAtK(m, test, 8, o.Seed); err != nil {
				return nil, err
			}
			res.Took = time.Since(start)
			logf("%s, iteration %d: solved %d/%d new problems in %d model rows; held-out solve rate %.1f%% greedy, %.1f%% with 8 samples (%s)",
				arm, it, res.Solved, o.Problems, res.Rows, 100*res.SolveRate, 100*res.PassAt8, res.Took.Round(time.Second))
			if arm == ArmSearch {
				rep.Search = append(rep.Search, res)
			} else {
				rep.Sampled = append(rep.Sampled, res)
			}
		}
	}
	if o.FinalTest > 0 {
		if rep.Final, err = SyntheticCompare(o, *final); err != nil {
			return nil, err
		}
		f := rep.Final
		for i, name := range []string{"seed model", "tree search", "best-of-n"} {
			if final[i] != nil {
				logf("final test (%d problems), %s: %d solved greedily, %d at pass@8", f.Problems, name, f.Greedy[i], f.PassAt8[i])
			}
		}
	}
	return rep, nil
}

// arms is the set of arms o runs; it fails on an unknown or repeated arm.
func (o SyntheticOptions) arms() (map[string]bool, error) {
	if o.Arms == nil {
		return map[string]bool{ArmSearch: true, ArmSampled: true}, nil
	}
	if len(o.Arms) == 0 {
		return nil, errors.New("synthetic: no arm to run")
	}
	set := map[string]bool{}
	for _, a := range o.Arms {
		if a != ArmSearch && a != ArmSampled {
			return nil, fmt.Errorf("synthetic: unknown arm %q (want %q or %q)", a, ArmSearch, ArmSampled)
		}
		if set[a] {
			return nil, fmt.Errorf("synthetic: arm %q given twice", a)
		}
		set[a] = true
	}
	return set, nil
}

// SyntheticCompare runs the final test of o (o.FinalTest problems of
// o.Seed at o.Difficulty) on models (the seed model and the tree search's
// and best-of-n's last, nil for an arm not run), as Synthetic does at its
// end: the arms can be run apart, in parallel, and compared after. It
// fails on a final test of no problems, on no seed model, or on a model
// that fails to generate.
func SyntheticCompare(o SyntheticOptions, models [3]*gpt.Model) (*SyntheticFinal, error) {
	if err := o.Difficulty.Validate(); err != nil {
		return nil, err
	}
	if o.FinalTest < 1 || models[0] == nil {
		return nil, errors.New("synthetic: a comparison needs a final test and the seed model")
	}
	probs := make([]synth.Problem, o.FinalTest)
	for i := range probs {
		probs[i], _ = o.problem(streamFinal, i)
	}
	return compareFinal(models, probs, o.Seed)
}

// problem is problem i of one of o's streams, with the generator's
// solution; o.Difficulty must be valid.
func (o SyntheticOptions) problem(stream uint64, i int) (synth.Problem, []synth.Step) {
	p, s, _ := synth.Generate(o.Seed<<8|stream, i, o.Difficulty)
	return p, s
}

// compareFinal solves problems with each model, greedily and with 8
// samples, and counts the problems only one of the arms' models solves.
// A nil model (an arm not run) solves -1 and is not compared.
func compareFinal(models [3]*gpt.Model, problems []synth.Problem, seed uint64) (*SyntheticFinal, error) {
	f := &SyntheticFinal{Problems: len(problems)}
	var greedy, pass [3][]bool
	for i, m := range models {
		if m == nil {
			f.Greedy[i], f.PassAt8[i] = -1, -1
			continue
		}
		var err error
		if greedy[i], f.GreedyFaults[i], f.GreedyDeadEnds[i], err = greedyFaults(m, problems); err != nil {
			return nil, err
		}
		if pass[i], err = solvedPassAtK(m, problems, 8, seed); err != nil {
			return nil, err
		}
		f.Greedy[i], f.PassAt8[i] = count(greedy[i]), count(pass[i])
	}
	if models[1] == nil || models[2] == nil {
		return f, nil
	}
	for j := range problems {
		f.GreedyOnlySearch += b2i(greedy[1][j] && !greedy[2][j])
		f.GreedyOnlySampled += b2i(greedy[2][j] && !greedy[1][j])
		f.PassOnlySearch += b2i(pass[1][j] && !pass[2][j])
		f.PassOnlySampled += b2i(pass[2][j] && !pass[1][j])
	}
	return f, nil
}

func count(v []bool) int {
	n := 0
	for _, b := range v {
		n += b2i(b)
	}
	return n
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// PassAtK is the share of problems for which any of k samples of m (at
// temperature 1, drawn from seed) verifies.
func PassAtK(m *gpt.Model, problems []synth.Problem, k int, seed uint64) (float64, error) {
	s, err := solvedPassAtK(m, problems, k, seed)
	return rate(s), err
}

func rate(solved []bool) float64 {
	if len(solved) == 0 {
		return 0
	}
	return float64(count(solved)) / float64(len(solved))
}

// solvedPassAtK says for each problem whether any of k samples verifies.
func solvedPassAtK(m *gpt.Model, problems []synth.Problem, k int, seed uint64) ([]bool, error) {
	pol := synth.NewModelPolicy(m, 1, seed)
	solved := make([]bool, len(problems))
	for i, p := range problems {
		pol.Reseed(seed, 0xe7a1, uint64(i))
		texts, _, err := pol.Complete(p.Prompt(), k)
		if err != nil {
			return nil, err
		}
		for _, t := range texts {
			if _, err := synth.Verify(p, t); err == nil {
				solved[i] = true
				break
			}
		}
	}
	return solved, nil
}

// SolveRate is the share of problems m solves greedily: the prompt, then
// the most likely byte until a newline, verified.
func SolveRate(m *gpt.Model, problems []synth.Problem) (float64, error) {
	s, err := solvedGreedy(m, problems)
	return rate(s), err
}

// solvedGreedy says for each problem whether m solves it greedily.
func solvedGreedy(m *gpt.Model, problems []synth.Problem) ([]bool, error) {
	solved, _, _, err := greedyFaults(m, problems)
	return solved, err
}

// greedyFaults says for each problem whether m solves it greedily, and
// counts the failures by the verifier's fault, and those that had written
// themselves into a dead end.
func greedyFaults(m *gpt.Model, problems []synth.Problem) ([]bool, [synth.WrongTarget + 1]int, int, error) {
	var faults [synth.WrongTarget + 1]int
	deadEnds := 0
	g := m.NewGenerator()
	solved := make([]bool, len(problems))
	for i, p := range problems {
		text, _, err := synth.CompleteText(g, p.Prompt(), gpt.Sampling{}, nil, m.Config.BlockSize)
		if err != nil {
			return nil, faults, 0, err
		}
		_, err = synth.Verify(p, text)
		var rej *synth.Rejection
		switch {
		case err == nil:
			solved[i] = true
			continue
		case errors.As(err, &rej) && rej.Fault >= synth.Malformed && rej.Fault <= synth.WrongTarget:
			faults[rej.Fault]++
		default:
			return nil, faults, 0, fmt.Errorf("synthetic: verifying a greedy answer: %v", err)
		}
		if steps, rej := synth.ParseSteps(text); rej == nil && synth.DeadEnd(p, steps) >= 0 {
			deadEnds++
		}
	}
	return solved, faults, deadEnds, nil
}
