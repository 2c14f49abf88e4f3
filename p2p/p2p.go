// Package p2p is Cairn's networking over go-libp2p: a node's persistent
// ed25519 identity, hosts that listen on TCP and QUIC with encrypted,
// authenticated connections, and dialing by multiaddr. The identity key is
// the one that will also sign ledger transactions.
package p2p

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// KeyFile is the name of the identity key inside a node's data directory.
const KeyFile = "node.key"

// LoadIdentity returns the ed25519 key in dir/node.key, creating the
// directory and a fresh key (written atomically, mode 0600) if there is
// none. A key file that cannot be read or parsed is an error naming it.
func LoadIdentity(dir string) (crypto.PrivKey, error) {
	path := filepath.Join(dir, KeyFile)
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := crypto.UnmarshalPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("%s: not a private key: %v", path, err)
		}
		if k.Type() != crypto.Ed25519 {
			return nil, fmt.Errorf("%s: key type %v, want ed25519", path, k.Type())
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := SaveIdentity(dir, k); err != nil {
		return nil, err
	}
	return k, nil
}

// SaveIdentity writes key to dir/node.key (atomically, mode 0600),
// creating dir.
func SaveIdentity(dir string, key crypto.PrivKey) error {
	b, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, KeyFile), b, 0o600)
}

// writeAtomic writes data to path through a synced temporary file and a
// rename, so path never holds a partial file.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %v", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// DefaultListen are the addresses a node listens on when none are given:
// TCP and QUIC on all interfaces, ports chosen by the system.
var DefaultListen = []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"}

// NewHost starts a libp2p host with the given identity listening on the
// given multiaddrs (TCP and/or QUIC). Connections are encrypted and
// authenticated (Noise or TLS over TCP, TLS 1.3 in QUIC), so a stream's
// remote peer ID is the verified identity of the other node.
func NewHost(key crypto.PrivKey, listen []string) (host.Host, error) {
	if len(listen) == 0 {
		listen = DefaultListen
	}
	h, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(listen...),
		libp2p.DefaultTransports,
		libp2p.DefaultSecurity,
		libp2p.DefaultMuxers,
	)
	if err != nil {
		return nil, fmt.Errorf("start libp2p host on %v: %v", listen, err)
	}
	return h, nil
}

// Addrs returns the host's full multiaddrs (with /p2p/ID), for others to
// dial.
func Addrs(h host.Host) []string {
	info := peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}
	addrs, err := peer.AddrInfoToP2pAddrs(&info)
	if err != nil {
		return nil
	}
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

// ParseAddr parses a full multiaddr such as
// /ip4/1.2.3.4/tcp/4001/p2p/12D3KooW... into the peer it names.
func ParseAddr(s string) (peer.AddrInfo, error) {
	m, err := ma.NewMultiaddr(s)
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("bad multiaddr %q: %v", s, err)
	}
	info, err := peer.AddrInfoFromP2pAddr(m)
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("multiaddr %q does not name a peer (it needs /p2p/ID): %v", s, err)
	}
	return *info, nil
}

// Connect dials info with a timeout.
func Connect(ctx context.Context, h host.Host, info peer.AddrInfo, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := h.Connect(ctx, info); err != nil {
		return fmt.Errorf("connect to %s: %v", info.ID, err)
	}
	return nil
}
