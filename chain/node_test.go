package chain

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/ledger"
)

func freePorts(t *testing.T, n int) int {
	t.Helper()
	base, err := FreeBasePort(n)
	if err != nil {
		t.Fatal(err)
	}
	return base
}

// One validator as a real CometBFT node in this process: transactions
// through its RPC, a refusal at CheckTx that never reaches a block, and
// a restart that resumes at the same height and app hash.
func TestValidatorServesAndResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a CometBFT node")
	}
	dir := t.TempDir()
	netw, err := Init(InitOptions{Validators: 1, Out: dir, Genesis: testGenesis(), BasePort: freePorts(t, 2), EmptyBlocksInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Init(InitOptions{Validators: 1, Out: dir, Genesis: testGenesis()}); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Fatalf("init over a network: %v", err)
	}
	n, err := Start(netw.Validators[0].Home, NodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if n != nil {
			n.Stop()
		}
	}()
	c, err := Dial(n.RPC())
	if err != nil {
		t.Fatal(err)
	}
	cx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// With empty blocks off the chain waits for a transaction.
	h, err := c.Submit(cx, transfer(t, aliceKey, 1, 10, bobKey))
	if err != nil {
		t.Fatal(err)
	}
	if h < 1 {
		t.Fatalf("included at height %d", h)
	}
	bad := transfer(t, aliceKey, 2, 1_000_000, bobKey)
	var te *ledger.TxError
	if _, err := c.Broadcast(cx, bad); !errors.As(err, &te) || te.Code != ledger.CodeInsufficientFunds {
		t.Fatalf("overspending broadcast: %v", err)
	}
	if _, err := c.Broadcast(cx, []byte("junk")); !errors.As(err, &te) || te.Code != ledger.CodeMalformed {
		t.Fatalf("malformed broadcast: %v", err)
	}
	if _, found, err := c.Lookup(cx, ledger.Hash(sha256Of(bad))); err != nil || found {
		t.Fatalf("a refused transaction is in a block (found %v, err %v)", found, err)
	}
	a, err := c.Account(cx, ledger.KeyOf(bobKey))
	if err != nil || a.Balance != 1010 {
		t.Fatalf("bob: %+v %v", a, err)
	}
	if _, err := c.Query(cx, "nope", nil); err == nil {
		t.Fatal("unknown query answered")
	}
	before, err := c.Head(cx)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	n = nil
	if n, err = Start(netw.Validators[0].Home, NodeOptions{}); err != nil {
		t.Fatal(err)
	}
	// A new client: the old one's kept-alive connection is served by the
	// stopped node's RPC handlers (in a real restart the process is gone).
	if c, err = Dial(n.RPC()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Submit(cx, transfer(t, aliceKey, 2, 5, bobKey)); err != nil {
		t.Fatal(err)
	}
	a, _ = c.Account(cx, ledger.KeyOf(bobKey))
	if a.Balance != 1015 {
		t.Fatalf("bob after restart: %+v", a)
	}
	agree, err := Compare(cx, []*Client{c, c})
	if err != nil || agree.Heights <= before.Height || agree.Txs != 2 {
		t.Fatalf("compare: %+v %v (height before restart %d)", agree, err, before.Height)
	}
	b, err := c.Block(cx, before.Height)
	if err != nil || string(b.AppHash) == "" {
		t.Fatalf("block %d: %v", before.Height, err)
	}
}

func TestStartRefusesBadHomes(t *testing.T) {
	dir := t.TempDir()
	if _, err := Start(dir, NodeOptions{}); err == nil || !strings.Contains(err.Error(), "config.toml") {
		t.Fatalf("empty home: %v", err)
	}
	netw, err := Init(InitOptions{Validators: 1, Out: dir, Genesis: testGenesis(), BasePort: freePorts(t, 2)})
	if err != nil {
		t.Fatal(err)
	}
	home := netw.Validators[0].Home
	key := filepath.Join(home, "config", "priv_validator_key.json")
	if err := os.WriteFile(key, []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(home, NodeOptions{}); err == nil || !strings.Contains(err.Error(), "priv_validator_key.json") {
		t.Fatalf("garbled key: %v", err)
	}
	os.Remove(key)
	if _, err := Start(home, NodeOptions{}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := Init(InitOptions{Validators: 0, Out: t.TempDir(), Genesis: testGenesis()}); err == nil {
		t.Fatal("zero validators accepted")
	}
	if _, err := ReadNetwork(t.TempDir()); err == nil {
		t.Fatal("network.json read from an empty directory")
	}
}

func sha256Of(b []byte) [32]byte { return sha256.Sum256(b) }
