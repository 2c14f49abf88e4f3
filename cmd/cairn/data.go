package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/metrics"
	"github.com/cairnlabs/cairn/node"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/records"
	"github.com/cairnlabs/cairn/store"
)

// runData is 'cairn data': crowdsourced records.
func runData(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "collect":
			return runDataCollect(args[1:], stdout, stderr)
		case "submit":
			return runDataSubmit(args[1:], stdout, stderr)
		case "export":
			return runDataExport(args[1:], stdout, stderr)
		case "trace":
			return runDataTrace(args[1:], stdout, stderr)
		}
	}
	return badInput("usage: cairn data collect|submit|export|trace [flags]")
}

func runDataCollect(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("data collect", stderr)
	dir := fs.String("data-dir", "cairn-collector", "identity key, the record file and the collector's chain")
	listen := fs.String("listen", "/ip4/0.0.0.0/tcp/4011,/ip4/0.0.0.0/udp/4011/quic-v1", "comma-separated multiaddrs to listen on")
	d := records.DefaultRules()
	licences := fs.String("licences", strings.Join(d.Licences, ","), "comma-separated licences (SPDX identifiers) the collector takes")
	fs.IntVar(&d.MinWords, "min-words", d.MinWords, "fewest words a record holds")
	fs.DurationVar(&d.MaxAge, "max-age", d.MaxAge, "oldest a record may be")
	fs.Float64Var(&d.NearDuplicate, "near-duplicate", d.NearDuplicate, "Jaccard similarity of word shingles at which a record is a near copy of one held")
	fs.Uint64Var(&d.Reward, "reward", d.Reward, "units paid for a fresh record unlike any other")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics on this host:port")
	verbose := fs.Bool("v", false, "debug logging")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	d.Licences = splitList(*licences)
	if err := d.Validate(); err != nil {
		return badInput("%v", err)
	}
	log := logger(stderr, *verbose)
	reg := metrics.NewRegistry()
	stop, err := serveMetrics(*metricsAddr, reg, log)
	if err != nil {
		return err
	}
	defer stop()
	c, err := node.StartCollector(node.CollectorOptions{DataDir: *dir, Listen: splitList(*listen), Rules: d, Metrics: reg, Log: log})
	if err != nil {
		return badInput("%v", err)
	}
	defer c.Close()
	fmt.Fprintln(stdout, "contributors submit records with one of:")
	for _, a := range c.Addrs() {
		fmt.Fprintf(stdout, "  cairn data submit --to %s --file FILE --licence CC-BY-4.0 --consent\n", a)
	}
	ctx, cancel := signalContext()
	defer cancel()
	<-ctx.Done()
	st := c.Stats()
	fmt.Fprintf(stdout, "stopped: %d records held, %d taken and %d refused since the start\n", st.Held, st.Accepted, sum(st.Refused))
	return nil
}

func sum(m map[string]int) (n int) {
	for _, v := range m {
		n += v
	}
	return n
}

func runDataSubmit(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("data submit", stderr)
	to := fs.String("to", "", "the collector's full multiaddr")
	file := fs.String("file", "", "the record's text (UTF-8)")
	licence := fs.String("licence", "", "its licence, an SPDX identifier (e.g. CC-BY-4.0)")
	consent := fs.Bool("consent", false, "affirm that you may contribute it under that licence")
	dir := fs.String("data-dir", "cairn-contributor", "your identity key (created if absent): it signs the record and is paid its reward")
	made := fs.String("time", "", "when the record was made, RFC 3339 (default: now)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *to == "" || *file == "" || *licence == "" {
		return badInput("--to, --file and --licence are required")
	}
	content, err := os.ReadFile(*file)
	if err != nil {
		return badInput("%v", err)
	}
	if len(content) == 0 || len(content) > records.MaxContent {
		return badInput("%s has %d bytes: a record holds 1 to %d", *file, len(content), records.MaxContent)
	}
	at := time.Now()
	if *made != "" {
		if at, err = time.Parse(time.RFC3339, *made); err != nil {
			return badInput("--time: %v", err)
		}
	}
	key, err := p2p.LoadIdentity(*dir)
	if err != nil {
		return err
	}
	lkey, err := p2p.LedgerKey(key)
	if err != nil {
		return err
	}
	tr, err := p2p.NewTransport(key, []string{"/ip4/0.0.0.0/tcp/0"})
	if err != nil {
		return err
	}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := node.SubmitRecord(ctx, tr, *to, records.Sign(lkey, content, at.Unix(), *licence, *consent))
	if err != nil {
		return err
	}
	if !rep.Accepted {
		return failedCheck{fmt.Sprintf("refused (%s): %s", rep.Refused, rep.Reason)}
	}
	fmt.Fprintf(stdout, "accepted as record %d (sha256 %s): reward %d units to %s", rep.Number, rep.Hash, rep.Reward, tr.ID())
	if rep.Similarity > 0 {
		fmt.Fprintf(stdout, ", %.0f%% like the nearest record held", 100*rep.Similarity)
	}
	fmt.Fprintln(stdout)
	return nil
}

