package web

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

//go:embed index.html
var indexHTML []byte

// MaxRoundsPerRequest bounds /api/rounds?limit=.
const MaxRoundsPerRequest = 5000

// Handler serves the page and the API of hub. Only GET and HEAD are
// answered (405 otherwise): nothing served changes the run.
//
//	GET /                      the page
//	GET /round/N, /worker/ID   the page, showing one round or one worker
//	GET /api/run               Summary
//	GET /api/rounds?from=&limit=  rounds from the from-th (1), at most limit (MaxRoundsPerRequest)
//	GET /api/rounds/N          one round
//	GET /api/workers/ID        one worker and the rounds it appears in
//	GET /api/events            server-sent events: "round" with each closed round
func Handler(hub *Hub) http.Handler {
	mux := http.NewServeMux()
	page := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(indexHTML)
	}
	mux.HandleFunc("GET /{$}", page)
	mux.HandleFunc("GET /round/{n}", page)
	mux.HandleFunc("GET /worker/{id}", page)
	mux.HandleFunc("GET /api/run", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, hub.Summary()) })
	mux.HandleFunc("GET /api/rounds", func(w http.ResponseWriter, r *http.Request) {
		from, err := intParam(r, "from", 1, 1, 1<<31-1)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		limit, err := intParam(r, "limit", MaxRoundsPerRequest, 1, MaxRoundsPerRequest)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, hub.Rounds(from, limit))
	})
	mux.HandleFunc("GET /api/rounds/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.PathValue("n"))
		if err != nil {
			http.Error(w, "round: not a number", http.StatusBadRequest)
			return
		}
		rd, ok := hub.Round(n)
		if !ok {
			http.Error(w, fmt.Sprintf("no round %d yet", n), http.StatusNotFound)
			return
		}
		writeJSON(w, rd)
	})
	mux.HandleFunc("GET /api/workers/{id}", func(w http.ResponseWriter, r *http.Request) {
		wk, rounds, ok := hub.Worker(r.PathValue("id"))
		if !ok {
			http.Error(w, "no such worker", http.StatusNotFound)
			return
		}
		writeJSON(w, struct {
			Worker
			Rounds []Round `json:"rounds"`
		}{wk, rounds})
	})
	mux.HandleFunc("GET /api/events", func(w http.ResponseWriter, r *http.Request) { events(hub, w, r) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "read-only: only GET", http.StatusMethodNotAllowed)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s: want a whole number in [%d, %d], got %q", name, lo, hi, s)
	}
	return n, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

// events streams each closed round as a server-sent event until the
// client goes away, with a comment every 15 s to keep proxies open.
func events(hub *Hub, w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ch, ok := hub.subscribe()
	if !ok {
		http.Error(w, "too many live connections", http.StatusServiceUnavailable)
		return
	}
	defer hub.unsubscribe(ch)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprint(w, ": cairn\n\n")
	fl.Flush()
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case rd := <-ch:
			b, _ := json.Marshal(rd)
			fmt.Fprintf(w, "event: round\ndata: %s\n\n", b)
			fl.Flush()
		case <-t.C:
			fmt.Fprint(w, ": keep-alive\n\n")
			fl.Flush()
		case <-r.Context().Done():
			return
		}
	}
}

// Server is the live view listening on an address.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Listen serves hub on addr (host:port; port 0 picks one). A host that is
// not a loopback address must be asked for with public: the view binds to
// loopback unless told otherwise. It fails when addr cannot be listened on.
func Listen(addr string, hub *Hub, public bool) (*Server, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("web: address %q: %v", addr, err)
	}
	if !public && !loopback(host) {
		return nil, fmt.Errorf("web: %q is not a loopback address; the live view binds to loopback unless told it may be public", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("web: %v", err)
	}
	s := &Server{ln: ln, srv: &http.Server{Handler: Handler(hub), ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}}
	go s.srv.Serve(ln)
	return s, nil
}

func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// URL is the page's address.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() + "/" }

// Close stops the server, ending live connections.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return s.srv.Close()
	}
	return err
}
