package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/cairnlabs/cairn/ledger"
)

// MaxRequestBytes bounds a request body.
const MaxRequestBytes = 1 << 20

// completionRequest is the body of POST /v1/completions.
type completionRequest struct {
	Model       string          `json:"model"`
	Prompt      json.RawMessage `json:"prompt"`
	MaxTokens   *int            `json:"max_tokens"`
	Temperature *float64        `json:"temperature"`
	TopK        *int            `json:"top_k"`
	TopP        *float64        `json:"top_p"`
	N           *int            `json:"n"`
	Stop        json.RawMessage `json:"stop"`
	Stream      bool            `json:"stream"`
	Seed        *uint64         `json:"seed"`
	User        string          `json:"user"`
}

type apiError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, typ, code, format string, args ...any) {
	var e apiError
	e.Error.Message, e.Error.Type = fmt.Sprintf(format, args...), typ
	if code != "" {
		e.Error.Code = &code
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(e)
}

// Handler serves /v1/completions, /v1/models and /metrics.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", s.models)
	mux.HandleFunc("POST /v1/completions", s.complete)
	mux.Handle("GET /metrics", s.o.Metrics)
	return mux
}

func (s *Server) models(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.authorise(w, r); !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": []map[string]any{
		{"id": s.o.ModelID, "object": "model", "created": 0, "owned_by": "cairn"}}})
}

// authorise reads the bearer key; it answers 401 itself.
func (s *Server) authorise(w http.ResponseWriter, r *http.Request) (ledger.PubKey, bool) {
	key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	acct, known := s.o.Keys[strings.TrimSpace(key)]
	if !ok || !known {
		s.o.Metrics.Counter("cairn_serve_refused_total", "requests refused before generation").Add(1)
		writeError(w, http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "no valid API key: send Authorization: Bearer KEY with a key this server knows")
		return acct, false
	}
	return acct, true
}

// parse validates a completion request against the server's limits.
func (s *Server) parse(body *completionRequest) (request, error) {
	var req request
	if body.Model != "" && body.Model != s.o.ModelID {
		return req, fmt.Errorf("model %q: this server serves %q", body.Model, s.o.ModelID)
	}
	var prompt string
	if err := json.Unmarshal(body.Prompt, &prompt); err != nil {
		var list []string
		if err := json.Unmarshal(body.Prompt, &list); err != nil || len(list) != 1 {
			return req, errors.New("prompt must be a string (or a list of one string)")
		}
		prompt = list[0]
	}
	if prompt == "" {
		return req, errors.New("prompt is empty")
	}
	if len(prompt) > s.o.MaxPrompt {
		return req, fmt.Errorf("prompt of %d bytes, limit %d", len(prompt), s.o.MaxPrompt)
	}
	if s.o.Tokenizer != nil {
		ids := s.o.Tokenizer.Encode(nil, []byte(prompt))
		req.prompt = make([]int32, len(ids))
		for i, id := range ids {
			req.prompt[i] = int32(id)
		}
	} else {
		req.prompt = make([]int32, len(prompt))
		for i := range len(prompt) {
			req.prompt[i] = int32(prompt[i])
		}
	}
	req.maxTokens = 16
	if body.MaxTokens != nil {
		req.maxTokens = *body.MaxTokens
	}
	if req.maxTokens < 1 || req.maxTokens > s.o.MaxTokens {
		return req, fmt.Errorf("max_tokens %d: want 1..%d", req.maxTokens, s.o.MaxTokens)
	}
	req.sampling.Temperature = 1
	if body.Temperature != nil {
		req.sampling.Temperature = *body.Temperature
	}
	if t := req.sampling.Temperature; t < 0 || t > 2 {
		return req, fmt.Errorf("temperature %g: want 0..2", t)
	}
	if body.TopK != nil {
		if *body.TopK < 0 {
			return req, fmt.Errorf("top_k %d: want 0 (all) or more", *body.TopK)
		}
		req.sampling.TopK = *body.TopK
	}
	if body.TopP != nil && *body.TopP != 1 {
		return req, errors.New("top_p is not supported (use top_k)")
	}
	if body.N != nil && *body.N != 1 {
		return req, errors.New("n must be 1")
	}
	if len(body.Stop) > 0 && string(body.Stop) != "null" {
		var one string
		if err := json.Unmarshal(body.Stop, &one); err == nil {
			req.stop = []string{one}
		} else if err := json.Unmarshal(body.Stop, &req.stop); err != nil {
			return req, errors.New("stop must be a string or a list of strings")
		}
		if len(req.stop) > 4 {
			return req, errors.New("at most 4 stop sequences")
		}
		for _, st := range req.stop {
			if st == "" || len(st) > 64 {
				return req, errors.New("stop sequences must be 1..64 bytes")
			}
		}
	}
	req.seed = uint64(time.Now().UnixNano())
	if body.Seed != nil {
		req.seed = *body.Seed
	}
	return req, nil
}

