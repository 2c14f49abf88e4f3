// Package metrics serves a node's numbers in the Prometheus text format
// (version 0.0.4): gauges and counters without labels, enough for a
// dashboard of rounds, losses, bytes and peers.
package metrics

import (
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Registry holds named metrics. It is safe for concurrent use.
type Registry struct {
	mu      sync.Mutex
	metrics map[string]*Metric
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{metrics: map[string]*Metric{}} }

// Metric is one gauge or counter, holding a float64.
type Metric struct {
	name, help, kind string
	bits             atomic.Uint64
}

// Set sets the value.
func (m *Metric) Set(v float64) { m.bits.Store(math.Float64bits(v)) }

// Add adds d to the value.
func (m *Metric) Add(d float64) {
	for {
		old := m.bits.Load()
		if m.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

// Value is the current value.
func (m *Metric) Value() float64 { return math.Float64frombits(m.bits.Load()) }

func (r *Registry) get(name, help, kind string) *Metric {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, ok := r.metrics[name]; ok {
		return m
	}
	m := &Metric{name: name, help: help, kind: kind}
	r.metrics[name] = m
	return m
}

// Gauge returns the gauge called name, creating it on first use.
func (r *Registry) Gauge(name, help string) *Metric { return r.get(name, help, "gauge") }

// Counter returns the counter called name, creating it on first use.
func (r *Registry) Counter(name, help string) *Metric { return r.get(name, help, "counter") }

// WriteTo writes every metric in the Prometheus text format, sorted by name.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	names := make([]string, 0, len(r.metrics))
	for n := range r.metrics {
		names = append(names, n)
	}
	ms := r.metrics
	r.mu.Unlock()
	slices.Sort(names)
	var total int64
	for _, n := range names {
		m := ms[n]
		k, err := fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %s\n", n, m.help, n, m.kind, n, formatValue(m.Value()))
		total += int64(k)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return fmt.Sprint(v)
}

// ServeHTTP answers with the metrics.
func (r *Registry) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	r.WriteTo(w)
}

// Serve listens on addr (host:port; port 0 picks one) and serves the
// registry at /metrics until the returned server is closed. It returns the
// address it listens on.
func Serve(addr string, r *Registry) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("metrics: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", r)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return srv, ln.Addr().String(), nil
}
