package node

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/secagg"
	"github.com/cairnlabs/cairn/verify"
	"github.com/cairnlabs/cairn/wire"
)

// ProtoSecAgg carries a secure-aggregation cohort's messages between its
// members and the aggregator, which relays them (package secagg: the
// aggregator learns only the cohort's sum). Every request is a JSON
// cohortRequest, with a step's message as a blob after it; the answer is
// a cohortReply, with the asked-for output as a blob after it.
const ProtoSecAgg = "/cairn/diloco/secagg/1.0.0"

// Message kinds on ProtoSecAgg streams.
const (
	kindCohort uint8 = 0x50 + iota
	kindCohortReply
)

// The steps of a cohort request: a member sends its keys, its boxes, its
// masked input (with its ledger commit) and its reveal, and asks for the
// outputs between them.
const (
	stepKeys         = "keys"
	stepBoxes        = "boxes"
	stepMasked       = "masked"
	stepReveal       = "reveal"
	stepGetKeys      = "get-keys"
	stepGetBoxes     = "get-boxes"
	stepGetSurvivors = "get-survivors"
	stepGetResult    = "get-result"
)

// cohortInfo tells a member, in its poll reply, the cohort it trains in.
type cohortInfo struct {
	// Session names the cohort's round (hex of SHA-256 over the run's
	// chain ID, the round, the weights' hash and the members), so that no
	// message of it is valid in another.
	Session string `json:"session"`
	// Members are the cohort's peer IDs, sorted; member i is party i+1.
	Members   []string `json:"members"`
	Threshold int      `json:"threshold"`
}

// cohortRequest is a member's message or question.
type cohortRequest struct {
	Round   int    `json:"round"`
	Session string `json:"session"`
	Step    string `json:"step"`
	// With the masked input: the contribution's header, as a submission's
	// (the commit's delta hash is the digest of the masked input's bytes).
	Tokens    int     `json:"tokens,omitempty"`
	Commit    []byte  `json:"commit,omitempty"`
	ComputeMs int64   `json:"compute_ms,omitempty"`
	Loss      float32 `json:"loss,omitempty"`
}

// cohortReply answers a request. Phase is where the cohort is; Failed
// says why it failed (it no longer takes part in the round); Ready, for a
// question, says that its output follows (keys and boxes as a blob, the
// survivors in the reply, the result as Phase "done").
type cohortReply struct {
	Phase     string   `json:"phase"`
	Failed    string   `json:"failed,omitempty"`
	Ready     bool     `json:"ready,omitempty"`
	Survivors []uint64 `json:"survivors,omitempty"`
}

// Phases of a cohort.
const (
	phaseKeys = iota
	phaseBoxes
	phaseMasked
	phaseReveal
	phaseDone
	phaseFailed
)

var phaseNames = [...]string{"keys", "boxes", "masked", "reveal", "done", "failed"}

// cohortSession is the session of the cohort members in round with
// weights hash on chain.
func cohortSession(chain string, round int, hash diloco.Hash, members []string) [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "cairn secagg session\n%s\n%d\n%s\n", chain, round, hash)
	for _, m := range members {
		fmt.Fprintf(h, "%s\n", m)
	}
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// cohortConfig is the secagg round of a cohort of run cfg: parties 1..n,
// the run's bits, the threshold of diloco.CohortThreshold.
func cohortConfig(cfg diloco.RunConfig, session [32]byte, n int) secagg.Config {
	parties := make([]uint64, n)
	for i := range parties {
		parties[i] = uint64(i + 1)
	}
	return secagg.Config{Session: session, Parties: parties, Threshold: diloco.CohortThreshold(n),
		Dim: cfg.Model.NumParams(), Bits: cfg.Private.SecAgg.Bits}
}

