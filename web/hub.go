// Package web is the live view of a run: a Hub holds what the page shows
// (rounds, workers, the ledger), fed by the node as the run goes; Handler
// serves the page (embedded), a read-only JSON API under /api/ that the
// page itself uses, and server-sent events when a round closes. Nothing
// served changes the run.
package web

import (
	"sort"
	"sync"
	"time"

	"github.com/cairnlabs/cairn/ledger"
)

// Round is one closed round as the page shows it.
type Round struct {
	Round   int     `json:"round"` // 1-based: the weights after it are Round's
	ValLoss float64 `json:"val_loss"`
	// TrainLoss is the training loss: the workers' last inner steps' (as
	// they report it), or a member's own; the chart draws it beside the
	// validation loss, or alone when ValLoss is 0.
	TrainLoss float64 `json:"train_loss,omitempty"`
	// DDPValLoss is the data-parallel reference's validation loss at the
	// same tokens, when known (0: unknown).
	DDPValLoss float64   `json:"ddp_val_loss,omitempty"`
	Tokens     int64     `json:"tokens"`     // trained in this round
	TookMs     int64     `json:"took_ms"`    // from the round's opening to its close
	BytesSent  int64     `json:"bytes_sent"` // the run's traffic so far, both ways
	DDPBytes   int64     `json:"ddp_bytes"`  // what data parallelism would have sent by now
	Accepted   []string  `json:"accepted"`   // workers whose contributions were aggregated
	Refused    []Refusal `json:"refused"`    // contributions left out, with the reason
	Missing    []string  `json:"missing"`    // workers the round waited for in vain
	// Compute is the training time (ms) each contributor reported.
	Compute map[string]int64 `json:"compute_ms,omitempty"`
	Weights string           `json:"weights"` // hash of the weights after the round
}

// Refusal is a contribution a round left out and why.
type Refusal struct {
	Worker string `json:"worker"`
	Reason string `json:"reason"`
}

// Worker is one worker's record over the run.
type Worker struct {
	ID       string `json:"id"`
	Accepted int    `json:"accepted"`
	Refused  int    `json:"refused"`
	// LastRound is the last round the worker contributed to (0: none).
	LastRound int `json:"last_round"`
	// Gone: the worker missed the last round it was waited for, or has
	// contributed to neither of the last two rounds.
	Gone    bool   `json:"gone"`
	Balance uint64 `json:"balance"`
	Stake   uint64 `json:"stake"`
	Slashed uint64 `json:"slashed"`
	// ComputeShare is the share of its time the worker spent training,
	// when known (0: unknown): from the training time it reported over the
	// rounds' durations, or measured at the end of a demo.
	ComputeShare float64 `json:"compute_share,omitempty"`

	computeMs, roundMs int64
}

// Slash is a slashing event on the ledger, with its evidence.
type Slash struct {
	Round    int    `json:"round"`
	Worker   string `json:"worker"`
	Amount   uint64 `json:"amount"`
	Evidence string `json:"evidence"`
}

// Ledger is the run's ledger as last read.
type Ledger struct {
	Height   int64 `json:"height"`
	Verified *bool `json:"verified,omitempty"` // nil: not checked yet
	// VerifyError says what the last replay found wrong.
	VerifyError string  `json:"verify_error,omitempty"`
	Minted      uint64  `json:"minted"`
	Burned      uint64  `json:"burned"`
	Slashes     []Slash `json:"slashes"`
	// Rewards are the units each settled round paid its contributors.
	Rewards []Reward `json:"rewards"`
}

// Reward is what a settled round paid.
type Reward struct {
	Round int    `json:"round"`
	Paid  uint64 `json:"paid"`
}

// Summary is the run at a glance: what /api/run returns.
type Summary struct {
	Name        string    `json:"name"`
	Started     time.Time `json:"started"`
	TotalRounds int       `json:"total_rounds"`
	Rounds      int       `json:"rounds"` // closed so far
	Tokens      int64     `json:"tokens"`
	TokensPerS  float64   `json:"tokens_per_s"`
	LastValLoss float64   `json:"last_val_loss"`
	Workers     []Worker  `json:"workers"`
	Ledger      Ledger    `json:"ledger"`
	Serving     *Serving  `json:"serving,omitempty"` // when the node serves the model
	Done        bool      `json:"done"`
}

// Hub holds the view of one run. Its methods are safe for concurrent use.
type Hub struct {
	mu      sync.Mutex
	name    string
	total   int
	started time.Time
	now     func() time.Time
	rounds  []Round
	workers map[string]*Worker
	ledger  Ledger
	done    bool
	subs    map[chan Round]struct{}

	// The ledger source and what was read of it (see SetLedgerSource).
	src       LedgerSource
	accountOf func(string) (ledger.PubKey, error)
	nameOf    func(ledger.PubKey) string
	ledgerAt  time.Time

	servingSrc func() (Serving, error)
	servingAt  time.Time
	serving    *Serving
	scanned    uint64 // rounds below this were scanned for slashing
	verifying  bool
	verifiedAt time.Time
	verifyTook time.Duration // the last replay
	readTook   time.Duration // the last ledger read
	gen        int           // SetLedgerSource calls, to drop a replay of an older source
	reading    bool
}

// MaxSubscribers bounds the live connections (server-sent events) a hub
// feeds at once; more are refused.
const MaxSubscribers = 64

