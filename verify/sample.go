package verify

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
)

// Digest is a SHA-256 digest: of a payload (PayloadDigest), or of a
// worker's local state (computed by package diloco, whose hashes convert
// to Digest unchanged).
type Digest [32]byte

// String is the digest in hex.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// PayloadDigest is SHA-256 of a contribution's payload bytes, the digest
// by which payloads are committed to and compared.
func PayloadDigest(payload []byte) Digest { return sha256.Sum256(payload) }

// SampleDomain starts the preimage of every draw.
const SampleDomain = "cairn/verify/sample/v1\n"

// Draw is the uniform 64-bit value that decides whether worker's
// contribution of round is recomputed: the first 8 bytes, little-endian,
// of SHA-256 over
//
//	SampleDomain ‖ len(beacon) as uint32 ‖ beacon ‖ round as uint64 ‖ len(worker) as uint32 ‖ worker
//
// (integers little-endian). The beacon must be fixed only after every
// contribution of the round is committed (for example the hash of the
// block that closed the commit phase), so no worker can know in advance
// whether it will be checked.
func Draw(beacon []byte, round int, worker string) uint64 {
	d := sha256.New()
	var b [8]byte
	d.Write([]byte(SampleDomain))
	binary.LittleEndian.PutUint32(b[:4], uint32(len(beacon)))
	d.Write(b[:4])
	d.Write(beacon)
	binary.LittleEndian.PutUint64(b[:], uint64(round))
	d.Write(b[:])
	binary.LittleEndian.PutUint32(b[:4], uint32(len(worker)))
	d.Write(b[:4])
	d.Write([]byte(worker))
	var sum [32]byte
	d.Sum(sum[:0])
	return binary.LittleEndian.Uint64(sum[:8])
}

// Drawn reports whether the beacon draws worker's contribution of round
// for recomputation with probability p: Draw(...) < p·2^64. p <= 0 draws
// nothing and p >= 1 everything.
func Drawn(beacon []byte, round int, worker string, p float64) bool {
	switch {
	case !(p > 0):
		return false
	case p >= 1:
		return true
	}
	return Draw(beacon, round, worker) < uint64(math.Ldexp(p, 64))
}

// SampleOptions set which contributions are recomputed.
type SampleOptions struct {
	// P is the probability with which each contribution is drawn at random
	// (default 0.1).
	P float64
	// Suspects is the number of most suspicious contributions recomputed
	// besides the random draw: those with the highest screening scores at
	// or above Threshold, at most Suspects of them.
	Suspects  int
	Threshold float64
}

// DefaultSampleOptions draw 10% at random and add the 3 most suspicious
// contributions flagged by screening (score >= 1). Honest contributions of
// the demo model scored at most 0.4 in the measurements (see the package
// documentation), so the suspects cost recomputations of cheats only; the
// cap bounds a validator's extra work in a round flooded with them, and 3
// catches the seven kinds of cheat of the project's target within 3 rounds
// even when all are present at once.
func DefaultSampleOptions() SampleOptions {
	return SampleOptions{P: 0.1, Suspects: 3, Threshold: 1}
}

// Pick is a contribution chosen for recomputation, and why.
type Pick struct {
	Index      int // in the round's canonical order
	Worker     string
	Random     bool // drawn by the beacon
	Suspicious bool // among the most suspicious by screening score
}

// Sample chooses the round's contributions to recompute: every one the
// beacon draws with probability o.P, plus the o.Suspects highest screening
// scores at or above o.Threshold (ties by canonical order). screened is the
// round's screening in canonical order. Picks come in canonical order. It
// fails when o is invalid (P outside [0, 1], Suspects negative, Threshold
// NaN) or a worker appears twice.
func Sample(beacon []byte, round int, screened []Screening, o SampleOptions) ([]Pick, error) {
	if !(o.P >= 0 && o.P <= 1) || o.Suspects < 0 || math.IsNaN(o.Threshold) {
		return nil, fmt.Errorf("verify: sample options %+v: P must be in [0, 1], Suspects not negative, Threshold a number", o)
	}
	seen := make(map[string]bool, len(screened))
	picks := make([]Pick, len(screened))
	for i, s := range screened {
		if seen[s.Worker] {
			return nil, fmt.Errorf("verify: worker %q appears twice in round %d", s.Worker, round)
		}
		seen[s.Worker] = true
		picks[i] = Pick{Index: i, Worker: s.Worker, Random: Drawn(beacon, round, s.Worker, o.P)}
	}
	order := make([]int, len(screened))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		sa, sb := screened[a].Score, screened[b].Score
		switch {
		case sa > sb || (!math.IsNaN(sa) && math.IsNaN(sb)):
			return -1
		case sa < sb || (math.IsNaN(sa) && !math.IsNaN(sb)):
			return 1
		}
		return 0
	})
	for _, i := range order[:min(o.Suspects, len(order))] {
		if s := screened[i].Score; s >= o.Threshold || math.IsNaN(s) {
			picks[i].Suspicious = true
		}
	}
	return slices.DeleteFunc(picks, func(p Pick) bool { return !p.Random && !p.Suspicious }), nil
}
