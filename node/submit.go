package node

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/verify"
	"github.com/cairnlabs/cairn/wire"
)

// maxPayload bounds a contribution: the largest payload the run's codec
// writes for the model's parameters.
func maxPayload(cfg diloco.RunConfig) int64 {
	return compress.MaxEncodedSize(cfg.Codec, cfg.Model.NumParams())
}

// maxUpdate bounds a published update: the largest payload the run's
// update codec writes.
func maxUpdate(cfg diloco.RunConfig) int64 {
	return compress.MaxEncodedSize(cfg.UpdateCodec(), cfg.Model.NumParams())
}

// serveSubmit takes a contribution and the worker's commit to it. The
// header is checked (round, weights, participant, duplicate, deadline,
// tokens) and then the commit (a commit transaction signed for this chain
// by the stream's own identity, for the request's round and tokens)
// before a byte of the payload is read, and the payload may be no larger
// than the run's codec writes. Its digest must be the committed one. The
// commit is then queued on the chain (the ledger's own checks: nonce,
// stake, continuity of the worker's local state, one commit per round)
// and only then is the contribution handed to the state machine. A
// refusal before the commit is queued is a one-line refusal; once it is
// queued, the answer is an ack, which says if the state machine refused
// the contribution all the same. The same commit sent again (a worker
// that lost the answer) gets the same ack.
func (a *Aggregator) serveSubmit(s *progressStream, from string) error {
	var req submitRequest
	if err := wire.ReadJSON(s, kindSubmit, maxControl, &req); err != nil {
		return err
	}
	hash, err := diloco.ParseHash(req.Hash)
	if err != nil {
		return refuse("%v", err)
	}
	a.mu.Lock()
	if c := a.commits[from]; c != nil && len(req.Commit) > 0 && sha256.Sum256(req.Commit) == c.txHash && req.Round == a.agg.Round() {
		reply := ack{Round: req.Round, Refused: c.refused}
		a.mu.Unlock()
		return wire.WriteJSON(s, kindAck, reply)
	}
	err = a.agg.CanSubmit(from, req.Round, hash, req.Tokens, time.Now())
	a.mu.Unlock()
	var c *roundCommit
	if err == nil {
		c, err = a.led.checkCommit(from, &req)
	}
	if err != nil {
		a.log.Warn("contribution refused", "peer", from, "round", req.Round, "err", err)
		return refuse("%v", err)
	}
	limit := maxPayload(a.agg.Cfg)
	s.allow(wire.EncodedBlobSize(limit), serveBase, serveMinRate)
	payload, err := wire.ReadBlob(s, limit)
	if err != nil {
		return refuse("%v", err)
	}
	if d := ledger.Hash(verify.PayloadDigest(payload)); d != c.delta {
		a.log.Warn("contribution refused", "peer", from, "round", req.Round, "err", "payload digest differs from the commit's")
		return refuse("the payload's digest %s is not the one committed to (%s)", d, c.delta)
	}
	a.mu.Lock()
	refused, err := a.acceptLocked(from, &req, hash, c, payload)
	a.mu.Unlock()
	if err != nil {
		a.log.Warn("contribution refused", "peer", from, "round", req.Round, "err", err)
		return refuse("%v", err)
	}
	if refused != "" {
		a.log.Warn("contribution refused after its commit was recorded", "peer", from, "round", req.Round, "err", refused)
	}
	if a.dropAck != nil && a.dropAck(from, req.Round) {
		return errors.New("test: the acknowledgement is lost")
	}
	return wire.WriteJSON(s, kindAck, ack{Round: req.Round, Refused: refused})
}

// acceptLocked records a checked commit and hands its contribution to the
// state machine; a.mu is held. An error means the commit was not
// recorded; otherwise refused says why the state machine refused the
// contribution ("" when it took it).
func (a *Aggregator) acceptLocked(from string, req *submitRequest, hash diloco.Hash, c *roundCommit, payload []byte) (refused string, err error) {
	now := time.Now()
	if err := a.agg.CanSubmit(from, req.Round, hash, req.Tokens, now); err != nil {
		return "", err
	}
	if len(a.commits) >= ledger.MaxContributions {
		return "", fmt.Errorf("round %d holds the most contributions a ledger result can name (%d)", req.Round, ledger.MaxContributions)
	}
	for _, o := range a.commits {
		if o.delta == c.delta && o.worker != c.worker {
			return "", fmt.Errorf("the payload is a copy of another contribution to round %d (digest %s)", req.Round, c.delta)
		}
	}
	if err := a.led.queueCommit(c); err != nil {
		return "", err
	}
	if a.commits[from] == nil {
		a.commitOrder = append(a.commitOrder, from)
	}
	a.commits[from] = c
	c.compute = time.Duration(min(max(req.ComputeMs, 0), int64(time.Duration(a.agg.Cfg.RoundTimeout)/time.Millisecond))) * time.Millisecond
	if l := req.Loss; l > 0 && l < 1e6 { // a loss, not a value to trust
		c.loss = l
	}
	if err := a.agg.Submit(from, req.Round, hash, req.Tokens, payload, now); err != nil {
		c.refused = ledgerReason(err.Error())
		if a.valid != nil && errors.Is(err, diloco.ErrPayload) {
			c.payload = payload // committed and absurd: the validator judges it
		}
		a.tickLocked(now) // the round may have been waiting only for it
		return err.Error(), nil
	}
	c.accepted = true
	if a.valid != nil {
		c.payload = payload
	}
	a.screen.submitted(from, req.Round, hash, payload)
	a.tickLocked(now)
	return "", nil
}
