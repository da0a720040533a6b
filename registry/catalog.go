package registry

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconhq/beacon/cluster"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/metadata"
)

// Catalog is the agent's in-memory index of every instance and node in the
// cluster, fed by one etcd watch: a snapshot at revision R, then events
// from R+1, a full relist after a compaction or a broken watch, and never a
// step back in time. DNS and the gRPC API read it without waiting on etcd;
// when the cluster is unreachable it keeps serving what it last knew.
//
// Instances handed out are shared and must not be modified.
type Catalog struct {
	cli       *clientv3.Client
	namespace string
	lg        *zap.Logger

	mu       sync.RWMutex
	services map[string]*serviceEntry
	byNode   map[string]map[string]*Instance // lower-case node → service/id → instance
	nodes    map[string]cluster.NodeInfo     // by lower-case name
	rev      int64
	subs     map[*Subscription]struct{}
	// maxWatchBytes bounds each subscription's queued bytes (0: default).
	maxWatchBytes atomic.Int64
	// svcRev: every change under services/ up to it is applied; badKeys:
	// keys there whose values do not decode (not in services). Together
	// they let checkCount compare the catalog with etcd.
	svcRev  int64
	badKeys map[string]bool

	checkEvery time.Duration // how often follow checks the count (see checkCount)

	ready     chan struct{}
	readyOnce sync.Once
	lag       *lagClock // beacon_catalog_lag_seconds
}

// NewCatalog returns an empty catalog; Run fills it.
func NewCatalog(cli *clientv3.Client, namespace string, opts ...Option) *Catalog {
	return &Catalog{
		cli: cli, namespace: namespace, lg: optionsOf(opts).lg,
		services: map[string]*serviceEntry{},
		byNode:   map[string]map[string]*Instance{},
		nodes:    map[string]cluster.NodeInfo{},
		subs:     map[*Subscription]struct{}{},
		ready:    make(chan struct{}),
		badKeys:  map[string]bool{},

		checkEvery: defaultCheckEvery,
		lag:        newLagClock(time.Now()),
	}
}

// Ready is closed once the first snapshot is loaded.
func (c *Catalog) Ready() <-chan struct{} { return c.ready }

// Revision is the etcd revision the catalog reflects.
func (c *Catalog) Revision() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rev
}

// Service returns the instances of a service sorted by id, whatever their
// status; nil if the service has none.
func (c *Catalog) Service(name string) []*Instance {
	c.mu.RLock()
	e := c.services[name]
	if e == nil {
		c.mu.RUnlock()
		return nil
	}
	if list, ok := e.current(); ok {
		c.mu.RUnlock()
		return list
	}
	c.mu.RUnlock()

	c.mu.Lock()
	defer c.mu.Unlock()
	if e = c.services[name]; e == nil {
		return nil
	}
	return e.sorted()
}

// Instance returns one instance.
func (c *Catalog) Instance(service, id string) (*Instance, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if e := c.services[service]; e != nil {
		in, ok := e.byID[id]
		return in, ok
	}
	return nil, false
}

