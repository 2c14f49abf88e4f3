package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/chain"
	"github.com/cairnlabs/cairn/fingerprint"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/store"
)

// tinyFingerprinted trains a tiny model and embeds 2 fingerprints into
// it (no ledger). It returns the original's directory, embed's --out, and
// the passphrase file.
func tinyFingerprinted(t *testing.T, dir string) (orig, out, pass string) {
	t.Helper()
	orig, out, pass = filepath.Join(dir, "orig"), filepath.Join(dir, "fp"), filepath.Join(dir, "pass")
	if code, _, e := runCLI("train", "--steps", "1", "--d", "16", "--layers", "1", "--heads", "2", "--ctx", "32", "--batch", "2",
		"--eval-batches", "1", "--threads", "1", "--out", orig); code != 0 {
		t.Fatalf("tiny training run failed (%d): %s", code, e)
	}
	os.WriteFile(pass, []byte("owner passphrase\n"), 0o600)
	code, o, e := runCLI("fingerprint", "embed", "--ckpt", orig, "--out", out, "--passphrase-file", pass, "--n", "2", "--steps", "2", "--threads", "1")
	if code != 0 || !strings.Contains(o, "(hash ") {
		t.Fatalf("embed: exit %d\n%s%s", code, o, e)
	}
	return orig, out, pass
}

// hashOfModel is the model hash the commands use for the model at path.
func hashOfModel(t *testing.T, path string) ledger.Hash {
	t.Helper()
	m, pool, err := loadModel(path, 1)
	if err != nil {
		t.Fatal(err)
	}
	pool.Close()
	return modelHash(m)
}

