package p2p

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnlabs/cairn/wire"
)

func TestIdentityPersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node")
	k1, err := LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equals(k2) {
		t.Fatal("the identity changed between loads")
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v", err, st.Mode())
	}
	os.WriteFile(filepath.Join(dir, KeyFile), []byte("not a key"), 0o600)
	if _, err := LoadIdentity(dir); err == nil || !strings.Contains(err.Error(), KeyFile) {
		t.Fatalf("corrupt key: %v", err)
	}
}

func TestParseAddr(t *testing.T) {
	for _, bad := range []string{"", "nonsense", "/ip4/127.0.0.1/tcp/4001"} {
		if _, err := ParseAddr(bad); err == nil {
			t.Errorf("ParseAddr(%q) succeeded", bad)
		}
	}
}

// TestTransportStreams: two hosts over TCP and QUIC on loopback exchange a
// request and see each other's verified identities.
func TestTransportStreams(t *testing.T) {
	for _, listen := range []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"} {
		a, b := newTransport(t, listen), newTransport(t, listen)
		a.Handle("/echo", func(s wire.NetStream, from string) {
			defer s.Close()
			if from != b.ID() {
				t.Errorf("server saw %s, want %s", from, b.ID())
			}
			io.Copy(s, s)
		})
		ctx := context.Background()
		id, err := b.Connect(ctx, a.Addrs()[0])
		if err != nil || id != a.ID() {
			t.Fatalf("%s: connect: %v (%s)", listen, err, id)
		}
		s, err := b.Open(ctx, id, "/echo")
		if err != nil {
			t.Fatal(err)
		}
		s.Write([]byte("ping"))
		s.CloseWrite()
		got, _ := io.ReadAll(s)
		if string(got) != "ping" || b.Peers() != 1 || len(a.AddrsOf(b.ID())) == 0 {
			t.Fatalf("%s: echo %q, %d peers", listen, got, b.Peers())
		}
	}
}

func newTransport(t *testing.T, listen string) *Transport {
	k, err := LoadIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTransport(k, []string{listen})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// TestLockDir: a data directory locked by one node cannot be locked by
// another until the first lets go; the refusal names the directory and
// says it is in use.
func TestLockDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node")
	first, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockDir(dir)
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "in use") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("second lock of a held directory: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	first.Close()
	again, err := LockDir(dir)
	if err != nil {
		t.Fatalf("relock after release: %v", err)
	}
	again.Close()
}
