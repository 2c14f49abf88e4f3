package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/p2p"
)

// A netLab is a small internet in network namespaces that a test makes
// for itself: a "wan" namespace holding a bridge, public hosts attached to
// it with addresses from 11.0.0.0/24 (outside the ranges libp2p counts as
// private, and never routed anywhere: the namespaces have no way out),
// and home networks behind NAT routers (nftables masquerade; the router
// drops connections that start outside, as home routers do). Everything
// is removed when the test ends.
type netLab struct {
	t      *testing.T
	prefix string
	spaces []string
	wan    string
}

// requireNetLab returns a lab, or skips the test where namespaces cannot
// be made (not root, no ip or nft). CAIRN_NETNS=require (set by .ci/run
// where it can make them) turns the skip into a failure.
func requireNetLab(t *testing.T) *netLab {
	t.Helper()
	why := ""
	switch {
	case os.Geteuid() != 0:
		why = "needs root to make network namespaces"
	default:
		for _, tool := range []string{"ip", "nft"} {
			if _, err := exec.LookPath(tool); err != nil {
				why = "needs " + tool + " (Debian: iproute2, nftables)"
			}
		}
	}
	if why != "" {
		if os.Getenv("CAIRN_NETNS") == "require" {
			t.Fatalf("CAIRN_NETNS=require but the test %s", why)
		}
		t.Skip(why)
	}
	b := make([]byte, 3)
	rand.Read(b)
	l := &netLab{t: t, prefix: "cn" + hex.EncodeToString(b)}
	t.Cleanup(l.remove)
	l.wan = l.space("wan")
	l.ip("-n", l.wan, "link", "add", "br0", "type", "bridge")
	l.ip("-n", l.wan, "link", "set", "br0", "up")
	return l
}

