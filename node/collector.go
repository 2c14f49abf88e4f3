package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/cairnlabs/cairn/ledger"
	"github.com/cairnlabs/cairn/metrics"
	"github.com/cairnlabs/cairn/p2p"
	"github.com/cairnlabs/cairn/records"
	"github.com/cairnlabs/cairn/store"
	"github.com/cairnlabs/cairn/wire"
	"github.com/libp2p/go-libp2p/core/crypto"
)

// ProtoRecords is how contributors submit records to a collector: the
// record's bytes (records.Record.Marshal) as a blob, answered by a JSON
// recordReply.
const ProtoRecords = "/cairn/records/submit/1.0.0"

const kindRecordReply uint8 = 0x60

// RecordReply is a collector's answer to a record: taken, with its number,
// reward and similarity to the nearest record held, or refused with the
// reason's kind (records.Reason's name) and detail.
type RecordReply struct {
	Accepted   bool    `json:"accepted"`
	Hash       string  `json:"hash"`
	Number     uint64  `json:"number,omitempty"`
	Reward     uint64  `json:"reward,omitempty"`
	Similarity float64 `json:"similarity,omitempty"`
	Refused    string  `json:"refused,omitempty"`
	Reason     string  `json:"reason,omitempty"`
}

// CollectorOptions configure a collector node.
type CollectorOptions struct {
	DataDir string   // identity key, the record file, the collector's chain
	Listen  []string // multiaddrs; default p2p.DefaultListen
	// Transport and Key, when set, are used instead of a libp2p host made
	// from the identity in DataDir.
	Transport Transport
	Key       crypto.PrivKey
	Rules     records.Rules // zero: records.DefaultRules
	// BlockInterval is how often the accepted records are recorded on the
	// collector's chain (default 1 s).
	BlockInterval time.Duration
	Now           func() time.Time // the rules' clock (default time.Now)
	Metrics       *metrics.Registry
	Log           *slog.Logger
}

// CollectorStats count what a collector did since it started.
type CollectorStats struct {
	Held     int            // records in the store
	Accepted int            // taken since the start
	Refused  map[string]int // by reason
	OnChain  int            // records recorded on the chain since the start
}

// Collector is a running collector node: it takes records over
// ProtoRecords by records.Collector's rules, stores each durably before
// it answers, and records them on its chain (RecordsTx), which pays their
// contributors and serves ProtoLedgerQuery.
type Collector struct {
	opts  CollectorOptions
	tr    Transport
	lock  *p2p.DirLock
	store *store.RecordStore
	led   *LedgerHost
	log   *slog.Logger
	met   *metrics.Registry
	now   func() time.Time

	mu      sync.Mutex // the collector's rules and the pending entries
	rules   *records.Collector
	pending []pendingRecord
	stats   CollectorStats

	stop chan struct{}
	done chan struct{}
}

type pendingRecord struct {
	n     uint64
	entry ledger.RecordEntry
}

