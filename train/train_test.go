package train

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/checkpoint"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
)

func smallOptions() Options {
	o := NanoGPTCPU()
	o.Model = gpt.DefaultConfig(32, 2, 2, 16)
	o.Batch, o.Steps, o.Warmup, o.DecaySteps = 4, 8, 2, 8
	o.EvalBatches = 2
	return o
}

func data() (train, val []byte) {
	return corpus.Split(corpus.TinyShakespeare()[:200000], 0.9)
}

func run(t *testing.T, tr *Trainer, steps int) []float32 {
	t.Helper()
	var losses []float32
	for i := 0; i < steps; i++ {
		r, err := tr.TrainStep()
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, r.Loss)
	}
	return losses
}

// TestResumeIsBitwise: training 8 steps straight and training 4, saving,
// resuming in a new process-like state and training 4 more give bitwise the
// same losses and weights.
func TestResumeIsBitwise(t *testing.T) {
	trainData, valData := data()
	pool := kernels.NewPool(2)
	defer pool.Close()
	o := smallOptions()

	straight, err := New(o, trainData, valData, pool)
	if err != nil {
		t.Fatal(err)
	}
	want := run(t, straight, 8)

	first, err := New(o, trainData, valData, pool)
	if err != nil {
		t.Fatal(err)
	}
	got := run(t, first, 4)
	dir := t.TempDir()
	if err := first.Save(dir); err != nil {
		t.Fatal(err)
	}
	resumed, err := Resume(dir, trainData, valData, 0, pool)
	if err != nil {
		t.Fatal(err)
	}
	if resumed.Step != 4 || resumed.Opt.Step != 4 {
		t.Fatalf("resumed at step %d (optimizer %d), want 4", resumed.Step, resumed.Opt.Step)
	}
	got = append(got, run(t, resumed, 4)...)
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("step %d: resumed loss %v, uninterrupted %v", i, got[i], want[i])
		}
	}
	for i := range straight.Model.Params {
		if math.Float32bits(straight.Model.Params[i]) != math.Float32bits(resumed.Model.Params[i]) {
			t.Fatalf("param %d differs after resume", i)
		}
	}
	if want[7] >= want[0] {
		t.Fatalf("loss did not fall: %v", want)
	}
}

func TestResumeDetectsTornCheckpoint(t *testing.T) {
	trainData, valData := data()
	pool := kernels.NewPool(1)
	defer pool.Close()
	tr, err := New(smallOptions(), trainData, valData, pool)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := tr.Save(dir); err != nil {
		t.Fatal(err)
	}
	run(t, tr, 1)
	// a crash between the two writes leaves the new optimizer with the old model
	mpath, _ := checkpoint.Paths(dir)
	old, _ := os.ReadFile(mpath)
	if err := tr.Save(dir); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(mpath, old, 0o644)
	if _, err := Resume(dir, trainData, valData, 0, pool); err == nil || !strings.Contains(err.Error(), "torn") {
		t.Fatalf("torn checkpoint: error %v", err)
	}
	// a truncated model file names the file
	os.WriteFile(mpath, old[:100], 0o644)
	if _, err := Resume(dir, trainData, valData, 0, pool); err == nil || !strings.Contains(err.Error(), mpath) {
		t.Fatalf("truncated checkpoint: error %v", err)
	}
	if _, err := Resume(filepath.Join(dir, "nope"), trainData, valData, 0, pool); err == nil {
		t.Fatal("resumed from a missing directory")
	}
}

func TestNewRejectsShortData(t *testing.T) {
	pool := kernels.NewPool(1)
	defer pool.Close()
	o := smallOptions()
	if _, err := New(o, []byte("too short"), []byte(strings.Repeat("x", 100)), pool); err == nil || !strings.Contains(err.Error(), "shorter than the context") {
		t.Fatalf("short training data: %v", err)
	}
	if _, err := New(o, []byte(strings.Repeat("x", 100)), []byte("short"), pool); err == nil || !strings.Contains(err.Error(), "validation data") {
		t.Fatalf("short validation data: %v", err)
	}
	o.Model.NHead = 3
	if _, err := New(o, nil, nil, pool); err == nil || !strings.Contains(err.Error(), "divisible") {
		t.Fatalf("bad heads: %v", err)
	}
}

func TestEvaluateIsDeterministic(t *testing.T) {
	trainData, valData := data()
	pool := kernels.NewPool(2)
	defer pool.Close()
	tr, err := New(smallOptions(), trainData, valData, pool)
	if err != nil {
		t.Fatal(err)
	}
	a, err := tr.Evaluate()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := tr.Evaluate()
	if a != b || math.Abs(a-math.Log(256)) > 0.2 {
		t.Fatalf("untrained val loss %v then %v, want both ≈ ln 256", a, b)
	}
}

// TestTrainingIsDeterministicAcrossThreads: whole training steps (forward,
// backward, clipping, AdamW) give bitwise the same weights on 1 and 3
// threads.
func TestTrainingIsDeterministicAcrossThreads(t *testing.T) {
	trainData, valData := data()
	var ref []float32
	for _, threads := range []int{1, 3} {
		pool := kernels.NewPool(threads)
		tr, err := New(smallOptions(), trainData, valData, pool)
		if err != nil {
			t.Fatal(err)
		}
		run(t, tr, 3)
		pool.Close()
		if ref == nil {
			ref = tr.Model.Params
			continue
		}
		for i, v := range tr.Model.Params {
			if math.Float32bits(v) != math.Float32bits(ref[i]) {
				t.Fatalf("%d threads: param %d = %v, 1 thread %v", threads, i, v, ref[i])
			}
		}
	}
}

// TestTrainStepDoesNotAllocate: the steady-state step (sampling, forward,
// backward, clipping, AdamW) allocates nothing.
func TestTrainStepDoesNotAllocate(t *testing.T) {
	trainData, valData := data()
	pool := kernels.NewPool(2)
	defer pool.Close()
	o := smallOptions()
	o.Steps = 100
	tr, err := New(o, trainData, valData, pool)
	if err != nil {
		t.Fatal(err)
	}
	run(t, tr, 1)
	allocs := testing.AllocsPerRun(5, func() {
		if _, err := tr.TrainStep(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("a training step allocated %v times", allocs)
	}
}