func (l *netLab) run(stdin string, name string, args ...string) {
	l.t.Helper()
	cmd := exec.Command(name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func (l *netLab) ip(args ...string) { l.t.Helper(); l.run("", "ip", args...) }

// space makes a namespace with its loopback up.
func (l *netLab) space(name string) string {
	l.t.Helper()
	ns := l.prefix + "-" + name
	l.ip("netns", "add", ns)
	l.spaces = append(l.spaces, ns)
	l.ip("-n", ns, "link", "set", "lo", "up")
	return ns
}

func (l *netLab) remove() {
	for _, ns := range l.spaces {
		exec.Command("ip", "netns", "del", ns).Run()
	}
}

// link joins namespace ns to the wan bridge as interface dev with address
// addr (CIDR).
func (l *netLab) link(ns, dev, addr string) {
	l.t.Helper()
	peer := fmt.Sprintf("v%d", len(l.spaces))
	l.ip("link", "add", peer, "netns", l.wan, "type", "veth", "peer", "name", dev, "netns", ns)
	l.ip("-n", l.wan, "link", "set", peer, "master", "br0", "up")
	l.ip("-n", ns, "addr", "add", addr, "dev", dev)
	l.ip("-n", ns, "link", "set", dev, "up")
}

// public adds a host on the wan with address 11.0.0.last and returns its
// namespace.
func (l *netLab) public(name string, last int) string {
	l.t.Helper()
	ns := l.space(name)
	l.link(ns, "eth0", fmt.Sprintf("11.0.0.%d/24", last))
	return ns
}

// behindNAT adds a home network: a router with wan address 11.0.0.last
// and lan 10.k.0.1/24, and a host at 10.k.0.2 routed through it; it
// returns the host's namespace.
func (l *netLab) behindNAT(name string, last, k int) string {
	l.t.Helper()
	router := l.space(name + "-r")
	l.link(router, "wan", fmt.Sprintf("11.0.0.%d/24", last))
	ns := l.space(name)
	l.ip("link", "add", "lan", "netns", router, "type", "veth", "peer", "name", "eth0", "netns", ns)
	l.ip("-n", router, "addr", "add", fmt.Sprintf("10.%d.0.1/24", k), "dev", "lan")
	l.ip("-n", router, "link", "set", "lan", "up")
	l.ip("-n", ns, "addr", "add", fmt.Sprintf("10.%d.0.2/24", k), "dev", "eth0")
	l.ip("-n", ns, "link", "set", "eth0", "up")
	l.ip("-n", ns, "route", "add", "default", "via", fmt.Sprintf("10.%d.0.1", k))
	l.run("", "ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	l.run(`table ip nat {
	chain postrouting_wan { type nat hook postrouting priority srcnat; oifname "wan" masquerade; }
}
table inet fw {
	chain input_wan { type filter hook input priority filter; iifname "wan" ct state new drop; }
	chain forward_wan { type filter hook forward priority filter; iifname "wan" ct state new drop; }
}
`, "ip", "netns", "exec", router, "nft", "-f", "-")
	return ns
}

// start runs the binary with args inside namespace ns.
func (l *netLab) start(ns, bin string, args ...string) *proc {
	l.t.Helper()
	return start(l.t, "ip", append([]string{"netns", "exec", ns, bin}, args...)...)
}

// TestMembersBehindNAT runs a network without an aggregator across a
// small internet: two bootstrap nodes and two members on public
// addresses, two members each behind its own NAT, and the run's validator
// on a public host. No member is given another's address: they find each
// other through the DHT (the NAT'd ones announcing relayed addresses once
// AutoNAT tells them they are private), the NAT'd members reach each other
// through a relay and then, by hole punching, directly. All four finish
// every round agreeing on the weights; the test reports how the NAT'd
// members received their pieces.
func TestMembersBehindNAT(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a network of processes in namespaces")
	}
	lab := requireNetLab(t)
	rounds := 3
	if r := os.Getenv("CAIRN_NETNS_ROUNDS"); r != "" {
		fmt.Sscan(r, &rounds)
	}
	dir := t.TempDir()
	bin := cairnBinary(t)
	data := filepath.Join(dir, "text.txt")
	os.WriteFile(data, corpus.TinyShakespeare()[:60000], 0o644)
	idOf := func(name string) string {
		key, err := p2p.LoadIdentity(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		lk, err := p2p.LedgerKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return p2p.PeerIDOf(ledger.KeyOf(lk))
	}
	const listen = "/ip4/0.0.0.0/tcp/4001,/ip4/0.0.0.0/udp/4001/quic-v1"
	// Public hosts: the validator at .2, bootstrap nodes at .3 and .4,
	// members at .10 and .11; routers of the homes at .20 and .21.
	val := lab.public("val", 2)
	var boots []string
	for i, last := range []int{3, 4} {
		name := fmt.Sprint("b", i)
		boots = append(boots, fmt.Sprintf("/ip4/11.0.0.%d/tcp/4001/p2p/%s", last, idOf(name)))
	}
	members := []struct{ name, ns string }{
		{"pub0", lab.public("pub0", 10)}, {"pub1", lab.public("pub1", 11)},
		{"home0", lab.behindNAT("home0", 20, 1)}, {"home1", lab.behindNAT("home1", 21, 2)},
	}
	initArgs := []string{"chain", "init", "--validators", "1", "--out", filepath.Join(dir, "chain"), "--base-port", "26656",
		"--commit-window", "2m", "--empty-blocks", "200ms", "--timeout-commit", "100ms", "--min-stake", "1000"}
	for _, m := range members {
		initArgs = append(initArgs, "--stake", idOf(m.name)+"=1000")
	}
	if code, out, errs := runCLI(initArgs...); code != 0 {
		t.Fatalf("chain init: %d\n%s%s", code, out, errs)
	}
	v := lab.start(val, bin, "chain", "start", "--home", filepath.Join(dir, "chain", "v0"), "--rpc", "0.0.0.0:26657")
	for i, last := range []int{3, 4} {
		ns := lab.public(fmt.Sprint("b", i), last)
		args := []string{"node", "bootstrap", "--data-dir", filepath.Join(dir, fmt.Sprint("b", i)), "--listen", listen, "--report", "5s"}
		for j, b := range boots {
			if j != i {
				args = append(args, "--bootstrap", b)
			}
		}
		lab.start(ns, bin, args...)
	}
	run := []string{"--data", data, "--d", "16", "--layers", "1", "--heads", "2", "--ctx", "16", "--batch", "2", "--inner-steps", "200",
		"--rounds", fmt.Sprint(rounds), "--warmup", "2", "--threads", "1", "--fetch-timeout", "30s", "--await-peers", "100s", "--ledger", "11.0.0.2:26657", "--listen", listen}
	var ps []*proc
	for _, m := range members {
		args := append([]string{"node", "member", "--data-dir", filepath.Join(dir, m.name), "-v"}, run...)
		for _, b := range boots {
			args = append(args, "--bootstrap", b)
		}
		ps = append(ps, lab.start(m.ns, bin, args...))
	}
	weights := map[string]bool{}
	punched, direct := 0, 0
	logOf := map[string]string{} // by member ID
	for i, p := range ps {
		m := members[i]
		select {
		case err := <-p.done:
			if err != nil {
				t.Fatalf("%s: %v\n%s", m.name, err, strings.Join(p.lines, "\n"))
			}
		case <-time.After(4 * time.Minute):
			t.Fatalf("%s did not finish:\n%s", m.name, strings.Join(p.lines, "\n"))
		}
		logOf[idOf(m.name)] = strings.Join(p.lines, "\n")
	}
	for i, p := range ps {
		m := members[i]
		out := p.out.String()
		log := strings.Join(p.lines, "\n")
		if os.Getenv("CAIRN_NETNS_LOG") != "" {
			t.Logf("%s log:\n%s", m.name, log)
		}
		w := regexp.MustCompile(`run finished: weights (\w+)`).FindStringSubmatch(out)
		if w == nil {
			t.Fatalf("%s: no final weights in\n%s", m.name, out)
		}
		weights[w[1]] = true
		for r := 1; r <= rounds; r++ {
			line := regexp.MustCompile(fmt.Sprintf(`round %d/%d: weights \w+, 4 contributions committed, 4 aggregated`, r, rounds))
			if !line.MatchString(out) {
				t.Fatalf("%s did not take part fully in round %d (every member's contribution committed and aggregated):\n%s", m.name, r, out)
			}
		}
		if !strings.Contains(log, "in touch with every member") {
			t.Fatalf("%s started without reaching every member:\n%s", m.name, log)
		}
		home := strings.HasPrefix(m.name, "home")
		want := map[bool]string{true: "private", false: "public"}[home]
		if !strings.Contains(log, "msg=reachability now="+want) {
			t.Fatalf("%s: AutoNAT did not find it %s:\n%s", m.name, want, log)
		}
		if home {
			if !regexp.MustCompile(`msg=addresses .*p2p-circuit`).MatchString(log) {
				t.Fatalf("%s announced no relayed address:\n%s", m.name, log)
			}
			other := idOf(map[string]string{"home0": "home1", "home1": "home0"}[m.name])
			// Two nodes behind NAT have a direct connection only by a
			// hole punch. DCUtR is tried when a relayed connection
			// opens and fails now and then (its simultaneous open is a
			// race); the relay then carries the pair's traffic, and
			// the node logs why.
			switch {
			case regexp.MustCompile(`swarm: stream open" peer=` + other + ` via=direct`).MatchString(log):
				direct++
			case regexp.MustCompile(`hole punch failed" peer=` + other).MatchString(log),
				regexp.MustCompile(`hole punch failed" peer=` + idOf(m.name)).MatchString(logOf[other]):
				t.Logf("%s: the hole punch to the other member behind NAT failed; the relay carried their traffic", m.name)
			default:
				t.Fatalf("%s never had a direct (hole-punched) connection to the other member behind NAT, and no failed hole punch was logged:\n%s", m.name, log)
			}
			if regexp.MustCompile(`moved from a relay to a direct connection" peer=` + other).MatchString(log) {
				punched++
			}
		}
		t.Logf("%s: %s", m.name, regexp.MustCompile(`pieces received: .*`).FindString(out))
	}
	if len(weights) != 1 {
		t.Fatalf("the members end with different weights: %v", weights)
	}
	t.Logf("members behind NAT with a hole-punched connection to the other: %d of 2; that moved a stream from the relay to it: %d", direct, punched)
	v.cmd.Process.Signal(os.Interrupt)
}
