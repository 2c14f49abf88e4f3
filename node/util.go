package node

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
