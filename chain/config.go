package chain

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	cfg "github.com/cometbft/cometbft/config"
	"github.com/cometbft/cometbft/p2p"
	"github.com/cometbft/cometbft/privval"
	"github.com/cometbft/cometbft/types"

	"github.com/cairnlabs/cairn/ledger"
)

// InitOptions describe a local network of validators on loopback.
type InitOptions struct {
	// Validators is the number of validators (1..MaxValidators), each
	// with voting power 1.
	Validators int
	// Out is the directory that receives one home directory per
	// validator (v0, v1, ...) and network.json; it must not hold them
	// already (other files may be there).
	Out string
	// Genesis is the ledger's genesis; its chain ID is the chain's.
	Genesis ledger.Genesis
	// Host is the address the validators listen on (default 127.0.0.1).
	Host string
	// BasePort: validator i listens for peers on BasePort+2i and serves
	// RPC on BasePort+2i+1 (default 26656).
	BasePort int
	// TimeoutCommit is the pause after each block (default 300 ms), which
	// with the consensus rounds sets the block time.
	TimeoutCommit time.Duration
	// EmptyBlocksInterval spaces blocks without transactions (default
	// 10 s; a negative value makes no empty blocks at all).
	EmptyBlocksInterval time.Duration
	// GenesisTime is the chain's start (default now).
	GenesisTime time.Time
}

// MaxValidators bounds a local network.
const MaxValidators = 64

// Validator is one validator of a network, as network.json lists it.
type Validator struct {
	Name   string `json:"name"`
	Home   string `json:"home"`
	NodeID string `json:"node_id"`
	P2P    string `json:"p2p"` // host:port
	RPC    string `json:"rpc"` // http://host:port
}

// Network is what Init wrote (network.json in the output directory).
type Network struct {
	ChainID    string      `json:"chain_id"`
	Validators []Validator `json:"validators"`
}

// NetworkFile is the network's description inside Init's output directory.
const NetworkFile = "network.json"

// Init writes the configuration of a local network: a genesis document
// holding the ledger's genesis as app_state and every validator's public
// key, and per validator a home directory with config/config.toml (peers
// wired on loopback, the block timing), config/genesis.json,
// config/node_key.json, config/priv_validator_key.json and
// data/priv_validator_state.json. It fails on a bad count, an invalid
// ledger genesis, an output directory that already holds a network, and on write
// errors (leaving what it wrote: remove the directory and run it again).
func Init(o InitOptions) (*Network, error) {
	if o.Validators < 1 || o.Validators > MaxValidators {
		return nil, fmt.Errorf("chain: %d validators, want 1..%d", o.Validators, MaxValidators)
	}
	if err := o.Genesis.Validate(); err != nil {
		return nil, err
	}
	if o.Out == "" {
		return nil, errors.New("chain: no output directory")
	}
	for _, name := range append([]string{NetworkFile}, homeNames(o.Validators)...) {
		if _, err := os.Lstat(filepath.Join(o.Out, name)); err == nil {
			return nil, fmt.Errorf("chain: %s already holds %s: it may hold a network's keys; choose a new directory", o.Out, name)
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("chain: %v", err)
		}
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.BasePort == 0 {
		o.BasePort = 26656
	}
	if o.BasePort < 1024 || o.BasePort+2*o.Validators > 65535 {
		return nil, fmt.Errorf("chain: base port %d leaves no room for %d validators", o.BasePort, o.Validators)
	}
	if o.TimeoutCommit == 0 {
		o.TimeoutCommit = 300 * time.Millisecond
	}
	if o.EmptyBlocksInterval == 0 {
		o.EmptyBlocksInterval = 10 * time.Second
	}
	if o.GenesisTime.IsZero() {
		o.GenesisTime = time.Now()
	}
	appState, err := json.Marshal(AppState{Ledger: o.Genesis.Encode()})
	if err != nil {
		return nil, err
	}
	net := &Network{ChainID: o.Genesis.ChainID}
	doc := &types.GenesisDoc{
		GenesisTime:     o.GenesisTime.UTC(),
		ChainID:         o.Genesis.ChainID,
		InitialHeight:   1,
		ConsensusParams: types.DefaultConsensusParams(),
		AppState:        appState,
	}
	confs := make([]*cfg.Config, o.Validators)
	for i := range o.Validators {
		home, err := filepath.Abs(filepath.Join(o.Out, homeNames(o.Validators)[i]))
		if err != nil {
			return nil, err
		}
		c := cfg.DefaultConfig()
		c.SetRoot(home)
		for _, d := range []string{filepath.Join(home, "config"), filepath.Join(home, "data")} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return nil, fmt.Errorf("chain: %v", err)
			}
		}
		pv := privval.GenFilePV(c.PrivValidatorKeyFile(), c.PrivValidatorStateFile())
		pv.Save()
		nk, err := p2p.LoadOrGenNodeKey(c.NodeKeyFile())
		if err != nil {
			return nil, fmt.Errorf("chain: %v", err)
		}
		pub, err := pv.GetPubKey()
		if err != nil {
			return nil, err
		}
		v := Validator{
			Name:   fmt.Sprintf("v%d", i),
			Home:   home,
			NodeID: string(nk.ID()),
			P2P:    fmt.Sprintf("%s:%d", o.Host, o.BasePort+2*i),
			RPC:    fmt.Sprintf("http://%s:%d", o.Host, o.BasePort+2*i+1),
		}
		c.Moniker = v.Name
		c.P2P.ListenAddress = "tcp://" + v.P2P
		c.RPC.ListenAddress = "tcp://" + strings.TrimPrefix(v.RPC, "http://")
		tune(c, o)
		confs[i] = c
		net.Validators = append(net.Validators, v)
		doc.Validators = append(doc.Validators, types.GenesisValidator{Address: pub.Address(), PubKey: pub, Power: 1, Name: v.Name})
	}
	if err := doc.ValidateAndComplete(); err != nil {
		return nil, fmt.Errorf("chain: genesis document: %v", err)
	}
	for i, c := range confs {
		var peers []string
		for j, v := range net.Validators {
			if j != i {
				peers = append(peers, v.NodeID+"@"+v.P2P)
			}
		}
		c.P2P.PersistentPeers = strings.Join(peers, ",")
		cfg.WriteConfigFile(filepath.Join(c.RootDir, "config", "config.toml"), c)
		if err := doc.SaveAs(c.GenesisFile()); err != nil {
			return nil, fmt.Errorf("chain: %v", err)
		}
	}
	b, err := json.MarshalIndent(net, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(o.Out, NetworkFile), append(b, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("chain: %v", err)
	}
	return net, nil
}

func homeNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("v%d", i)
	}
	return out
}

// tune sets what a training run's ledger wants of CometBFT: blocks about
// every TimeoutCommit plus a consensus round, empty blocks spaced,
// transactions up to the ledger's limit, peers on one host allowed, no
// listeners beyond P2P and RPC.
func tune(c *cfg.Config, o InitOptions) {
	c.Consensus.TimeoutPropose = time.Second
	c.Consensus.TimeoutProposeDelta = 200 * time.Millisecond
	c.Consensus.TimeoutPrevote = 200 * time.Millisecond
	c.Consensus.TimeoutPrecommit = 200 * time.Millisecond
	c.Consensus.TimeoutCommit = o.TimeoutCommit
	c.Consensus.CreateEmptyBlocks = o.EmptyBlocksInterval > 0
	if o.EmptyBlocksInterval > 0 {
		c.Consensus.CreateEmptyBlocksInterval = o.EmptyBlocksInterval
	}
	c.Mempool.MaxTxBytes = ledger.MaxTxBytes
	c.Mempool.Size = 20000
	c.RPC.MaxBodyBytes = 4 * ledger.MaxTxBytes
	c.RPC.MaxOpenConnections = 2000
	c.RPC.CORSAllowedOrigins = nil
	c.P2P.AddrBookStrict = false
	c.P2P.AllowDuplicateIP = true
	c.P2P.PexReactor = false
	c.P2P.ExternalAddress = ""
	c.Instrumentation.Prometheus = false
	c.ProxyApp = "" // the application runs in the node's process
	c.LogLevel = "error"
}

// ReadNetwork reads network.json from dir (Init's output).
func ReadNetwork(dir string) (*Network, error) {
	b, err := os.ReadFile(filepath.Join(dir, NetworkFile))
	if err != nil {
		return nil, fmt.Errorf("chain: %v (not a directory written by 'cairn chain init'?)", err)
	}
	var n Network
	if err := json.Unmarshal(b, &n); err != nil {
		return nil, fmt.Errorf("chain: %s: %v", NetworkFile, err)
	}
	if len(n.Validators) == 0 {
		return nil, fmt.Errorf("chain: %s lists no validators", NetworkFile)
	}
	return &n, nil
}

// FreeBasePort finds a base port whose 2n ports (peers and RPC of n
// validators, as Init lays them out) are free on loopback now.
func FreeBasePort(n int) (int, error) {
	for range 50 {
		base := 20000 + 2*rand.IntN(15000)
		ok := true
		for p := base; p < base+2*n && ok; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				continue
			}
			l.Close()
		}
		if ok {
			return base, nil
		}
	}
	return 0, errors.New("chain: no free ports on loopback")
}
