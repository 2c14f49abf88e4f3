package p2p

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

func loopbackHost(t *testing.T) host.Host {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewReachableHost(key, Reach{Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Reachability: "public"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// TestDiscoveryFindsRunMembers: nodes that know only a bootstrap node
// find each other under their run's namespace, and not the node that
// announces another run.
func TestDiscoveryFindsRunMembers(t *testing.T) {
	boot := loopbackHost(t)
	bd, err := NewDiscovery(boot, DiscoveryOptions{Server: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go bd.Serve(ctx)
	bootInfo := []peer.AddrInfo{{ID: boot.ID(), Addrs: boot.Addrs()}}

	type node struct {
		h     host.Host
		mu    sync.Mutex
		found map[peer.ID]bool
	}
	run := func(ns string) *node {
		n := &node{h: loopbackHost(t), found: map[peer.ID]bool{}}
		d, err := NewDiscovery(n.h, DiscoveryOptions{Namespace: ns, Bootstrap: bootInfo, Server: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		go d.Run(ctx, 2, func(info peer.AddrInfo) {
			n.mu.Lock()
			n.found[info.ID] = len(info.Addrs) > 0
			n.mu.Unlock()
		})
		return n
	}
	a, b, c := run("run-1"), run("run-1"), run("run-1")
	other := run("run-2")
	for _, n := range []*node{a, b, c} {
		for {
			n.mu.Lock()
			got := len(n.found)
			_, stranger := n.found[other.h.ID()]
			_, self := n.found[n.h.ID()]
			n.mu.Unlock()
			if stranger || self {
				t.Fatalf("found %v: includes itself (%v) or a node of another run (%v)", n.found, self, stranger)
			}
			if got == 2 {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("found %d of the 2 other members within a minute", got)
			}
			time.Sleep(50 * time.Millisecond)
		}
		n.mu.Lock()
		for id, addrs := range n.found {
			if !addrs {
				t.Errorf("%s found without addresses", id)
			}
		}
		n.mu.Unlock()
	}
	other.mu.Lock()
	defer other.mu.Unlock()
	if len(other.found) != 0 {
		t.Fatalf("the node of another run found %v", other.found)
	}
}

// TestReachBadReachability: an unknown reachability is refused by name.
func TestReachBadReachability(t *testing.T) {
	key, _, _ := crypto.GenerateEd25519Key(nil)
	if _, err := NewReachableHost(key, Reach{Reachability: "sometimes"}); err == nil {
		t.Fatal("accepted reachability \"sometimes\"")
	}
}