// Services returns the names of the services with at least one instance.
func (c *Catalog) Services() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	names := make([]string, 0, len(c.services))
	for n, e := range c.services {
		if len(e.byID) > 0 {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// NodeInstances returns the instances that name node as theirs: what
// anti-entropy compares a node's registrations with, without scanning the
// whole catalog.
func (c *Catalog) NodeInstances(node string) []*Instance {
	c.mu.RLock()
	defer c.mu.RUnlock()
	m := c.byNode[strings.ToLower(node)]
	out := make([]*Instance, 0, len(m))
	for _, in := range m {
		out = append(out, in)
	}
	return out
}

func (c *Catalog) indexLocked(in *Instance) {
	n := strings.ToLower(in.Node)
	m := c.byNode[n]
	if m == nil {
		m = map[string]*Instance{}
		c.byNode[n] = m
	}
	m[in.Service+"/"+in.ID] = in
}

func (c *Catalog) unindexLocked(in *Instance) {
	n := strings.ToLower(in.Node)
	if m := c.byNode[n]; m != nil {
		delete(m, in.Service+"/"+in.ID)
		if len(m) == 0 {
			delete(c.byNode, n)
		}
	}
}

// Node returns a live agent's record by name, case-insensitively.
func (c *Catalog) Node(name string) (cluster.NodeInfo, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n, ok := c.nodes[strings.ToLower(name)]
	return n, ok
}

// Run keeps the catalog current until ctx ends.
func (c *Catalog) Run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		rev, err := c.relist(ctx)
		if err == nil {
			backoff = 50 * time.Millisecond
			err = c.follow(ctx, rev)
			c.lag.stopped()
		}
		if ctx.Err() != nil {
			return
		}
		c.lg.Debug("catalog watch interrupted; relisting", zap.Error(err))
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

// relist loads every instance and node at one revision and swaps them in,
// telling subscribers what changed since the catalog's last state.
func (c *Catalog) relist(ctx context.Context) (int64, error) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	asked := time.Now()
	svc, err := c.cli.Get(lctx, servicesPrefix(c.namespace), clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	rev := svc.Header.Revision
	nodes, err := c.cli.Get(lctx, cluster.NodesPrefix(c.namespace), clientv3.WithPrefix(), clientv3.WithRev(rev))
	if err != nil {
		return 0, err
	}

	fresh := map[string]*serviceEntry{}
	bad := map[string]bool{}
	for _, kv := range svc.Kvs {
		if in := c.decode(kv); in == nil {
			bad[string(kv.Key)] = true
		} else {
			e := fresh[in.Service]
			if e == nil {
				e = newServiceEntry()
				fresh[in.Service] = e
			}
			e.put(in)
		}
	}
	freshNodes := map[string]cluster.NodeInfo{}
	for _, kv := range nodes.Kvs {
		var n cluster.NodeInfo
		if json.Unmarshal(kv.Value, &n) == nil && n.Name != "" {
			freshNodes[strings.ToLower(n.Name)] = n
		}
	}

	c.mu.Lock()
	if rev < c.rev {
		c.mu.Unlock()
		return 0, errors.New("relist answered from an older revision")
	}
	var events []Event
	for name, e := range c.services {
		for id, old := range e.byID {
			if f := fresh[name]; f == nil || f.byID[id] == nil {
				events = append(events, Event{Type: EventDelete, Instance: old, Revision: rev})
			}
		}
	}
	for name, f := range fresh {
		for id, in := range f.byID {
			var old *Instance
			if e := c.services[name]; e != nil {
				old = e.byID[id]
			}
			if old == nil || !sameInstance(old, in) {
				events = append(events, Event{Type: EventPut, Instance: in, Revision: rev})
			}
		}
	}
	c.services, c.nodes, c.rev = fresh, freshNodes, rev
	c.svcRev, c.badKeys = rev, bad
	c.byNode = map[string]map[string]*Instance{}
	for _, e := range fresh {
		for _, in := range e.byID {
			c.indexLocked(in)
		}
	}
	c.publishLocked(events)
	c.mu.Unlock()
	c.lag.relisted(asked)
	c.readyOnce.Do(func() { close(c.ready) })
	return rev, nil
}

// follow applies watch events from rev+1 until the watch breaks.
func (c *Catalog) follow(ctx context.Context, rev int64) error {
	// A watch stream of the catalog's own: etcd answers a progress
	// request (the lag's probe) only when every watcher of the stream has
	// caught up, and other watchers of the process (a proxy's grpc-proxy,
	// queue views) would hold it back.
	wctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(clientv3.WithRequireLeader(ctx), "beacon-watch", "catalog"))
	defer cancel()
	svcCh := c.cli.Watch(wctx, servicesPrefix(c.namespace), clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithPrevKV())
	nodeCh := c.cli.Watch(wctx, cluster.NodesPrefix(c.namespace), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	check := time.NewTicker(c.checkEvery)
	defer check.Stop()
	probe := time.NewTicker(lagProbeEvery)
	defer probe.Stop()
	quietCheck, quietChecked := false, make(chan struct{}, 1)
	// The count runs beside the watch, so that events keep being applied
	// while etcd answers it (it compares a snapshot, so it may).
	diverged := make(chan error, 1)
	checking := false
	checked := make(chan struct{}, 1)
	for {
		select {
		case err := <-diverged:
			return err
		case <-checked:
			checking = false
		case <-check.C:
			if checking {
				continue
			}
			checking = true
			go func() {
				if err := c.checkCount(wctx); err != nil {
					diverged <- err
				}
				checked <- struct{}{}
			}()
			// Ask the watch to say how far it has sent everything: the
			// next check counts at that revision (see checkCount).
			_ = c.cli.RequestProgress(wctx)
		case now := <-probe.C:
			// etcd drops a progress request it cannot answer yet (a
			// watcher of the stream still catching up): ask again until
			// one is answered.
			if !c.lag.probe(now) && !quietCheck {
				quietCheck = true
				go func() { c.confirmQuiet(wctx, rev); quietChecked <- struct{}{} }()
			}
			_ = c.cli.RequestProgress(wctx)
		case <-quietChecked:
			quietCheck = false
		case wr, ok := <-svcCh:
			if err := watchErr(wr, ok); err != nil {
				return err
			}
			c.applyServices(wr)
		case wr, ok := <-nodeCh:
			if err := watchErr(wr, ok); err != nil {
				return err
			}
			c.applyNodes(wr)
		}
	}
}

func watchErr(wr clientv3.WatchResponse, ok bool) error {
	switch {
	case !ok:
		return errors.New("watch closed")
	case wr.CompactRevision != 0:
		return rpctypes.ErrCompacted
	case wr.Canceled:
		if err := wr.Err(); err != nil {
			return err
		}
		return errors.New("watch canceled")
	}
	return wr.Err()
}

func (c *Catalog) applyServices(wr clientv3.WatchResponse) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var events []Event
	// The watch starts after the relist's revision, so every event is new.
	// The header revision is not a bound: a watch catching up sends its
	// backlog in batches that all carry the store's current revision.
	if wr.IsProgressNotify() {
		if wr.Header.Revision > c.svcRev {
			c.svcRev = wr.Header.Revision // every change up to it was sent
		}
		c.lag.answered()
	}
	for _, ev := range wr.Events {
		rev := ev.Kv.ModRevision
		if rev > c.rev {
			c.rev = rev
		}
		if rev > c.svcRev {
			c.svcRev = rev
		}
		delete(c.badKeys, string(ev.Kv.Key))
		service, id, ok := splitKey(c.namespace, string(ev.Kv.Key))
		if !ok {
			if ev.Type == mvccpb.PUT { // counted by etcd, as relist counts it
				c.badKeys[string(ev.Kv.Key)] = true
			}
			continue
		}
		e := c.services[service]
		switch ev.Type {
		case mvccpb.PUT:
			in := c.decode(ev.Kv)
			if in == nil {
				c.badKeys[string(ev.Kv.Key)] = true
				continue
			}
			if e == nil {
				e = newServiceEntry()
				c.services[service] = e
			}
			if old := e.byID[id]; old != nil {
				c.unindexLocked(old)
			}
			e.put(in)
			c.indexLocked(in)
			events = append(events, Event{Type: EventPut, Instance: in, Revision: rev})
		case mvccpb.DELETE:
			if e == nil || e.byID[id] == nil {
				continue
			}
			old := e.byID[id]
			e.remove(id)
			c.unindexLocked(old)
			if len(e.byID) == 0 {
				delete(c.services, service)
			}
			events = append(events, Event{Type: EventDelete, Instance: old, Revision: rev})
		}
	}
	c.publishLocked(events)
}

func (c *Catalog) applyNodes(wr clientv3.WatchResponse) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range wr.Events {
		name := strings.ToLower(strings.TrimPrefix(string(ev.Kv.Key), cluster.NodesPrefix(c.namespace)))
		switch ev.Type {
		case mvccpb.PUT:
			var n cluster.NodeInfo
			if json.Unmarshal(ev.Kv.Value, &n) == nil {
				c.nodes[name] = n
			}
		case mvccpb.DELETE:
			delete(c.nodes, name)
		}
	}
}

