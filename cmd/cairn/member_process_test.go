package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/chain"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/web"
)

// TestMembersKillNine runs a network without an aggregator as separate
// processes: four members, each running one validator of the run's
// CometBFT chain in its own process. After the first round the member
// that comes first (whose validator is the network's first) is killed
// with SIGKILL; the other three finish the run, agreeing on every round,
// and end with the same weights.
func TestMembersKillNine(t *testing.T) {
	if testing.Short() {
		t.Skip("runs CometBFT validators in member processes")
	}
	const n, rounds = 4, 4
	dir := t.TempDir()
	bin := cairnBinary(t)
	data, ids, addrs, base := memberSetup(t, dir, n)
	initArgs := []string{"chain", "init", "--validators", fmt.Sprint(n), "--out", filepath.Join(dir, "chain"), "--base-port", fmt.Sprint(base),
		"--commit-window", "10s", "--empty-blocks", "200ms", "--timeout-commit", "100ms", "--min-stake", "1000"}
	for _, id := range ids {
		initArgs = append(initArgs, "--stake", id+"=1000")
	}
	if code, out, errs := runCLI(initArgs...); code != 0 {
		t.Fatalf("chain init: %d\n%s%s", code, out, errs)
	}
	run := []string{"--data", data, "--d", "16", "--layers", "1", "--heads", "2", "--ctx", "16", "--batch", "2", "--inner-steps", "10",
		"--rounds", fmt.Sprint(rounds), "--warmup", "2", "--threads", "1", "--fetch-timeout", "5s"}
	var ms []*proc
	view := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	for i := range n {
		args := append([]string{"node", "member", "--data-dir", filepath.Join(dir, fmt.Sprint("m", i)),
			"--chain-home", filepath.Join(dir, "chain", fmt.Sprint("v", i)), "--listen", strings.SplitN(addrs[i], "/p2p/", 2)[0]}, run...)
		if i == 1 {
			args = append(args, "--http", view)
		}
		for j, a := range addrs {
			if j != i {
				args = append(args, "--peer", a)
			}
		}
		ms = append(ms, start(t, bin, args...))
	}
	for _, m := range ms {
		m.waitFor(t, `round closed" round=0 `, 2*time.Minute)
	}
	// Member 1's live view has the round, its members and the chain.
	s := summary(t, "http://"+view+"/", time.Minute, func(s web.Summary) bool { return s.Rounds >= 1 && s.Ledger.Height > 0 })
	if len(s.Workers) != n {
		t.Fatalf("member 1's view after round 1: %+v", s)
	}
	ms[0].cmd.Process.Kill() // SIGKILL
	<-ms[0].done
	killed := time.Now()
	weights := map[string]bool{}
	for i, m := range ms[1:] {
		select {
		case err := <-m.done:
			if err != nil {
				t.Fatalf("member %d: %v\n%s", i+1, err, strings.Join(m.lines, "\n"))
			}
		case <-time.After(3 * time.Minute):
			t.Fatalf("member %d did not finish:\n%s", i+1, strings.Join(m.lines, "\n"))
		}
		out := m.out.String()
		for r := 1; r <= rounds; r++ {
			if !strings.Contains(out, fmt.Sprintf("round %d/%d: weights", r, rounds)) {
				t.Fatalf("member %d did not report round %d:\n%s", i+1, r, out)
			}
		}
		w := regexp.MustCompile(`run finished: weights (\w+)`).FindStringSubmatch(out)
		if w == nil {
			t.Fatalf("member %d: no final weights in\n%s", i+1, out)
		}
		weights[w[1]] = true
		for _, l := range m.lines {
			if strings.Contains(l, "round closed") && !strings.Contains(l, "agreed=true") {
				t.Fatalf("member %d disagreed: %s", i+1, l)
			}
		}
	}
	if len(weights) != 1 {
		t.Fatalf("the surviving members end with different weights: %v", weights)
	}
	t.Logf("the survivors finished %s after the kill; member 1:\n%s", time.Since(killed).Round(time.Millisecond), ms[1].out.String())
}

