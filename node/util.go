package node

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/cairnlabs/cairn/p2p"
)

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func jsonString(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func jsonParse(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// p2pParse returns the transport part of a full multiaddr.
func p2pParse(full string) (string, error) {
	info, err := p2p.ParseAddr(full)
	if err != nil {
		return "", err
	}
	return info.Addrs[0].String(), nil
}
