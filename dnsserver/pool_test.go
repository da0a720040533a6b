package dnsserver

import (
	"fmt"
	"testing"
	"time"

	"github.com/beaconhq/beacon/registry"
)

// TestLargePoolRebuiltInBackground: after a change to a service larger
// than asyncPoolSize, queries draw from the pool before the change at
// once, and the new one replaces it when built.
func TestLargePoolRebuiltInBackground(t *testing.T) {
	cat := newMemCatalog()
	n := asyncPoolSize + 100
	list := make([]*registry.Instance, 0, n)
	for i := range n {
		list = append(list, &registry.Instance{ID: fmt.Sprintf("i%05d", i), Service: "huge", Address: fmt.Sprintf("10.20.%d.%d", i/250, i%250+1),
			Port: 80, Weight: 1, Status: registry.StatusPassing})
	}
	cat.services["huge"] = list
	s, err := New(Config{}, cat)
	if err != nil {
		t.Fatal(err)
	}
	h := s.h
	before := h.pool("huge", "", poolInstances, cat.Service("huge"))
	if before.size != n || !sameList(before.list, list) {
		t.Fatalf("first pool: %d members", before.size)
	}

	cat.put(registry.Instance{ID: "new", Service: "huge", Address: "10.99.0.1", Port: 80, Tags: []string{"fresh"}})
	changed := cat.Service("huge")
	if p := h.pool("huge", "", poolInstances, changed); p != before {
		t.Fatalf("the query after the change got a pool of %d members, not the one before", p.size)
	}
	// A tag only the new instance has is not NXDOMAIN meanwhile.
	if p := h.pool("huge", "fresh", poolIPv4, changed); !p.tagged || p.size != 1 {
		t.Fatalf("the new tag while the pool is rebuilt: tagged %v, %d members", p.tagged, p.size)
	}
	if p := h.pool("huge", "nosuch", poolIPv4, changed); p.tagged {
		t.Fatal("a tag nobody has names something")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		p := h.pool("huge", "", poolInstances, changed)
		if sameList(p.list, changed) {
			if p.size != n+1 {
				t.Fatalf("rebuilt pool: %d members, want %d", p.size, n+1)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pool was not rebuilt within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The queries above for other keys (a tag, IPv4) may have started
	// builds of their own: once every build has ended, none is still
	// marked busy (it failed once when checked while one still ran).
	h.builds.Wait()
	h.pools.mu.RLock()
	busy := len(h.pools.building)
	h.pools.mu.RUnlock()
	if busy != 0 {
		t.Fatalf("%d builds still marked busy after all ended", busy)
	}
}

// TestOlderBuildDoesNotWin: a background build of an older list that
// ends after a newer pool was stored (the cache started over meanwhile)
// does not set the pool back.
func TestOlderBuildDoesNotWin(t *testing.T) {
	mk := func(n int, prefix string) []*registry.Instance {
		list := make([]*registry.Instance, 0, n)
		for i := range n {
			list = append(list, &registry.Instance{ID: fmt.Sprintf("%s%06d", prefix, i), Service: "huge", Address: "10.30.0.1", Port: 80, Weight: 1, Status: registry.StatusPassing})
		}
		return list
	}
	s, err := New(Config{}, newMemCatalog())
	if err != nil {
		t.Fatal(err)
	}
	h := s.h
	l0, l1, l2 := mk(asyncPoolSize+1, "a"), mk(300000, "b"), mk(asyncPoolSize+1, "c")
	h.pool("huge", "", poolInstances, l0)
	h.pool("huge", "", poolInstances, l1) // a slow build in the background
	h.pools.mu.Lock()
	h.pools.m = nil // the cache starts over, as past maxPools
	h.pools.mu.Unlock()
	newer := h.pool("huge", "", poolInstances, l2) // built and stored at once
	if !sameList(newer.list, l2) {
		t.Fatal("no pool of the newest list")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		h.pools.mu.RLock()
		busy, cur := len(h.pools.building), h.pools.m[poolKey{"huge", "", poolInstances}]
		h.pools.mu.RUnlock()
		if busy == 0 {
			if cur != newer {
				t.Fatalf("the cached pool is of %d instances, not the newest list's", cur.size)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the background build never ended")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
