package chain

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// Agreement is what Compare found.
type Agreement struct {
	Heights int64 // heights compared: 1 .. the lowest validator's head
	Txs     int   // transactions in those blocks
}

// Compare reads every block from height 1 to the lowest head among the
// validators and checks that all of them hold the same block hash and
// app hash at every height. It fails naming the first height where two
// disagree, or when a validator cannot be read.
func Compare(ctx context.Context, clients []*Client) (Agreement, error) {
	if len(clients) == 0 {
		return Agreement{}, errors.New("chain: compare: no validators")
	}
	var a Agreement
	top := int64(-1)
	for _, c := range clients {
		h, err := c.Head(ctx)
		if err != nil {
			return a, err
		}
		if top < 0 || h.Height < top {
			top = h.Height
		}
	}
	for h := int64(1); h <= top; h++ {
		var first Block
		for i, c := range clients {
			b, err := c.Block(ctx, h)
			if err != nil {
				return a, err
			}
			if i == 0 {
				first = b
				a.Txs += b.Txs
				continue
			}
			if b.Hash != first.Hash || !bytes.Equal(b.AppHash, first.AppHash) {
				return a, fmt.Errorf("chain: at height %d %s has block %s (app hash %X) and %s has %s (app hash %X)",
					h, clients[0].Addr(), first.Hash, first.AppHash, c.Addr(), b.Hash, b.AppHash)
			}
		}
		a.Heights = h
	}
	return a, nil
}
