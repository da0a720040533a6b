package embedded

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Under etcd auth, etcd checks each new watch against the token its gRPC
// stream was opened with, and forgets a simple token that no request used
// for its TTL (300 s). clientv3 keeps one watch stream per kind of
// context and never reopens it for that: once a stream sat that long
// without a new watch (the catalog's own watch stays open on it), every
// later watch on it is refused, "invalid auth token" (TestWatchAfterTokenTTL).
// keepWatchTokens opens and closes a watch on each kind of stream the
// agent uses (plain, and WithRequireLeader) well within the TTL: etcd
// looks the token up, which keeps it.
func keepWatchTokens(cli *clientv3.Client, key string, ttl time.Duration) {
	t := time.NewTicker(ttl / 4)
	defer t.Stop()
	for {
		select {
		case <-cli.Ctx().Done():
			return
		case <-t.C:
		}
		for _, ctx := range []context.Context{cli.Ctx(), clientv3.WithRequireLeader(cli.Ctx())} {
			touchWatchStream(ctx, cli, key, ttl/4)
		}
	}
}

// touchWatchStream places a watch on ctx's stream and cancels it once
// etcd has answered its creation (or after wait).
func touchWatchStream(ctx context.Context, cli *clientv3.Client, key string, wait time.Duration) {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	wch := cli.Watch(wctx, key, clientv3.WithCreatedNotify())
	select {
	case <-wch:
	case <-wctx.Done():
	}
	cancel()
	for range wch { // until clientv3 closes it
	}
}
