// Package serve answers OpenAI-compatible completion requests from a Cairn
// model: POST /v1/completions (prompt, max_tokens, temperature, top_k,
// stop, seed, stream as server-sent events) and GET /v1/models.
//
// Every request carries an API key ("Authorization: Bearer KEY") bound to
// a ledger account. A request with no valid key is refused with 401, and
// one whose account cannot pay for its prompt and max_tokens at the
// server's price with 402, both before any generation. What an account can
// pay is its balance on the ledger less what this server has charged it
// (the receipts it wrote). Each completed request yields a receipt (model
// hash, requester, tokens, fee, time) signed by the server's key and
// appended to the receipt log before the response ends.
//
// Generation is scheduled by one goroutine that owns every request's
// KV-cache generator and advances all of them by a token per turn in one
// batched step (gpt.Batch: each weight row read once for the whole
// batch), so that concurrent requests share the model without locks, a
// long request does not hold up a short one, and throughput grows with
// the number of requests in flight. Watermarking (package watermark) applies
// to every token when the server has a scheme.
package serve

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/metrics"
	"github.com/cairnlabs/cairn/watermark"
)

// Balances reads an account's balance on the ledger.
type Balances func(ctx context.Context, k ledger.PubKey) (uint64, error)

// Options configure a Server.
type Options struct {
	Model     *gpt.Model
	ModelID   string      // the name clients ask for (default "cairn")
	ModelHash ledger.Hash // hash of the served weights, in every receipt
	Watermark *watermark.Scheme
	// Keys maps API keys to the accounts they charge.
	Keys map[string]ledger.PubKey
	// Balances reads balances; nil serves without charging (every key
	// may ask anything, fees are 0).
	Balances Balances
	// Price is the fee per token (prompt and completion), in ledger
	// units.
	Price uint64
	// Receipts records receipts durably; nil keeps them in memory.
	Receipts ReceiptLog
	// RecordState is the file where Record keeps how many receipts are on
	// the ledger (those are not counted against balances again); empty
	// when the server does not record receipts on the ledger.
	RecordState string
	// Key signs receipts.
	Key ed25519.PrivateKey
	// Tokenizer turns prompts into the model's token ids and tokens back
	// into text (tokenizer.Tokenizer); nil for a byte-level model, whose
	// tokens are bytes.
	Tokenizer Tokenizer
	// MaxTokens bounds max_tokens (default 512); MaxPrompt the prompt's
	// bytes (default 4096); MaxActive the requests generated at once
	// (default 64; more wait their turn) and MaxQueue those waiting
	// (default 1024; more are refused with 503).
	MaxTokens, MaxPrompt, MaxActive, MaxQueue int
	Metrics                                   *metrics.Registry
	// Now is the receipts' clock (default time.Now).
	Now func() time.Time
}

// Tokenizer is what the server needs of a model's tokenizer.
type Tokenizer interface {
	Encode(dst []int, text []byte) []int
	Token(id int) ([]byte, bool)
	Vocab() int
}

// Server is a running completion service.
type Server struct {
	o       Options
	sched   chan *job
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	spent   map[ledger.PubKey]uint64 // fees of receipts written, and of requests in flight
	stats   Stats
	nextID  uint64
	closeMu sync.Once
	mem     memLog
	recMu   sync.Mutex // one Record at a time
}