// StartCollector opens the collector in o.DataDir (creating its record
// file and chain the first time), rebuilds its indexes from the records
// held, and starts serving. Records held but not yet on its chain are
// recorded first thing.
func StartCollector(o CollectorOptions) (*Collector, error) {
	if o.DataDir == "" {
		return nil, errors.New("the collector needs a data directory")
	}
	if len(o.Rules.Licences) == 0 {
		o.Rules = records.DefaultRules()
	}
	rules, err := records.NewCollector(o.Rules)
	if err != nil {
		return nil, err
	}
	c := &Collector{opts: o, log: o.Log, met: o.Metrics, now: o.Now, rules: rules,
		stats: CollectorStats{Refused: map[string]int{}}, stop: make(chan struct{}), done: make(chan struct{})}
	if c.log == nil {
		c.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.met == nil {
		c.met = metrics.NewRegistry()
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.lock, err = p2p.LockDir(o.DataDir); err != nil {
		return nil, err
	}
	fail := func(err error) (*Collector, error) {
		c.closeParts()
		return nil, err
	}
	key := o.Key
	if key == nil {
		if key, err = p2p.LoadIdentity(o.DataDir); err != nil {
			return fail(err)
		}
	}
	lkey, err := p2p.LedgerKey(key)
	if err != nil {
		return fail(err)
	}
	if c.store, err = store.OpenRecords(filepath.Join(o.DataDir, store.RecordsFileName)); err != nil {
		return fail(err)
	}
	c.tr = o.Transport
	if c.tr == nil {
		if c.tr, err = p2p.NewTransport(key, o.Listen); err != nil {
			return fail(err)
		}
	}
	var g *ledger.Genesis
	if !fileExists(filepath.Join(o.DataDir, store.FileName)) {
		p := DefaultLedgerParams()
		p.MinStake = 0
		if g, err = RunGenesis("cairn records\n"+c.tr.ID(), ledger.KeyOf(lkey), nil, p); err != nil {
			return fail(err)
		}
	}
	if c.led, err = OpenLedgerHost(LedgerHostOptions{DataDir: o.DataDir, Genesis: g, Key: lkey, BlockInterval: o.BlockInterval, Log: c.log}); err != nil {
		return fail(err)
	}
	// Rebuild the indexes; queue what the chain does not hold yet.
	err = c.store.Each(func(t store.Taken) error {
		if !c.rules.Add(&t.Record) {
			return fmt.Errorf("record %d repeats the content of an earlier one", t.N)
		}
		c.stats.Held++
		if !c.store.OnChain(t.N) {
			c.pending = append(c.pending, pendingRecord{t.N, ledger.RecordEntry{Hash: t.Record.Hash(), Contributor: t.Record.Contributor, Reward: t.Reward}})
		}
		return nil
	})
	if err != nil {
		return fail(fmt.Errorf("the record file: %v", err))
	}
	c.led.Serve(c.tr)
	c.tr.Handle(ProtoRecords, c.serve)
	go c.clock()
	c.log.Info("collector listening", "addrs", c.tr.Addrs(), "records", c.stats.Held, "to_record", len(c.pending), "chain", c.led.Info().ChainID)
	return c, nil
}

// fileExists reports whether path exists.
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// ID is the collector's peer ID.
func (c *Collector) ID() string { return c.tr.ID() }

// Addrs are the collector's full multiaddrs.
func (c *Collector) Addrs() []string { return c.tr.Addrs() }

// Ledger is the collector's chain.
func (c *Collector) Ledger() *LedgerHost { return c.led }

// Stats reports what the collector did.
func (c *Collector) Stats() CollectorStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.stats
	st.Refused = map[string]int{}
	for k, v := range c.stats.Refused {
		st.Refused[k] = v
	}
	return st
}

// serve takes one record: read (bounded), parsed, judged, stored durably,
// indexed and answered; a refusal names its reason.
func (c *Collector) serve(ns wire.NetStream, from string) {
	defer ns.Close()
	s := newProgress(ns, ns, serveStall, time.Now().Add(controlTimeout))
	s.allow(wire.EncodedBlobSize(records.MaxEncoded), serveBase, serveMinRate)
	b, err := wire.ReadBlob(s, records.MaxEncoded)
	if err != nil {
		wire.WriteError(s, "records: "+err.Error())
		return
	}
	reply := c.take(b)
	if err := wire.WriteJSON(s, kindRecordReply, reply); err != nil {
		c.log.Debug("a record's answer was not delivered", "peer", from, "err", err)
	}
}

// take judges and, if it passes, stores a record's bytes.
func (c *Collector) take(b []byte) RecordReply {
	r, err := records.Parse(b)
	if err != nil {
		return c.refused(RecordReply{}, records.Malformed.String(), err.Error())
	}
	h := r.Hash()
	reply := RecordReply{Hash: hex.EncodeToString(h[:])}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	d, err := c.rules.Check(&r, now)
	if err != nil {
		var ref *records.Refusal
		if errors.As(err, &ref) {
			return c.refusedLocked(reply, ref.Reason.String(), ref.Detail)
		}
		return c.refusedLocked(reply, "error", err.Error())
	}
	n, err := c.store.Put(r, d.Reward, d.Similarity, now)
	if err != nil {
		if errors.Is(err, store.ErrTaken) { // never: the rules hold every stored hash
			return c.refusedLocked(reply, records.Duplicate.String(), fmt.Sprintf("the same content as record %d", n))
		}
		c.log.Error("a record could not be stored", "err", err)
		return c.refusedLocked(reply, "error", "the collector could not store it: try again")
	}
	c.rules.Add(&r)
	c.pending = append(c.pending, pendingRecord{n, ledger.RecordEntry{Hash: h, Contributor: r.Contributor, Reward: d.Reward}})
	c.stats.Held++
	c.stats.Accepted++
	c.met.Counter("cairn_records_accepted_total", "records the collector took").Add(1)
	reply.Accepted, reply.Number, reply.Reward, reply.Similarity = true, n, d.Reward, d.Similarity
	return reply
}

func (c *Collector) refused(reply RecordReply, kind, detail string) RecordReply {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refusedLocked(reply, kind, detail)
}

func (c *Collector) refusedLocked(reply RecordReply, kind, detail string) RecordReply {
	c.stats.Refused[kind]++
	c.met.Counter("cairn_records_refused_total", "records the collector refused").Add(1)
	reply.Refused, reply.Reason = kind, detail
	return reply
}

// clock records the pending records on the chain every block interval.
func (c *Collector) clock() {
	defer close(c.done)
	t := time.NewTicker(c.led.interval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			if err := c.record(); err != nil {
				c.log.Warn("recording accepted records on the chain", "err", err)
			}
		}
	}
}

