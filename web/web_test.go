package web

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/ledger"
)

func synthetic(rounds, workers int) *Hub {
	h := NewHub("test", rounds)
	for r := 1; r <= rounds; r++ {
		rd := Round{Round: r, ValLoss: 4 / float64(r), Tokens: 1000, Weights: fmt.Sprint("w", r)}
		for w := range workers {
			id := fmt.Sprintf("worker-%03d", w)
			switch {
			case w == 0 && r > rounds/2:
				rd.Missing = append(rd.Missing, id)
			case w == 1:
				rd.Refused = append(rd.Refused, Refusal{Worker: id, Reason: "duplicate payload"})
			default:
				rd.Accepted = append(rd.Accepted, id)
			}
		}
		h.AddRound(rd)
	}
	return h
}

func getJSON(t *testing.T, srv *httptest.Server, path string, v any) int {
	t.Helper()
	res, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusOK && v != nil {
		if err := json.NewDecoder(res.Body).Decode(v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	return res.StatusCode
}

func TestAPI(t *testing.T) {
	srv := httptest.NewServer(Handler(synthetic(10, 4)))
	defer srv.Close()
	var s Summary
	if code := getJSON(t, srv, "/api/run", &s); code != 200 || s.Rounds != 10 || s.Tokens != 10000 || len(s.Workers) != 4 {
		t.Fatalf("run: %d %+v", code, s)
	}
	if !s.Workers[0].Gone || s.Workers[0].LastRound != 5 || s.Workers[1].Refused != 10 || s.Workers[2].Accepted != 10 {
		t.Fatalf("workers: %+v", s.Workers)
	}
	var rs []Round
	if code := getJSON(t, srv, "/api/rounds?from=3&limit=4", &rs); code != 200 || len(rs) != 4 || rs[0].Round != 3 {
		t.Fatalf("rounds: %d %+v", code, rs)
	}
	if code := getJSON(t, srv, "/api/rounds?from=11", &rs); code != 200 || len(rs) != 0 {
		t.Fatalf("rounds past the end: %d %+v", code, rs)
	}
	var r Round
	if code := getJSON(t, srv, "/api/rounds/7", &r); code != 200 || r.Round != 7 || r.Refused[0].Reason != "duplicate payload" {
		t.Fatalf("round 7: %d %+v", code, r)
	}
	var w struct {
		Worker
		Rounds []Round `json:"rounds"`
	}
	if code := getJSON(t, srv, "/api/workers/worker-000", &w); code != 200 || len(w.Rounds) != 10 || !w.Gone {
		t.Fatalf("worker: %d %+v", code, w)
	}
	for path, want := range map[string]int{
		"/api/rounds/0": 404, "/api/rounds/11": 404, "/api/rounds/x": 400, "/api/workers/nobody": 404,
		"/api/rounds?limit=0": 400, "/api/rounds?limit=5001": 400, "/api/rounds?from=-1": 400,
		"/api/rounds?from=99999999999999999999": 400, "/api/nothing": 404, "/": 200, "/round/3": 200, "/worker/worker-001": 200,
	} {
		if code := getJSON(t, srv, path, nil); code != want {
			t.Errorf("%s: %d, want %d", path, code, want)
		}
	}
}

// Nothing changes the run: every method but GET and HEAD is refused.
func TestReadOnly(t *testing.T) {
	srv := httptest.NewServer(Handler(synthetic(2, 2)))
	defer srv.Close()
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
		req, _ := http.NewRequest(m, srv.URL+"/api/run", strings.NewReader("{}"))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d, want 405", m, res.StatusCode)
		}
	}
}

// A round added after a client subscribed reaches it as an event.
func TestEvents(t *testing.T) {
	h := synthetic(1, 2)
	srv := httptest.NewServer(Handler(h))
	defer srv.Close()
	res, err := http.Get(srv.URL + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	if line, _ := br.ReadString('\n'); line != ": cairn\n" {
		t.Fatalf("first line %q", line)
	}
	sent := time.Now()
	h.AddRound(Round{Round: 2, ValLoss: 1.5})
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "data: ") {
			var r Round
			if err := json.Unmarshal([]byte(line[6:]), &r); err != nil || r.Round != 2 {
				t.Fatalf("event %q: %v", line, err)
			}
			t.Logf("event after %s", time.Since(sent))
			return
		}
	}
}