// NewHub starts the view of a run named name of total rounds.
func NewHub(name string, total int) *Hub {
	return &Hub{name: name, total: total, started: time.Now(), now: time.Now,
		workers: map[string]*Worker{}, subs: map[chan Round]struct{}{}}
}

// AddRound records a closed round, updates its workers' records and tells
// every subscriber. A slow subscriber misses the event rather than
// holding the run up.
func (h *Hub) AddRound(r Round) {
	// Lists are [] in the JSON, never null.
	for _, l := range []*[]string{&r.Accepted, &r.Missing} {
		if *l == nil {
			*l = []string{}
		}
	}
	if r.Refused == nil {
		r.Refused = []Refusal{}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rounds = append(h.rounds, r)
	for _, id := range r.Accepted {
		w := h.worker(id)
		w.Accepted++
		w.LastRound, w.Gone = r.Round, false
	}
	for id, ms := range r.Compute {
		if ms > 0 && r.TookMs > 0 {
			w := h.worker(id)
			w.computeMs += ms
			w.roundMs += r.TookMs
			w.ComputeShare = min(1, float64(w.computeMs)/float64(w.roundMs))
		}
	}
	for _, x := range r.Refused {
		w := h.worker(x.Worker)
		w.Refused++
		w.LastRound, w.Gone = r.Round, false
	}
	for _, id := range r.Missing {
		h.worker(id).Gone = true
	}
	for ch := range h.subs {
		select {
		case ch <- r:
		default:
		}
	}
}

// SetAccount records a worker's balance, stake and total slashed.
func (h *Hub) SetAccount(id string, balance, stake, slashed uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := h.worker(id)
	w.Balance, w.Stake, w.Slashed = balance, stake, slashed
}

// SetComputeShare records the share of its time a worker spent training.
func (h *Hub) SetComputeShare(id string, share float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.worker(id).ComputeShare = share
}

// SetLedger records the ledger's state.
func (h *Hub) SetLedger(l Ledger) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ledger = l
}

// Finish marks the run done.
func (h *Hub) Finish() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.done = true
}

func (h *Hub) worker(id string) *Worker {
	w, ok := h.workers[id]
	if !ok {
		w = &Worker{ID: id}
		h.workers[id] = w
	}
	return w
}

// Summary returns the run at a glance.
func (h *Hub) Summary() Summary {
	h.readLedger()
	h.readServing()
	h.mu.Lock()
	defer h.mu.Unlock()
	s := Summary{Name: h.name, Started: h.started, TotalRounds: h.total, Rounds: len(h.rounds), Ledger: h.ledger, Done: h.done}
	s.Ledger.Slashes = append([]Slash{}, h.ledger.Slashes...)
	s.Ledger.Rewards = append([]Reward{}, h.ledger.Rewards...)
	if h.serving != nil {
		sv := *h.serving
		s.Serving = &sv
	}
	for _, r := range h.rounds {
		s.Tokens += r.Tokens
	}
	if len(h.rounds) > 0 {
		s.LastValLoss = h.rounds[len(h.rounds)-1].ValLoss
	}
	if el := h.now().Sub(h.started).Seconds(); el > 0 {
		s.TokensPerS = float64(s.Tokens) / el
	}
	s.Workers = h.workersLocked()
	return s
}

func (h *Hub) workersLocked() []Worker {
	ws := make([]Worker, 0, len(h.workers))
	for _, w := range h.workers {
		ws = append(ws, h.view(w))
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].ID < ws[j].ID })
	return ws
}

// view is w as the page shows it: Gone also when it has been silent for
// two rounds (a worker that disconnected is not waited for, so no round
// names it missing).
func (h *Hub) view(w *Worker) Worker {
	v := *w
	if n := len(h.rounds); n > 0 && h.rounds[n-1].Round-v.LastRound >= 2 {
		v.Gone = true
	}
	return v
}

// Rounds returns at most limit rounds from the from-th (1-based).
func (h *Hub) Rounds(from, limit int) []Round {
	h.mu.Lock()
	defer h.mu.Unlock()
	from = max(from, 1)
	if from > len(h.rounds) {
		return []Round{}
	}
	end := min(len(h.rounds), from-1+limit)
	return append([]Round(nil), h.rounds[from-1:end]...)
}

// Round returns round n (1-based).
func (h *Hub) Round(n int) (Round, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n < 1 || n > len(h.rounds) {
		return Round{}, false
	}
	return h.rounds[n-1], true
}

// Worker returns one worker's record and the rounds it appears in.
func (h *Hub) Worker(id string) (Worker, []Round, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w, ok := h.workers[id]
	if !ok {
		return Worker{}, nil, false
	}
	var rs []Round
	for _, r := range h.rounds {
		in := false
		for _, a := range r.Accepted {
			in = in || a == id
		}
		for _, x := range r.Refused {
			in = in || x.Worker == id
		}
		for _, m := range r.Missing {
			in = in || m == id
		}
		if in {
			rs = append(rs, r)
		}
	}
	return h.view(w), rs, true
}

// subscribe returns a channel of the rounds closed from now on, or false
// when MaxSubscribers are already subscribed.
func (h *Hub) subscribe() (chan Round, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) >= MaxSubscribers {
		return nil, false
	}
	ch := make(chan Round, 16)
	h.subs[ch] = struct{}{}
	return ch, true
}

func (h *Hub) unsubscribe(ch chan Round) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, ch)
}