// manifestEntry is one record of an exported corpus.
type manifestEntry struct {
	Number      uint64    `json:"number"`
	Hash        string    `json:"hash"`
	Contributor string    `json:"contributor"` // peer ID
	Offset      int       `json:"offset"`      // of the content in the corpus
	Length      int       `json:"length"`
	Reward      uint64    `json:"reward"`
	Made        time.Time `json:"made"`
}

func runDataExport(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("data export", stderr)
	dir := fs.String("data-dir", "cairn-collector", "the collector's data directory (stopped)")
	out := fs.String("out", "", "the corpus to write (and OUT.manifest.json, each record's place and contributor)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *out == "" {
		return badInput("--out is required")
	}
	rs, err := store.OpenRecords(filepath.Join(*dir, store.RecordsFileName))
	if err != nil {
		return badInput("%v", err)
	}
	defer rs.Close()
	var text []byte
	var man []manifestEntry
	err = rs.Each(func(t store.Taken) error {
		h := t.Record.Hash()
		id := p2p.PeerIDOf(ledger.PubKey(t.Record.Contributor))
		man = append(man, manifestEntry{Number: t.N, Hash: hex.EncodeToString(h[:]), Contributor: id, Offset: len(text), Length: len(t.Record.Content),
			Reward: t.Reward, Made: time.Unix(t.Record.Time, 0).UTC()})
		text = append(append(text, t.Record.Content...), '\n', '\n')
		return nil
	})
	if err != nil {
		return err
	}
	if len(man) == 0 {
		return badInput("the collector in %s holds no records", *dir)
	}
	mj, err := json.MarshalIndent(man, "", " ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(*out, text); err != nil {
		return err
	}
	if err := writeFileAtomic(*out+".manifest.json", mj); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d records, %d bytes: %s (and %s.manifest.json); train on it with --data %s\n", len(man), len(text), *out, *out, *out)
	return nil
}

func runDataTrace(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("data trace", stderr)
	run := bindRun(fs, diloco.DefaultConfig())
	worker := fs.String("worker", "", "the worker's peer ID")
	round := fs.Int("round", 0, "the round")
	manifest := fs.String("manifest", "", "the corpus's manifest (default: the --data file's .manifest.json)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *worker == "" || *round < 0 {
		return badInput("--worker is required and --round must not be negative")
	}
	text, err := run.load()
	if err != nil {
		return err
	}
	if *manifest == "" {
		if *run.data == "" {
			return badInput("give the exported corpus with --data (and its --manifest)")
		}
		*manifest = *run.data + ".manifest.json"
	}
	mb, err := os.ReadFile(*manifest)
	if err != nil {
		return badInput("%v", err)
	}
	var man []manifestEntry
	if err := json.Unmarshal(mb, &man); err != nil {
		return badInput("%s: %v", *manifest, err)
	}
	train, _ := corpus.Split(text, 0.9)
	steps, err := diloco.Assignment(run.cfg, len(train), *worker, *round, run.cfg.InnerSteps)
	if err != nil {
		return badInput("%v", err)
	}
	sort.Slice(man, func(i, j int) bool { return man[i].Offset < man[j].Offset })
	bytesOf := map[uint64]int{}
	W := run.cfg.Model.BlockSize + 1
	for _, st := range steps {
		for _, s := range st {
			// Every record overlapping [s, s+W).
			i := sort.Search(len(man), func(i int) bool { return man[i].Offset+man[i].Length > s })
			for ; i < len(man) && man[i].Offset < s+W; i++ {
				lo, hi := max(s, man[i].Offset), min(s+W, man[i].Offset+man[i].Length)
				if hi > lo {
					bytesOf[man[i].Number] += hi - lo
				}
			}
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "round %d, worker %s: %d inner steps of %d windows\nrecord\tcontributor\tbytes trained\n", *round, *worker, len(steps), run.cfg.Batch)
	byNum := map[uint64]manifestEntry{}
	for _, m := range man {
		byNum[m.Number] = m
	}
	var nums []uint64
	for n := range bytesOf {
		nums = append(nums, n)
	}
	sort.Slice(nums, func(i, j int) bool { return nums[i] < nums[j] })
	for _, n := range nums {
		fmt.Fprintf(tw, "%d\t%s\t%d\n", n, byNum[n].Contributor, bytesOf[n])
	}
	return tw.Flush()
}