// Live connections are bounded: past MaxSubscribers the next is refused.
func TestEventsBounded(t *testing.T) {
	h := NewHub("x", 1)
	var chans []chan Round
	for range MaxSubscribers {
		ch, ok := h.subscribe()
		if !ok {
			t.Fatal("refused below the bound")
		}
		chans = append(chans, ch)
	}
	srv := httptest.NewServer(Handler(h))
	defer srv.Close()
	res, err := http.Get(srv.URL + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("past the bound: %d", res.StatusCode)
	}
	h.unsubscribe(chans[0])
	// A slow subscriber does not hold up the run.
	for r := range 100 {
		h.AddRound(Round{Round: r + 1})
	}
}

func TestListenLoopbackOnly(t *testing.T) {
	if _, err := Listen("0.0.0.0:0", NewHub("x", 1), false); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("a public address without leave: %v", err)
	}
	s, err := Listen("127.0.0.1:0", NewHub("x", 1), false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := http.Get(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(b), `id="chart"`) {
		t.Fatal("the page has no chart")
	}
}

func FuzzQuery(f *testing.F) {
	h := synthetic(20, 3)
	hd := Handler(h)
	f.Add("/api/rounds?from=2&limit=3")
	f.Add("/api/workers/worker-001")
	f.Add("/api/rounds/%ff")
	f.Fuzz(func(t *testing.T, path string) {
		req, err := http.NewRequest("GET", "http://x"+path, nil)
		if err != nil || req.URL.Path == "/api/events" {
			return
		}
		rec := httptest.NewRecorder()
		hd.ServeHTTP(rec, req)
		if rec.Code == 200 && rec.Body.Len() > 1<<20 {
			t.Fatalf("%s: %d bytes", path, rec.Body.Len())
		}
	})
}