// cohortRun is the aggregator's side of a round's cohort: the secagg
// server, the phase, when it ends, and what each member has sent. It is
// guarded by the aggregator's mu.
type cohortRun struct {
	name    string // the cohort's name in the state machine
	round   int
	hash    diloco.Hash
	cfg     secagg.Config
	scale   float64
	info    cohortInfo
	party   map[string]uint64
	srv     *secagg.Server
	phase   int
	failed  string
	until   time.Time // end of the keys, boxes or reveal phase
	quorum  time.Time // when the reveals reached the threshold
	wait    time.Duration
	keys    []byte                  // every member's keys, once the key phase closed
	routed  map[uint64][]secagg.Box // boxes by recipient, once the box phase closed
	sent    map[string]map[int]bool // step (phase) → party → sent
	tokens  map[uint64]int          // claimed with the masked inputs
	members map[uint64]string       // party → peer ID
	changed chan struct{}           // closed at every change of phase
	started time.Time
}

// cohortWait is how long the key, box and reveal phases wait for a
// cohort's stragglers: a fifth of the round's timeout, 2 to 30 s.
func cohortWait(cfg diloco.RunConfig) time.Duration {
	return min(max(time.Duration(cfg.RoundTimeout)/5, 2*time.Second), 30*time.Second)
}

// formCohortLocked forms the open round's cohort from the private workers
// taking part, in a run with secure aggregation. With fewer than the
// run's MinCohort they sit the round out (they never send a Δ in the
// clear). a.mu is held.
func (a *Aggregator) formCohortLocked(now time.Time) {
	cfg := a.agg.Cfg
	if cfg.Private == nil || cfg.Private.SecAgg == nil || (a.cohort != nil && a.cohort.round == a.agg.Round()) {
		return
	}
	a.cohort = nil
	var members []string
	for _, id := range a.agg.Active() {
		if a.privatePeers[id] {
			members = append(members, id)
		}
	}
	round := a.agg.Round()
	if len(members) == 0 {
		return
	}
	sa := cfg.Private.SecAgg
	if len(members) < sa.MinCohort {
		for _, m := range members {
			a.agg.SitOut(m)
		}
		a.log.Warn("too few private workers for a secure-aggregation cohort: they sit the round out", "round", round, "private", len(members), "min_cohort", sa.MinCohort)
		return
	}
	if len(members) > diloco.MaxCohort {
		for _, m := range members[diloco.MaxCohort:] {
			a.agg.SitOut(m)
		}
		members = members[:diloco.MaxCohort]
	}
	session := cohortSession(a.led.info.ChainID, round, a.agg.Hash(), members)
	scfg := cohortConfig(cfg, session, len(members))
	scale, err := secagg.ScaleFor(len(members), sa.Clip, sa.Bits)
	var srv *secagg.Server
	if err == nil {
		srv, err = secagg.NewServer(scfg)
	}
	name := fmt.Sprintf("cohort-%d", round)
	if err == nil {
		err = a.agg.Expect(name, members, now)
	}
	if err != nil {
		for _, m := range members {
			a.agg.SitOut(m)
		}
		a.log.Error("cannot form the round's secure-aggregation cohort: its members sit the round out", "round", round, "err", err)
		return
	}
	c := &cohortRun{name: name, round: round, hash: a.agg.Hash(), cfg: scfg, scale: scale, srv: srv,
		info:  cohortInfo{Session: hex.EncodeToString(session[:]), Members: members, Threshold: scfg.Threshold},
		party: map[string]uint64{}, members: map[uint64]string{}, sent: map[string]map[int]bool{}, tokens: map[uint64]int{},
		wait: cohortWait(cfg), until: now.Add(cohortWait(cfg)), changed: make(chan struct{}), started: now}
	for i, m := range members {
		c.party[m], c.members[uint64(i+1)] = uint64(i+1), m
	}
	for _, st := range []string{stepKeys, stepBoxes, stepMasked, stepReveal} {
		c.sent[st] = map[int]bool{}
	}
	a.cohort = c
	a.log.Info("secure-aggregation cohort formed", "round", round, "members", len(members), "threshold", scfg.Threshold, "bits", scfg.Bits)
}

