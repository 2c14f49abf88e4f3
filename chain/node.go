package chain

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dbm "github.com/cometbft/cometbft-db"

	cfg "github.com/cometbft/cometbft/config"
	cmtjson "github.com/cometbft/cometbft/libs/json"
	cmtlog "github.com/cometbft/cometbft/libs/log"
	cmtnode "github.com/cometbft/cometbft/node"
	"github.com/cometbft/cometbft/p2p"
	"github.com/cometbft/cometbft/privval"
	"github.com/cometbft/cometbft/proxy"
	"github.com/spf13/viper"

	"github.com/cairnlabs/cairn/store"
)

// NodeOptions configure Start.
type NodeOptions struct {
	// RPC overrides the RPC listen address of the home's config.toml
	// (tcp://host:port or host:port).
	RPC string
	// Log receives CometBFT's log at the home's log level (default:
	// discarded).
	Log io.Writer
	// Verbose logs at info level instead of the home's level.
	Verbose bool
}

// Node is a running validator: CometBFT with the Cairn ledger
// application in the same process.
type Node struct {
	n    *cmtnode.Node
	app  *App
	conf *cfg.Config
	dbs  *openDBs
}

// openDBs remembers the databases CometBFT opens: its Stop leaves the
// transaction index open, which would keep a restart in the same process
// from opening it again.
type openDBs struct {
	mu  sync.Mutex
	dbs []*closableDB
}

func (o *openDBs) provider(ctx *cfg.DBContext) (dbm.DB, error) {
	db, err := cfg.DefaultDBProvider(ctx)
	if err != nil {
		return nil, err
	}
	c := &closableDB{DB: db}
	o.mu.Lock()
	o.dbs = append(o.dbs, c)
	o.mu.Unlock()
	return c, nil
}

// closableDB answers reads after Close as if the key were absent: a
// CometBFT routine that outlives its node's Stop then finds nothing,
// where the closed database's error would make it panic.
type closableDB struct {
	dbm.DB
	closed atomic.Bool
}

func (d *closableDB) Get(k []byte) ([]byte, error) {
	if d.closed.Load() {
		return nil, nil
	}
	return d.DB.Get(k)
}

func (d *closableDB) Has(k []byte) (bool, error) {
	if d.closed.Load() {
		return false, nil
	}
	return d.DB.Has(k)
}

func (d *closableDB) Close() error {
	d.closed.Store(true)
	return d.DB.Close()
}

func (o *openDBs) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, db := range o.dbs {
		db.Close() // already closed by CometBFT: an error, ignored
	}
	o.dbs = nil
}

// LoadConfig reads home/config/config.toml over CometBFT's defaults. It
// fails if the home has no configuration or it does not parse.
func LoadConfig(home string) (*cfg.Config, error) {
	path := filepath.Join(home, "config", "config.toml")
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("chain: %s: no config/config.toml (a home made by 'cairn chain init'?)", home)
	}
	v := viper.New()
	v.SetConfigFile(path)
	if err := v.ReadInConfig(); err != nil {
		return nil, fmt.Errorf("chain: %s: %v", path, err)
	}
	c := cfg.DefaultConfig()
	if err := v.Unmarshal(c); err != nil {
		return nil, fmt.Errorf("chain: %s: %v", path, err)
	}
	c.SetRoot(home)
	if err := c.ValidateBasic(); err != nil {
		return nil, fmt.Errorf("chain: %s: %v", path, err)
	}
	return c, nil
}