func (s *Server) complete(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	acct, ok := s.authorise(w, r)
	if !ok {
		return
	}
	var body completionRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, MaxRequestBytes))
	if err := dec.Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "", "request body: %v", err)
		return
	}
	req, err := s.parse(&body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "", "%v", err)
		return
	}
	hold := s.o.Price * uint64(len(req.prompt)+req.maxTokens)
	if err := s.reserve(r, acct, hold); err != nil {
		s.o.Metrics.Counter("cairn_serve_refused_total", "requests refused before generation").Add(1)
		var pe *paymentError
		if errors.As(err, &pe) {
			writeError(w, http.StatusPaymentRequired, "insufficient_quota", "insufficient_quota", "%v", err)
		} else {
			writeError(w, http.StatusServiceUnavailable, "server_error", "", "%v", err)
		}
		return
	}
	settled := false
	defer func() {
		if !settled {
			s.release(acct, hold)
		}
	}()
	pieces, err := s.submit(r.Context(), req)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "server_error", "", "%v", err)
		return
	}
	s.mu.Lock()
	s.nextID++
	id := fmt.Sprintf("cmpl-%d-%d", start.Unix(), s.nextID)
	s.mu.Unlock()
	created := start.Unix()
	var flusher http.Flusher
	if body.Stream {
		flusher, _ = w.(http.Flusher)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
	}
	var text strings.Builder
	finish := ""
	completion := 0
	for p := range pieces {
		if p.err != nil {
			if body.Stream {
				fmt.Fprintf(w, "data: %s\n\n", mustJSON(map[string]any{"error": map[string]string{"message": p.err.Error()}}))
			} else {
				writeError(w, http.StatusInternalServerError, "server_error", "", "%v", p.err)
			}
			return
		}
		if p.text != "" {
			text.WriteString(p.text)
			if body.Stream {
				fmt.Fprintf(w, "data: %s\n\n", mustJSON(chunk(id, created, s.o.ModelID, p.text, nil)))
				if flusher != nil {
					flusher.Flush()
				}
			}
		}
		if p.finish != "" {
			finish = p.finish
			break
		}
	}
	completion = len(text.String())
	if finish == "length" {
		completion = req.maxTokens
	}
	fee := s.o.Price * uint64(len(req.prompt)+completion)
	if err := s.settle(acct, hold, fee, id, len(req.prompt), completion); err != nil {
		settled = true // released by settle
		if body.Stream {
			fmt.Fprintf(w, "data: %s\n\n", mustJSON(map[string]any{"error": map[string]string{"message": err.Error()}}))
		} else {
			writeError(w, http.StatusInternalServerError, "server_error", "", "%v", err)
		}
		return
	}
	s.mu.Lock()
	s.stats.Requests++
	s.stats.PromptTokens += int64(len(req.prompt))
	s.stats.CompletionTokens += int64(completion)
	s.mu.Unlock()
	settled = true
	m := s.o.Metrics
	m.Counter("cairn_serve_requests_total", "completion requests answered").Add(1)
	m.Counter("cairn_serve_prompt_tokens_total", "prompt tokens of answered requests").Add(float64(len(req.prompt)))
	m.Counter("cairn_serve_completion_tokens_total", "tokens generated for answered requests").Add(float64(completion))
	m.Counter("cairn_serve_seconds_total", "time spent answering requests, summed").Add(time.Since(start).Seconds())
	m.Counter("cairn_serve_fees_total", "fees charged, in ledger units").Add(float64(fee))
	usage := map[string]int{"prompt_tokens": len(req.prompt), "completion_tokens": completion, "total_tokens": len(req.prompt) + completion}
	if body.Stream {
		last := chunk(id, created, s.o.ModelID, "", &finish)
		last["usage"] = usage
		fmt.Fprintf(w, "data: %s\n\n", mustJSON(last))
		fmt.Fprint(w, "data: [DONE]\n\n")
		if flusher != nil {
			flusher.Flush()
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"id": id, "object": "text_completion", "created": created, "model": s.o.ModelID,
		"choices": []map[string]any{{"text": text.String(), "index": 0, "logprobs": nil, "finish_reason": finish}},
		"usage":   usage,
	})
}

