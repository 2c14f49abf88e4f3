package verify

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"testing"
)

// TestDrawnRate: over many beacons the fraction of contributions drawn is
// p, within four standard deviations, for each p; p = 0 draws none and
// p = 1 all.
func TestDrawnRate(t *testing.T) {
	const beacons, workers = 4000, 5
	for _, p := range []float64{0, 0.01, 0.1, 0.5, 0.9, 1} {
		drawn := 0
		for b := 0; b < beacons; b++ {
			beacon := sha256.Sum256(binary.LittleEndian.AppendUint64(nil, uint64(b)))
			for w := 0; w < workers; w++ {
				if Drawn(beacon[:], 7, fmt.Sprintf("worker-%d", w), p) {
					drawn++
				}
			}
		}
		n := float64(beacons * workers)
		rate := float64(drawn) / n
		sd := math.Sqrt(p * (1 - p) / n)
		if math.Abs(rate-p) > 4*sd+1e-12 {
			t.Errorf("p=%v: drew %.4f of %v contributions (4 sd = %.4f)", p, rate, n, 4*sd)
		}
	}
}

// TestDrawDependsOnEverything: the draw changes with the beacon, the
// round and the worker, and the length prefixes keep ("ab", "c") and
// ("a", "bc") apart.
func TestDrawDependsOnEverything(t *testing.T) {
	base := Draw([]byte("beacon"), 3, "alice")
	if base != Draw([]byte("beacon"), 3, "alice") {
		t.Fatal("the draw is not deterministic")
	}
	for name, d := range map[string]uint64{
		"beacon": Draw([]byte("beacoN"), 3, "alice"),
		"round":  Draw([]byte("beacon"), 4, "alice"),
		"worker": Draw([]byte("beacon"), 3, "alicf"),
		"split":  Draw([]byte("beaco"), 3, "nalice"),
	} {
		if d == base {
			t.Errorf("changing the %s does not change the draw", name)
		}
	}
	// The documented preimage.
	var pre []byte
	pre = append(pre, SampleDomain...)
	pre = binary.LittleEndian.AppendUint32(pre, 6)
	pre = append(pre, "beacon"...)
	pre = binary.LittleEndian.AppendUint64(pre, 3)
	pre = binary.LittleEndian.AppendUint32(pre, 5)
	pre = append(pre, "alice"...)
	sum := sha256.Sum256(pre)
	if binary.LittleEndian.Uint64(sum[:8]) != base {
		t.Fatal("the draw is not the documented hash")
	}
}

// TestSample: the random draw plus the most suspicious above the
// threshold, in canonical order, ties broken by order; bad options and
// repeated workers are refused.
func TestSample(t *testing.T) {
	sc := []Screening{
		{Worker: "a", Score: 0.2}, {Worker: "b", Score: 5}, {Worker: "c", Score: MaxScore},
		{Worker: "d", Score: 5}, {Worker: "e", Score: 0.9}, {Worker: "f", Score: 1},
	}
	beacon := []byte("block 1234")
	o := SampleOptions{P: 0, Suspects: 3, Threshold: 1}
	picks, err := Sample(beacon, 2, sc, o)
	if err != nil {
		t.Fatal(err)
	}
	if got := pickString(picks); got != "b:s c:s d:s" {
		t.Fatalf("suspects only: %s", got)
	}
	o.Suspects = 10
	picks, _ = Sample(beacon, 2, sc, o)
	if got := pickString(picks); got != "b:s c:s d:s f:s" {
		t.Fatalf("all above the threshold: %s", got)
	}
	o = SampleOptions{P: 1, Suspects: 1, Threshold: 1}
	picks, _ = Sample(beacon, 2, sc, o)
	if got := pickString(picks); got != "a:r b:r c:rs d:r e:r f:r" {
		t.Fatalf("everything drawn: %s", got)
	}
	// The random part is exactly Drawn's.
	o = SampleOptions{P: 0.5}
	picks, _ = Sample(beacon, 2, sc, o)
	var want []string
	for _, s := range sc {
		if Drawn(beacon, 2, s.Worker, 0.5) {
			want = append(want, s.Worker+":r")
		}
	}
	if got := pickString(picks); got != strings.Join(want, " ") {
		t.Fatalf("random half: %s, want %s", got, want)
	}
	for _, bad := range []SampleOptions{{P: -0.1}, {P: 1.1}, {P: math.NaN()}, {P: 0.1, Suspects: -1}, {P: 0.1, Threshold: math.NaN()}} {
		if _, err := Sample(beacon, 2, sc, bad); err == nil {
			t.Errorf("options %+v accepted", bad)
		}
	}
	if _, err := Sample(beacon, 2, append(sc, Screening{Worker: "a"}), o); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("a repeated worker: %v", err)
	}
}

func pickString(ps []Pick) string {
	var s []string
	for _, p := range ps {
		tag := ""
		if p.Random {
			tag += "r"
		}
		if p.Suspicious {
			tag += "s"
		}
		s = append(s, p.Worker+":"+tag)
	}
	return strings.Join(s, " ")
}
