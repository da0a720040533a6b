// Package dataquota keeps room in etcd's backend for coordination.
//
// etcd refuses every write that adds bytes once its database reaches its
// quota (the NOSPACE alarm, which stays raised until an operator disarms
// it): no session can be granted, no lock taken, no instance
// registered. Left alone, one client writing config values or queue
// messages as fast as it can fills a 2 GiB backend in about a minute and
// stops the whole fleet's coordination with it.
//
// A Guard refuses writes of client data once etcd's backend has used a
// share of its quota (data-quota-percent), so that what is left stays for
// what keeps the fleet running: sessions and their leases, lock and
// election keys, acks, deletes, and the agents' own registrations. It
// reads the backend's size from etcd (Maintenance.Status) every
// interval, and between two readings counts what it admitted itself, so
// a burst through this agent cannot run past the line before the next
// reading.
package dataquota

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/beaconhq/beacon/internal/rpcerr"
	"github.com/dustin/go-humanize"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
)

// ErrFull is the answer to a write of data when etcd's backend has used
// its data share: ResourceExhausted, with a message naming the sizes and
// the limit.
var ErrFull = rpcerr.NewNamed(codes.ResourceExhausted, "etcd's backend has no room left for more data")

// DefaultPercent is data-quota-percent's default: data may fill three
// quarters of the quota, the last quarter (512 MiB of etcd's default
// 2 GiB) is coordination's.
const DefaultPercent = 75

// DefaultInterval is how often a Guard reads the backend's size.
const DefaultInterval = time.Second

// Guard admits or refuses writes of data by the backend's size. Its zero
// readings admit everything: until its first reading it knows nothing to
// refuse by. Safe for concurrent use.
type Guard struct {
	percent  int
	interval time.Duration
	lg       *zap.Logger

	inUse, quota atomic.Int64 // the last reading
	admitted     atomic.Int64 // bytes admitted since that reading
	refused      atomic.Int64 // writes refused, ever
	readErrs     atomic.Int64 // failed readings in a row
}

// Option configures New.
type Option func(*Guard)

// WithLogger logs readings that keep failing and the guard's first
// refusal (default: nothing; every refusal is counted in Metrics).
func WithLogger(lg *zap.Logger) Option { return func(g *Guard) { g.lg = lg } }

// WithInterval sets how often the guard reads the backend's size
// (default DefaultInterval).
func WithInterval(d time.Duration) Option { return func(g *Guard) { g.interval = d } }

// New returns a guard that refuses data past percent of etcd's quota.
// percent is 1 to 100; 100 leaves only etcd's own quota, as without a
// guard. Call Run to give it its readings.
func New(percent int, opts ...Option) (*Guard, error) {
	if percent < 1 || percent > 100 {
		return nil, fmt.Errorf("data-quota-percent %d is not from 1 to 100", percent)
	}
	g := &Guard{percent: percent, interval: DefaultInterval, lg: zap.NewNop()}
	for _, o := range opts {
		o(g)
	}
	return g, nil
}

// Reader reads etcd's status: the backend's size in use and its quota.
// A member agent reads its own member; a proxy, or an agent fronting an
// external cluster, the member its client is connected to (the members'
// databases are replicas of one another).
type Reader func(ctx context.Context) (*etcdserverpb.StatusResponse, error)

// Run takes a reading every interval until ctx ends.
func (g *Guard) Run(ctx context.Context, read Reader) {
	if g.percent >= 100 {
		return
	}
	t := time.NewTicker(g.interval)
	defer t.Stop()
	for {
		g.read(ctx, read)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// read takes one reading. When it fails the last reading stands, with
// what was admitted since still counted: a guard that cannot read does
// not open up.
func (g *Guard) read(ctx context.Context, read Reader) {
	rctx, cancel := context.WithTimeout(ctx, g.interval)
	st, err := read(rctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil && g.readErrs.Add(1) == 3 {
			g.lg.Warn("cannot read etcd's backend size; the data quota judges by its last reading", zap.Error(err))
		}
		return
	}
	g.readErrs.Store(0)
	quota := st.DbSizeQuota
	if quota <= 0 {
		quota = defaultEtcdQuota
	}
	g.inUse.Store(st.DbSizeInUse)
	g.quota.Store(quota)
	g.admitted.Store(0)
}

// defaultEtcdQuota is etcd's quota when none is set (an older member
// does not say which it has).
const defaultEtcdQuota = 2 << 30

// Limit is the data share in bytes by the last reading (0: no reading).
func (g *Guard) Limit() int64 { return g.quota.Load() * int64(g.percent) / 100 }

// Admit admits a write adding n bytes of data, or refuses it with ErrFull
// when the backend's use by the last reading, plus what was admitted
// since, plus n, passes the data share. A write of no bytes (a delete)
// is always admitted: it is how room is made.
func (g *Guard) Admit(n int) error {
	if n <= 0 || g.percent >= 100 {
		return nil
	}
	limit := g.Limit()
	if limit == 0 {
		return nil
	}
	admitted := g.admitted.Add(int64(n))
	used := g.inUse.Load() + admitted
	if used <= limit {
		return nil
	}
	admitted = g.admitted.Add(-int64(n))
	if g.refused.Add(1) == 1 {
		g.lg.Warn("refusing writes of data: etcd's backend reached the data quota",
			zap.Int64("in_use", g.inUse.Load()), zap.Int64("admitted_since", admitted), zap.Int64("limit", limit), zap.Int64("quota", g.quota.Load()))
	}
	return rpcerr.Wrap(ErrFull, fmt.Sprintf(
		"etcd's backend holds %s of its %s quota (%s by its last reading, %s written through this agent since), and this write adds %s; writes of data (config values, queue messages, fenced writes, proposals, registrations) stop at %d%% (data-quota-percent %d) so sessions, locks and acks keep working: delete data and wait for compaction (hourly), or raise etcd-quota-backend-bytes",
		humanize.IBytes(uint64(g.inUse.Load()+admitted)), humanize.IBytes(uint64(g.quota.Load())),
		humanize.IBytes(uint64(g.inUse.Load())), humanize.IBytes(uint64(admitted)), humanize.IBytes(uint64(n)), g.percent, g.percent))
}