// setPhase moves c to phase p (and wakes the members waiting for it). A
// cohort that is over lets go of its messages.
func (c *cohortRun) setPhase(p int, until time.Time) {
	c.phase, c.until = p, until
	if p >= phaseDone {
		c.srv, c.keys, c.routed = nil, nil, nil
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

// count is how many parties sent step.
func (c *cohortRun) count(step string) int { return len(c.sent[step]) }

// failLocked ends the cohort without a sum: the state machine excuses its
// members and the commits of those that sent masked inputs are refused
// with the reason. a.mu is held.
func (a *Aggregator) failCohortLocked(c *cohortRun, why string) {
	c.failed = why
	c.setPhase(phaseFailed, time.Time{})
	a.agg.Excuse(c.name)
	for _, m := range c.info.Members {
		if rc := a.commits[m]; rc != nil {
			rc.accepted, rc.refused = false, ledgerReason("secure aggregation failed: "+why)
		}
	}
	a.met.Counter("cairn_secagg_cohorts_failed_total", "secure-aggregation cohorts that failed").Add(1)
	a.log.Warn("secure-aggregation cohort failed: the round goes on without it", "round", c.round, "members", len(c.info.Members), "why", why)
}

// advanceCohortLocked moves the round's cohort on at now: a phase closes
// when every member still in it has sent its message, or when its time is
// up (the masked inputs' at the round's deadline; the reveals' a quarter
// of the wait after the threshold of them is in). The last phase unmasks
// the sum and hands the cohort's mean to the state machine. a.mu is held.
func (a *Aggregator) advanceCohortLocked(now time.Time) {
	c := a.cohort
	if c == nil || c.round != a.agg.Round() || c.phase >= phaseDone {
		return
	}
	for {
		switch c.phase {
		case phaseKeys:
			if c.count(stepKeys) < len(c.info.Members) && now.Before(c.until) {
				return
			}
			keys, err := c.srv.Keys()
			if err != nil {
				a.failCohortLocked(c, err.Error())
				return
			}
			var b []byte
			for _, k := range keys {
				b = append(b, k.Marshal()...)
			}
			c.keys = b
			c.setPhase(phaseBoxes, now.Add(c.wait))
		case phaseBoxes:
			if c.count(stepBoxes) < c.count(stepKeys) && now.Before(c.until) {
				return
			}
			routed, err := c.srv.Route()
			if err != nil {
				a.failCohortLocked(c, err.Error())
				return
			}
			c.routed = routed
			c.setPhase(phaseMasked, a.agg.Deadline())
		case phaseMasked:
			if c.count(stepMasked) < c.count(stepBoxes) && now.Before(c.until) {
				return
			}
			if _, err := c.srv.Survivors(); err != nil {
				a.failCohortLocked(c, err.Error())
				return
			}
			c.setPhase(phaseReveal, now.Add(c.wait))
		case phaseReveal:
			if n := c.count(stepReveal); n < c.count(stepMasked) && now.Before(c.until) {
				// Once the threshold has revealed, the sum can be
				// unmasked; the others' shares only cross-check theirs,
				// so they get a quarter of the wait, not all of it.
				if n < c.info.Threshold {
					return
				}
				if c.quorum.IsZero() {
					c.quorum = now
				}
				if now.Sub(c.quorum) < c.wait/4 {
					return
				}
			}
			a.unmaskLocked(c)
			return
		default:
			return
		}
	}
}

// unmaskLocked computes the cohort's sum and hands its mean to the state
// machine as the cohort's contribution, with the survivors' tokens.
func (a *Aggregator) unmaskLocked(c *cohortRun) {
	start := time.Now()
	sum, survivors, err := c.srv.Sum()
	if err != nil {
		if pe := (*secagg.PartyError)(nil); errors.As(err, &pe) {
			a.log.Warn("a cohort member sent an inconsistent share", "round", c.round, "member", c.members[pe.Party], "reason", pe.Reason)
			err = fmt.Errorf("member %s: %s", c.members[pe.Party], pe.Reason)
		}
		a.failCohortLocked(c, err.Error())
		return
	}
	mean := make([]float32, len(sum))
	if err := secagg.Decode(mean, sum, c.scale*float64(len(survivors)), c.cfg.Bits); err != nil {
		a.failCohortLocked(c, err.Error())
		return
	}
	tokens := 0
	for _, p := range survivors {
		tokens += c.tokens[p]
	}
	payload, err := compress.NewEncoder(compress.FP32, len(mean)).Encode(mean)
	if err == nil {
		err = a.agg.SubmitCohort(c.name, c.round, c.hash, len(survivors), tokens, payload)
	}
	if err != nil {
		a.failCohortLocked(c, err.Error())
		return
	}
	for _, p := range survivors {
		if rc := a.commits[c.members[p]]; rc != nil && rc.refused == "" {
			rc.accepted = true
		}
	}
	c.setPhase(phaseDone, time.Time{})
	a.met.Counter("cairn_secagg_cohorts_total", "secure-aggregation cohorts summed").Add(1)
	a.log.Info("secure-aggregation cohort summed", "round", c.round, "survivors", len(survivors), "of", len(c.info.Members),
		"took", time.Since(c.started).Round(time.Millisecond), "unmask", time.Since(start).Round(time.Millisecond))
	a.screen.submitted(c.name, c.round, c.hash, payload)
}

// cohortOf checks that req is for the round's cohort and from one of its
// members, and returns the cohort and the member's party; a question
// about a cohort that is over is answered after its round has closed.
// a.mu is held.
func (a *Aggregator) cohortOf(req *cohortRequest, from string) (*cohortRun, uint64, error) {
	c := a.cohort
	switch {
	case c == nil || c.round != req.Round || (c.round != a.agg.Round() && c.phase < phaseDone):
		return nil, 0, fmt.Errorf("no secure-aggregation cohort in round %d", req.Round)
	case req.Session != c.info.Session:
		return nil, 0, fmt.Errorf("session %.16s… is not round %d's cohort's", req.Session, req.Round)
	}
	p := c.party[from]
	if p == 0 {
		return nil, 0, fmt.Errorf("%s is not a member of round %d's cohort", from, req.Round)
	}
	return c, p, nil
}

// blobLimit is the largest message a member may send at step.
func (c *cohortRun) blobLimit(step string) int64 {
	n := int64(len(c.info.Members))
	switch step {
	case stepKeys:
		return secagg.KeysSize
	case stepBoxes:
		return (n - 1) * secagg.BoxSize
	case stepMasked:
		return int64(secagg.MaskedSize(c.cfg))
	case stepReveal:
		return 16 + n*secagg.ShareEntrySize
	}
	return 0
}

// stepPhase is the phase a member's message of step belongs to.
var stepPhase = map[string]int{stepKeys: phaseKeys, stepBoxes: phaseBoxes, stepMasked: phaseMasked, stepReveal: phaseReveal}

// questionPhase is the phase after which a question's answer is ready.
var questionPhase = map[string]int{stepGetKeys: phaseBoxes, stepGetBoxes: phaseMasked, stepGetSurvivors: phaseReveal, stepGetResult: phaseDone}

// serveCohort takes a member's message or answers its question. A message
// is checked against the cohort before a byte of it is read (member,
// session, phase, not sent before; a masked input's header and ledger
// commit as a submission's), then parsed and checked by the secagg
// server; any refusal is one line with the reason. A question waits (at
// most pollHold) for its phase to close.
func (a *Aggregator) serveCohort(s *progressStream, from string) error {
	var req cohortRequest
	if err := wire.ReadJSON(s, kindCohort, maxControl, &req); err != nil {
		return err
	}
	if _, ok := questionPhase[req.Step]; ok {
		return a.answerCohort(s, from, &req)
	}
	want, ok := stepPhase[req.Step]
	if !ok {
		return refuse("unknown cohort step %q", req.Step)
	}
	a.mu.Lock()
	c, party, err := a.cohortOf(&req, from)
	if err == nil {
		switch {
		case c.phase == phaseFailed:
			err = fmt.Errorf("round %d's cohort failed: %s", c.round, c.failed)
		case c.sent[req.Step][int(party)]:
			err = fmt.Errorf("a second %s message from %s", req.Step, from)
		case c.phase != want:
			err = fmt.Errorf("a %s message while round %d's cohort is at its %s step", req.Step, c.round, phaseNames[c.phase])
		}
	}
	var limit int64
	if err == nil {
		limit = c.blobLimit(req.Step)
	}
	a.mu.Unlock()
	if err != nil {
		return refuse("%v", err)
	}
	var rc *roundCommit
	if req.Step == stepMasked {
		if rc, err = a.checkMaskedHeader(c, &req, from); err != nil {
			a.log.Warn("masked input refused", "peer", from, "round", req.Round, "err", err)
			return refuse("%v", err)
		}
	}
	s.allow(wire.EncodedBlobSize(limit), serveBase, serveMinRate)
	b, err := wire.ReadBlob(s, limit)
	if err != nil {
		return refuse("%v", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cohort != c || c.phase != want || c.sent[req.Step][int(party)] {
		return refuse("round %d's cohort moved on while the %s message arrived", c.round, req.Step)
	}
	if err := a.takeCohortMsg(c, party, &req, b, rc); err != nil {
		a.log.Warn("cohort message refused", "peer", from, "round", req.Round, "step", req.Step, "err", err)
		return refuse("%v", err)
	}
	c.sent[req.Step][int(party)] = true
	a.advanceCohortLocked(time.Now())
	a.tickLocked(time.Now())
	return wire.WriteJSON(s, kindCohortReply, cohortReply{Phase: phaseNames[c.phase], Failed: c.failed})
}

// checkMaskedHeader checks a masked input's header and ledger commit
// before the input is read.
func (a *Aggregator) checkMaskedHeader(c *cohortRun, req *cohortRequest, from string) (*roundCommit, error) {
	cfg := a.agg.Cfg
	if req.Tokens < 1 || req.Tokens > cfg.TokensPerRound() || req.Tokens%cfg.TokensPerStep() != 0 {
		return nil, fmt.Errorf("the masked input claims %d tokens; a round trains 1 to %d inner steps of %d tokens each", req.Tokens, cfg.InnerSteps, cfg.TokensPerStep())
	}
	rc, err := a.led.checkCommit(from, &submitRequest{Round: req.Round, Hash: c.hash.String(), Tokens: req.Tokens, Commit: req.Commit})
	if err != nil {
		return nil, err
	}
	if !rc.private {
		return nil, errors.New("the commit to a masked input must declare it private: a cohort's members train on private data")
	}
	return rc, nil
}

// takeCohortMsg parses and applies a member's message. a.mu is held.
func (a *Aggregator) takeCohortMsg(c *cohortRun, party uint64, req *cohortRequest, b []byte, rc *roundCommit) error {
	switch req.Step {
	case stepKeys:
		k, err := secagg.ParseKeys(b)
		if err != nil {
			return err
		}
		if k.ID != party {
			return fmt.Errorf("keys for party %d from party %d", k.ID, party)
		}
		return c.srv.AddKeys(k)
	case stepBoxes:
		if len(b)%secagg.BoxSize != 0 {
			return fmt.Errorf("boxes of %d bytes, not a multiple of %d", len(b), secagg.BoxSize)
		}
		var boxes []secagg.Box
		for off := 0; off < len(b); off += secagg.BoxSize {
			x, err := secagg.ParseBox(b[off : off+secagg.BoxSize])
			if err != nil {
				return err
			}
			boxes = append(boxes, x)
		}
		return c.srv.AddBoxes(party, boxes)
	case stepMasked:
		if d := ledger.Hash(verify.PayloadDigest(b)); d != rc.delta {
			return fmt.Errorf("the masked input's digest %s is not the one committed to (%s)", d, rc.delta)
		}
		m, err := secagg.ParseMasked(c.cfg, b)
		if err != nil {
			return err
		}
		if m.ID != party {
			return fmt.Errorf("a masked input of party %d from party %d", m.ID, party)
		}
		if len(a.commits) >= ledger.MaxContributions {
			return fmt.Errorf("round %d holds the most contributions a ledger result can name", c.round)
		}
		if err := a.led.queueCommit(rc); err != nil {
			return err
		}
		if err := c.srv.AddMasked(m); err != nil {
			// The commit is recorded: the contribution is refused with
			// the reason on the ledger.
			rc.refused = ledgerReason(err.Error())
			a.recordCommitLocked(c.members[party], rc, req)
			return err
		}
		a.recordCommitLocked(c.members[party], rc, req)
		c.tokens[party] = req.Tokens
		return nil
	case stepReveal:
		r, err := secagg.ParseReveal(b)
		if err != nil {
			return err
		}
		if r.ID != party {
			return fmt.Errorf("a reveal of party %d from party %d", r.ID, party)
		}
		return c.srv.AddReveal(r)
	}
	return fmt.Errorf("unknown cohort step %q", req.Step)
}

// recordCommitLocked keeps a member's recorded commit with the round's
// others (the round's result names it, accepted once the cohort's sum
// is aggregated).
func (a *Aggregator) recordCommitLocked(id string, rc *roundCommit, req *cohortRequest) {
	if a.commits[id] == nil {
		a.commitOrder = append(a.commitOrder, id)
	}
	a.commits[id] = rc
	rc.compute = time.Duration(min(max(req.ComputeMs, 0), int64(time.Duration(a.agg.Cfg.RoundTimeout)/time.Millisecond))) * time.Millisecond
	if l := req.Loss; l > 0 && l < 1e6 {
		rc.loss = l
	}
}

// answerCohort answers a member's question once its phase has closed, or
// says it is not ready after pollHold.
func (a *Aggregator) answerCohort(s *progressStream, from string, req *cohortRequest) error {
	hold := time.NewTimer(pollHold)
	defer hold.Stop()
	for {
		a.mu.Lock()
		c, party, err := a.cohortOf(req, from)
		if err != nil {
			a.mu.Unlock()
			return refuse("%v", err)
		}
		a.advanceCohortLocked(time.Now())
		reply := cohortReply{Phase: phaseNames[c.phase], Failed: c.failed}
		var blob []byte
		if c.phase >= questionPhase[req.Step] && c.phase != phaseFailed {
			reply.Ready = true
			switch req.Step {
			case stepGetKeys:
				blob = c.keys
			case stepGetBoxes:
				for _, x := range c.routed[party] {
					blob = append(blob, x.Marshal()...)
				}
			case stepGetSurvivors:
				reply.Survivors = survivorsOf(c)
			}
		}
		changed, until, phase := c.changed, c.until, c.phase
		a.mu.Unlock()
		if reply.Ready || phase == phaseFailed {
			if err := wire.WriteJSON(s, kindCohortReply, reply); err != nil {
				return err
			}
			if req.Step == stepGetKeys || req.Step == stepGetBoxes {
				if reply.Ready {
					s.allow(wire.EncodedBlobSize(int64(len(blob))), serveBase, serveMinRate)
					return wire.WriteBlob(s, blob)
				}
			}
			return nil
		}
		select {
		case <-changed:
		case <-time.After(time.Until(until) + 10*time.Millisecond):
		case <-hold.C:
			return wire.WriteJSON(s, kindCohortReply, reply)
		}
	}
}

// survivorsOf lists the parties whose masked inputs the cohort took.
func survivorsOf(c *cohortRun) []uint64 {
	var ids []uint64
	for p := range c.sent[stepMasked] {
		ids = append(ids, uint64(p))
	}
	slices.Sort(ids)
	return ids
}