// Start starts the validator whose home directory is home: it opens the
// application's state (data/cairn-app.db), and CometBFT replays the
// blocks the application missed before it rejoins its peers. It fails on
// a home without configuration, genesis or keys, a state file another
// process holds, and when CometBFT cannot start (a port in use, a
// genesis that does not match the stored chain).
func Start(home string, o NodeOptions) (*Node, error) {
	home, err := filepath.Abs(home)
	if err != nil {
		return nil, err
	}
	c, err := LoadConfig(home)
	if err != nil {
		return nil, err
	}
	if o.RPC != "" {
		c.RPC.ListenAddress = "tcp://" + strings.TrimPrefix(strings.TrimPrefix(o.RPC, "tcp://"), "http://")
	}
	for _, f := range []string{c.GenesisFile(), c.PrivValidatorKeyFile(), c.PrivValidatorStateFile(), c.NodeKeyFile()} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("chain: %s: missing %s", home, f)
		}
	}
	nk, err := p2p.LoadNodeKey(c.NodeKeyFile())
	if err != nil {
		return nil, fmt.Errorf("chain: %v", err)
	}
	pv, err := loadPV(c)
	if err != nil {
		return nil, err
	}
	app, err := OpenApp(filepath.Join(c.DBDir(), store.AppFileName))
	if err != nil {
		return nil, err
	}
	logger := cmtlog.NewNopLogger()
	if o.Log != nil {
		logger = cmtlog.NewTMLogger(cmtlog.NewSyncWriter(o.Log))
		if o.Verbose {
			logger = cmtlog.NewFilter(logger, cmtlog.AllowInfo())
		} else {
			logger = cmtlog.NewFilter(logger, cmtlog.AllowError())
		}
	}
	// CometBFT's queryMaj23Routine reads the block store after sleeps
	// of this length without checking that the node still runs; Stop
	// waits out a few of them before closing the databases, so they are
	// kept short.
	c.Consensus.PeerQueryMaj23SleepDuration = min(c.Consensus.PeerQueryMaj23SleepDuration, maj23Sleep)
	dbs := &openDBs{}
	n, err := cmtnode.NewNode(c, pv, nk, proxy.NewLocalClientCreator(app), cmtnode.DefaultGenesisDocProviderFunc(c),
		dbs.provider, cmtnode.DefaultMetricsProvider(c.Instrumentation), logger)
	if err != nil {
		dbs.close()
		app.Close()
		return nil, fmt.Errorf("chain: starting the validator in %s: %v", home, err)
	}
	if err := n.Start(); err != nil {
		dbs.close()
		app.Close()
		return nil, fmt.Errorf("chain: starting the validator in %s: %v", home, err)
	}
	return &Node{n: n, app: app, conf: c, dbs: dbs}, nil
}

// loadPV loads the validator's key and last-signed state; CometBFT's own
// loader exits the process on a bad file, so both are decoded here first.
func loadPV(c *cfg.Config) (*privval.FilePV, error) {
	var key privval.FilePVKey
	var state privval.FilePVLastSignState
	for f, v := range map[string]any{c.PrivValidatorKeyFile(): &key, c.PrivValidatorStateFile(): &state} {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("chain: %v", err)
		}
		if err := cmtjson.Unmarshal(b, v); err != nil {
			return nil, fmt.Errorf("chain: %s: %v", f, err)
		}
	}
	if key.PrivKey == nil || key.PubKey == nil {
		return nil, fmt.Errorf("chain: %s holds no key", c.PrivValidatorKeyFile())
	}
	return privval.LoadFilePV(c.PrivValidatorKeyFile(), c.PrivValidatorStateFile()), nil
}

// RPC is the address the node serves RPC on (http://host:port).
func (n *Node) RPC() string {
	return "http://" + strings.TrimPrefix(n.conf.RPC.ListenAddress, "tcp://")
}

// App is the node's ledger application.
func (n *Node) App() *App { return n.app }

// Height is the last block the node committed.
func (n *Node) Height() int64 { return n.n.BlockStore().Height() }

// maj23Sleep bounds CometBFT's PeerQueryMaj23SleepDuration.
const maj23Sleep = 100 * time.Millisecond

// Stop stops the node and closes the application's file.
func (n *Node) Stop() error {
	var errs []error
	if n.n.IsRunning() {
		errs = append(errs, n.n.Stop())
		n.n.Wait()
		// With peers (a network of more than one validator), a consensus
		// routine per peer may still be between its sleeps and read the
		// block store once more (see Start).
		if n.conf.P2P.PersistentPeers != "" {
			time.Sleep(5 * maj23Sleep)
		}
	}
	n.dbs.close()
	errs = append(errs, n.app.Close())
	return errors.Join(errs...)
}
