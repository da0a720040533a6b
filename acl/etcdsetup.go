package acl

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// EnsureEtcdAuth is an agent's start with etcd auth: the credentials in
// path, made there first by the member that starts a new cluster
// (create), then etcd's auth turned on with them (a no-op once on). Every
// other agent (a joiner, a proxy, another member of a static cluster)
// needs the same file: without it, the error says where to copy it from.
// cli may carry no credentials (before auth is on) or the root user's.
func EnsureEtcdAuth(ctx context.Context, cli *clientv3.Client, namespace, path string, create bool) (EtcdCredentials, error) {
	creds, err := PrepareEtcdCredentials(path, create)
	if err != nil {
		return EtcdCredentials{}, err
	}
	if err := EnableEtcdAuth(ctx, cli, namespace, creds); err != nil {
		return EtcdCredentials{}, err
	}
	return creds, nil
}

// PrepareEtcdCredentials is the first half of EnsureEtcdAuth, for an
// agent that must know its credentials before its member starts: the
// credentials in path, written there first when create (the member that
// starts a new cluster) and the file is missing.
func PrepareEtcdCredentials(path string, create bool) (EtcdCredentials, error) {
	creds, err := LoadEtcdCredentials(path)
	switch {
	case err == nil:
		return creds, nil
	case errors.Is(err, fs.ErrNotExist) && create:
		creds = NewEtcdCredentials()
		if err := SaveEtcdCredentials(path, creds); err != nil {
			return EtcdCredentials{}, err
		}
		return creds, nil
	case errors.Is(err, fs.ErrNotExist):
		return EtcdCredentials{}, fmt.Errorf("etcd-credentials-file %s: missing: with acl on, every agent needs the file the cluster's first member wrote (its <data-dir>/etcd-credentials.json); copy it here, mode 0600", path)
	default:
		return EtcdCredentials{}, err
	}
}
