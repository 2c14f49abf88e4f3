package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/node"
	"github.com/cairnlabs/cairn/store"
	bolt "go.etcd.io/bbolt"
)

func cliKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("cairn-cli-test/" + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// writeTestLedger writes DIR/ledger.db: two workers commit to round 0,
// the round closes, and its settlement fails B (slashed) and pays A the
// whole emission. It returns the genesis.
func writeTestLedger(t *testing.T, dir string) ledger.Genesis {
	org, A, B := cliKey("org"), cliKey("A"), cliKey("B")
	g := ledger.Genesis{ChainID: "cli-test", Authorities: []ledger.PubKey{ledger.KeyOf(org)}, MinStake: 10, UnbondingRounds: 2,
		EmissionPerRound: 100, SlashBasisPoints: 5000, SettlementLag: 1,
		Accounts: []ledger.GenesisAccount{{Key: ledger.KeyOf(A), Balance: 50, Stake: 40}, {Key: ledger.KeyOf(B), Balance: 50, Stake: 40}}}
	sort.Slice(g.Accounts, func(i, j int) bool { return bytes.Compare(g.Accounts[i].Key[:], g.Accounts[j].Key[:]) < 0 })
	c, err := store.OpenChain(filepath.Join(dir, store.FileName), &g, org)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	now := time.Unix(1_767_225_600, 0)
	nonce := map[ledger.PubKey]uint64{}
	block := func(txs ...[]byte) {
		for _, tx := range txs {
			if err := c.Submit(tx); err != nil {
				t.Fatal(err)
			}
		}
		now = now.Add(time.Minute)
		if _, err := c.Produce(now); err != nil {
			t.Fatal(err)
		}
	}
	sign := func(k ed25519.PrivateKey, body ledger.Body) []byte {
		nonce[ledger.KeyOf(k)]++
		raw, err := ledger.SignTx(g.ChainID, k, nonce[ledger.KeyOf(k)], body)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	ca := &ledger.CommitTx{Round: 0, DeltaHash: sha256.Sum256([]byte("a")), Tokens: 30, Fresh: true, Kernel: "avx512"}
	cb := &ledger.CommitTx{Round: 0, DeltaHash: sha256.Sum256([]byte("b")), Tokens: 70, Fresh: true, Kernel: "avx512"}
	block(sign(A, ca), sign(B, cb))
	acc := []ledger.Contribution{{Worker: ledger.KeyOf(A), DeltaHash: ca.DeltaHash, Tokens: 30}, {Worker: ledger.KeyOf(B), DeltaHash: cb.DeltaHash, Tokens: 70}}
	vs := []ledger.Verdict{{Worker: ledger.KeyOf(A), Outcome: ledger.Passed}, {Worker: ledger.KeyOf(B), Outcome: ledger.Failed, Reason: "recomputed delta differs", Evidence: []byte{1}}}
	if bytes.Compare(acc[0].Worker[:], acc[1].Worker[:]) > 0 {
		acc[0], acc[1], vs[0], vs[1] = acc[1], acc[0], vs[1], vs[0]
	}
	block(sign(org, &ledger.ResultTx{Round: 0, ModelHash: sha256.Sum256([]byte("θ1")), Accepted: acc}))
	block(sign(org, &ledger.SettleTx{Round: 0, Verdicts: vs}), sign(A, &ledger.TransferTx{To: ledger.KeyOf(B), Amount: 3}))
	return g
}

// editLedger changes one stored value through bbolt, as someone editing
// the file would.
func editLedger(t *testing.T, path, bucket string, key []byte, edit func(v []byte)) {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		v := bytes.Clone(b.Get(key))
		if v == nil {
			return errors.New("no such value")
		}
		edit(v)
		return b.Put(key, v)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(to), 0o700)
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestLedgerCLI runs the built binary on a real ledger file: balances,
// history and verify on an intact ledger; verify naming the first bad
// block of tampered copies (exit 1); bad input (exit 2); a ledger held by
// a running node (exit 2 at once, not a wait).
func TestLedgerCLI(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "cairn")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cairn := func(args ...string) (int, string, string) {
		cmd := exec.Command(bin, args...)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), o.String(), e.String()
	}
	data := filepath.Join(dir, "node")
	os.MkdirAll(data, 0o700)
	writeTestLedger(t, data)
	path := filepath.Join(data, store.FileName)
	before, _ := os.ReadFile(path)
	A, B := ledger.KeyOf(cliKey("A")), ledger.KeyOf(cliKey("B"))

	code, out, errOut := cairn("ledger", "verify", "--data-dir", data)
	if code != 0 || !strings.Contains(out, "ledger intact: chain cli-test, 3 blocks, 5 transactions") {
		t.Fatalf("verify: exit %d\n%s%s", code, out, errOut)
	}

	code, out, errOut = cairn("ledger", "balances", "--data-dir", data)
	if code != 0 {
		t.Fatalf("balances: exit %d: %s", code, errOut)
	}
	// A: 50 - 3 transferred + 100 (the whole emission); B: 50 + 3, stake 40 - 20 slashed.
	for _, want := range []string{peerIDOf(A) + ` +147 +40 +0 +2 *\n`, peerIDOf(B) + ` +53 +20 +0 +1 *\n`,
		`supply 260 = genesis 180 \+ minted 100 - burned 20`, `open round 1, rounds below 1 settled`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("balances lack %q:\n%s", want, out)
		}
	}

	code, out, _ = cairn("ledger", "history", "--data-dir", data)
	if code != 0 || strings.Count(out, "\n") != 6 || !strings.Contains(out, "round 0 settled: 1 passed, 1 failed, 0 unchecked; failed: "+peerIDOf(B)+" (recomputed delta differs)") {
		t.Fatalf("history: exit %d\n%s", code, out)
	}
	code, byPeer, _ := cairn("ledger", "history", "--data-dir", data, "--account", peerIDOf(B))
	_, byHex, _ := cairn("ledger", "history", "--data-dir", data, "--account", B.String())
	if code != 0 || byPeer != byHex || !strings.HasPrefix(byPeer, "4 transactions touch "+peerIDOf(B)) {
		t.Fatalf("history of B: exit %d\n%s\nby hex:\n%s", code, byPeer, byHex)
	}
	for _, kind := range []string{"commit", "result", "settle", "transfer"} {
		if !strings.Contains(byPeer, kind) {
			t.Errorf("B's history lacks its %s", kind)
		}
	}

	// Tampered copies: exit 1, naming the first bad block.
	tampered := []struct {
		name   string
		bucket string
		key    []byte
		edit   func(v []byte)
		want   string
	}{
		{"a transaction in block 2", "blocks", binary.BigEndian.AppendUint64(nil, 2), func(v []byte) { v[len(v)-100] ^= 1 }, "block 2: transaction root mismatch"},
		{"block 1's time", "blocks", binary.BigEndian.AppendUint64(nil, 1), func(v []byte) { v[1+4+8+8+32] ^= 1 }, "block 1: bad proposer signature"},
		{"block 3's results", "results", binary.BigEndian.AppendUint64(nil, 3), func(v []byte) { v[4] = byte(ledger.CodeInvalid) }, "block 3: "},
		{"A's balance", "state", append([]byte{'a'}, A[:]...), func(v []byte) { v[7]++ }, "block 3: state value of account"},
	}
	for i, tc := range tampered {
		d := filepath.Join(dir, "tampered", string(rune('a'+i)))
		copyFile(t, path, filepath.Join(d, store.FileName))
		editLedger(t, filepath.Join(d, store.FileName), tc.bucket, tc.key, tc.edit)
		code, out, errOut := cairn("ledger", "verify", "--data-dir", d)
		if code != 1 || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 || out != "" {
			t.Errorf("%s: exit %d, stderr %q, want exit 1 and one line containing %q", tc.name, code, errOut, tc.want)
		}
	}
	// The state edit also stops balances (the state no longer hashes to the tip).
	if code, _, errOut := cairn("ledger", "balances", "--data-dir", filepath.Join(dir, "tampered", "d")); code != 1 || !strings.Contains(errOut, "state root") {
		t.Errorf("balances of a tampered state: exit %d %q", code, errOut)
	}
	garbage := filepath.Join(dir, "garbage")
	os.MkdirAll(garbage, 0o700)
	os.WriteFile(filepath.Join(garbage, store.FileName), bytes.Repeat([]byte{0xAB}, 8192), 0o600)
	if code, _, errOut := cairn("ledger", "verify", "--data-dir", garbage); code != 1 || !strings.Contains(errOut, "not a readable ledger") {
		t.Errorf("garbage file: exit %d %q", code, errOut)
	}

	// Bad input.
	emptyDir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"ledger"}, "usage"},
		{[]string{"ledger", "burn"}, "unknown \"burn\""},
		{[]string{"ledger", "verify"}, "--data-dir is required"},
		{[]string{"ledger", "verify", "--data-dir", filepath.Join(dir, "missing")}, "no such directory"},
		{[]string{"ledger", "balances", "--data-dir", emptyDir}, "ledger.db missing"},
		{[]string{"ledger", "history", "--data-dir", data, "--account", "bob"}, "neither a peer ID nor 64 hex digits"},
		{[]string{"ledger", "verify", "--data-dir", data, "extra"}, "unexpected argument"},
	} {
		code, _, errOut := cairn(c.args...)
		if code != 2 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want exit 2 and one line containing %q", c.args, code, errOut, c.want)
		}
	}

	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("the read-only commands changed the ledger file")
	}

	// A running node holds the file: refused at once.
	held, err := store.OpenChain(path, nil, cliKey("org"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for _, sub := range []string{"verify", "balances", "history"} {
		if code, _, errOut := cairn("ledger", sub, "--data-dir", data); code != 2 || !strings.Contains(errOut, "in use by a running node") {
			t.Errorf("%s of a held ledger: exit %d %q", sub, code, errOut)
		}
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("refusing a held ledger took %v", el)
	}
	held.Close()
	if code, _, _ := cairn("ledger", "verify", "--data-dir", data); code != 0 {
		t.Error("the intact ledger no longer verifies")
	}
}

// TestDemoLedger: a small demo keeps its ledger under --data-dir and ends
// by printing each worker's reward and the verdict of `cairn ledger
// verify`; the ledger commands take the demo's --data-dir as it is. Each
// round pays exactly the emission: the rewards add up to what was
// minted, and the balances say the same.
func TestDemoLedger(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "text.txt")
	if err := os.WriteFile(data, corpus.TinyShakespeare()[:40000], 0o644); err != nil {
		t.Fatal(err)
	}
	dd := filepath.Join(dir, "demo")
	var out, errs strings.Builder
	code := run([]string{"demo", "--data", data, "--data-dir", dd, "--out", filepath.Join(dir, "model"), "--workers", "2",
		"--d", "16", "--layers", "1", "--heads", "2", "--ctx", "16", "--batch", "2", "--inner-steps", "4", "--rounds", "3", "--warmup", "2"}, &out, &errs)
	if code != 0 {
		t.Fatalf("demo: exit %d\n%s%s", code, out.String(), errs.String())
	}
	rewards := regexp.MustCompile(`worker \d \((\w+)\): reward (\d+) units over (\d) rounds; balance (\d+), stake (\d+)`).FindAllStringSubmatch(out.String(), -1)
	minted := regexp.MustCompile(`minted (\d+), burned 0`).FindStringSubmatch(out.String())
	if len(rewards) != 2 || minted == nil || !strings.Contains(out.String(), "ledger intact: chain cairn-") {
		t.Fatalf("demo output lacks the rewards or the ledger's verdict:\n%s", out.String())
	}
	sum := 0
	for _, r := range rewards {
		n, _ := strconv.Atoi(r[2])
		if r[2] != r[4] || r[3] != "3" || n == 0 {
			t.Fatalf("reward line %q: want a reward over 3 rounds equal to the balance", r[0])
		}
		sum += n
	}
	if want := 3 * int(node.DefaultLedgerParams().EmissionPerRound); strconv.Itoa(sum) != minted[1] || sum != want {
		t.Fatalf("rewards add up to %d, minted %s, want %d", sum, minted[1], want)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"ledger", "verify", "--data-dir", dd}, []string{"ledger intact"}},
		{[]string{"ledger", "balances", "--data-dir", dd}, []string{rewards[0][1], rewards[1][1], "(authority)", "minted " + minted[1]}},
		{[]string{"ledger", "history", "--data-dir", dd, "--account", rewards[0][1]}, []string{"commit", "round 2 settled"}},
	} {
		var o, e strings.Builder
		if code := run(tc.args, &o, &e); code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, e.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(o.String(), w) {
				t.Fatalf("%v lacks %q:\n%s", tc.args, w, o.String())
			}
		}
	}
}
