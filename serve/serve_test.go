package serve

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/watermark"
)

func key(name string) ed25519.PrivateKey {
	s := sha256.Sum256([]byte(name))
	return ed25519.NewKeyFromSeed(s[:])
}

var (
	alice = ledger.KeyOf(key("alice"))
	bob   = ledger.KeyOf(key("bob"))
)

type testServer struct {
	*Server
	url string
	bal map[ledger.PubKey]uint64
}

func newServer(t *testing.T, charge bool, log ReceiptLog) *testServer {
	t.Helper()
	pool := kernels.NewPool(1)
	t.Cleanup(pool.Close)
	m, err := gpt.New(gpt.DefaultConfig(16, 1, 2, 32), pool)
	if err != nil {
		t.Fatal(err)
	}
	gpt.InitParams(m.Config, m.Params, 1)
	wm, err := watermark.New([]byte("k"), 256, 0, 0, watermark.LeftHash, 0)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{bal: map[ledger.PubKey]uint64{alice: 1000, bob: 10}}
	o := Options{Model: m, Watermark: wm, Keys: map[string]ledger.PubKey{"sk-alice-key": alice, "sk-bob-key": bob},
		Price: 2, Key: key("server"), Receipts: log}
	if charge {
		o.Balances = func(_ context.Context, k ledger.PubKey) (uint64, error) { return ts.bal[k], nil }
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ts.Server = s
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	ts.url = hs.URL
	return ts
}

func (ts *testServer) post(t *testing.T, apiKey, body string) (int, map[string]any, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", ts.url+"/v1/completions", strings.NewReader(body))
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		raw.WriteString(sc.Text() + "\n")
	}
	var v map[string]any
	json.Unmarshal([]byte(raw.String()), &v)
	return resp.StatusCode, v, raw.String()
}

func textOf(v map[string]any) string {
	return v["choices"].([]any)[0].(map[string]any)["text"].(string)
}

func TestCompletionsAndRefusals(t *testing.T) {
	ts := newServer(t, false, nil)
	// The untrained model emits any byte; JSON carries what is not
	// UTF-8 as U+FFFD, so the text is compared as text, the tokens by usage.
	code, v, raw := ts.post(t, "sk-alice-key", `{"prompt":"ROMEO:","max_tokens":30,"seed":3}`)
	if code != 200 || utf8.RuneCountInString(textOf(v)) > 30 || textOf(v) == "" {
		t.Fatalf("completion: %d %s", code, raw)
	}
	u := v["usage"].(map[string]any)
	if u["prompt_tokens"].(float64) != 6 || u["completion_tokens"].(float64) != 30 {
		t.Fatalf("usage %v", u)
	}
	// Streaming with the same seed gives the same text, in chunks.
	code, _, raw = ts.post(t, "sk-alice-key", `{"prompt":"ROMEO:","max_tokens":30,"seed":3,"stream":true}`)
	var streamed strings.Builder
	chunks := 0
	for _, line := range strings.Split(raw, "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var c map[string]any
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatal(err)
		}
		streamed.WriteString(textOf(c))
		chunks++
	}
	if code != 200 || streamed.String() != textOf(v) || chunks < 10 || !strings.HasSuffix(strings.TrimSpace(raw), "data: [DONE]") {
		t.Fatalf("stream: %d, %d chunks, %q vs %q", code, chunks, streamed.String(), textOf(v))
	}
	// The text is watermarked.
	prompt := []int32{'R', 'O', 'M', 'E', 'O', ':'}
	marked, _ := collect(t, ts.Server, request{prompt: prompt, maxTokens: 200, sampling: gpt.Sampling{Temperature: 1}, seed: 4})
	all := prompt
	for _, b := range []byte(marked) {
		all = append(all, int32(b))
	}
	if r := ts.o.Watermark.Detect(all); !r.Watermarked {
		t.Fatalf("served text not watermarked: %+v", r)
	}
	for _, tc := range []struct {
		key, body string
		code      int
		want      string
	}{
		{"", `{"prompt":"x"}`, 401, "API key"},
		{"sk-nobody-key", `{"prompt":"x"}`, 401, "API key"},
		{"sk-alice-key", `{"prompt":"x","max_tokens":0}`, 400, "max_tokens"},
		{"sk-alice-key", `{"prompt":"x","max_tokens":100000}`, 400, "max_tokens"},
		{"sk-alice-key", `{"prompt":""}`, 400, "empty"},
		{"sk-alice-key", `{"prompt":42}`, 400, "prompt"},
		{"sk-alice-key", `{"prompt":"x","model":"gpt-9"}`, 400, "serves"},
		{"sk-alice-key", `{"prompt":"x","temperature":-1}`, 400, "temperature"},
		{"sk-alice-key", `{"prompt":"x","n":2}`, 400, "n must be 1"},
		{"sk-alice-key", `{"prompt":"x","stop":[""]}`, 400, "stop"},
		{"sk-alice-key", `{"prompt":"x"`, 400, "request body"},
	} {
		code, _, raw := ts.post(t, tc.key, tc.body)
		if code != tc.code || !strings.Contains(raw, tc.want) {
			t.Errorf("%s %s: %d %s, want %d naming %q", tc.key, tc.body, code, raw, tc.code, tc.want)
		}
	}
}

