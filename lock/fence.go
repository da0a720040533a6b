package lock

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// LeaseOf reads the lease id from a lock key: its last segment, in hex.
func LeaseOf(key string) (clientv3.LeaseID, error) {
	i := strings.LastIndexByte(key, '/')
	if i < 0 || i == len(key)-1 {
		return 0, fmt.Errorf("%q is not a lock key (<prefix>/<lease id in hex>)", key)
	}
	id, err := strconv.ParseInt(key[i+1:], 16, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%q is not a lock key: %q is not a lease id in hex", key, key[i+1:])
	}
	return clientv3.LeaseID(id), nil
}

// Fence is the condition under which a write made on behalf of the grant
// (key, token) may apply: the key still exists with that create revision
// and under the lease its name carries. A grant that was lost and a later
// grant of the same lease both fail it, since their create revisions
// differ.
func Fence(key string, token int64) ([]clientv3.Cmp, error) {
	lease, err := LeaseOf(key)
	if err != nil {
		return nil, err
	}
	if token <= 0 {
		return nil, fmt.Errorf("token %d is not a revision", token)
	}
	return []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(key), "=", token),
		clientv3.Compare(clientv3.LeaseValue(key), "=", lease),
	}, nil
}

// Fenced runs ops in one transaction if and only if the grant (key, token)
// still holds; otherwise nothing is applied and the error is ErrStale,
// saying who holds the key now, if anyone.
func Fenced(ctx context.Context, cli *clientv3.Client, key string, token int64, ops ...clientv3.Op) (*clientv3.TxnResponse, error) {
	cmps, err := Fence(key, token)
	if err != nil {
		return nil, err
	}
	resp, err := cli.Txn(ctx).If(cmps...).Then(ops...).Else(clientv3.OpGet(key, clientv3.WithKeysOnly())).Commit()
	if err != nil {
		return nil, err
	}
	if !resp.Succeeded {
		now := "it no longer exists"
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			now = fmt.Sprintf("it now has token %d", kvs[0].CreateRevision)
		}
		return nil, fmt.Errorf("%w: %s with token %d no longer holds (%s); nothing was written", ErrStale, key, token, now)
	}
	return resp, nil
}

// Holds reports whether the grant (key, token) holds now, with a
// linearizable read.
func Holds(ctx context.Context, cli *clientv3.Client, key string, token int64) (bool, error) {
	lease, err := LeaseOf(key)
	if err != nil {
		return false, err
	}
	// Not keys-only: etcd leaves the lease out of keys-only answers.
	resp, err := cli.Get(ctx, key)
	if err != nil {
		return false, err
	}
	return len(resp.Kvs) == 1 && resp.Kvs[0].CreateRevision == token && clientv3.LeaseID(resp.Kvs[0].Lease) == lease, nil
}
