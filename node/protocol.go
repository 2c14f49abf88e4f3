// Package node runs Cairn's DiLoCo nodes over go-libp2p: the aggregator
// service (the diloco.Aggregator state machine behind a lock, with its
// clock, durable state, evaluation and metrics, and the run's ledger,
// which it hosts: admission by stake, a checked commit with every
// contribution, round results and settlements) and the worker loop (join,
// bond its stake, fetch weights, train, commit and submit, follow the
// rounds, reconnect, read its balance back).
package node

import "github.com/cairnlabs/cairn/diloco"

// Protocol IDs. Every request is one stream: a JSON request, then a JSON
// reply (or a one-line refusal), with bulk tensors as hash-checked blobs.
const (
	ProtoJoin   = "/cairn/diloco/join/1.0.0"
	ProtoPoll   = "/cairn/diloco/poll/1.0.0"
	ProtoSubmit = "/cairn/diloco/submit/1.0.0"
	ProtoState  = "/cairn/diloco/state/1.0.0"
)

// Message kinds on the streams.
const (
	kindJoin uint8 = iota + 1
	kindWelcome
	kindPoll
	kindReply
	kindSubmit
	kindAck
	kindStateReq
	kindState
)

// maxControl bounds every JSON message.
const maxControl = 1 << 16

// ProtocolVersion is checked at join. Version 2: the aggregator says
// whether it waits for a worker (pollReply.Waited), and refuses
// contributions from workers that were not participants of the round.
// Version 3: the aggregator hosts the run's ledger; the welcome names its
// chain and minimum stake, every contribution carries the worker's signed
// commit to it, and the acknowledgement says whether a contribution whose
// commit was recorded was refused all the same.
const ProtocolVersion = 3

type joinRequest struct {
	Version int `json:"version"`
}

// welcome answers a join: the run, where it stands, and peers that hold
// the current weights.
type welcome struct {
	Version int              `json:"version"`
	Config  diloco.RunConfig `json:"config"`
	Round   int              `json:"round"`
	Hash    string           `json:"hash"`
	Peers   []string         `json:"peers"` // full multiaddrs of a random sample of workers (at most 16, 4 addresses each)
	// ChainID is the run's ledger, which the aggregator serves over
	// ProtoLedgerTx and ProtoLedgerQuery; MinStake is the stake an
	// identity needs to take part (0: an open run).
	ChainID  string `json:"chain_id"`
	MinStake uint64 `json:"min_stake"`
}

type pollRequest struct {
	Round int    `json:"round"`
	Hash  string `json:"hash"`
	// Private says the worker trains on private data: in a run with
	// secure aggregation it contributes only through a cohort.
	Private bool `json:"private,omitempty"`
}

// pollReply is followed by a blob with the update when Action is update.
type pollReply struct {
	Action     string `json:"action"`
	Round      int    `json:"round"`
	Hash       string `json:"hash"`
	DeadlineMS int64  `json:"deadline_ms,omitempty"`
	// Waited, for train: the round waits for this worker until its
	// deadline. A worker it does not wait for (a newcomer, or one on
	// probation) proves itself with a short contribution.
	Waited bool `json:"waited,omitempty"`
	// Cohort, for train in a run with secure aggregation, is the
	// secure-aggregation cohort the worker contributes through.
	Cohort *cohortInfo `json:"cohort,omitempty"`
}

// submitRequest is followed by a blob with the compressed pseudo-gradient.
// Commit is the worker's signed ledger.CommitTx for the contribution (at
// most MaxLedgerTxBytes): the round and tokens of the request, the
// payload's digest, the worker's local-state hashes before and after the
// round, signed by the identity the stream comes from.
type submitRequest struct {
	Round  int    `json:"round"`
	Hash   string `json:"hash"`
	Tokens int    `json:"tokens"`
	Commit []byte `json:"commit,omitempty"`
	// ComputeMs is the time the worker says it spent training the
	// contribution: shown in the live view, never paid on.
	ComputeMs int64 `json:"compute_ms,omitempty"`
	// Loss is the worker's last inner step's training loss (shown, as
	// ComputeMs).
	Loss float32 `json:"loss,omitempty"`
}

// ack answers a contribution whose commit the aggregator recorded (queued
// on the chain): the contribution was aggregated unless Refused says why
// not. A contribution refused before its commit was recorded gets a
// one-line refusal instead.
type ack struct {
	Round   int    `json:"round"`
	Refused string `json:"refused,omitempty"`
}

// stateRequest asks for the weights with a hash ("" for the current ones).
type stateRequest struct {
	Hash string `json:"hash"`
}

// stateReply is followed by a blob of the weights, float32 little-endian.
type stateReply struct {
	Round int    `json:"round"`
	Hash  string `json:"hash"`
}

var actionNames = map[string]diloco.Action{}

func init() {
	for a := diloco.Wait; a <= diloco.Finished; a++ {
		actionNames[a.String()] = a
	}
}
