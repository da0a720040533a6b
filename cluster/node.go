// Package cluster reports and changes the cluster's membership: the etcd
// members, the agents that announce themselves under nodes/, and leaving.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// NodeInfo is the value of nodes/<name>: what an agent says about itself.
type NodeInfo struct {
	Name      string `json:"name"`
	Address   string `json:"address"` // the host's IP, as other hosts reach it
	Role      string `json:"role"`    // member, proxy, external
	Version   string `json:"version"`
	Started   string `json:"started"` // RFC 3339
	ClientURL string `json:"client_url,omitempty"`
	PeerURL   string `json:"peer_url,omitempty"`
	APIAddr   string `json:"api_addr,omitempty"`
	HTTPAddr  string `json:"http_addr,omitempty"`
	DNSAddr   string `json:"dns_addr,omitempty"`
}

// NodesPrefix is where agents announce themselves.
func NodesPrefix(namespace string) string { return namespace + "nodes/" }

// ListNodes reads every live agent's record.
func ListNodes(ctx context.Context, cli *clientv3.Client, namespace string) ([]NodeInfo, error) {
	resp, err := cli.Get(ctx, NodesPrefix(namespace), clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		return nil, err
	}
	nodes := make([]NodeInfo, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var n NodeInfo
		if json.Unmarshal(kv.Value, &n) == nil {
			nodes = append(nodes, n)
		}
	}
	return nodes, nil
}

var errLeaseLost = errors.New("the lease behind the node record ended")

// Announcer keeps nodes/<name> in etcd under the agent's own lease, and
// writes it back whenever the lease is lost (partition, expiry, restore).
type Announcer struct {
	cli    *clientv3.Client
	key    string
	value  string
	ttl    time.Duration
	lg     *zap.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	lease clientv3.LeaseID
}

// Announce starts keeping info under nodes/<name>.
func Announce(cli *clientv3.Client, namespace string, info NodeInfo, ttl time.Duration, lg *zap.Logger) *Announcer {
	b, _ := json.Marshal(info) // plain strings cannot fail to marshal
	ctx, cancel := context.WithCancel(context.Background())
	a := &Announcer{
		cli: cli, key: NodesPrefix(namespace) + info.Name, value: string(b),
		ttl: ttl, lg: lg, cancel: cancel, done: make(chan struct{}),
	}
	go a.run(ctx)
	return a
}

func (a *Announcer) run(ctx context.Context) {
	defer close(a.done)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := a.holdOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		a.lg.Warn("node record lost; writing it back", zap.String("key", a.key), zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 2*time.Second {
			backoff *= 2
		}
	}
}

// holdOnce grants a lease, writes the record and keeps the lease alive
// until it is lost.
func (a *Announcer) holdOnce(ctx context.Context) error {
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	lease, err := a.cli.Grant(gctx, int64(a.ttl/time.Second))
	cancel()
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = a.cli.Put(pctx, a.key, a.value, clientv3.WithLease(lease.ID))
	cancel()
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.lease = lease.ID
	a.mu.Unlock()
	ka, err := a.cli.KeepAlive(ctx, lease.ID)
	if err != nil {
		return err
	}
	for range ka {
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errLeaseLost
}

// Stop ends the announcement and removes the record at once, so other
// agents see this one gone without waiting for the TTL.
func (a *Announcer) Stop(ctx context.Context) {
	a.cancel()
	<-a.done
	a.mu.Lock()
	lease := a.lease
	a.mu.Unlock()
	if lease != 0 {
		_, _ = a.cli.Revoke(ctx, lease) // best effort: the TTL removes it otherwise
	}
}