// TestMemberLostContribution: a member killed with SIGKILL right after it
// commits, before anyone has fetched its contribution, does not hold the
// round for the fetch timeout (2 minutes here): the others see that its
// publisher has gone and nobody holds a piece of it, give it up after the
// orphan grace (2 s) once the rest is in, reject it alike and finish the
// run agreeing.
func TestMemberLostContribution(t *testing.T) {
	if testing.Short() {
		t.Skip("runs CometBFT validators in member processes")
	}
	const n, rounds = 4, 3
	dir := t.TempDir()
	bin := cairnBinary(t)
	data, ids, addrs, base := memberSetup(t, dir, n)
	initArgs := []string{"chain", "init", "--validators", "1", "--out", filepath.Join(dir, "chain"), "--base-port", fmt.Sprint(base),
		"--commit-window", "20s", "--empty-blocks", "200ms", "--timeout-commit", "100ms", "--min-stake", "1000"}
	for _, id := range ids {
		initArgs = append(initArgs, "--stake", id+"=1000")
	}
	if code, out, errs := runCLI(initArgs...); code != 0 {
		t.Fatalf("chain init: %d\n%s%s", code, out, errs)
	}
	rpc := fmt.Sprintf("127.0.0.1:%d", base+1)
	validator := start(t, bin, "chain", "start", "--home", filepath.Join(dir, "chain", "v0"))
	defer validator.cmd.Process.Kill()
	run := []string{"--data", data, "--d", "16", "--layers", "1", "--heads", "2", "--ctx", "16", "--batch", "2", "--inner-steps", "10",
		"--rounds", fmt.Sprint(rounds), "--warmup", "2", "--threads", "1", "--fetch-timeout", "2m", "--orphan-grace", "2s"}
	var ms []*proc
	for i := range n {
		args := append([]string{"node", "member", "--data-dir", filepath.Join(dir, fmt.Sprint("m", i)), "--ledger", rpc,
			"--listen", strings.SplitN(addrs[i], "/p2p/", 2)[0]}, run...)
		for j, a := range addrs {
			if j != i {
				args = append(args, "--peer", a)
			}
		}
		ms = append(ms, start(t, bin, args...))
	}
	// The others pause once round 0 has closed for them, so that nobody
	// fetches member 3's round-1 contribution; member 3 dies as soon as it
	// has committed to round 1; the others go on.
	for _, m := range ms[:3] {
		m.waitFor(t, `round closed" round=0 `, 2*time.Minute)
		m.cmd.Process.Signal(syscall.SIGSTOP)
	}
	ms[3].waitFor(t, `member: committed" round=1 `, 2*time.Minute)
	ms[3].cmd.Process.Kill() // SIGKILL
	<-ms[3].done
	killed := time.Now()
	for _, m := range ms[:3] {
		m.cmd.Process.Signal(syscall.SIGCONT)
	}
	weights := map[string]bool{}
	for i, m := range ms[:3] {
		select {
		case err := <-m.done:
			if err != nil {
				t.Fatalf("member %d: %v\n%s", i, err, strings.Join(m.lines, "\n"))
			}
		case <-time.After(100 * time.Second):
			t.Fatalf("member %d did not finish within 100 s of the kill (the fetch timeout is 2 minutes):\n%s", i, strings.Join(m.lines, "\n"))
		}
		w := regexp.MustCompile(`run finished: weights (\w+)`).FindStringSubmatch(m.out.String())
		if w == nil {
			t.Fatalf("member %d: no final weights in\n%s", i, m.out.String())
		}
		weights[w[1]] = true
		for _, l := range m.lines {
			if strings.Contains(l, "round closed") && !strings.Contains(l, "agreed=true") {
				t.Fatalf("member %d disagreed: %s", i, l)
			}
		}
	}
	if len(weights) != 1 {
		t.Fatalf("the surviving members end with different weights: %v", weights)
	}
	lost := 0
	for _, m := range ms[:3] {
		for _, l := range m.lines {
			if strings.Contains(l, "contribution lost") && strings.Contains(l, "round=1 ") {
				lost++
			}
		}
	}
	if lost != 3 {
		t.Fatalf("%d of the 3 survivors gave member 3's round-1 contribution up as lost, want all", lost)
	}
	t.Logf("the survivors finished %s after the kill, each giving member 3's round-1 contribution up as lost", time.Since(killed).Round(time.Millisecond))
}

// memberSetup prepares n members in dir: the training text, each member's
// identity (dir/mI) with its peer ID and a free loopback address, and a
// free base port for the chain's validators.
func memberSetup(t *testing.T, dir string, n int) (data string, ids, addrs []string, base int) {
	t.Helper()
	data = filepath.Join(dir, "text.txt")
	if err := os.WriteFile(data, corpus.TinyShakespeare()[:60000], 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		key, err := p2p.LoadIdentity(filepath.Join(dir, fmt.Sprint("m", i)))
		if err != nil {
			t.Fatal(err)
		}
		lk, err := p2p.LedgerKey(key)
		if err != nil {
			t.Fatal(err)
		}
		id := p2p.PeerIDOf(ledger.KeyOf(lk))
		ids = append(ids, id)
		addrs = append(addrs, fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", freePort(t), id))
	}
	base, err := chain.FreeBasePort(n)
	if err != nil {
		t.Fatal(err)
	}
	return data, ids, addrs, base
}