// decode reads an instance value, skipping (and logging) one that is not
// beacon's: the catalog must not fail on what another client wrote.
func (c *Catalog) decode(kv *mvccpb.KeyValue) *Instance {
	service, id, ok := splitKey(c.namespace, string(kv.Key))
	if !ok {
		return nil
	}
	in := &Instance{}
	if err := json.Unmarshal(kv.Value, in); err != nil || in.Service != service || in.ID != id {
		c.lg.Debug("skipping a value that is not an instance", zap.ByteString("key", kv.Key))
		return nil
	}
	in.Revision, in.Lease = kv.ModRevision, kv.Lease
	return in
}

// sameInstance compares the stored fields (not Revision).
func sameInstance(a, b *Instance) bool {
	if a.ID != b.ID || a.Service != b.Service || a.Node != b.Node || a.Address != b.Address || a.Port != b.Port ||
		a.Weight != b.Weight || a.Priority != b.Priority || a.Status != b.Status || a.Output != b.Output ||
		len(a.Tags) != len(b.Tags) || len(a.Meta) != len(b.Meta) {
		return false
	}
	for i := range a.Tags {
		if a.Tags[i] != b.Tags[i] {
			return false
		}
	}
	for k, v := range a.Meta {
		if bv, ok := b.Meta[k]; !ok || bv != v {
			return false
		}
	}
	return true
}