// BenchmarkPage1000Rounds: what a browser loads with 1,000 rounds of
// history and 100 workers (the page, the summary, the rounds).
func BenchmarkPage1000Rounds(b *testing.B) {
	srv := httptest.NewServer(Handler(synthetic(1000, 100)))
	defer srv.Close()
	for b.Loop() {
		for _, p := range []string{"/", "/api/run", "/api/rounds?from=1"} {
			res, err := http.Get(srv.URL + p)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	}
}

// BenchmarkLiveRefresh: what one open page costs the node when a round
// closes: the event, then the summary and the new round (a run of 100
// rounds and 8 workers).
func BenchmarkLiveRefresh(b *testing.B) {
	h := synthetic(100, 8)
	hd := Handler(h)
	for b.Loop() {
		for _, p := range []string{"/api/run", "/api/rounds?from=100"} {
			rec := httptest.NewRecorder()
			hd.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		}
		json.Marshal(Round{Round: 100})
	}
}

// Oversized requests are refused before they cost memory, and a crowd of
// idle connections does not keep others out.
func TestHostileClients(t *testing.T) {
	s, err := Listen("127.0.0.1:0", synthetic(3, 2), false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addr := strings.TrimSuffix(strings.TrimPrefix(s.URL(), "http://"), "/")
	req, _ := http.NewRequest("GET", s.URL()+"api/run", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a 64 KiB header: %d, want 431", res.StatusCode)
	}
	var idle []net.Conn
	for range 300 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	var sum Summary
	res, err = http.Get(s.URL() + "api/run")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(res.Body).Decode(&sum)
	res.Body.Close()
	if sum.Rounds != 3 {
		t.Fatalf("with 300 idle connections open: %+v", sum)
	}
}

// A ledger source's slashing, rewards and accounts reach the summary.
func TestLedgerSource(t *testing.T) {
	h := synthetic(2, 2)
	k1 := ledger.PubKey{1}
	src := &fakeLedger{tot: ledger.Totals{}, rounds: []ledger.RoundInfo{
		{Round: 0, Verdicts: []ledger.VerdictRecord{{Worker: k1, Outcome: ledger.Failed, Reason: "payload-mismatch", Slashed: 50, Reward: 0}, {Worker: ledger.PubKey{2}, Outcome: ledger.Passed, Reward: 7}}},
		{Round: 1, Verdicts: []ledger.VerdictRecord{{Worker: ledger.PubKey{2}, Outcome: ledger.Passed, Reward: 9}}}}}
	src.tot.NextSettle = 2
	src.tot.Tip.Height = 5
	h.SetLedgerSource(src, func(id string) (ledger.PubKey, error) {
		if id == "worker-000" {
			return k1, nil
		}
		return ledger.PubKey{2}, nil
	})
	s := h.Summary()
	if s.Ledger.Height != 5 || len(s.Ledger.Slashes) != 1 || s.Ledger.Slashes[0].Worker != "worker-000" || s.Ledger.Slashes[0].Amount != 50 ||
		!strings.Contains(s.Ledger.Slashes[0].Evidence, "payload-mismatch") {
		t.Fatalf("ledger: %+v", s.Ledger)
	}
	if len(s.Ledger.Rewards) != 2 || s.Ledger.Rewards[0].Paid != 7 || s.Ledger.Rewards[1].Paid != 9 {
		t.Fatalf("rewards: %+v", s.Ledger.Rewards)
	}
	if s.Workers[0].Slashed != 50 || s.Workers[0].Balance != 100 {
		t.Fatalf("worker-000: %+v", s.Workers[0])
	}
	// Read at most once a second: a second summary does not scan again.
	s = h.Summary()
	if len(s.Ledger.Slashes) != 1 || src.reads != 1 {
		t.Fatalf("read %d times, %d slashes", src.reads, len(s.Ledger.Slashes))
	}
}

type fakeLedger struct {
	tot    ledger.Totals
	rounds []ledger.RoundInfo
	reads  int
}

func (f *fakeLedger) Totals() (ledger.Totals, error) { f.reads++; return f.tot, nil }
func (f *fakeLedger) Round(r uint64) (ledger.RoundInfo, error) {
	return f.rounds[r], nil
}
func (f *fakeLedger) AccountOf(k ledger.PubKey) (ledger.Account, error) {
	return ledger.Account{Key: k, Balance: 100}, nil
}

// A server's receipts reach the summary, read at most once a second.
func TestServingSource(t *testing.T) {
	h := NewHub("model", 0)
	reads := 0
	h.SetServing(func() (Serving, error) {
		reads++
		return Serving{Requests: 3, PromptTokens: 30, CompletionTokens: 60, Fees: 90, Recorded: 2, RecordedFees: 60}, nil
	})
	s := h.Summary()
	if s.Serving == nil || s.Serving.Requests != 3 || s.Serving.RecordedFees != 60 {
		t.Fatalf("serving: %+v", s.Serving)
	}
	h.Summary()
	if reads != 1 {
		t.Fatalf("read %d times in a second", reads)
	}
	if NewHub("run", 1).Summary().Serving != nil {
		t.Fatal("a hub without a server shows serving")
	}
}

type verifyingLedger struct {
	fakeLedger
	err error
}

func (v *verifyingLedger) Verify() error { return v.err }

// A source that can replay its ledger has the verdict on the page, with
// the reason when it fails.
func TestLedgerVerified(t *testing.T) {
	for _, bad := range []error{nil, fmt.Errorf("block 3: state root differs")} {
		h := NewHub("x", 1)
		src := &verifyingLedger{err: bad}
		h.SetLedgerSource(src, func(string) (ledger.PubKey, error) { return ledger.PubKey{}, nil })
		h.Summary()
		deadline := time.Now().Add(5 * time.Second)
		for {
			h.mu.Lock()
			got := h.ledger.Verified
			msg := h.ledger.VerifyError
			h.mu.Unlock()
			if got != nil {
				if *got != (bad == nil) || (bad != nil && msg != bad.Error()) {
					t.Fatalf("verified %v (%q) for a replay that gave %v", *got, msg, bad)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no verdict")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// A worker's compute share is its reported training time over the
// durations of the rounds it reported in.
func TestComputeShare(t *testing.T) {
	h := NewHub("x", 2)
	h.AddRound(Round{Round: 1, TookMs: 1000, Accepted: []string{"w"}, Compute: map[string]int64{"w": 600}})
	h.AddRound(Round{Round: 2, TookMs: 1000, Accepted: []string{"w", "v"}, Compute: map[string]int64{"w": 200}})
	s := h.Summary()
	for _, w := range s.Workers {
		want := map[string]float64{"w": 0.4, "v": 0}[w.ID]
		if w.ComputeShare < want-1e-9 || w.ComputeShare > want+1e-9 {
			t.Fatalf("%s: compute share %v, want %v", w.ID, w.ComputeShare, want)
		}
	}
}
