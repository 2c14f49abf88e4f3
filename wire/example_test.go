package wire_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"

	"github.com/cairnlabs/cairn/wire"
)

const (
	kindFetch uint8 = 1 // request: which tensor to send
	kindReady uint8 = 2 // reply: a blob of Size bytes follows
)

type fetch struct {
	Name string `json:"name"`
}

type ready struct {
	Size int64 `json:"size"`
}

// Example shows a request for a tensor answered by a JSON header and a
// blob, then a request the server refuses, all on one stream.
func Example() {
	var stream bytes.Buffer // stands in for a libp2p stream

	// Client: two requests.
	for _, name := range []string{"embed.weight", "missing"} {
		if err := wire.WriteJSON(&stream, kindFetch, fetch{Name: name}); err != nil {
			log.Fatal(err)
		}
	}

	// Server: answer each request.
	tensors := map[string][]byte{"embed.weight": bytes.Repeat([]byte{1, 2, 3, 4}, 1000)}
	var replies bytes.Buffer
	for {
		var req fetch
		err := wire.ReadJSON(&stream, kindFetch, 1<<10, &req)
		if err == io.EOF {
			break
		} else if err != nil {
			log.Fatal(err)
		}
		data, ok := tensors[req.Name]
		if !ok {
			err = wire.WriteError(&replies, "no tensor named "+req.Name)
		} else if err = wire.WriteJSON(&replies, kindReady, ready{Size: int64(len(data))}); err == nil {
			err = wire.WriteBlob(&replies, data)
		}
		if err != nil {
			log.Fatal(err)
		}
	}

	// Client: read the answers.
	for range 2 {
		var hdr ready
		err := wire.ReadJSON(&replies, kindReady, 1<<10, &hdr)
		var refused *wire.RemoteError
		if errors.As(err, &refused) {
			fmt.Println("refused:", refused.Msg)
			continue
		} else if err != nil {
			log.Fatal(err)
		}
		dst := make([]byte, hdr.Size)
		if err := wire.ReadBlobInto(&replies, dst); err != nil {
			log.Fatal(err)
		}
		fmt.Println("received", len(dst), "bytes")
	}
	// Output:
	// received 4000 bytes
	// refused: no tensor named missing
}

// ExampleLimit emulates a slow uplink and counts what crosses it.
func ExampleLimit() {
	var c wire.Counter
	var link bytes.Buffer
	up := wire.NewLimiter(12.5e6, 64<<10) // 100 Mbit/s
	rw := wire.Limit(wire.Count(&link, &c), up, nil)
	if err := wire.WriteBlob(rw, make([]byte, 100_000)); err != nil { // about 7 ms
		log.Fatal(err)
	}
	fmt.Println(c.Sent() == uint64(wire.EncodedBlobSize(100_000)))
	// Output: true
}
