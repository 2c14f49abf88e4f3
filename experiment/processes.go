package experiment

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/node"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/libp2p/go-libp2p/core/crypto"
)

// Processes run honest workers as worker processes of the cairn binary
// (`cairn node work --kernel PATH --join ADDR --json`), so that workers on
// different kernel paths take part in one run and the validator (in the
// experiment's process, on this process's path) recomputes contributions
// across paths. Worker 0 stays in the experiment's process (the copier
// copies it) on this process's path; workers 1..Honest-1 are processes,
// worker i on Paths[i mod len(Paths)] (with every path, worker 0 has the
// first: the paths go round all the honest workers). Their identities
// are made once, from the run seed, and staked at genesis in both arms.
type Processes struct {
	Binary string   // the cairn executable
	Paths  []string // kernel paths (nil: every one this CPU has, kernels.Impls())
	// Dir holds their data directories (default: a temporary directory,
	// removed at the end).
	Dir     string
	Threads int       // each process's threads (default 1)
	Stderr  io.Writer // their logs (nil: discarded)
	// Stop bounds how long a process may take to finish after the run
	// (default 30 s); then it is interrupted.
	Stop time.Duration
}

// WorkerPaths lists the kernel paths of the processes, in worker order
// (workers 1..honest-1).
func (p *Processes) WorkerPaths(honest int) []string {
	paths := p.Paths
	if len(paths) == 0 {
		paths = kernels.Impls()
	}
	var out []string
	for i := 1; i < honest; i++ {
		out = append(out, paths[i%len(paths)])
	}
	return out
}

// processSet is the worker processes' identities and directories.
type processSet struct {
	p     *Processes
	dir   string
	temp  bool
	dirs  []string
	ids   []string
	paths []string
}

// open checks the options and makes the processes' identities.
func (p *Processes) open(seed uint64, honest int) (*processSet, error) {
	if p.Binary == "" {
		return nil, errors.New("worker processes need the cairn binary")
	}
	if honest < 2 {
		return nil, fmt.Errorf("worker processes run honest workers 1..%d: need at least 2 honest workers", honest-1)
	}
	have := map[string]bool{}
	for _, k := range kernels.Impls() {
		have[k] = true
	}
	have[kernels.AMX] = kernels.HasAMX()
	for _, k := range p.Paths {
		if !have[k] {
			return nil, fmt.Errorf("kernel path %q is not available on this CPU (have %v)", k, kernels.Impls())
		}
	}
	s := &processSet{p: p, dir: p.Dir, paths: p.WorkerPaths(honest)}
	if s.dir == "" {
		d, err := os.MkdirTemp("", "cairn-workers-*")
		if err != nil {
			return nil, err
		}
		s.dir, s.temp = d, true
	}
	for i := 1; i < honest; i++ {
		var b [32]byte
		binary.LittleEndian.PutUint64(b[:], seed)
		binary.LittleEndian.PutUint64(b[8:], uint64(i))
		copy(b[16:], "cairn/exp/process")
		key, _, err := crypto.GenerateEd25519Key(rand.NewChaCha8(b))
		if err != nil {
			s.close()
			return nil, err
		}
		dir := filepath.Join(s.dir, fmt.Sprintf("worker%d", i))
		if err := p2p.SaveIdentity(dir, key); err != nil {
			s.close()
			return nil, err
		}
		lk, err := p2p.LedgerKey(key)
		if err != nil {
			s.close()
			return nil, err
		}
		s.dirs, s.ids = append(s.dirs, dir), append(s.ids, p2p.PeerIDOf(ledger.KeyOf(lk)))
	}
	return s, nil
}

func (s *processSet) close() {
	if s.temp {
		os.RemoveAll(s.dir)
	}
}

// processRun is one arm's worker processes.
type processRun struct {
	cmds   []*exec.Cmd
	outs   []*tail
	done   chan struct{}
	errs   []error
	stop   time.Duration
	cancel context.CancelFunc
}

// start launches the processes of arm, joining at join.
func (s *processSet) start(ctx context.Context, arm, join string) (*processRun, error) {
	ctx, cancel := context.WithCancel(ctx)
	r := &processRun{done: make(chan struct{}), stop: s.p.Stop, cancel: cancel}
	if r.stop == 0 {
		r.stop = 30 * time.Second
	}
	threads := max(s.p.Threads, 1)
	for i, dir := range s.dirs {
		cmd := exec.CommandContext(ctx, s.p.Binary, "node", "work", "--join", join, "--data-dir", dir, "--kernel", s.paths[i],
			"--threads", strconv.Itoa(threads), "--listen", "/ip4/127.0.0.1/tcp/0", "--json")
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		cmd.WaitDelay = 10 * time.Second
		out := &tail{max: maxProcessOutput}
		cmd.Stdout = out
		if s.p.Stderr != nil {
			cmd.Stderr = &prefixed{w: s.p.Stderr, prefix: fmt.Sprintf("[%s worker %d %s] ", arm, i+1, s.paths[i])}
		}
		if err := cmd.Start(); err != nil {
			cancel()
			for _, c := range r.cmds {
				c.Wait()
			}
			return nil, fmt.Errorf("starting worker process %d: %v", i+1, err)
		}
		r.cmds, r.outs = append(r.cmds, cmd), append(r.outs, out)
	}
	r.errs = make([]error, len(r.cmds))
	go func() {
		defer close(r.done)
		var wg sync.WaitGroup
		for i, c := range r.cmds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.errs[i] = c.Wait()
			}()
		}
		wg.Wait()
	}()
	return r, nil
}

// wait waits for the processes to finish (ok: the run finished, so they
// should by themselves, within Stop; else they are interrupted at once)
// and returns their final stats, in order.
func (r *processRun) wait(ok bool) ([]node.WorkerStats, error) {
	if ok {
		select {
		case <-r.done:
		case <-time.After(r.stop):
		}
	}
	r.cancel()
	<-r.done
	stats := make([]node.WorkerStats, len(r.cmds))
	var first error
	for i := range r.cmds {
		err := r.errs[i]
		if err == nil {
			err = lastJSON(r.outs[i].bytes(), &stats[i])
		}
		if err != nil && first == nil {
			first = fmt.Errorf("worker process %d: %v", i+1, err)
		}
	}
	return stats, first
}

// maxProcessOutput bounds what is kept of a worker process's standard
// output: its last line is a few hundred bytes of JSON.
const maxProcessOutput = 64 << 10

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tail) bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]byte(nil), t.b...)
}

// lastJSON decodes the last line of out into v.
func lastJSON(out []byte, v any) error {
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	last := lines[len(lines)-1]
	if len(last) == 0 {
		return errors.New("printed no stats")
	}
	if err := json.Unmarshal(last, v); err != nil {
		return fmt.Errorf("its stats %q: %v", last, err)
	}
	return nil
}

// prefixed writes each line with a prefix.
type prefixed struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixed) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		p.w.Write(append([]byte(p.prefix), p.buf[:i+1]...)) // logs are best effort
		p.buf = p.buf[i+1:]
	}
}
