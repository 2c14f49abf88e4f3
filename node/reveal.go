package node

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
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
	revealStall = aggFetchStall
	revealBase  = aggFetchBase
	// revealAttempts and revealRetry: a reveal is asked for again after
	// revealRetry, then twice that, before the worker is failed.
	revealAttempts = 3
	revealRetry    = 5 * time.Second
	revealMinRate  = aggFetchMinRate
)

// RevealSource gives the encoded start state a worker committed to for
// round (diloco.LocalState's canonical encoding), or false when it keeps
// none for that round.
type RevealSource func(round int) ([]byte, bool)

// serveReveals answers reveal requests on tr from the peers allowed says
// may ask (the run's validators: nobody else needs a worker's optimiser
// state, and each answer costs three models' worth of upload), from
// source, counting the bytes in c (nil: uncounted). Anything else is
// refused with its reason.
func serveReveals(tr Transport, source RevealSource, allowed func(peer string, round int) bool, c *wire.Counter, log *slog.Logger) {
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
		if !allowed(from, req.Round) {
			log.Warn("reveal refused", "peer", from, "round", req.Round, "why", "not a validator of this run")
			wire.WriteError(s, "only the run's validators may ask for a worker's state")
			return
		}
		enc, ok := source(req.Round)
		if !ok {
			wire.WriteError(s, fmt.Sprintf("no start state of round %d kept here", req.Round))
			return
		}
		hash := sha256.Sum256(enc)
		if err := wire.WriteJSON(s, kindReveal, revealReply{Round: req.Round, Hash: diloco.Hash(hash).String()}); err != nil {
			return
		}
		s.allow(wire.EncodedBlobSize(int64(len(enc))), revealBase, revealMinRate)
		if err := wire.WriteBlob(s, enc); err != nil {
			log.Debug("reveal not sent", "peer", from, "round", req.Round, "err", err)
		}
		log.Info("start state revealed", "round", req.Round, "to", shortID(from))
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
