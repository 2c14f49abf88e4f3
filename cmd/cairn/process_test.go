package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/p2p"
)

// proc is a cairn process whose stderr (the log) is collected.
type proc struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	out   strings.Builder
	done  chan error
}

func start(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan error, 1)}
	stderr, _ := p.cmd.StderrPipe()
	p.cmd.Stdout = &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() { p.cmd.Process.Kill() })
	return p
}

// waitFor returns the first log line matching re, waiting up to d.
func (p *proc) waitFor(t *testing.T, re string, d time.Duration) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for _, l := range p.lines {
			if rx.MatchString(l) {
				p.mu.Unlock()
				return l
			}
		}
		p.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t.Fatalf("no log line matching %q in %v:\n%s", re, d, strings.Join(p.lines, "\n"))
	return ""
}

func field(line, key string) string {
	m := regexp.MustCompile(key + `=(\S+)`).FindStringSubmatch(line)
	if m == nil {
		return ""
	}
	return strings.Trim(m[1], `"`)
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestKillNineRealProcesses runs an aggregator and two workers as separate
// processes, kills the aggregator with SIGKILL after round 2 and restarts
// it, then kills a worker with SIGKILL in the middle of a round. The run
// resumes from the last completed round without a jump in validation
// loss, the round the worker died in closes long before its deadline, and
// the run finishes. The first worker is staked at the ledger's creation
// (--stake), the second only funded (--fund) and bonds its stake by
// itself; afterwards the ledger verifies and the surviving worker reports
// its earnings.
func TestKillNineRealProcesses(t *testing.T) {
	dir := t.TempDir()
	bin := cairnBinary(t)
	data := filepath.Join(dir, "text.txt")
	os.WriteFile(data, corpus.TinyShakespeare()[:60000], 0o644)
	port := freePort(t)
	var ids []string
	for i := 0; i < 2; i++ {
		key, err := p2p.LoadIdentity(filepath.Join(dir, fmt.Sprint("w", i)))
		if err != nil {
			t.Fatal(err)
		}
		lk, err := p2p.LedgerKey(key)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, p2p.PeerIDOf(ledger.KeyOf(lk)))
	}
	aggArgs := []string{"node", "aggregate", "--data-dir", filepath.Join(dir, "agg"), "--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port),
		"--data", data, "--d", "64", "--layers", "2", "--heads", "2", "--ctx", "32", "--batch", "8", "--inner-steps", "50",
		"--rounds", "10", "--warmup", "2", "--round-timeout", "60s", "--eval-batches", "2", "--threads", "1",
		"--min-stake", "1000", "--emission", "500", "--stake", ids[0] + "=1000", "--fund", ids[1] + "=1500"}
	agg := start(t, bin, aggArgs...)
	line := agg.waitFor(t, "aggregator listening", 20*time.Second)
	addr := regexp.MustCompile(`/ip4/127\.0\.0\.1/tcp/\d+/p2p/\w+`).FindString(line)
	if addr == "" {
		t.Fatalf("no address in %q", line)
	}
	var workers []*proc
	for i := 0; i < 2; i++ {
		workers = append(workers, start(t, bin, "node", "work", "--join", addr, "--data-dir", filepath.Join(dir, fmt.Sprint("w", i)),
			"--listen", "/ip4/127.0.0.1/tcp/0", "--data", data, "--threads", "1"))
	}
	closed := agg.waitFor(t, `round closed" round=1 `, 60*time.Second)
	before, _ := strconv.ParseFloat(field(closed, "val_loss"), 64)
	agg.cmd.Process.Kill() // SIGKILL
	<-agg.done

	agg2 := start(t, bin, aggArgs...)
	resumed := agg2.waitFor(t, "resumed from saved state", 20*time.Second)
	round, _ := strconv.Atoi(field(resumed, "round"))
	after, _ := strconv.ParseFloat(field(resumed, "val_loss"), 64)
	if round < 2 {
		t.Fatalf("resumed at round %d, after round 1 had closed: %s", round, resumed)
	}
	if round == 2 && (after-before > 0.05 || before-after > 0.05) {
		t.Fatalf("validation loss %v before the kill, %v after the restart", before, after)
	}
	agg2.waitFor(t, fmt.Sprintf(`round closed" round=%d `, round+1), 60*time.Second)
	victim := workers[1]
	victim.cmd.Process.Kill()
	killed := time.Now()
	<-victim.done
	next := agg2.waitFor(t, fmt.Sprintf(`round closed" round=%d `, round+3), 60*time.Second)
	if el := time.Since(killed); el > 30*time.Second {
		t.Fatalf("rounds after the worker's death took %v (deadline 60s): %s", el, next)
	}
	t.Logf("aggregator SIGKILLed after round 1 closed (val loss %.4f); restarted at round %d (val loss %.4f); worker SIGKILLed in round %d; the next two rounds closed %.2fs later (deadline 60s)",
		before, round, after, round+2, time.Since(killed).Seconds())
	agg2.waitFor(t, "run finished", 60*time.Second)
	select {
	case err := <-agg2.done:
		if err != nil {
			t.Fatalf("aggregator: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("aggregator did not exit")
	}
	select {
	case err := <-workers[0].done:
		if err != nil {
			t.Fatalf("surviving worker: %v\n%s", err, strings.Join(workers[0].lines, "\n"))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("surviving worker did not exit")
	}
	out := workers[0].out.String()
	if !strings.Contains(out, "run finished") {
		t.Fatalf("worker output: %q", out)
	}
	// The surviving worker earned at least its share of the rounds it
	// contributed to alone (500 each, after the other's death).
	m := regexp.MustCompile(`balance (\d+) units, stake 1000`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("worker output: %q, want its balance and stake", out)
	}
	if bal, _ := strconv.Atoi(m[1]); bal < 500 {
		t.Fatalf("worker output: %q, want a balance of at least 500 and its stake", out)
	}
	if !strings.Contains(strings.Join(workers[1].lines, "\n"), "stake bonded") {
		t.Fatalf("the funded worker did not bond its stake:\n%s", strings.Join(workers[1].lines, "\n"))
	}
	var vout, verr strings.Builder
	if code := run([]string{"ledger", "verify", "--data-dir", filepath.Join(dir, "agg")}, &vout, &verr); code != 0 || !strings.Contains(vout.String(), "ledger intact") {
		t.Fatalf("ledger verify after the kills: exit %d, %s%s", code, vout.String(), verr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "agg", "model.safetensors")); err != nil {
		t.Fatal("no final model:", err)
	}
}
