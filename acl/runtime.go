package acl

import (
	"context"
	"fmt"

	"github.com/beaconhq/beacon/api/beaconpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// Runtime is what an agent runs for its ACLs once etcd is up: the token
// cache behind its gate, and the ACL service.
type Runtime struct {
	cache *Cache
}

// Start loads the tokens (with ACLs on), gives the gate its authoriser,
// and registers the ACL service on srv. It returns once the tokens are
// loaded, so that the API serves nothing before it can check a call.
func Start(ctx context.Context, gate *Gate, srv *grpc.Server, cli *clientv3.Client, namespace string, opts ...Option) (*Runtime, error) {
	r := &Runtime{}
	if gate.Enabled() {
		cache, err := StartCache(ctx, cli, namespace, opts...)
		if err != nil {
			return nil, fmt.Errorf("acl: loading the tokens from etcd: %w", err)
		}
		r.cache = cache
		gate.Attach(NewAuthorizer(cache))
	}
	beaconpb.RegisterACLServer(srv, NewService(gate.Enabled(), NewStore(cli, namespace), r.cache))
	return r, nil
}

// Close stops following the tokens.
func (r *Runtime) Close() {
	if r != nil && r.cache != nil {
		r.cache.Close()
	}
}