// collect runs a request through the scheduler and returns its pieces'
// bytes and how it finished.
func collect(t *testing.T, s *Server, req request) (string, string) {
	t.Helper()
	out, err := s.submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for p := range out {
		if p.err != nil {
			t.Fatal(p.err)
		}
		b.WriteString(p.text)
		if p.finish != "" {
			return b.String(), p.finish
		}
	}
	return "", ""
}

func TestStopSequence(t *testing.T) {
	ts := newServer(t, false, nil)
	prompt := []int32{'R', 'O', 'M', 'E', 'O', ':'}
	full, finish := collect(t, ts.Server, request{prompt: prompt, maxTokens: 40, sampling: gpt.Sampling{Temperature: 1}, seed: 9})
	if len(full) != 40 || finish != "length" {
		t.Fatalf("%d bytes, finish %q", len(full), finish)
	}
	stop := full[20:22]
	got, finish := collect(t, ts.Server, request{prompt: prompt, maxTokens: 40, sampling: gpt.Sampling{Temperature: 1}, seed: 9, stop: []string{stop}})
	if want := full[:strings.Index(full, stop)]; got != want || finish != "stop" {
		t.Fatalf("%q (%s), want %q", got, finish, want)
	}
}

func TestWholeRunes(t *testing.T) {
	for _, tc := range []struct {
		text      string
		from, end int
		want      int
	}{
		{"ab", 0, 2, 2},
		{"a\xc3", 0, 2, 1},     // the first byte of é: held back
		{"a\xc3\xa9", 0, 3, 3}, // é whole
		{"a\xe2\x82", 0, 3, 1}, // two of the three bytes of €
		{"a\xff", 0, 2, 2},     // not UTF-8 at all: nothing to wait for
		{"\xe2\x82", 1, 2, 2},  // the sequence started before from
	} {
		if got := wholeRunes(tc.text, tc.from, tc.end); got != tc.want {
			t.Errorf("wholeRunes(%q, %d, %d) = %d, want %d", tc.text, tc.from, tc.end, got, tc.want)
		}
	}
}

