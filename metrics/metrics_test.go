package metrics

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

func TestExposition(t *testing.T) {
	r := NewRegistry()
	r.Gauge("cairn_round", "current round").Set(7)
	c := r.Counter("cairn_bytes_sent_total", "bytes sent")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				c.Add(2)
			}
		}()
	}
	wg.Wait()
	srv, addr, err := Serve("127.0.0.1:0", r)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := "# HELP cairn_bytes_sent_total bytes sent\n# TYPE cairn_bytes_sent_total counter\ncairn_bytes_sent_total 16000\n" +
		"# HELP cairn_round current round\n# TYPE cairn_round gauge\ncairn_round 7\n"
	if string(body) != want {
		t.Fatalf("got\n%s\nwant\n%s", body, want)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
}
