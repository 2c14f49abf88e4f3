package node

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/wire"
)

// ProtoReveal is how a validator asks a worker for the local state it
// started a round from (its inner AdamW moments and error-feedback
// residual, diloco.LocalState's canonical encoding), to recompute the
// worker's contribution. The worker committed to the state's hash before
// the round closed; the validator checks the revealed bytes against it.
const ProtoReveal = "/cairn/verify/reveal/1.0.0"

// Message kinds of the reveal protocol (after the DiLoCo ones).
const (
	kindRevealReq uint8 = 32 + iota
	kindReveal
)

type revealRequest struct {
	Round int `json:"round"`
}

// revealReply is followed by a blob of the state's canonical encoding.
type revealReply struct {
	Round int    `json:"round"`
	Hash  string `json:"hash"`
}

// Bounds of a reveal: the state is about three times the model's size
// (two AdamW moments and the residual), so it gets the weights' rates.
const (
	revealStall   = aggFetchStall
	revealBase    = aggFetchBase
	revealMinRate = aggFetchMinRate
)

// RevealStore keeps a worker's start states of its most recent rounds,
// encoded, until validators have had their chance to ask for them (the
// ledger's settlement lag bounds how long that is). It is safe for
// concurrent use.
type RevealStore struct {
	keep int

	mu     sync.Mutex
	states map[int]revealState
}

type revealState struct {
	hash diloco.Hash
	enc  []byte
}

// NewRevealStore keeps the states of the last keep rounds (at least 1).
func NewRevealStore(keep int) *RevealStore {
	return &RevealStore{keep: max(1, keep), states: map[int]revealState{}}
}

// Put records s as the start state of round, and forgets the states of
// rounds keep or more rounds older. It fails, recording nothing, when s
// does not encode (see diloco.LocalState.MarshalBinary).
func (r *RevealStore) Put(round int, s diloco.LocalState) error {
	enc, err := s.MarshalBinary()
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states[round] = revealState{hash: sha256.Sum256(enc), enc: enc}
	for k := range r.states {
		if k <= round-r.keep {
			delete(r.states, k)
		}
	}
	return nil
}

// Get returns the encoded start state of round and its hash (shared: do
// not modify), and whether it is kept.
func (r *RevealStore) Get(round int) (enc []byte, hash diloco.Hash, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.states[round]
	return s.enc, s.hash, ok
}

// Serve answers reveal requests on tr from the peers allowed says may ask
// (the run's validators: nobody else needs a worker's optimiser state, and
// each answer costs three models' worth of upload), counting the bytes in
// c (nil: uncounted). Anything else is refused with its reason.
func (r *RevealStore) Serve(tr Transport, allowed func(peer string) bool, c *wire.Counter, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tr.Handle(ProtoReveal, func(ns wire.NetStream, from string) {
		defer ns.Close()
		s := newProgress(counted(ns, c), ns, revealStall, time.Now().Add(revealBase))
		var req revealRequest
		if err := wire.ReadJSON(s, kindRevealReq, maxControl, &req); err != nil {
			ns.Reset()
			return
		}
		if !allowed(from) {
			log.Warn("reveal refused", "peer", from, "round", req.Round, "why", "not a validator of this run")
			wire.WriteError(s, "only the run's validators may ask for a worker's state")
			return
		}
		enc, hash, ok := r.Get(req.Round)
		if !ok {
			wire.WriteError(s, fmt.Sprintf("no start state of round %d kept here", req.Round))
			return
		}
		if err := wire.WriteJSON(s, kindReveal, revealReply{Round: req.Round, Hash: hash.String()}); err != nil {
			return
		}
		s.allow(wire.EncodedBlobSize(int64(len(enc))), revealBase, revealMinRate)
		if err := wire.WriteBlob(s, enc); err != nil {
			log.Debug("reveal not sent", "peer", from, "round", req.Round, "err", err)
		}
	})
}

// FetchReveal asks worker for the start state it committed to for round
// of run cfg, over tr (which must be connected to it), counting the bytes
// in c (nil: uncounted). It returns the encoded state, exactly
// diloco.StateSize(cfg) bytes, unchecked against any commitment (the
// validator does that). It fails when the worker refuses, sends another
// size or round, or stalls.
func FetchReveal(ctx context.Context, tr Transport, c *wire.Counter, worker string, round int, cfg diloco.RunConfig) ([]byte, error) {
	ns, err := tr.Open(ctx, worker, ProtoReveal)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	s := newProgress(counted(ns, c), ns, revealStall, time.Now().Add(revealBase))
	if err := wire.WriteJSON(s, kindRevealReq, revealRequest{Round: round}); err != nil {
		return nil, err
	}
	var rep revealReply
	if err := wire.ReadJSON(s, kindReveal, maxControl, &rep); err != nil {
		return nil, err
	}
	if rep.Round != round {
		return nil, fmt.Errorf("asked for the state of round %d, got round %d's", round, rep.Round)
	}
	enc := make([]byte, diloco.StateSize(cfg))
	s.allow(wire.EncodedBlobSize(int64(len(enc))), revealBase, revealMinRate)
	if err := wire.ReadBlobInto(s, enc); err != nil {
		return nil, fmt.Errorf("the state of round %d: %v", round, err)
	}
	return enc, nil
}

// counted counts a stream's bytes in c, unless c is nil.
func counted(s wire.Stream, c *wire.Counter) wire.Stream {
	if c == nil {
		return s
	}
	return wire.CountStream(s, c)
}