// Charging: a request that cannot be paid for is refused with 402 before
// any generation; each answered request leaves a signed receipt, and the
// fees add up to what the accounts were charged, across a restart.
func TestChargingAndReceipts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "receipts.jsonl")
	log, err := OpenFileLog(path)
	if err != nil {
		t.Fatal(err)
	}
	ts := newServer(t, true, log)
	// Bob holds 10 units: 6 prompt tokens + 16 at 2 units each is 44.
	code, _, raw := ts.post(t, "sk-bob-key", `{"prompt":"ROMEO:"}`)
	if code != 402 || !strings.Contains(raw, "insufficient_quota") {
		t.Fatalf("bob: %d %s", code, raw)
	}
	// Alice (1000 units) can afford 13 requests of 38 tokens (76 units):
	// 988; the 14th is refused.
	var wg sync.WaitGroup
	codes := make([]int, 14)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _, _ = ts.post(t, "sk-alice-key", `{"prompt":"ROMEO:","max_tokens":32}`)
		}()
	}
	wg.Wait()
	ok, refused := 0, 0
	for _, c := range codes {
		switch c {
		case 200:
			ok++
		case 402:
			refused++
		}
	}
	if ok != 13 || refused != 1 {
		t.Fatalf("codes %v: want 13 answered and one refused", codes)
	}
	rs, err := ts.Receipts()
	if err != nil {
		t.Fatal(err)
	}
	var fees uint64
	for _, r := range rs {
		if !r.Verify() || r.Requester != alice || r.Fee != 2*uint64(r.PromptTokens+r.CompletionTokens) {
			t.Fatalf("receipt %+v", r)
		}
		fees += r.Fee
	}
	if len(rs) != 13 || fees != 13*76 {
		t.Fatalf("%d receipts, fees %d", len(rs), fees)
	}
	// A new server on the same receipt file knows what Alice spent.
	ts.Close()
	log.Close()
	log2, err := OpenFileLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer log2.Close()
	ts2 := newServer(t, true, log2)
	if code, _, raw := ts2.post(t, "sk-alice-key", `{"prompt":"ROMEO:","max_tokens":32}`); code != 402 {
		t.Fatalf("after restart: %d %s", code, raw)
	}
	if code, _, raw := ts2.post(t, "sk-alice-key", `{"prompt":"ROM","max_tokens":1}`); code != 200 {
		t.Fatalf("a request she can pay for: %d %s", code, raw)
	}
}

func TestReceiptLogTornAndTampered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.jsonl")
	l, err := OpenFileLog(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		r := &Receipt{ID: fmt.Sprint(i), Requester: alice, Fee: uint64(i)}
		r.Sign(key("server"))
		if err := l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	// A torn last line (a crash mid-write) is dropped and overwritten.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"id":"torn","mod`)
	f.Close()
	l, err = OpenFileLog(path)
	if err != nil {
		t.Fatal(err)
	}
	r := &Receipt{ID: "3", Requester: alice, Fee: 3}
	r.Sign(key("server"))
	if err := l.Append(r); err != nil {
		t.Fatal(err)
	}
	rs, err := l.All()
	if err != nil || len(rs) != 4 || rs[3].ID != "3" {
		t.Fatalf("after a torn line: %d receipts, %v", len(rs), err)
	}
	l.Close()
	// A changed fee breaks its signature: the file is refused.
	b, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(b), `"fee":2`, `"fee":1`, 1)), 0o600)
	if _, err := OpenFileLog(path); err == nil || !strings.Contains(err.Error(), "bad signature") {
		t.Fatalf("tampered receipt: %v", err)
	}
}

func FuzzParseRequest(f *testing.F) {
	s := &Server{o: Options{ModelID: "cairn", MaxTokens: 512, MaxPrompt: 4096}}
	f.Add([]byte(`{"prompt":"ROMEO:","max_tokens":30,"stop":["\n"],"temperature":0.5,"top_k":3}`))
	f.Add([]byte(`{"prompt":["a"],"stop":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var body completionRequest
		if json.Unmarshal(b, &body) != nil {
			return
		}
		req, err := s.parse(&body)
		if err != nil {
			return
		}
		if len(req.prompt) == 0 || len(req.prompt) > 4096 || req.maxTokens < 1 || req.maxTokens > 512 || len(req.stop) > 4 {
			t.Fatalf("accepted %+v", req)
		}
	})
}

func FuzzReceiptLog(f *testing.F) {
	r := &Receipt{ID: "x", Requester: alice, Fee: 1}
	r.Sign(key("server"))
	line, _ := json.Marshal(r)
	f.Add(append(line, '\n'))
	f.Add([]byte("{}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "r.jsonl")
		os.WriteFile(path, b, 0o600)
		l, err := OpenFileLog(path)
		if err != nil {
			return
		}
		defer l.Close()
		rs, err := l.All()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if !r.Verify() {
				t.Fatal("an unverified receipt was read")
			}
		}
	})
}
