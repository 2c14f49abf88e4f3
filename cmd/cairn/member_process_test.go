package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
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
	data := filepath.Join(dir, "text.txt")
	os.WriteFile(data, corpus.TinyShakespeare()[:60000], 0o644)
	var ids, addrs []string
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
