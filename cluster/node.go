// Package cluster reports and changes the cluster's membership: the etcd
// members, the agents that announce themselves under nodes/, and leaving.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/beaconhq/beacon/session"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// NodeInfo is the value of nodes/<name>: what an agent says about itself.
type NodeInfo struct {
	Name      string `json:"name"`
	Address   string `json:"address"` // the host's IP, as other hosts reach it
	Role      Role   `json:"role"`    // member, proxy, external
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

// listNodes reads every live agent's record.
func listNodes(ctx context.Context, cli *clientv3.Client, namespace string) ([]NodeInfo, error) {
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

// ErrNameInUse: another running agent has this node name.
var ErrNameInUse = errors.New("the node name is in use")

// sameAgent says whether two records of a node name are of one agent: a
// run of it and an earlier one, restarted before the earlier record's
// lease expired. Two agents running at once cannot listen on the same
// client URL; an external agent, which has none, goes by its API address.
func sameAgent(a, b NodeInfo) bool {
	if a.ClientURL != "" || b.ClientURL != "" {
		return a.ClientURL == b.ClientURL
	}
	return a.APIAddr == b.APIAddr
}

// nameInUse is the error for a node name held by other, the agent whose
// record is under lease (0: an etcd member with no record).
func nameInUse(ctx context.Context, cli *clientv3.Client, other NodeInfo, lease int64) error {
	detail := string(other.Role)
	if other.ClientURL != "" {
		detail += ", client URL " + other.ClientURL
	} else if other.APIAddr != "" {
		detail += ", API " + other.APIAddr
	}
	expires := ""
	if lease != 0 {
		if ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(lease)); err == nil && ttl.TTL > 0 {
			expires = fmt.Sprintf(" (within %ds)", ttl.TTL)
		}
	}
	return fmt.Errorf("%w: node %s is already running on %s (%s); choose another --name, or if that agent is gone, start again once its record expires%s",
		ErrNameInUse, other.Name, other.Address, detail, expires)
}

// CheckNameFree returns nil unless another running agent has the node name
// self.Name: an agent whose record nodes/<name> is live and not this
// agent's own earlier one, or an etcd member of that name without self's
// peer URL. The error names the name and the host that has it.
func CheckNameFree(ctx context.Context, cli *clientv3.Client, namespace string, self NodeInfo) error {
	ml, err := cli.MemberList(ctx)
	if err != nil {
		return fmt.Errorf("checking that node name %s is free: %w", self.Name, err)
	}
	for _, m := range ml.Members {
		if m.Name != self.Name || (self.PeerURL != "" && slices.Contains(m.PeerURLs, self.PeerURL)) {
			continue
		}
		host := strings.Join(m.PeerURLs, ",")
		if len(m.PeerURLs) > 0 {
			if u, err := url.Parse(m.PeerURLs[0]); err == nil {
				host = u.Hostname()
			}
		}
		return fmt.Errorf("%w: node %s is already running on %s (etcd member %x, peer URL %s); choose another --name",
			ErrNameInUse, self.Name, host, m.ID, strings.Join(m.PeerURLs, ","))
	}
	resp, err := cli.Get(ctx, NodesPrefix(namespace)+self.Name)
	if err != nil {
		return fmt.Errorf("checking that node name %s is free: %w", self.Name, err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	var cur NodeInfo
	if json.Unmarshal(resp.Kvs[0].Value, &cur) != nil {
		return nil // not a record: the announcement replaces it
	}
	if cur.Name == "" {
		cur.Name = self.Name
	}
	if sameAgent(cur, self) {
		return nil
	}
	return nameInUse(ctx, cli, cur, resp.Kvs[0].Lease)
}

// Announcer keeps nodes/<name> in etcd under the agent's own lease, and
// writes it back whenever the lease is lost (partition, expiry, restore).
type Announcer struct {
	cli    *clientv3.Client
	key    string
	info   NodeInfo
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
		cli: cli, key: NodesPrefix(namespace) + info.Name, info: info, value: string(b),
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
		if errors.Is(err, ErrNameInUse) {
			a.lg.Error("another agent has this node name; this one stays unlisted while it does", zap.String("key", a.key), zap.Error(err))
		} else {
			a.lg.Warn("node record lost; writing it back", zap.String("key", a.key), zap.Error(err))
		}
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
// until it is lost. It never overwrites another agent's record of the
// same name: that agent's stop would take the record with it, and this
// one would go on unlisted for good.
func (a *Announcer) holdOnce(ctx context.Context) error {
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	lease, err := a.cli.Grant(gctx, int64(a.ttl/time.Second))
	cancel()
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = a.claim(pctx, lease.ID)
	cancel()
	if err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_, _ = a.cli.Revoke(rctx, lease.ID)
		cancel()
		return err
	}
	a.mu.Lock()
	a.lease = lease.ID
	a.mu.Unlock()
	// session.KeepLease, not a bare KeepAlive: with a short TTL, a
	// renewal stuck on a connection to a member that went silent, or on a
	// follower whose leader was cut off, would let the lease expire
	// while the rest of the cluster is healthy.
	err = session.KeepLease(ctx, a.cli, a.cli, lease.ID, a.ttl)
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, session.ErrLeaseGone):
		return errLeaseLost
	}
	return err
}

// claim writes the record under lease if the key is free or holds this
// agent's own record (an earlier run's, or this run's under a lost lease).
func (a *Announcer) claim(ctx context.Context, lease clientv3.LeaseID) error {
	put := clientv3.OpPut(a.key, a.value, clientv3.WithLease(lease))
	resp, err := a.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(a.key), "=", 0)).
		Then(put).Else(clientv3.OpGet(a.key)).Commit()
	if err != nil || resp.Succeeded {
		return err
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return errors.New("the node record changed while being written")
	}
	var cur NodeInfo
	if json.Unmarshal(kvs[0].Value, &cur) == nil && !sameAgent(cur, a.info) {
		if cur.Name == "" {
			cur.Name = a.info.Name
		}
		return nameInUse(ctx, a.cli, cur, kvs[0].Lease)
	}
	resp, err = a.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(a.key), "=", kvs[0].ModRevision)).Then(put).Commit()
	if err == nil && !resp.Succeeded {
		err = errors.New("the node record changed while being written")
	}
	return err
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
