package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"time"

	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/safetensors"
)

func loadOrCreate(path string, cfg diloco.RunConfig, init []float32) (*diloco.Aggregator, bool, error) {
	f, err := safetensors.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		a, err := diloco.NewAggregatorFrom(cfg, init)
		return a, false, err
	}
	if err != nil {
		return nil, false, err
	}
	s, err := decodeSnapshot(f)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %v", path, err)
	}
	a, err := diloco.Restore(s)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %v", path, err)
	}
	return a, true, nil
}

// persist saves a closed round's state, retrying with backoff, and then
// publishes the round: no worker hears of a round before it is durable.
// If the disk keeps failing, the round is never published and the node
// stops with the error.
func (a *Aggregator) persist(st *savedState, info RoundInfo) {
	defer a.saving.Done()
	backoff := a.saveBackoff
	for attempt := 1; ; attempt++ {
		start := time.Now()
		err := a.saveState(st)
		if err == nil {
			a.log.Debug("state saved", "round", info.Round+1, "took", time.Since(start))
			break
		}
		if attempt >= a.saveAttempts {
			a.mu.Lock()
			a.fatal = fmt.Errorf("saving the state of round %d to %s failed %d times, the last: %v; the round was not published",
				info.Round+1, a.statePath, attempt, err)
			close(a.failed)
			a.mu.Unlock()
			a.log.Error("cannot save the run's state; stopping", "err", a.fatal)
			return
		}
		a.log.Error("saving state failed; retrying", "round", info.Round+1, "attempt", attempt, "in", backoff, "err", err)
		select {
		case <-a.closing:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	ev := a.agg.Publish(time.Now())
	if ev.Opened {
		a.log.Info("round open", "round", a.agg.Round(), "participants", a.agg.NumActive(), "deadline", a.agg.Deadline().Format(time.TimeOnly))
	}
	if !a.evalsClosed {
		a.evals <- evalJob{info: info, theta: append([]float32(nil), a.agg.Weights()...)}
	}
	close(a.changed)
	a.changed = make(chan struct{})
}

// awaitPublished holds a request while a closed round is being saved;
// with a.mu held on entry and on a nil return. It refuses when the node
// cannot save its state or the wait is too long.
func (a *Aggregator) awaitPublished() error {
	timeout := time.NewTimer(controlTimeout - 5*time.Second)
	defer timeout.Stop()
	for a.agg.Phase() == diloco.Unpublished {
		if a.fatal != nil {
			a.mu.Unlock()
			return refuse("the aggregator cannot save its state")
		}
		changed := a.changed
		a.mu.Unlock()
		select {
		case <-changed:
		case <-a.failed:
		case <-timeout.C:
			return refuse("the aggregator is still saving the last round; try again")
		}
		a.mu.Lock()
	}
	return nil
}

// savedState is a copy of the durable state, ready to write.
type savedState struct {
	tensors map[string]safetensors.Tensor
	meta    map[string]string
}

// stateLocked copies the durable state (the tensors copy their data).
func (a *Aggregator) stateLocked() *savedState {
	s := a.agg.Snapshot()
	tensors := map[string]safetensors.Tensor{
		"theta":    safetensors.NewF32([]int{len(s.Theta)}, s.Theta),
		"momentum": safetensors.NewF32([]int{len(s.Momentum)}, s.Momentum),
	}
	if s.Residual != nil {
		tensors["residual"] = safetensors.NewF32([]int{len(s.Residual)}, s.Residual)
	}
	if s.LastUpdate != nil {
		tensors["last_update"] = safetensors.Tensor{DType: safetensors.U8, Shape: []int{len(s.LastUpdate)}, Data: s.LastUpdate}
	}
	cfg, _ := json.Marshal(s.Cfg) // a validated config always encodes
	md := map[string]string{"config": string(cfg), "round": strconv.Itoa(s.Round), "prev_hash": s.PrevHash.String()}
	if len(s.Seen) > 0 {
		seen, _ := json.Marshal(s.Seen) // digests, ids and rounds always encode
		md["seen_payloads"] = string(seen)
	}
	return &savedState{tensors: tensors, meta: md}
}

// save writes a state atomically (temp file, fsync, rename).
func (a *Aggregator) save(s *savedState) error {
	if err := os.MkdirAll(a.opts.DataDir, 0o755); err != nil {
		return err
	}
	return safetensors.WriteFile(a.statePath, s.tensors, s.meta)
}

func decodeSnapshot(f *safetensors.File) (diloco.Snapshot, error) {
	var s diloco.Snapshot
	if err := json.Unmarshal([]byte(f.Metadata["config"]), &s.Cfg); err != nil {
		return s, fmt.Errorf("run config: %v", err)
	}
	r, err := strconv.Atoi(f.Metadata["round"])
	if err != nil {
		return s, fmt.Errorf("round %q is not a number", f.Metadata["round"])
	}
	s.Round = r
	if s.PrevHash, err = diloco.ParseHash(f.Metadata["prev_hash"]); err != nil {
		return s, err
	}
	// The payloads of the last rounds, for screening (a state saved before
	// they were kept has none; diloco.Restore checks them).
	if seen, ok := f.Metadata["seen_payloads"]; ok {
		if err := json.Unmarshal([]byte(seen), &s.Seen); err != nil {
			return s, fmt.Errorf("seen payloads: %v", err)
		}
	}
	get := func(name string, required bool) ([]float32, error) {
		t, ok := f.Tensors[name]
		if !ok {
			if required {
				return nil, fmt.Errorf("missing tensor %q", name)
			}
			return nil, nil
		}
		return t.Float32s()
	}
	if s.Theta, err = get("theta", true); err != nil {
		return s, err
	}
	if s.Momentum, err = get("momentum", true); err != nil {
		return s, err
	}
	if s.Residual, err = get("residual", false); err != nil {
		return s, err
	}
	if t, ok := f.Tensors["last_update"]; ok {
		if t.DType != safetensors.U8 {
			return s, fmt.Errorf("last_update is %s, want U8", t.DType)
		}
		s.LastUpdate = t.Data
	}
	return s, nil
}
