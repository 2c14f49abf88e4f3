package node

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/records"
	"github.com/cairnlabs/cairn/store"
	"github.com/cairnlabs/cairn/wire"
)

func recordKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("collector test " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// texts are n distinct texts of about 60 words from the corpus.
func recordTexts(n, from int) []string {
	text := corpus.TinyShakespeare()
	var out []string
	for i := range n {
		off := 2000 + (from+i)*(len(text)-4000)/4000
		w := strings.Fields(string(text[off : off+500]))
		out = append(out, strings.Join(w[1:min(len(w)-1, 61)], " "))
	}
	return out
}

// randomTexts are n texts of 40 words drawn at random from the corpus's
// vocabulary: any two share almost no shingles.
func randomTexts(n int) []string {
	vocab := strings.Fields(string(corpus.TinyShakespeare()[:200000]))
	r := rand.New(rand.NewPCG(7, 7))
	out := make([]string, n)
	for i := range out {
		w := make([]string, 40)
		for j := range w {
			w[j] = vocab[r.IntN(len(vocab))]
		}
		out[i] = strings.Join(w, " ")
	}
	return out
}

func client(t *testing.T) Transport {
	t.Helper()
	key, err := p2p.LoadIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tr, err := p2p.NewTransport(key, loopback)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// TestCollectorOverNetwork: contributors submit records to a collector
// node over libp2p. Clean records are taken and numbered; exact copies,
// near copies, forged, unlicensed and malformed records are refused with
// their reason; the accepted records are recorded on the collector's
// chain, which pays each contributor its reward; a restarted collector
// holds the same records and still refuses their copies.
func TestCollectorOverNetwork(t *testing.T) {
	dir := t.TempDir()
	c, err := StartCollector(CollectorOptions{DataDir: dir, Listen: loopback, BlockInterval: 50 * time.Millisecond, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tr := client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice, bob := recordKey("alice"), recordKey("bob")
	at := time.Now().Add(-time.Minute).Unix()
	texts := recordTexts(30, 0)
	paid := map[ledger.PubKey]uint64{}
	for i, tx := range texts {
		k := alice
		if i%2 == 1 {
			k = bob
		}
		r := records.Sign(k, []byte(tx), at, "CC-BY-4.0", true)
		rep, err := SubmitRecord(ctx, tr, c.Addrs()[0], r)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Accepted || rep.Number != uint64(i) || rep.Reward == 0 {
			t.Fatalf("clean record %d: %+v", i, rep)
		}
		paid[ledger.KeyOf(k)] += rep.Reward
	}
	w := strings.Fields(texts[3])
	w[5], w[20], w[40] = "changed", "words", "here"
	forged := records.Sign(bob, []byte("a new text that nobody has sent before today, of enough words"), at, "CC0-1.0", true)
	forged.Content = append(forged.Content, '.')
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"exact copy", ptr(records.Sign(bob, []byte(texts[0]), at, "CC0-1.0", true)).Marshal(), "duplicate"},
		{"near copy", ptr(records.Sign(bob, []byte(strings.Join(w, " ")), at, "CC0-1.0", true)).Marshal(), "near-duplicate"},
		{"forged", forged.Marshal(), "forged"},
		{"unlicensed", ptr(records.Sign(bob, []byte("a new text that nobody has sent before today, of enough words"), at, "all-rights-reserved", true)).Marshal(), "unlicensed"},
		{"malformed", []byte("not a record at all"), "malformed"},
	} {
		rep, err := submitRaw(ctx, tr, c.Addrs()[0], tc.b)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if rep.Accepted || rep.Refused != tc.want || rep.Reason == "" {
			t.Errorf("%s: %+v, want refused as %s", tc.name, rep, tc.want)
		}
	}
	st := c.Stats()
	if st.Accepted != 30 || st.Held != 30 || st.Refused["duplicate"] != 1 || st.Refused["forged"] != 1 {
		t.Fatalf("stats %+v", st)
	}
	// On the chain: every record, every reward.
	deadline := time.Now().Add(10 * time.Second)
	for c.Stats().OnChain < 30 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for k, want := range paid {
		acct, err := c.Ledger().Chain().Account(k)
		if err != nil || acct.Balance != want {
			t.Fatalf("contributor %s: balance %d, want %d (%v)", k, acct.Balance, want, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Restarted: the same records, their copies still refused.
	c2, err := StartCollector(CollectorOptions{DataDir: dir, Listen: loopback, BlockInterval: 50 * time.Millisecond, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if st := c2.Stats(); st.Held != 30 {
		t.Fatalf("after a restart: %+v", st)
	}
	rep, err := SubmitRecord(ctx, tr, c2.Addrs()[0], records.Sign(alice, []byte(texts[7]), at, "CC0-1.0", true))
	if err != nil || rep.Refused != "duplicate" {
		t.Fatalf("a copy after the restart: %+v %v", rep, err)
	}
}

func ptr[T any](v T) *T { return &v }

// submitRaw sends bytes as a record.
func submitRaw(ctx context.Context, tr Transport, addr string, b []byte) (RecordReply, error) {
	id, err := tr.Connect(ctx, addr)
	if err != nil {
		return RecordReply{}, err
	}
	ns, err := tr.Open(ctx, id, ProtoRecords)
	if err != nil {
		return RecordReply{}, err
	}
	defer ns.Close()
	if err := wire.WriteBlob(ns, b); err != nil {
		return RecordReply{}, err
	}
	var reply RecordReply
	err = wire.ReadJSON(ns, kindRecordReply, maxControl, &reply)
	return reply, err
}

func TestMain(m *testing.M) {
	if dir := os.Getenv(collectorChildEnv); dir != "" {
		runCollectorChild(dir)
	}
	os.Exit(m.Run())
}

const collectorChildEnv = "CAIRN_COLLECTOR_CHILD"

// runCollectorChild runs a collector in dir until killed, printing its
// address.
func runCollectorChild(dir string) {
	c, err := StartCollector(CollectorOptions{DataDir: dir, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, BlockInterval: 100 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	fmt.Println(c.Addrs()[0])
	select {}
}

// startChild starts a collector process on dir and returns it and its
// address.
func startChild(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), collectorChildEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		t.Fatalf("the collector process printed no address: %v", err)
	}
	return cmd, strings.TrimSpace(line)
}

// TestCollectorSurvivesKill9: a collector process is killed (SIGKILL)
// while contributors send it records as fast as it answers. Restarted on
// its files it holds every record it acknowledged, none twice, and
// refuses each again as a copy; what was in flight is either held or not,
// never half; every record ends on its chain.
func TestCollectorSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	cmd, addr := startChild(t, dir)
	tr := client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	texts := randomTexts(20000)
	key := recordKey("carol")
	at := time.Now().Add(-time.Minute).Unix()
	acked := map[string]bool{}
	killed := make(chan struct{})
	go func() {
		time.Sleep(700 * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		close(killed)
	}()
	sent := 0
	for _, tx := range texts {
		rep, err := SubmitRecord(ctx, tr, addr, records.Sign(key, []byte(tx), at, "CC0-1.0", true))
		sent++
		if err != nil {
			break // the collector is gone
		}
		if !rep.Accepted {
			t.Fatalf("record %d refused: %+v", sent, rep)
		}
		acked[rep.Hash] = true
	}
	<-killed
	cmd.Wait()
	if len(acked) == 0 || len(acked) == len(texts) {
		t.Fatalf("%d of %d records acknowledged before the kill: the kill came too early or too late", len(acked), len(texts))
	}
	// What the files hold after the kill.
	rs, err := store.OpenRecords(filepath.Join(dir, store.RecordsFileName))
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]int{}
	err = rs.Each(func(tk store.Taken) error {
		h := tk.Record.Hash()
		held[hex.EncodeToString(h[:])]++
		return nil
	})
	rs.Close()
	if err != nil {
		t.Fatal(err)
	}
	for h := range acked {
		if held[h] != 1 {
			t.Fatalf("acknowledged record %s held %d times after the kill", h[:12], held[h])
		}
	}
	for h, n := range held {
		if n != 1 {
			t.Fatalf("record %s held %d times", h[:12], n)
		}
	}
	t.Logf("%d records acknowledged before the kill, %d held after it (of %d sent)", len(acked), len(held), sent)
	// Restarted: every held record refused as a copy; the rest taken.
	cmd2, addr2 := startChild(t, dir)
	defer func() { cmd2.Process.Kill(); cmd2.Wait() }()
	var hashes []ledger.Hash
	for _, tx := range texts[:sent] {
		hashes = append(hashes, sha256.Sum256([]byte(tx)))
		rep, err := SubmitRecord(ctx, tr, addr2, records.Sign(key, []byte(tx), at, "CC0-1.0", true))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case held[rep.Hash] > 0 && rep.Refused != "duplicate":
			t.Fatalf("a record held before the kill: %+v", rep)
		case held[rep.Hash] == 0 && !rep.Accepted:
			t.Fatalf("a record not held before the kill: %+v", rep)
		}
	}
	// Every record reaches the chain (the collector records every 100 ms).
	time.Sleep(time.Second)
	cmd2.Process.Signal(syscall.SIGKILL)
	cmd2.Wait()
	ch, err := store.OpenReadOnly(filepath.Join(dir, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	for i, h := range hashes {
		if _, ok, err := ch.Ledger().Record(h); err != nil || !ok {
			t.Fatalf("record %d is not on the collector's chain (%v)", i, err)
		}
	}
}

// BenchmarkCollector measures records taken a second at a collector over
// libp2p on loopback: each record judged, stored in its own synced
// transaction and answered; 1 and 8 contributors sending at once.
func BenchmarkCollector(b *testing.B) {
	for _, clients := range []int{1, 8} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			c, err := StartCollector(CollectorOptions{DataDir: b.TempDir(), Listen: loopback, BlockInterval: 200 * time.Millisecond})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			texts := randomTexts(b.N + clients)
			key := recordKey("bench")
			at := time.Now().Unix()
			recs := make([]records.Record, len(texts))
			for i, tx := range texts {
				recs[i] = records.Sign(key, []byte(tx), at, "CC0-1.0", true)
			}
			var trs []Transport
			for range clients {
				k, _ := p2p.LoadIdentity(b.TempDir())
				tr, err := p2p.NewTransport(k, loopback)
				if err != nil {
					b.Fatal(err)
				}
				defer tr.Close()
				trs = append(trs, tr)
			}
			ctx := context.Background()
			b.ResetTimer()
			start := time.Now()
			errs := make(chan error, clients)
			for w := range clients {
				go func() {
					for i := w; i < b.N; i += clients {
						rep, err := SubmitRecord(ctx, trs[w], c.Addrs()[0], recs[i])
						if err == nil && !rep.Accepted {
							err = fmt.Errorf("refused: %+v", rep)
						}
						if err != nil {
							errs <- err
							return
						}
					}
					errs <- nil
				}()
			}
			for range clients {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
		})
	}
}
