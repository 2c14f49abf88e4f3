package store

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnlabs/cairn/ledger"
)

const crashChildEnv = "CAIRN_STORE_CRASH_CHILD"

// TestMain runs the crash test's child when the test binary is re-executed
// with crashChildEnv set to a ledger path.
func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
		os.Exit(3) // crashChild only returns on error
	}
	os.Exit(m.Run())
}

// crashChild opens (or creates) the chain at path and produces blocks
// until it is killed, announcing each committed height on stdout. Every
// block holds 40 transfers and closes and settles a round, so each write
// touches blocks, results, accounts, history, rounds and meta.
func crashChild(path string) {
	org, A, B := testKey("org"), testKey("A"), testKey("B")
	g := testGenesis(A, B)
	c, err := OpenChain(path, g, org)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	acct, err := c.Account(ledger.KeyOf(org))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	nonce := acct.Nonce
	round := openRound(c)
	now := time.Unix(1_767_225_600, 0).Add(time.Duration(c.Tip().Height) * time.Second)
	sign := func(body ledger.Body) []byte {
		nonce++
		raw, err := ledger.SignTx(g.ChainID, org, nonce, body)
		if err != nil {
			panic(err)
		}
		return raw
	}
	for {
		for i := 0; i < 40; i++ {
			to := A
			if i%2 == 1 {
				to = B
			}
			if err := c.Submit(sign(&ledger.TransferTx{To: ledger.KeyOf(to), Amount: 1})); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return
			}
		}
		if err := c.Submit(sign(&ledger.ResultTx{Round: round})); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
		if err := c.Submit(sign(&ledger.SettleTx{Round: round})); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
		round++
		now = now.Add(time.Second)
		// Chain.Produce's steps, announcing the write so that the parent
		// can aim its kill at it.
		b, res, err := c.p.MakeBlock(now.UnixNano())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
		fmt.Printf("writing %d\n", b.Header.Height)
		if err := c.s.persist(b, res); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
		if _, err := c.p.Commit(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
		fmt.Printf("committed %d\n", b.Header.Height)
	}
}

func openRound(c *Chain) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, err := c.s.l.Totals()
	if err != nil {
		panic(err)
	}
	return t.OpenRound
}

// TestKillNineMidBlock re-executes the test binary as a block producer on
// one ledger file and kills it with SIGKILL at random moments while it
// writes blocks: at least six times, and until two kills landed inside a
// block's write (after the child said it was writing block N and before
// the write committed). After each kill the file verifies (no
// half-written block), holds every block the child announced as committed
// (and at most one more: committed but not yet announced), and the next
// child resumes from it.
func TestKillNineMidBlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	rng := rand.New(rand.NewPCG(7, 8))
	var last uint64
	midWrite := 0
	kill := 0
	for ; kill < 6 || midWrite < 2; kill++ {
		if kill == 60 {
			t.Fatalf("only %d of %d kills landed during a block's write", midWrite, kill)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		announced, writing := last, uint64(0)
		read := func() bool {
			if !sc.Scan() {
				return false
			}
			f := strings.Fields(sc.Text())
			h, err := strconv.ParseUint(f[len(f)-1], 10, 64)
			switch {
			case err != nil || len(f) != 2:
				t.Fatalf("child said %q", sc.Text())
			case f[0] == "writing":
				writing = h
			case f[0] == "committed" && h == announced+1:
				announced = h
			default:
				t.Fatalf("child said %q after height %d", sc.Text(), announced)
			}
			return true
		}
		// Let it commit a few blocks, then kill it while it writes the
		// next: at once, or a little later.
		for want := 2 + rng.IntN(4); announced < last+uint64(want) && read(); {
		}
		for writing != announced+1 && read() {
		}
		time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond)
		cmd.Process.Signal(syscall.SIGKILL)
		for read() { // what it said before the signal landed
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("child ended with %v before the kill: %s", err, stderr.String())
		}
		if announced == last {
			t.Fatalf("child committed nothing: %s", stderr.String())
		}
		r, err := Verify(path)
		if err != nil {
			t.Fatalf("after kill %d (announced height %d): %v", kill, announced, err)
		}
		if r.Tip.Height < announced || r.Tip.Height > announced+1 {
			t.Fatalf("after kill %d: file at height %d, child announced %d", kill, r.Tip.Height, announced)
		}
		state := fmt.Sprintf("after announcing block %d", announced)
		switch {
		case writing == announced+1 && r.Tip.Height == announced:
			state = fmt.Sprintf("while writing block %d: not committed", writing)
			midWrite++
		case writing == announced+1:
			state = fmt.Sprintf("after writing block %d, before announcing it", writing)
		}
		t.Logf("kill %d: announced %d, file at %d and verified; killed %s", kill, announced, r.Tip.Height, state)
		last = r.Tip.Height
	}
	t.Logf("%d kills, %d of them during a block's write", kill, midWrite)
	// The file resumes.
	c, err := OpenChain(path, nil, testKey("org"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	acct, _ := c.Account(ledger.KeyOf(testKey("org")))
	raw, _ := ledger.SignTx("store-test", testKey("org"), acct.Nonce+1, &ledger.TransferTx{To: ledger.KeyOf(testKey("A")), Amount: 1})
	now := time.Unix(1_900_000_000, 0)
	if b := produce(t, c, &now, raw); b.Header.Height != last+1 {
		t.Fatalf("resumed at height %d after %d", b.Header.Height, last)
	}
}