// sealOther writes another owner's sealed set (with its own passphrase).
func sealOther(t *testing.T, dir string) (file, pass string) {
	t.Helper()
	sealed, err := fingerprint.Seal(&fingerprint.Set{Pairs: []fingerprint.Pair{{Key: []int32{1, 2, 3}, Response: 4}}, ChanceRate: 0.1}, []byte("thief passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	file, pass = filepath.Join(dir, "other.sealed"), filepath.Join(dir, "other.pass")
	os.WriteFile(file, sealed, 0o600)
	os.WriteFile(pass, []byte("thief passphrase"), 0o600)
	return file, pass
}

// identity makes a node data directory and returns its account.
func identity(t *testing.T, dir string) (ed25519.PrivateKey, ledger.PubKey) {
	t.Helper()
	id, err := p2p.LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	k, err := p2p.LedgerKey(id)
	if err != nil {
		t.Fatal(err)
	}
	return k, ledger.KeyOf(k)
}

func fundedGenesis(chainID string, keys ...ledger.PubKey) ledger.Genesis {
	g := ledger.Genesis{ChainID: chainID, Authorities: []ledger.PubKey{ledger.KeyOf(cliKey("org"))}, MinStake: 10, UnbondingRounds: 2,
		EmissionPerRound: 100, SlashBasisPoints: 5000, SettlementLag: 1}
	for _, k := range keys {
		g.Accounts = append(g.Accounts, ledger.GenesisAccount{Key: k, Balance: 1000})
	}
	sort.Slice(g.Accounts, func(i, j int) bool { return bytes.Compare(g.Accounts[i].Key[:], g.Accounts[j].Key[:]) < 0 })
	return g
}

// TestFingerprintCommitOnChain: against one real CometBFT validator, embed
// with --ledger writes the files and commits them; the commitment on the
// chain names the model's hash and the sealed file's SHA-256; committing
// it again is reported, not doubled; another account's commitment for the
// same model is refused (exit 1); an account holding nothing is bad input;
// verify --ledger reports the match, a mismatch and a missing commitment
// without changing its exit status.
func TestFingerprintCommitOnChain(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a CometBFT node")
	}
	dir := t.TempDir()
	ownerDir, thiefDir, strangerDir := filepath.Join(dir, "owner"), filepath.Join(dir, "thief"), filepath.Join(dir, "stranger")
	_, owner := identity(t, ownerDir)
	_, thief := identity(t, thiefDir)
	identity(t, strangerDir)
	base, err := chain.FreeBasePort(1)
	if err != nil {
		t.Fatal(err)
	}
	netw, err := chain.Init(chain.InitOptions{Validators: 1, Out: filepath.Join(dir, "net"), Genesis: fundedGenesis("fp-test", owner, thief),
		BasePort: base, EmptyBlocksInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	n, err := chain.Start(netw.Validators[0].Home, chain.NodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	rpc := n.RPC()
	c, err := chain.Dial(rpc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}

	orig := filepath.Join(dir, "orig")
	if code, _, e := runCLI("train", "--steps", "1", "--d", "16", "--layers", "1", "--heads", "2", "--ctx", "32", "--batch", "2",
		"--eval-batches", "1", "--threads", "1", "--out", orig); code != 0 {
		t.Fatalf("tiny training run failed (%d): %s", code, e)
	}
	pass := filepath.Join(dir, "pass")
	os.WriteFile(pass, []byte("owner passphrase\n"), 0o600)
	out := filepath.Join(dir, "fp")
	// A stranger is refused before the fine-tuning.
	if code, o, e := runCLI("fingerprint", "embed", "--ckpt", orig, "--out", out, "--passphrase-file", pass, "--n", "2", "--steps", "2",
		"--threads", "1", "--ledger", rpc, "--data-dir", strangerDir); code != 2 || !strings.Contains(e, "holds nothing on chain fp-test") || o != "" {
		t.Fatalf("embed by a stranger: exit %d\n%s%s", code, o, e)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("embed by a stranger wrote files")
	}
	code, o, e := runCLI("fingerprint", "embed", "--ckpt", orig, "--out", out, "--passphrase-file", pass, "--n", "2", "--steps", "2",
		"--threads", "1", "--ledger", rpc, "--data-dir", ownerDir)
	if code != 0 || !strings.Contains(o, "committed on chain fp-test: fingerprint set ") {
		t.Fatalf("embed --ledger: exit %d\n%s%s", code, o, e)
	}
	modelFile, setFile := filepath.Join(out, "model.safetensors"), filepath.Join(out, FingerprintFile)
	sealed, err := os.ReadFile(setFile)
	if err != nil {
		t.Fatal(err)
	}
	// The model written hashes (after loading) as embed committed it.
	mh := hashOfModel(t, modelFile)
	rec, found, err := c.Fingerprint(ctx, mh)
	if err != nil || !found || rec.Owner != owner || rec.Set != setHash(sealed) || rec.Height < 1 {
		t.Fatalf("the commitment on the chain: %+v found %v, %v (want owner %s, set %s)", rec, found, err, owner, setHash(sealed))
	}
	if want := regexp.MustCompile(`at block \d+ \(tx [0-9a-f]{64}\) by ` + peerIDOf(owner)); !want.MatchString(o) {
		t.Errorf("embed's commitment line: %s", o)
	}
	set, err := fingerprint.Open(sealed, []byte("owner passphrase"))
	if err != nil || set.Model != mh.String() {
		t.Fatalf("the sealed set records model %q, want %s (%v)", set.Model, mh, err)
	}

	// Again: reported as already there.
	code, o, e = runCLI("fingerprint", "commit", "--ckpt", out, "--fingerprints", setFile, "--ledger", rpc, "--data-dir", ownerDir, "--passphrase-file", pass)
	if code != 0 || !strings.Contains(o, "already committed on chain fp-test") {
		t.Fatalf("commit again: exit %d\n%s%s", code, o, e)
	}
	// Another account, another set, the same model: refused.
	otherFile, otherPass := sealOther(t, dir)
	code, o, e = runCLI("fingerprint", "commit", "--ckpt", out, "--fingerprints", otherFile, "--ledger", rpc, "--data-dir", thiefDir)
	if code != 1 || !strings.Contains(e, "refused: model "+mh.String()+" already has a fingerprint commitment") || !strings.Contains(e, peerIDOf(owner)) {
		t.Fatalf("commit by another account: exit %d\n%s%s", code, o, e)
	}
	// The owner's set checked against another model: bad input.
	if code, _, e := runCLI("fingerprint", "commit", "--ckpt", orig, "--fingerprints", setFile, "--ledger", rpc, "--data-dir", ownerDir,
		"--passphrase-file", pass); code != 2 || !strings.Contains(e, "was embedded into model "+mh.String()) {
		t.Fatalf("commit for the wrong model: exit %d %s", code, e)
	}
	// The first commitment for a model wins, whoever makes it.
	origHash := hashOfModel(t, orig)
	code, o, e = runCLI("fingerprint", "commit", "--ckpt", orig, "--fingerprints", otherFile, "--ledger", rpc, "--data-dir", thiefDir)
	if code != 0 || !strings.Contains(o, "committed on chain fp-test: fingerprint set "+setHash(mustRead(t, otherFile)).String()+" for model "+origHash.String()) {
		t.Fatalf("commit of the original: exit %d\n%s%s", code, o, e)
	}
	if code, _, e := runCLI("fingerprint", "commit", "--ckpt", orig, "--fingerprints", otherFile, "--ledger", rpc, "--data-dir", strangerDir); code != 2 || !strings.Contains(e, "holds nothing") {
		t.Fatalf("commit by a stranger: exit %d %s", code, e)
	}

	// verify --ledger: the match, a mismatch, none; the exit status is the
	// verdict's alone (0 or 1).
	verify := func(args ...string) (int, string) {
		t.Helper()
		code, o, e := runCLI(append([]string{"fingerprint", "verify", "--ckpt", out, "--threads", "1", "--ledger", rpc}, args...)...)
		if code != 0 && code != 1 || strings.Count(o, "\n") != 2 {
			t.Fatalf("verify %v: exit %d\n%s%s", args, code, o, e)
		}
		return code, o
	}
	plain, _, _ := runCLI("fingerprint", "verify", "--ckpt", out, "--threads", "1", "--fingerprints", setFile, "--passphrase-file", pass)
	code, o = verify("--fingerprints", setFile, "--passphrase-file", pass)
	if code != plain || !strings.Contains(o, "on chain fp-test: this set is the one committed for model "+mh.String()) || !strings.Contains(o, peerIDOf(owner)) {
		t.Fatalf("verify of the committed set: exit %d (without --ledger %d)\n%s", code, plain, o)
	}
	if _, o = verify("--fingerprints", otherFile, "--passphrase-file", otherPass, "--model-hash", mh.String()); !strings.Contains(o, "MISMATCH: model "+mh.String()) {
		t.Fatalf("verify of another set:\n%s", o)
	}
	none := ledger.Hash{7}
	if _, o = verify("--fingerprints", setFile, "--passphrase-file", pass, "--model-hash", none.String()); !strings.Contains(o, "NO fingerprint commitment for model "+none.String()) {
		t.Fatalf("verify against a model without a commitment:\n%s", o)
	}
	// The sealed set without a recorded model hash needs --model-hash.
	if code, _, e := runCLI("fingerprint", "verify", "--ckpt", out, "--fingerprints", otherFile, "--passphrase-file", otherPass, "--ledger", rpc); code != 2 || !strings.Contains(e, "give --model-hash") {
		t.Fatalf("verify of a set without a model hash: exit %d %s", code, e)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFingerprintLedgerFile: a commitment in a node's ledger file shows in
// `cairn ledger history`, and verify --ledger reads it from the file.
func TestFingerprintLedgerFile(t *testing.T) {
	dir := t.TempDir()
	_, out, pass := tinyFingerprinted(t, dir)
	setFile := filepath.Join(out, FingerprintFile)
	sealed := mustRead(t, setFile)
	mh := hashOfModel(t, out)

	owner := cliKey("owner")
	g := fundedGenesis("fp-file", ledger.KeyOf(owner))
	data := filepath.Join(dir, "node")
	os.MkdirAll(data, 0o700)
	path := filepath.Join(data, store.FileName)
	st, err := store.OpenChain(path, &g, cliKey("org"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := ledger.SignTx(g.ChainID, owner, 1, &ledger.FingerprintTx{Model: mh, Set: setHash(sealed)})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Submit(raw); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Produce(time.Unix(1_767_225_600, 0)); err != nil {
		t.Fatal(err)
	}
	st.Close()

	code, o, e := runCLI("ledger", "history", "--data-dir", data)
	want := regexp.MustCompile(`\sfingerprint\s+` + peerIDOf(ledger.KeyOf(owner)) + `\s+1\s+ok\s+fingerprint set ` + setHash(sealed).String()[:16] + ` committed for model ` + mh.String()[:16] + "\n")
	if code != 0 || !want.MatchString(o) {
		t.Fatalf("history: exit %d, want a line containing %q\n%s%s", code, want, o, e)
	}
	code, o, e = runCLI("fingerprint", "verify", "--ckpt", out, "--threads", "1", "--fingerprints", setFile, "--passphrase-file", pass, "--ledger", path)
	if code == 2 || !strings.Contains(o, "on ledger "+path+" (chain fp-file): this set is the one committed for model "+mh.String()+" at block 1") {
		t.Fatalf("verify --ledger FILE: exit %d\n%s%s", code, o, e)
	}
}

// TestFingerprintBadInput: the ledger flags' errors are one line and exit 2,
// found before any model is loaded or trained.
func TestFingerprintBadInput(t *testing.T) {
	dir := t.TempDir()
	pass := filepath.Join(dir, "pass")
	os.WriteFile(pass, []byte("owner passphrase"), 0o600)
	other, otherPass := sealOther(t, dir)
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("not sealed"), 0o600)
	ident := filepath.Join(dir, "id")
	identity(t, ident)
	noModel := filepath.Join(dir, "missing.safetensors")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"fingerprint", "commit"}, "give --ckpt, --fingerprints, --ledger and --data-dir"},
		{[]string{"fingerprint", "commit", "--ckpt", noModel, "--fingerprints", other, "--ledger", "127.0.0.1:1"}, "--data-dir"},
		{[]string{"fingerprint", "commit", "--ckpt", noModel, "--fingerprints", filepath.Join(dir, "none"), "--ledger", "127.0.0.1:1", "--data-dir", ident}, "none"},
		{[]string{"fingerprint", "commit", "--ckpt", noModel, "--fingerprints", junk, "--ledger", "127.0.0.1:1", "--data-dir", ident}, "not a fingerprint file"},
		{[]string{"fingerprint", "commit", "--ckpt", noModel, "--fingerprints", other, "--ledger", "nowhere", "--data-dir", ident}, "--ledger \"nowhere\""},
		{[]string{"fingerprint", "commit", "--ckpt", noModel, "--fingerprints", other, "--ledger", "127.0.0.1:1", "--data-dir", filepath.Join(dir, "empty")}, "no node identity"},
		{[]string{"fingerprint", "commit", "--ckpt", noModel, "--fingerprints", other, "--ledger", "127.0.0.1:1", "--data-dir", ident}, "missing.safetensors"},
		{[]string{"fingerprint", "commit", "--ckpt", noModel, "--fingerprints", other, "--ledger", "127.0.0.1:1", "--data-dir", ident, "stray"}, "unexpected argument"},
		{[]string{"fingerprint", "embed", "--ckpt", noModel, "--out", dir, "--passphrase-file", pass, "--ledger", "127.0.0.1:1"}, "go together"},
		{[]string{"fingerprint", "embed", "--ckpt", noModel, "--out", dir, "--passphrase-file", pass, "--data-dir", ident}, "go together"},
		{[]string{"fingerprint", "embed", "--ckpt", noModel, "--out", dir, "--passphrase-file", pass, "--ledger", "embedded", "--data-dir", ident}, "validator's RPC address"},
		{[]string{"fingerprint", "verify", "--ckpt", noModel, "--fingerprints", other, "--passphrase-file", pass, "--model-hash", "ab"}, "--model-hash goes with --ledger"},
		{[]string{"fingerprint", "verify", "--ckpt", noModel, "--fingerprints", other, "--passphrase-file", pass, "--ledger", "127.0.0.1:1", "--model-hash", "xyz"}, "--model-hash: ledger: hash must be 64 hex digits"},
		{[]string{"fingerprint", "verify", "--ckpt", noModel, "--fingerprints", other, "--passphrase-file", pass, "--ledger", "127.0.0.1:1", "--model-hash", strings.Repeat("ab", 32)}, "wrong passphrase"},
		{[]string{"fingerprint", "verify", "--ckpt", noModel, "--fingerprints", other, "--passphrase-file", otherPass, "--ledger", "nowhere", "--model-hash", strings.Repeat("ab", 32)}, "neither a ledger file nor a validator's RPC address"},
		{[]string{"fingerprint", "embed", "--ckpt", noModel, "--out", dir, "--passphrase-file", pass, "--candidates", "0"}, "--candidates and --k at least 1"},
		{[]string{"experiment", "fingerprint", "--ckpt", noModel, "--candidates", "0"}, "--candidates and --k at least 1"},
		{[]string{"fingerprint", "embed", "--ckpt", noModel, "--out", dir, "--passphrase-file", pass, "--k", "0"}, "--candidates and --k at least 1"},
		{[]string{"experiment", "fingerprint", "--ckpt", noModel, "--k", "-1"}, "--candidates and --k at least 1"},
		{[]string{"experiment", "fingerprint", "--ckpt", noModel, "--min-lr", "-1"}, "--min-lr not negative"},
		{[]string{"experiment", "fingerprint", "--ckpt", noModel, "--lr", "0"}, "--lr positive"},
		{[]string{"fingerprint", "embed", "--ckpt", noModel, "--out", dir, "--passphrase-file", pass, "--min-lr", "NaN"}, "--min-lr not negative"},
		{[]string{"fingerprint", "embed", "--ckpt", noModel, "--out", dir, "--passphrase-file", pass, "--lr", "-1"}, "--lr positive"},
		{[]string{"fingerprint", "nope"}, "unknown \"nope\""},
	} {
		wantBadInput(t, c.want, c.args...)
	}
	if _, err := os.Stat(filepath.Join(dir, "empty", p2p.KeyFile)); err == nil {
		t.Error("commit made an identity in a data directory that had none")
	}
}

func TestPrivacyExperimentBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"experiment", "privacy", "--epsilon", "8,x"}, "--epsilon: \"x\""},
		{[]string{"experiment", "privacy", "--epsilon", "-1"}, "--epsilon: \"-1\""},
		{[]string{"experiment", "privacy", "--contributors", "2"}, "--contributors at least 3"},
		{[]string{"experiment", "privacy", "--delta", "1"}, "--delta in (0, 1)"},
		{[]string{"experiment", "privacy", "--ckpt", "/nonexistent/model.safetensors"}, "nonexistent"},
	} {
		wantBadInput(t, c.want, c.args...)
	}
}

func TestDPFlagsBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"demo", "--dp-epsilon", "-1"}, "--dp-epsilon must not be negative"},
		{[]string{"demo", "--dp-epsilon", "8", "--dp-clip", "0"}, "differential privacy: clip 0"},
		{[]string{"demo", "--dp-epsilon", "8", "--dp-delta", "2"}, "--dp-epsilon: dp: δ 2"},
		{[]string{"node", "aggregate", "--private-tolerance", "11"}, "private contributions: the held-out loss tolerance must be between 0 and 10"},
		{[]string{"node", "aggregate", "--private-tolerance", "NaN"}, "--private-tolerance must be a number"},
		{[]string{"node", "aggregate", "--secagg", "3"}, "--secagg needs --private-tolerance"},
		{[]string{"node", "aggregate", "--start-with", "-1"}, "--start-with must not be negative"},
		{[]string{"node", "aggregate", "--start-with", "3", "--start-wait", "0s"}, "--start-wait must be positive"},
		{[]string{"node", "aggregate", "--private-tolerance", "0.1", "--secagg", "1"}, "secure aggregation: cohorts of at least 1"},
		{[]string{"node", "aggregate", "--private-tolerance", "0.1", "--secagg", "3", "--secagg-bits", "40"}, "secure aggregation: values of 40 bits"},
		{[]string{"node", "work", "--join", "/ip4/127.0.0.1/tcp/1", "--private-data", "/nonexistent/secret.txt"}, "--private-data: open /nonexistent/secret.txt"},
	} {
		wantBadInput(t, c.want, c.args...)
	}
}
