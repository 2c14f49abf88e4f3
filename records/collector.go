package records

import (
	"fmt"
	"slices"
	"time"
)

// Rules are what a collector takes and how it rewards.
type Rules struct {
	// Licences are the licences the collector takes (SPDX identifiers).
	Licences []string
	// MinWords is the fewest words a record holds.
	MinWords int
	// Future and MaxAge bound a record's time against the collector's
	// clock: at most Future ahead, at most MaxAge behind.
	Future, MaxAge time.Duration
	// NearDuplicate is the Jaccard similarity of shingle sets at which a
	// record is a near copy of one the collector holds.
	NearDuplicate float64
	// Reward is paid for a record made just now and unlike any other;
	// it falls linearly to half at MaxAge and with the similarity to the
	// nearest record the collector holds (times 1 − similarity).
	Reward uint64
}

// DefaultRules take open licences, records of at least 5 words made
// within the last 30 days (10 minutes of clock skew ahead), near copies
// at Jaccard 0.7, rewarding 1000 units.
func DefaultRules() Rules {
	return Rules{Licences: []string{"CC0-1.0", "CC-BY-4.0", "CC-BY-SA-4.0", "ODC-BY-1.0", "MIT", "Apache-2.0"},
		MinWords: 5, Future: 10 * time.Minute, MaxAge: 30 * 24 * time.Hour, NearDuplicate: 0.7, Reward: 1000}
}

// Validate says what is wrong with r.
func (r Rules) Validate() error {
	if len(r.Licences) == 0 || r.MinWords < 1 || r.Future < 0 || r.MaxAge <= 0 || !(r.NearDuplicate > 0 && r.NearDuplicate <= 1) {
		return fmt.Errorf("records: rules need licences, a positive minimum of words and age, a non-negative skew and a near-duplicate threshold in (0, 1]")
	}
	return nil
}

// Refusal is why a collector refuses a record.
type Refusal struct {
	Reason Reason
	Detail string
}

// Reason classifies a refusal.
type Reason int

// The reasons, in the order the collector checks them.
const (
	Malformed     Reason = 1 + iota // not UTF-8 text, too few words
	Forged                          // the signature is not the contributor's
	Unlicensed                      // no consent, or a licence the collector does not take
	Stale                           // made too long ago, or in the future
	Duplicate                       // the same content as a record held
	NearDuplicate                   // nearly the same text as a record held
)

var reasonNames = [...]string{"", "malformed", "forged", "unlicensed", "stale", "duplicate", "near-duplicate"}

func (r Reason) String() string {
	if r < Malformed || r > NearDuplicate {
		return fmt.Sprintf("reason(%d)", int(r))
	}
	return reasonNames[r]
}

func (r *Refusal) Error() string { return "records: " + r.Reason.String() + ": " + r.Detail }

func refuse(r Reason, format string, args ...any) *Refusal {
	return &Refusal{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// Decision is a record the collector would take: its hash, its reward,
// and the similarity to the nearest record held (0 when none is a
// candidate).
type Decision struct {
	Hash       [32]byte
	Reward     uint64
	Similarity float64
}

// Collector decides on records against those it holds. Check judges a
// record; the caller stores a taken record durably and then calls Add,
// so the collector's memory never runs ahead of the store. After a
// restart, Add every stored record again (in any order) to rebuild the
// indexes. It is not safe for concurrent use.
type Collector struct {
	rules  Rules
	hashes map[[32]byte]int // content hash → record number
	shingl []map[uint64]struct{}
	lsh    [Bands]map[[Rows]uint64][]int
}

// NewCollector starts a collector with rules (an error if they are
// invalid) and no records.
func NewCollector(rules Rules) (*Collector, error) {
	if err := rules.Validate(); err != nil {
		return nil, err
	}
	c := &Collector{rules: rules, hashes: map[[32]byte]int{}}
	for i := range c.lsh {
		c.lsh[i] = map[[Rows]uint64][]int{}
	}
	return c, nil
}

// Len is the number of records held.
func (c *Collector) Len() int { return len(c.shingl) }

// Check judges record r at time now: the first rule it breaks, as a
// *Refusal, or the Decision to take it. It changes nothing.
func (c *Collector) Check(r *Record, now time.Time) (Decision, error) {
	if !text(r.Content) {
		return Decision{}, refuse(Malformed, "the content is not UTF-8 text")
	}
	if n := len(words(r.Content)); n < c.rules.MinWords {
		return Decision{}, refuse(Malformed, "%d words, fewer than %d", n, c.rules.MinWords)
	}
	if !r.Verify() {
		return Decision{}, refuse(Forged, "the signature is not the contributor's over this record")
	}
	if !r.Consent {
		return Decision{}, refuse(Unlicensed, "the contributor did not consent to its use")
	}
	if !slices.Contains(c.rules.Licences, r.Licence) {
		return Decision{}, refuse(Unlicensed, "licence %q is not one this collector takes (%v)", r.Licence, c.rules.Licences)
	}
	made := time.Unix(r.Time, 0)
	if made.After(now.Add(c.rules.Future)) {
		return Decision{}, refuse(Stale, "made at %s, in the future", made.UTC().Format(time.RFC3339))
	}
	age := now.Sub(made)
	if age > c.rules.MaxAge {
		return Decision{}, refuse(Stale, "made %s ago, longer than %s", age.Round(time.Hour), c.rules.MaxAge)
	}
	d := Decision{Hash: r.Hash()}
	if i, ok := c.hashes[d.Hash]; ok {
		return Decision{}, refuse(Duplicate, "the same content as record %d", i)
	}
	set := Shingles(r.Content)
	sig := MinHash(set)
	nearest := -1
	seen := map[int]bool{}
	for b := range Bands {
		for _, i := range c.lsh[b][bandKey(&sig, b)] {
			if seen[i] {
				continue
			}
			seen[i] = true
			if s := Jaccard(set, c.shingl[i]); s > d.Similarity {
				d.Similarity, nearest = s, i
			}
		}
	}
	if d.Similarity >= c.rules.NearDuplicate {
		return Decision{}, refuse(NearDuplicate, "%.0f%% of its word shingles shared with record %d (threshold %.0f%%)", 100*d.Similarity, nearest, 100*c.rules.NearDuplicate)
	}
	fresh := 1 - 0.5*max(0, min(1, age.Seconds()/c.rules.MaxAge.Seconds()))
	d.Reward = uint64(float64(c.rules.Reward) * fresh * (1 - d.Similarity))
	return d, nil
}

// Add indexes a taken record (r, with the Decision Check gave for it, or
// one recomputed after a restart) as record number Len(). Adding a record
// whose content is held is ignored and reported false.
func (c *Collector) Add(r *Record) bool {
	h := r.Hash()
	if _, ok := c.hashes[h]; ok {
		return false
	}
	i := len(c.shingl)
	set := Shingles(r.Content)
	sig := MinHash(set)
	c.hashes[h] = i
	c.shingl = append(c.shingl, set)
	for b := range Bands {
		k := bandKey(&sig, b)
		c.lsh[b][k] = append(c.lsh[b][k], i)
	}
	return true
}