// New starts a server's scheduler. It fails without a model or with a
// receipt signing key of the wrong size; a watermark must match the
// model's vocabulary.
func New(o Options) (*Server, error) {
	if o.Model == nil {
		return nil, errors.New("serve: no model")
	}
	if o.Balances != nil && len(o.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("serve: charging needs an ed25519 key to sign receipts")
	}
	if o.Watermark != nil && o.Watermark.Vocab != o.Model.Config.VocabSize {
		return nil, fmt.Errorf("serve: watermark over %d tokens, model of %d", o.Watermark.Vocab, o.Model.Config.VocabSize)
	}
	if o.Tokenizer != nil && o.Tokenizer.Vocab() != o.Model.Config.VocabSize {
		return nil, fmt.Errorf("serve: tokenizer of %d tokens, model of %d", o.Tokenizer.Vocab(), o.Model.Config.VocabSize)
	}
	if o.ModelID == "" {
		o.ModelID = "cairn"
	}
	o.MaxTokens = orDefault(o.MaxTokens, 512)
	o.MaxPrompt = orDefault(o.MaxPrompt, 4096)
	o.MaxActive = orDefault(o.MaxActive, 64)
	o.MaxQueue = orDefault(o.MaxQueue, 1024)
	if o.Metrics == nil {
		o.Metrics = metrics.NewRegistry()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{o: o, sched: make(chan *job, o.MaxQueue), stop: make(chan struct{}), done: make(chan struct{}), spent: map[ledger.PubKey]uint64{}}
	if o.Receipts != nil {
		rs, err := o.Receipts.All()
		if err != nil {
			return nil, err
		}
		from := 0
		if o.RecordState != "" {
			st, err := readRecordState(o.RecordState)
			if err != nil {
				return nil, err
			}
			if from = st.Recorded; from > len(rs) {
				return nil, fmt.Errorf("serve: %s counts %d recorded receipts, the log holds %d", o.RecordState, from, len(rs))
			}
		}
		for _, r := range rs[from:] {
			s.spent[r.Requester] += r.Fee
		}
	}
	go s.schedule()
	return s, nil
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// Close stops the scheduler; requests in flight end with an error.
func (s *Server) Close() {
	s.closeMu.Do(func() {
		close(s.stop)
		<-s.done
	})
}

// request is a validated completion request.
type request struct {
	prompt    []int32
	maxTokens int
	sampling  gpt.Sampling
	stop      []string
	seed      uint64
}

// piece is what the scheduler sends a request: the next token's text or
// the end.
type piece struct {
	text   string
	finish string // "", "stop" or "length"
	err    error
}

// job is a request being generated.
type job struct {
	req  request
	ctx  context.Context
	out  chan piece
	g    *gpt.Generator
	r    *rand.Rand
	seq  []int32
	text strings.Builder
	sent int // bytes of text already sent
	n    int // tokens generated
	// prefill are prompt tokens still to feed before sampling.
	prefill []int32
}

// submit queues a request for generation; its pieces arrive on the
// returned channel. It fails with errBusy when the queue is full.
func (s *Server) submit(ctx context.Context, req request) (<-chan piece, error) {
	j := &job{req: req, ctx: ctx, out: make(chan piece, req.maxTokens+2)}
	select {
	case s.sched <- j:
		return j.out, nil
	default:
		return nil, errBusy
	}
}

var errBusy = errors.New("the server is busy: too many requests waiting")

// schedule owns every generator: it admits queued jobs up to MaxActive
// and advances each active job by one token per turn.
func (s *Server) schedule() {
	defer close(s.done)
	var active []*job
	logits := make([]float32, s.o.Model.Config.VocabSize)
	batch := s.o.Model.NewBatch(s.o.MaxActive)
	var gens []*gpt.Generator
	var toks []int32
	for {
		if len(active) == 0 {
			select {
			case j := <-s.sched:
				active = s.admit(active, j)
			case <-s.stop:
				return
			}
		}
		for len(active) < s.o.MaxActive {
			select {
			case j := <-s.sched:
				active = s.admit(active, j)
				continue
			default:
			}
			break
		}
		select {
		case <-s.stop:
			for _, j := range active {
				j.out <- piece{err: errors.New("the server is shutting down")}
			}
			return
		default:
		}
		kept := active[:0]
		gens, toks = gens[:0], toks[:0]
		for _, j := range active {
			if len(j.prefill) > 0 {
				kept = append(kept, j)
				gens, toks = append(gens, j.g), append(toks, j.prefill[0])
				j.prefill = j.prefill[1:]
				continue
			}
			if tok, more := s.advance(j, logits); more {
				kept = append(kept, j)
				gens, toks = append(gens, j.g), append(toks, tok)
			}
		}
		clear(active[len(kept):])
		active = kept
		// Every continuing request's next token in one batched step.
		if err := batch.Append(gens, toks); err != nil {
			for _, j := range active {
				j.out <- piece{err: err}
			}
			active = active[:0]
		}
	}
}

// admit starts a job's generator on its prompt.
func (s *Server) admit(active []*job, j *job) []*job {
	j.g = s.o.Model.NewGenerator()
	// A prompt that fits the window is fed through the batch, a token a
	// turn, with the other requests' tokens (the same logits as Start).
	start := j.req.prompt
	if len(start) <= s.o.Model.Config.BlockSize {
		start, j.prefill = start[:1], start[1:]
	}
	if err := j.g.Start(start); err != nil {
		j.out <- piece{err: err}
		return active
	}
	j.r = rand.New(rand.NewPCG(j.req.seed, 0x5e7e))
	j.seq = append([]int32(nil), j.req.prompt...)
	return append(active, j)
}

// advance samples j's next token and sends what text it completes; it
// returns the token and whether j goes on (the caller appends the token
// to j's generator).
func (s *Server) advance(j *job, logits []float32) (int32, bool) {
	if j.ctx.Err() != nil {
		j.out <- piece{err: j.ctx.Err()}
		return 0, false
	}
	copy(logits, j.g.Logits())
	if s.o.Watermark != nil {
		s.o.Watermark.Bias(j.seq, logits)
	}
	tok := gpt.Sample(logits, j.req.sampling, j.r)
	j.seq = append(j.seq, tok)
	j.n++
	if s.o.Tokenizer != nil {
		b, _ := s.o.Tokenizer.Token(int(tok)) // below the vocabulary: checked by New
		j.text.Write(b)
	} else {
		j.text.WriteByte(byte(tok))
	}
	text := j.text.String()
	// A stop sequence ends the completion before it; text that could
	// still become one is held back.
	for _, st := range j.req.stop {
		if i := strings.Index(text, st); i >= 0 {
			if i > j.sent {
				j.out <- piece{text: text[j.sent:i]}
			}
			j.out <- piece{finish: "stop"}
			return 0, false
		}
	}
	safe := len(text)
	for _, st := range j.req.stop {
		for k := min(len(st)-1, len(text)); k > 0; k-- {
			if strings.HasSuffix(text, st[:k]) {
				safe = min(safe, len(text)-k)
				break
			}
		}
	}
	safe = wholeRunes(text, j.sent, safe)
	if safe > j.sent {
		j.out <- piece{text: text[j.sent:safe]}
		j.sent = safe
	}
	if j.n >= j.req.maxTokens {
		if len(text) > j.sent {
			j.out <- piece{text: text[j.sent:]}
		}
		j.out <- piece{finish: "length"}
		return 0, false
	}
	return tok, true
}

// wholeRunes moves end back (not below from) so that text[:end] does not
// stop inside a UTF-8 sequence that the next bytes may complete: a
// streamed piece is then valid text whenever the bytes are.
func wholeRunes(text string, from, end int) int {
	for i := end - 1; i >= max(from, end-utf8.UTFMax+1); i-- {
		if utf8.RuneStart(text[i]) {
			if !utf8.FullRuneInString(text[i:end]) {
				return i
			}
			break
		}
	}
	return end
}
