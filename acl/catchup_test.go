package acl

import (
	"testing"
)

// TestAuthorizeCurrentCatchesUp: a token created through another agent
// (here: straight into etcd) is known to this agent's gate as soon as
// the create answered, without waiting for the cache's watch; a secret
// no token has is still refused.
func TestAuthorizeCurrentCatchesUp(t *testing.T) {
	cli := testEtcd(t)
	ns := testNamespace(t)
	cache, err := StartCache(ctxT(t), cli, ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cache.Close)
	a := NewAuthorizer(cache)
	store := NewStore(cli, ns)
	for i := range 20 {
		_, secret, _, err := store.Create(ctxT(t), []string{"lock:batch-*:write"}, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := a.AuthorizeCurrent(ctxT(t), secret, Need{Kind: KindLock, Name: "batch-1", Access: AccessWrite}); err != nil {
			t.Fatalf("token %d, right after its create: %v", i, err)
		}
	}
	if err := a.AuthorizeCurrent(ctxT(t), "no-such-secret"); err == nil {
		t.Fatal("a secret no token has was let in")
	}
}
