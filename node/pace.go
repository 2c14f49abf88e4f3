package node

import "time"

// pace fits a worker's inner steps to a round's deadline. Workers differ
// (a permissionless run is heterogeneous): one that cannot train all H
// steps before the deadline trains as many as fit, leaving time to send
// its contribution, and claims their tokens; the aggregator weights it
// accordingly. It learns the worker's step time (a moving average,
// measured live, so the first round is fitted from its first step) and
// upload rate (from its contributions).
type pace struct {
	step    time.Duration // moving average of an inner step; 0 before the first
	upRate  float64       // uplink bytes/s measured on contributions; 0: unknown
	payload int           // size of the last contribution; 0: unknown
}

const (
	paceAlpha = 0.3 // weight of the newest measurement
	// assumedUpRate is the uplink assumed before one is measured (1 MB/s,
	// a modest home connection).
	assumedUpRate = 1e6
	// paceSlack is the least time kept aside besides the upload, for
	// encoding, the request and the clocks' disagreement.
	paceSlack = 100 * time.Millisecond
)

func ewma(old, v time.Duration) time.Duration {
	if old == 0 {
		return v
	}
	return time.Duration(paceAlpha*float64(v) + (1-paceAlpha)*float64(old))
}

// observeStep records an inner step that took d.
func (p *pace) observeStep(d time.Duration) { p.step = ewma(p.step, d) }

// observeUpload records a contribution of n bytes sent (and acknowledged)
// in d.
func (p *pace) observeUpload(n int, d time.Duration) {
	p.payload = n
	if d <= 0 {
		return
	}
	r := float64(n) / d.Seconds()
	if p.upRate == 0 {
		p.upRate = r
	} else {
		p.upRate = paceAlpha*r + (1-paceAlpha)*p.upRate
	}
}

// uploadTime estimates how long sending a contribution takes: the last
// contribution's size (or maxPayload before one) at the measured rate
// (or assumedUpRate), and no faster than the link limit (0: none).
func (p *pace) uploadTime(maxPayload int64, link float64) time.Duration {
	size := float64(maxPayload)
	if p.payload > 0 {
		size = float64(p.payload)
	}
	rate := p.upRate
	if rate == 0 {
		rate = assumedUpRate
	}
	if link > 0 {
		rate = min(rate, link)
	}
	return time.Duration(size / rate * float64(time.Second))
}

// budget is the training time a round allows when left remains until its
// deadline: left less twice the upload time and a slack (paceSlack, or
// 2% of left if more).
func (p *pace) budget(left time.Duration, maxPayload int64, link float64) time.Duration {
	return left - 2*p.uploadTime(maxPayload, link) - max(paceSlack, left/50)
}

// more reports whether another step fits: elapsed training so far plus
// one more step within budget.
func (p *pace) more(elapsed, budget time.Duration) bool {
	return elapsed+p.step <= budget
}
