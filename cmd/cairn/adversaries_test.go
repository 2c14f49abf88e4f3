package main

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/experiment"
	"github.com/cairnlabs/cairn/kernels"
)

// tinyRun are the run flags of a model small enough for a test.
var tinyRun = []string{"--d", "16", "--layers", "1", "--heads", "2", "--ctx", "16", "--batch", "2", "--inner-steps", "10", "--rounds", "3", "--warmup", "2"}

// summaryLine is the experiment's last line, in the form.
var summaryLine = regexp.MustCompile(`^caught \d+/(\d+) within \d+ rounds; honest slashed \d+; loss gap [+-]\d+\.\d+ nats; emission conserved: (yes|no); verification overhead \d+\.\d+%$`)

// TestExperimentAdversariesCommand runs the trust experiment on a tiny
// model: a row per adversary in the order of the kinds, a row per run,
// the slow worker's line, and the last line with every adversary
// counted and the emission conserved.
func TestExperimentAdversariesCommand(t *testing.T) {
	code, out, e := runCLI(append([]string{"experiment", "adversaries", "--honest", "2", "--threads", "1"}, tinyRun...)...)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, e)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	m := summaryLine.FindStringSubmatch(last)
	if m == nil || m[1] != "7" || m[2] != "yes" {
		t.Fatalf("last line %q\n%s", last, out)
	}
	var rows []string
	for _, l := range lines {
		for _, k := range experiment.AdversaryKinds() {
			if strings.HasPrefix(l, k+" ") {
				rows = append(rows, k)
			}
		}
	}
	if strings.Join(rows, ",") != strings.Join(experiment.AdversaryKinds(), ",") {
		t.Errorf("adversary rows %v\n%s", rows, out)
	}
	for _, want := range []string{"adversary  worker", "first cheat", "paid after detection", "\nhonest ", "\nadversarial ", "rounds conserved", "slow worker", "3/3"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q\n%s", want, out)
		}
	}
}

// TestDemoAdversaries: `demo --adversaries` adds the seven adversaries,
// names them in the ledger's lines and ends with what became of them; the
// demo without the flag has none of it.
func TestDemoAdversaries(t *testing.T) {
	dir := t.TempDir()
	args := append([]string{"demo", "--workers", "2", "--out", dir}, tinyRun...)
	code, out, e := runCLI(append(args, "--adversaries")...)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, e)
	}
	for _, k := range experiment.AdversaryKinds() {
		if !strings.Contains(out, "adversary "+k+" (12D3KooW") || !regexp.MustCompile(`(?m)^  `+k+` +\(…\w+\): first cheat round `).MatchString(out) {
			t.Errorf("no ledger line or summary for %s\n%s", k, out)
		}
	}
	if !regexp.MustCompile(`(?m)^caught \d/7 adversaries$`).MatchString(out) || !strings.Contains(out, "ledger intact") ||
		!strings.Contains(out, "worker 1 (12D3KooW") {
		t.Errorf("demo --adversaries output:\n%s", out)
	}
	code, out, e = runCLI(args...)
	if code != 0 || strings.Contains(out, "adversar") || !strings.Contains(out, "worker 1 (12D3KooW") {
		t.Fatalf("plain demo: exit %d\n%s\n%s", code, out, e)
	}
}

// TestMixedPathsAndKernelFlag runs the built binary: `bench --kernel
// generic` computes on the portable path, and the trust experiment with
// --mixed-paths runs honest workers as `node work --kernel ... --json`
// processes whose commits declare their paths (and no slowed worker: its
// peers run at other paths' speeds), and ends with its line.
func TestMixedPathsAndKernelFlag(t *testing.T) {
	bin := cairnBinary(t)
	out, err := exec.Command(bin, "bench", "--kernel", "generic", "--d", "16", "--layers", "1", "--heads", "2", "--ctx", "16", "--batch", "2", "--steps", "1", "--threads", "1").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "kernel=generic") {
		t.Fatalf("bench --kernel generic: %v\n%s", err, out)
	}
	args := append([]string{"experiment", "adversaries", "--mixed-paths", "--honest", "3", "--adversaries", "zeros,lazy", "--threads", "1"}, tinyRun...)
	cmd := exec.Command(bin, args...)
	o, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, o)
	}
	text := string(o)
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if m := summaryLine.FindStringSubmatch(lines[len(lines)-1]); m == nil || m[1] != "2" || m[2] != "yes" {
		t.Fatalf("last line %q\n%s", lines[len(lines)-1], text)
	}
	if strings.Contains(text, "slow worker") {
		t.Errorf("a slowed worker measured against peers on other paths:\n%s", text)
	}
	paths := exactPaths()
	m := regexp.MustCompile(`the honest workers' commits declare the kernel paths (.*)`).FindStringSubmatch(text)
	if m == nil || len(strings.Split(m[1], ", ")) != min(3, len(paths)) {
		t.Fatalf("kernel paths of the honest workers (this CPU has %v):\n%s", paths, text)
	}
}

// TestBF16KernelFlag: where the CPU has AMX, `bench --kernel amx-bf16`
// trains on that path and says so; elsewhere the flag is refused with the
// paths the CPU has.
func TestBF16KernelFlag(t *testing.T) {
	bin := cairnBinary(t)
	out, err := exec.Command(bin, "bench", "--kernel", kernels.AMX, "--d", "32", "--layers", "1", "--heads", "2", "--ctx", "32", "--batch", "2", "--steps", "2").CombinedOutput()
	if !kernels.HasAMX() {
		if err == nil || !strings.Contains(string(out), "--kernel amx-bf16: not available on this CPU") {
			t.Fatalf("bench --kernel amx-bf16 without AMX: %v\n%s", err, out)
		}
		return
	}
	if err != nil || !strings.Contains(string(out), "kernel=amx-bf16") || !regexp.MustCompile(`tokens/s=\d+`).Match(out) {
		t.Fatalf("bench --kernel amx-bf16: %v\n%s", err, out)
	}
}