// record puts the pending records on the chain in one RecordsTx and one
// block (those the chain holds already, after a crash between the block
// and the note of it, are only noted), then notes them in the store.
func (c *Collector) record() error {
	c.mu.Lock()
	batch := slices.Clone(c.pending[:min(len(c.pending), ledger.MaxRecordEntries)])
	c.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	slices.SortFunc(batch, func(a, b pendingRecord) int { return bytes.Compare(a.entry.Hash[:], b.entry.Hash[:]) })
	hashes := make([]ledger.Hash, len(batch))
	ns := make([]uint64, len(batch))
	for i, p := range batch {
		hashes[i], ns[i] = p.entry.Hash, p.n
	}
	on, err := c.led.recordOnce("record", hashes, c.now(), func(keep []int) ledger.Body {
		tx := &ledger.RecordsTx{}
		for _, i := range keep {
			tx.Entries = append(tx.Entries, batch[i].entry)
		}
		return tx
	})
	if err != nil {
		return err
	}
	if err := c.store.MarkOnChain(ns); err != nil {
		return err
	}
	c.mu.Lock()
	done := map[uint64]bool{}
	for _, n := range ns {
		done[n] = true
	}
	c.pending = slices.DeleteFunc(c.pending, func(p pendingRecord) bool { return done[p.n] })
	c.stats.OnChain += on
	c.mu.Unlock()
	c.log.Info("records on the chain", "records", on)
	return nil
}

// Close records what is pending, then stops the node.
func (c *Collector) Close() error {
	select {
	case <-c.stop:
		return nil
	default:
	}
	close(c.stop)
	<-c.done
	if err := c.record(); err != nil {
		c.log.Warn("recording accepted records on the chain at close", "err", err)
	}
	return c.closeParts()
}

func (c *Collector) closeParts() error {
	var errs []error
	if c.tr != nil {
		errs = append(errs, c.tr.Close())
	}
	if c.led != nil {
		errs = append(errs, c.led.Close())
	}
	if c.store != nil {
		errs = append(errs, c.store.Close())
	}
	if c.lock != nil {
		errs = append(errs, c.lock.Close())
	}
	return errors.Join(errs...)
}

// SubmitRecord sends record r to the collector at the full multiaddr addr
// over tr
// and returns its answer (a refusal is an answer, not an error; errors are
// the link's, or a record the collector could not read).
func SubmitRecord(ctx context.Context, tr Transport, addr string, r records.Record) (RecordReply, error) {
	id, err := tr.Connect(ctx, addr)
	if err != nil {
		return RecordReply{}, err
	}
	ns, err := tr.Open(ctx, id, ProtoRecords)
	if err != nil {
		return RecordReply{}, err
	}
	defer ns.Close()
	s := newProgress(ns, ns, serveStall, time.Now().Add(controlTimeout))
	b := r.Marshal()
	s.allow(wire.EncodedBlobSize(int64(len(b))), serveBase, serveMinRate)
	if err := wire.WriteBlob(s, b); err != nil {
		return RecordReply{}, err
	}
	var reply RecordReply
	if err := wire.ReadJSON(s, kindRecordReply, maxControl, &reply); err != nil {
		return RecordReply{}, err
	}
	return reply, nil
}
