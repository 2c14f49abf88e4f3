package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/web"
)

// browser is headless Chromium driven over WebDriver (chromedriver), in
// real time: the page's live updates run as they would for a person.
type browser struct {
	t       *testing.T
	dir     string // screenshots
	base    string // chromedriver's address
	session string
}

// requireBrowser starts chromedriver and a headless Chromium session, or
// skips; CAIRN_BROWSER=require (set by .ci/run, which installs them)
// turns the skip into a failure.
func requireBrowser(t *testing.T) *browser {
	t.Helper()
	chrome, err1 := exec.LookPath("chromium")
	driver, err2 := exec.LookPath("chromedriver")
	if err1 != nil || err2 != nil {
		if os.Getenv("CAIRN_BROWSER") == "require" {
			t.Fatal("CAIRN_BROWSER=require but chromium or chromedriver is not in PATH")
		}
		t.Skip("needs chromium and chromedriver (Debian: chromium, chromium-driver)")
	}
	shots := os.Getenv("CAIRN_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	start(t, driver, fmt.Sprintf("--port=%d", port))
	b := &browser{t: t, dir: shots, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	for i := 0; ; i++ {
		if res, err := http.Get(b.base + "/status"); err == nil {
			res.Body.Close()
			break
		}
		if i == 100 {
			t.Fatal("chromedriver did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--window-size=1100,1400", "--user-data-dir=" + t.TempDir()}
	var created struct {
		Value struct {
			SessionID string `json:"sessionId"`
		} `json:"value"`
	}
	b.call("POST", "/session", map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome", "goog:chromeOptions": map[string]any{"binary": chrome, "args": args}}}}, &created)
	b.session = "/session/" + created.Value.SessionID
	t.Cleanup(func() { b.t = t; b.call("DELETE", b.session, nil, nil) })
	return b
}

// call makes a WebDriver request and decodes the answer into out.
func (b *browser) call(method, path string, body, out any) {
	b.t.Helper()
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, b.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatalf("webdriver %s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		b.t.Fatalf("webdriver %s %s: %s: %s", method, path, res.Status, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			b.t.Fatalf("webdriver %s %s: %v", method, path, err)
		}
	}
}

func (b *browser) open(url string) {
	b.t.Helper()
	b.call("POST", b.session+"/url", map[string]string{"url": url}, nil)
}

// eval runs script in the page and returns its value as JSON.
func (b *browser) eval(script string) json.RawMessage {
	b.t.Helper()
	var out struct {
		Value json.RawMessage `json:"value"`
	}
	b.call("POST", b.session+"/execute/sync", map[string]any{"script": script, "args": []any{}}, &out)
	return out.Value
}

func (b *browser) count(selector string) int {
	b.t.Helper()
	var n int
	json.Unmarshal(b.eval(fmt.Sprintf("return document.querySelectorAll(%q).length", selector)), &n)
	return n
}

func (b *browser) text(selector string) string {
	b.t.Helper()
	var s string
	json.Unmarshal(b.eval(fmt.Sprintf("const e = document.querySelector(%q); return e ? e.textContent : ''", selector)), &s)
	return s
}

// waitCount waits until selector matches n elements, for at most d.
func (b *browser) waitCount(selector string, n int, d time.Duration) time.Duration {
	return b.wait(selector, n, d, func(got int) bool { return got == n })
}

// waitAtLeast waits until selector matches n elements or more.
func (b *browser) waitAtLeast(selector string, n int, d time.Duration) time.Duration {
	return b.wait(selector, n, d, func(got int) bool { return got >= n })
}

func (b *browser) wait(selector string, n int, d time.Duration, ok func(int) bool) time.Duration {
	b.t.Helper()
	began := time.Now()
	for !ok(b.count(selector)) {
		if time.Since(began) > d {
			b.t.Fatalf("%q matches %d elements after %s, want %d", selector, b.count(selector), d, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(began)
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	var out struct {
		Value string `json:"value"`
	}
	b.call("GET", b.session+"/screenshot", nil, &out)
	png, err := base64.StdEncoding.DecodeString(out.Value)
	if err != nil || len(png) < 1000 {
		b.t.Fatalf("screenshot %s: %d bytes, %v", name, len(png), err)
	}
	path := filepath.Join(b.dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", path)
}

// summary polls the view's /api/run until ok says it is what the test
// waits for.
func summary(t *testing.T, base string, within time.Duration, ok func(web.Summary) bool) web.Summary {
	t.Helper()
	deadline := time.Now().Add(within)
	var s web.Summary
	for time.Now().Before(deadline) {
		if res, err := http.Get(base + "api/run"); err == nil {
			err = json.NewDecoder(res.Body).Decode(&s)
			res.Body.Close()
			if err == nil && ok(s) {
				return s
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the live view at %s did not get there in %s: %+v", base, within, s)
	return s
}

// TestLiveViewInBrowser opens the live view in headless Chromium: during
// a demo with adversaries (a point per round on the loss chart, each new
// round on the page within a second or so of closing, the caught
// adversaries slashed with their evidence), and on an aggregator whose
// worker is killed mid-run (the worker shown as gone). Screenshots are
// saved in CAIRN_SCREENSHOTS (default: a temporary directory).
func TestLiveViewInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a demo and a browser")
	}
	b := requireBrowser(t)
	bin := cairnBinary(t)
	shape := []string{"--d", "32", "--layers", "1", "--heads", "2", "--ctx", "32"}

	t.Run("demo", func(t *testing.T) {
		b.t = t // failures are the subtest's
		const rounds = 12
		base := fmt.Sprintf("http://127.0.0.1:%d/", freePort(t))
		start(t, bin, append([]string{"demo", "--adversaries", "--workers", "3", "--rounds", fmt.Sprint(rounds), "--out", t.TempDir(),
			"--http", strings.TrimSuffix(strings.TrimPrefix(base, "http://"), "/"), "--http-linger", "3m", "--inner-steps", "100"}, shape...)...)
		summary(t, base, 2*time.Minute, func(s web.Summary) bool { return true })
		b.open(base)
		// Live: as rounds close, the chart follows.
		var lag time.Duration
		for {
			s := summary(t, base, time.Minute, func(web.Summary) bool { return true })
			if s.Rounds == rounds {
				break
			}
			if s.Rounds > 0 {
				lag = max(lag, b.waitAtLeast("circle.pt", s.Rounds, 3*time.Second)) // more, if another round closed meanwhile
			}
			time.Sleep(300 * time.Millisecond)
		}
		end := summary(t, base, 3*time.Minute, func(s web.Summary) bool { return s.Done && len(s.Ledger.Slashes) > 0 })
		b.open(base) // the ledger as the run ended
		b.waitCount("circle.pt", rounds, 5*time.Second)
		var order []int
		json.Unmarshal(b.eval(`return [...document.querySelectorAll("circle.pt")].map(c => +c.dataset.round)`), &order)
		for i, r := range order {
			if r != i+1 {
				t.Fatalf("the chart's points are rounds %v", order)
			}
		}
		if b.count("polyline.train") != 1 {
			t.Fatal("no training-loss line on the chart")
		}
		b.waitCount("tr.slash", len(end.Ledger.Slashes), 5*time.Second)
		if n := b.count("td.slashed"); n == 0 {
			t.Fatal("no worker is shown as slashed")
		}
		if l := b.text("#ledger"); !strings.Contains(l, "payload-mismatch") || !strings.Contains(l, "verified: yes") {
			t.Fatalf("the ledger section: %q", l)
		}
		b.screenshot("demo.png")
		b.open(base + "round/1")
		b.waitCount("#detail h2", 1, 5*time.Second)
		b.screenshot("demo-round-1.png")
		t.Logf("%d points; the page lagged a closed round by at most %s; %d workers slashed, %d slash events",
			rounds, lag.Round(time.Millisecond), b.count("td.slashed"), len(end.Ledger.Slashes))
	})

	t.Run("synthetic history", func(t *testing.T) {
		b.t = t // failures are the subtest's
		// 1,000 rounds and 100 workers: how long the page takes to show
		// them all (measured, reported; not a timed assertion).
		hub := web.NewHub("synthetic", 1000)
		for r := 1; r <= 1000; r++ {
			rd := web.Round{Round: r, ValLoss: 4 / float64(r), Tokens: 4096}
			for w := range 100 {
				rd.Accepted = append(rd.Accepted, fmt.Sprintf("worker-%03d", w))
			}
			hub.AddRound(rd)
		}
		srv, err := web.Listen("127.0.0.1:0", hub, false)
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		began := time.Now()
		b.open(srv.URL())
		b.waitCount("circle.pt", 1000, 10*time.Second)
		b.waitCount("tr.worker", 100, 10*time.Second)
		t.Logf("1,000 rounds and 100 workers on the page %s after it was asked for", time.Since(began).Round(time.Millisecond))
		b.screenshot("synthetic.png")
	})

	t.Run("killed worker", func(t *testing.T) {
		b.t = t // failures are the subtest's
		dir := t.TempDir()
		idOut, err := exec.Command(bin, "node", "id", "--data-dir", filepath.Join(dir, "agg")).Output()
		if err != nil {
			t.Fatal(err)
		}
		join := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", freePort(t), strings.TrimSpace(string(idOut)))
		base := fmt.Sprintf("http://127.0.0.1:%d/", freePort(t))
		start(t, bin, append([]string{"node", "aggregate", "--data-dir", filepath.Join(dir, "agg"), "--listen", strings.SplitN(join, "/p2p/", 2)[0],
			"--min-stake", "0", "--rounds", "40", "--inner-steps", "100", "--quorum", "1", "--round-timeout", "4s", "--eval-batches", "2", "--threads", "1",
			"--http", strings.TrimSuffix(strings.TrimPrefix(base, "http://"), "/"), "--http-linger", "3m"}, shape...)...)
		workers := map[string]*proc{}
		for i := range 3 {
			wdir := filepath.Join(dir, fmt.Sprint("w", i))
			out, err := exec.Command(bin, "node", "id", "--data-dir", wdir).Output()
			if err != nil {
				t.Fatal(err)
			}
			workers[strings.TrimSpace(string(out))] = start(t, bin, "node", "work", "--join", join, "--data-dir", wdir, "--threads", "1")
		}
		// Kill a worker the view has seen contribute (on a loaded machine
		// the third may join late).
		s := summary(t, base, 2*time.Minute, func(s web.Summary) bool { return s.Rounds >= 2 && len(s.Workers) >= 2 })
		b.open(base)
		b.waitAtLeast("tr.worker", 2, 5*time.Second)
		victim := s.Workers[0].ID
		workers[victim].cmd.Process.Kill()
		s = summary(t, base, 2*time.Minute, func(s web.Summary) bool {
			for _, w := range s.Workers {
				if w.ID == victim && w.Gone {
					return true
				}
			}
			return false
		})
		// The page, open all along, shows it without a reload.
		b.waitCount(`tr.worker.gone[data-id="`+victim+`"]`, 1, 5*time.Second)
		if n := b.count("tr.worker.gone"); n != 1 {
			t.Fatalf("%d workers shown as gone, want 1", n)
		}
		// The aggregator's ledger replays from genesis while the run goes on.
		summary(t, base, time.Minute, func(s web.Summary) bool { return s.Ledger.Verified != nil && *s.Ledger.Verified })
		for began := time.Now(); !strings.Contains(b.text("#ledger"), "verified: yes"); time.Sleep(100 * time.Millisecond) {
			if time.Since(began) > 10*time.Second {
				t.Fatalf("the ledger section: %q", b.text("#ledger"))
			}
		}
		// The workers report their training time: the page shows their
		// compute share.
		if shares := b.count("tr.worker td:last-child:not(:empty)"); shares < 2 {
			t.Fatalf("%d workers with a compute share on the page", shares)
		}
		b.screenshot("killed-worker.png")
		b.open(base + "worker/" + victim)
		b.waitCount("#detail h2", 1, 5*time.Second)
		if n := b.count("#worker-rounds tr"); n < 2 || !strings.Contains(b.text("#worker-rounds"), "accepted") {
			t.Fatalf("the killed worker's page lists %d rows: %q", n, b.text("#worker-rounds"))
		}
		b.screenshot("killed-worker-page.png")
		t.Logf("the killed worker shows as gone after round %d", s.Rounds)
	})
}