func chunk(id string, created int64, model, text string, finish *string) map[string]any {
	return map[string]any{"id": id, "object": "text_completion", "created": created, "model": model,
		"choices": []map[string]any{{"text": text, "index": 0, "logprobs": nil, "finish_reason": finish}}}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// paymentError is an account that cannot pay for a request.
type paymentError struct{ msg string }

func (e *paymentError) Error() string { return e.msg }

// reserve holds fee against acct's balance less what it was charged and
// what is held for its requests in flight.
func (s *Server) reserve(r *http.Request, acct ledger.PubKey, fee uint64) error {
	if s.o.Balances == nil || fee == 0 {
		return nil
	}
	bal, err := s.o.Balances(r.Context(), acct)
	if err != nil {
		return fmt.Errorf("the ledger cannot be read: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	spent := s.spent[acct]
	if spent > bal || bal-spent < fee {
		return &paymentError{fmt.Sprintf("this request may cost %d units (%d tokens at %d); the account has %d left of its ledger balance %d",
			fee, fee/s.o.Price, s.o.Price, bal-min(bal, spent), bal)}
	}
	s.spent[acct] = spent + fee
	return nil
}

func (s *Server) release(acct ledger.PubKey, fee uint64) {
	if s.o.Balances == nil || fee == 0 {
		return
	}
	s.mu.Lock()
	s.spent[acct] -= fee
	s.mu.Unlock()
}

// settle writes the receipt of a completed request and replaces the hold
// by its fee (at most the hold, so the account never looks richer while
// the receipt is written); if the receipt cannot be written the hold is
// released and nothing is charged.
func (s *Server) settle(acct ledger.PubKey, hold, fee uint64, id string, prompt, completion int) error {
	if s.o.Balances == nil {
		return nil
	}
	rc := &Receipt{ID: id, Model: s.o.ModelHash, Requester: acct, PromptTokens: prompt, CompletionTokens: completion, Fee: fee, Time: s.o.Now().UnixNano()}
	rc.Sign(s.o.Key)
	log := s.o.Receipts
	if log == nil {
		log = &s.mem
	}
	if err := log.Append(rc); err != nil {
		s.release(acct, hold)
		return err
	}
	s.mu.Lock()
	s.spent[acct] = s.spent[acct] - hold + fee
	s.mu.Unlock()
	return nil
}

// Receipts are the receipts the server has written.
func (s *Server) Receipts() ([]Receipt, error) {
	if s.o.Receipts != nil {
		return s.o.Receipts.All()
	}
	return s.mem.All()
}

// Stats counts the requests the server has answered (charged or free)
// and their tokens.
type Stats struct {
	Requests                       int
	PromptTokens, CompletionTokens int64
}

// Stats returns what the server has answered so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Spent is what the server has charged acct (receipts written; holds of
// requests in flight included).
func (s *Server) Spent(acct ledger.PubKey) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spent[acct]
}
