package acl

import (
	"testing"
)

// The cost of one check on the hot path: a hash and a map lookup under a
// read lock, then the rules; no etcd.
func BenchmarkAuthorize(b *testing.B) {
	cli := testEtcd(b)
	ns := "/acl-bench/"
	store := NewStore(cli, ns)
	rules := []string{"lock:batch-*:write", "service:*:read", "config:app/*:write", "queue:jobs:write"}
	_, secret, rev, err := store.Create(b.Context(), rules, "bench")
	if err != nil {
		b.Fatal(err)
	}
	cache, err := StartCache(b.Context(), cli, ns)
	if err != nil {
		b.Fatal(err)
	}
	defer cache.Close()
	if err := cache.WaitRevision(b.Context(), rev); err != nil {
		b.Fatal(err)
	}
	a := NewAuthorizer(cache)
	n := Need{Kind: KindLock, Name: "batch-17", Access: AccessWrite}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := a.Authorize(secret, n); err != nil {
				b.Fatal(err)
			}
		}
	})
}
