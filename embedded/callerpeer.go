package embedded

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/peer"
)

// The in-process client hands etcd the caller's context as it is. When
// that context is an API call's, it carries the API connection's peer,
// whose AuthInfo (acl.ConnCredentials) etcd with client-certificate auth
// takes for its own: AuthInfoFromTLS asserts it is a credentials.TLSInfo,
// and panics otherwise. etcd must not see the API's caller at all: the
// agent is the one calling it. So the in-process KV and Lease see the
// peer's address only.

// withoutCallerPeer is ctx with the peer's AuthInfo dropped.
func withoutCallerPeer(ctx context.Context) context.Context {
	if p, ok := peer.FromContext(ctx); ok && p.AuthInfo != nil {
		return peer.NewContext(ctx, &peer.Peer{Addr: p.Addr, LocalAddr: p.LocalAddr})
	}
	return ctx
}

type ownKV struct{ kv clientv3.KV }

func (k ownKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	return k.kv.Put(withoutCallerPeer(ctx), key, val, opts...)
}

func (k ownKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	return k.kv.Get(withoutCallerPeer(ctx), key, opts...)
}

func (k ownKV) GetStream(ctx context.Context, key string, opts ...clientv3.OpOption) (clientv3.GetStreamChan, error) {
	return k.kv.GetStream(withoutCallerPeer(ctx), key, opts...)
}

func (k ownKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	return k.kv.Delete(withoutCallerPeer(ctx), key, opts...)
}

func (k ownKV) Compact(ctx context.Context, rev int64, opts ...clientv3.CompactOption) (*clientv3.CompactResponse, error) {
	return k.kv.Compact(withoutCallerPeer(ctx), rev, opts...)
}

func (k ownKV) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	return k.kv.Do(withoutCallerPeer(ctx), op)
}

func (k ownKV) Txn(ctx context.Context) clientv3.Txn { return k.kv.Txn(withoutCallerPeer(ctx)) }

type ownLease struct{ clientv3.Lease }

func (l ownLease) Grant(ctx context.Context, ttl int64) (*clientv3.LeaseGrantResponse, error) {
	return l.Lease.Grant(withoutCallerPeer(ctx), ttl)
}

func (l ownLease) Revoke(ctx context.Context, id clientv3.LeaseID) (*clientv3.LeaseRevokeResponse, error) {
	return l.Lease.Revoke(withoutCallerPeer(ctx), id)
}

func (l ownLease) TimeToLive(ctx context.Context, id clientv3.LeaseID, opts ...clientv3.LeaseOption) (*clientv3.LeaseTimeToLiveResponse, error) {
	return l.Lease.TimeToLive(withoutCallerPeer(ctx), id, opts...)
}

func (l ownLease) Leases(ctx context.Context) (*clientv3.LeaseLeasesResponse, error) {
	return l.Lease.Leases(withoutCallerPeer(ctx))
}

func (l ownLease) KeepAlive(ctx context.Context, id clientv3.LeaseID) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	return l.Lease.KeepAlive(withoutCallerPeer(ctx), id)
}

func (l ownLease) KeepAliveOnce(ctx context.Context, id clientv3.LeaseID) (*clientv3.LeaseKeepAliveResponse, error) {
	return l.Lease.KeepAliveOnce(withoutCallerPeer(ctx), id)
}
