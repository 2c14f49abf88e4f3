package swarmnet

import (
	"bytes"
	"context"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/cairnlabs/cairn/swarm"
)

// Services that start at different times and dial each other at once (a
// dial to one not started yet fails) still form one swarm: every node
// fetches every blob, published at different times.
func TestStaggeredStart(t *testing.T) {
	const n = 8
	var hosts []host.Host
	for range n {
		hosts = append(hosts, newHost(t))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	datas := make([][]byte, n)
	ids := make([]swarm.ID, n)
	var published sync.WaitGroup
	published.Add(n)
	var mu sync.Mutex
	errs := make(chan error, n)
	for i := range n {
		go func() {
			r := mrand.New(mrand.NewPCG(uint64(i), 5))
			time.Sleep(time.Duration(r.IntN(300)) * time.Millisecond)
			s := New(hosts[i], Options{Tick: 100 * time.Millisecond, Swarm: swarm.Config{Timeout: 2 * time.Second}})
			t.Cleanup(s.Close)
			for j, h := range hosts {
				if j != i {
					s.Connect(ctx, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}) // may fail: the other is not up yet
				}
			}
			time.Sleep(time.Duration(r.IntN(500)) * time.Millisecond)
			d := blob(uint64(i), 740_000)
			id, err := s.Publish(d)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			datas[i], ids[i] = d, id
			mu.Unlock()
			published.Done()
			published.Wait()
			for j := range n {
				mu.Lock()
				id, want := ids[j], datas[j]
				mu.Unlock()
				got, err := s.Fetch(ctx, id)
				if err != nil {
					errs <- fmt.Errorf("node %d blob %d: %v", i, j, err)
					return
				}
				if !bytes.Equal(got, want) {
					errs <- fmt.Errorf("node %d blob %d differs", i, j)
					return
				}
			}
			errs <- nil
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// A connection the network closes is dialled again: a blob published
// after it dropped still arrives.
func TestRedialAfterDrop(t *testing.T) {
	a := New(newHost(t), Options{Tick: 500 * time.Millisecond})
	t.Cleanup(a.Close)
	b := New(newHost(t), Options{Tick: 500 * time.Millisecond})
	t.Cleanup(b.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.h.ID(), Addrs: b.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	a.h.Network().ClosePeer(b.h.ID())
	b.h.Network().ClosePeer(a.h.ID())
	for dropped := false; !dropped; time.Sleep(10 * time.Millisecond) {
		if ctx.Err() != nil {
			t.Fatal("the closed connection's streams were not noticed")
		}
		a.mu.Lock()
		_, ok := a.out[b.h.ID()]
		a.mu.Unlock()
		dropped = !ok
	}
	d := blob(3, 100_000)
	id, err := b.Publish(d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.Fetch(ctx, id)
	if err != nil || !bytes.Equal(got, d) {
		t.Fatalf("after the connection dropped: %v", err)
	}
}
