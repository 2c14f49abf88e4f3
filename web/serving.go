package web

// Serving is what a model server has done: requests answered, tokens,
// the fees its signed receipts charge, and how many of those receipts
// are recorded on the chain (whose settlement pays the fees out to the
// run's contributors).
type Serving struct {
	Requests         int    `json:"requests"`
	PromptTokens     int64  `json:"prompt_tokens"`
	CompletionTokens int64  `json:"completion_tokens"`
	Fees             uint64 `json:"fees"`
	Recorded         int    `json:"recorded"` // receipts recorded on the chain
	RecordedFees     uint64 `json:"recorded_fees"`
}

// SetServing makes the view show a server's work, read from src at most
// once a second.
func (h *Hub) SetServing(src func() (Serving, error)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.servingSrc = src
}

// readServing refreshes the serving part of the view if it is older than
// a second; the read happens outside the hub's lock.
func (h *Hub) readServing() {
	h.mu.Lock()
	src := h.servingSrc
	if src == nil || h.now().Sub(h.servingAt) < ledgerEvery {
		h.mu.Unlock()
		return
	}
	h.servingAt = h.now()
	h.mu.Unlock()
	sv, err := src()
	if err != nil {
		return
	}
	h.mu.Lock()
	h.serving = &sv
	h.mu.Unlock()
}
