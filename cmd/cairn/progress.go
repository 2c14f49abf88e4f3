package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress shows the advance of a long job: a bar with a status line and
// ETA on a terminal, or a plain log line every so often otherwise.
type progress struct {
	bar      *progressbar.ProgressBar
	out      io.Writer
	total    int
	start    time.Time
	lastLog  time.Time
	interval time.Duration
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// newProgress starts a display of total steps on w.
func newProgress(w io.Writer, total int, what string) *progress {
	p := &progress{out: w, total: total, start: time.Now(), interval: 5 * time.Second}
	if isTerminal(w) {
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(what),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(24),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	return p
}

// update reports that step (1-based) is done, with a status text.
func (p *progress) update(step int, status string) {
	if p.bar != nil {
		p.bar.Describe(status)
		_ = p.bar.Set(step)
		return
	}
	now := time.Now()
	if step == p.total || step == 1 || now.Sub(p.lastLog) >= p.interval {
		p.lastLog = now
		el := now.Sub(p.start)
		eta := time.Duration(float64(el) / float64(step) * float64(p.total-step))
		fmt.Fprintf(p.out, "step %d/%d %s eta %s\n", step, p.total, status, eta.Round(time.Second))
	}
}

// log prints a line without breaking the bar.
func (p *progress) log(format string, args ...any) {
	if p.bar != nil {
		_ = p.bar.Clear()
	}
	fmt.Fprintf(p.out, format+"\n", args...)
}

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}
