package node

import (
	"crypto/rand"
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

// loadOrCreate resumes the run saved at path, with the ledger result of
// its last closed round if the state holds one, or starts a new run.
func loadOrCreate(path string, cfg diloco.RunConfig, init []float32) (*diloco.Aggregator, bool, *savedResult, error) {
	f, err := safetensors.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		a, err := diloco.NewAggregatorFrom(cfg, init)
		if err == nil {
			err = noiseSeed(a)
		}
		return a, false, nil, err
	}
	if err != nil {
		return nil, false, nil, err
	}
	s, err := decodeSnapshot(f)
	if err != nil {
		return nil, false, nil, fmt.Errorf("%s: %v", path, err)
	}
	// The saved config names its tokenizer; the node holds it.
	if s.Cfg.Tokenizer != "" {
		s.Cfg.Tok = cfg.Tok
	}
	a, err := diloco.Restore(s)
	if err != nil {
		return nil, false, nil, fmt.Errorf("%s: %v", path, err)
	}
	if err := noiseSeed(a); err != nil {
		return nil, false, nil, err
	}
	var saved *savedResult
	if m, ok := f.Metadata[ledgerResultKey]; ok {
		if saved, err = decodeSavedResult([]byte(m)); err != nil {
			return nil, false, nil, fmt.Errorf("%s: %v", path, err)
		}
	}
	return a, true, saved, nil
}

// noiseSeed gives a run with differential privacy a fresh secret seed for
// its noise (never saved: a restarted aggregator draws a new one, and the
// rounds it publishes draw noise from it).
func noiseSeed(a *diloco.Aggregator) error {
	if a.Cfg.DP == nil {
		return nil
	}
	if _, err := rand.Read(a.NoiseSeed[:]); err != nil {
		return fmt.Errorf("drawing the noise seed: %v", err)
	}
	return nil
}

// ledgerResultKey is the state's metadata entry with the ledger result of
// the round that made it (savedResult's JSON).
const ledgerResultKey = "ledger_result"

// persist saves a closed round's state, retrying with backoff, records
// the round's result on the ledger in a block of its own (retrying too),
// settles what the Settler is ready to settle, and then publishes the
// round: no worker hears of a round before it is durable, and the
// ledger's open round is the run's whenever a round is open. The saved
// state holds the round's result, so an aggregator that stops between
// the save and the result's block records it when it restarts. If the
// disk or the ledger keeps failing, the round is never published and the
// node stops with the error.
func (a *Aggregator) persist(st *savedState, info RoundInfo, result *savedResult) {
	defer a.saving.Done()
	ok := a.retry(fmt.Sprintf("saving the state of round %d to %s", info.Round+1, a.statePath), func() error {
		start := time.Now()
		err := a.saveState(st)
		if err == nil {
			a.log.Debug("state saved", "round", info.Round+1, "took", time.Since(start))
		}
		return err
	})
	if !ok {
		return
	}
	if a.crashAfterSave != nil && a.crashAfterSave(info.Round) {
		a.crashed.Store(true)
		return
	}
	ok = a.retry(fmt.Sprintf("recording the result of round %d in the ledger %s", info.Round, a.led.path), func() error {
		return a.led.record(result, time.Now)
	})
	if !ok {
		return
	}
	if err := a.led.settle(time.Now); err != nil {
		a.log.Warn("settlement deferred", "err", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	ev := a.agg.Publish(time.Now())
	if a.valid != nil {
		a.valid.weights(a.agg.Round(), a.agg.Weights())
	}
	if ev.Opened {
		a.log.Info("round open", "round", a.agg.Round(), "participants", a.agg.NumActive(), "deadline", a.agg.Deadline().Format(time.TimeOnly))
		a.formCohortLocked(time.Now())
	}
	if !a.evalsClosed {
		a.evals <- evalJob{info: info, theta: append([]float32(nil), a.agg.Weights()...)}
	}
	close(a.changed)
	a.changed = make(chan struct{})
}

// retry runs attempt until it succeeds (true), saveAttempts times
// saveBackoff apart (doubling, at most 5 s), or until the node closes
// (false). When every attempt failed it stops the node with an error
// naming what and the last failure (false).
func (a *Aggregator) retry(what string, attempt func() error) bool {
	backoff := a.saveBackoff
	for n := 1; ; n++ {
		err := attempt()
		if err == nil {
			return true
		}
		if n >= a.saveAttempts {
			a.mu.Lock()
			a.fatal = fmt.Errorf("%s failed %d times, the last: %v; the round was not published", what, n, err)
			close(a.failed)
			a.mu.Unlock()
			a.log.Error("cannot make the round durable; stopping", "err", a.fatal)
			return false
		}
		a.log.Error(what+" failed; retrying", "attempt", n, "in", backoff, "err", err)
		select {
		case <-a.closing:
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
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

// stateLocked copies the durable state (the tensors copy their data),
// with the ledger result of the round that made it, if any.
func (a *Aggregator) stateLocked(result *savedResult) (*savedState, error) {
	tensors, md := snapshotTensors(a.agg.Snapshot())
	if result != nil {
		b, err := json.Marshal(result)
		if err != nil {
			return &savedState{tensors: tensors, meta: md}, err
		}
		md[ledgerResultKey] = string(b)
	}
	return &savedState{tensors: tensors, meta: md}, nil
}

// snapshotTensors lays out a snapshot as safetensors tensors and
// metadata (the slices are shared, not copied).
func snapshotTensors(s diloco.Snapshot) (map[string]safetensors.Tensor, map[string]string) {
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
	return tensors, md
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
