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

// ErrFull is the answer to a write past its line: ResourceExhausted,
// with a message naming the sizes and the limit.
var ErrFull = rpcerr.NewNamed(codes.ResourceExhausted, "etcd's backend has no room left for this write")

// Defaults of data-quota-percent and client-quota-percent: data may
// fill three quarters of the quota, clients' other writes nine tenths;
// the last tenth (205 MiB of etcd's default 2 GiB) is the agents' own.
const (
	DefaultPercent       = 75
	DefaultClientPercent = 90
)

// How often a guard reads etcd's status: a member's in process (its
// backend's counters, as fresh as etcd's last batch commit, every 100
// ms), a proxy's over its connection to a member.
const (
	MemberInterval = 100 * time.Millisecond
	ProxyInterval  = time.Second
)

// Guard admits or refuses writes by the backend's size, on two lines: a
// client's data past the data line, any other write a client's call
// makes past the client line. Writes of the agent's own work are counted
// and never refused. Until its first reading it admits everything. Safe
// for concurrent use.
type Guard struct {
	dataPct, clientPct int
	lg                 *zap.Logger

	// The last reading: bytes in use, the backend's size (its
	// high-water mark, which etcd's own quota judges), the quota.
	inUse, size, quota atomic.Int64
	admitted           atomic.Int64 // bytes written through this guard since that reading
	gen                atomic.Int64 // readings taken: what admitted counts since
	refusedData        atomic.Int64 // writes refused at the data line, ever
	refusedClient      atomic.Int64 // at the client line
	readErrs           atomic.Int64 // failed readings in a row
}

// Option configures New.
type Option func(*Guard)

// WithLogger logs readings that keep failing and the first refusal at
// each line (default: nothing; every refusal is counted in Metrics).
func WithLogger(lg *zap.Logger) Option { return func(g *Guard) { g.lg = lg } }

// WithClientPercent sets the client line (default DefaultClientPercent,
// or the data line if that is higher).
func WithClientPercent(p int) Option { return func(g *Guard) { g.clientPct = p } }

// New returns a guard whose data line is percent of etcd's quota.
// Percents are 1 to 100, the client line at least the data line; 100
// leaves only etcd's own quota.
func New(percent int, opts ...Option) (*Guard, error) {
	g := &Guard{dataPct: percent, clientPct: max(DefaultClientPercent, percent), lg: zap.NewNop()}
	for _, o := range opts {
		o(g)
	}
	switch {
	case g.dataPct < 1 || g.dataPct > 100:
		return nil, fmt.Errorf("data-quota-percent %d is not from 1 to 100", g.dataPct)
	case g.clientPct < 1 || g.clientPct > 100:
		return nil, fmt.Errorf("client-quota-percent %d is not from 1 to 100", g.clientPct)
	case g.clientPct < g.dataPct:
		return nil, fmt.Errorf("client-quota-percent %d is below data-quota-percent %d: data is a client's write, and would pass the client line first", g.clientPct, g.dataPct)
	}
	return g, nil
}

// Reader reads etcd's status: the backend's size in use, its size and
// its quota. A member agent reads its own member; a proxy, or an agent
// fronting an external cluster, the member its client is connected to
// (the members' databases are replicas of one another).
type Reader func(ctx context.Context) (*etcdserverpb.StatusResponse, error)

// Run takes a reading every interval (MemberInterval or ProxyInterval)
// until ctx ends.
func (g *Guard) Run(ctx context.Context, read Reader, every time.Duration) {
	if g.off() {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		g.read(ctx, read, every)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (g *Guard) off() bool { return g.dataPct >= 100 && g.clientPct >= 100 }

// read takes one reading. When it fails the last reading stands, with
// what was admitted since still counted: a guard that cannot read does
// not open up.
func (g *Guard) read(ctx context.Context, read Reader, timeout time.Duration) {
	rctx, cancel := context.WithTimeout(ctx, timeout)
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
	g.size.Store(max(st.DbSize, st.DbSizeInUse))
	g.quota.Store(quota)
	g.admitted.Store(0)
	g.gen.Add(1)
}

// defaultEtcdQuota is etcd's quota when none is set (an older member
// does not say which it has).
const defaultEtcdQuota = 2 << 30

// Reserve is what the lines always leave below etcd's quota, whatever
// their percents: the agents' own writes, and a few of etcd's largest
// requests (1.5 MiB) that a reading may not have seen yet.
const Reserve = 8 << 20

// ClientLimit is the client line in bytes by the last reading (0: no
// reading).
func (g *Guard) ClientLimit() int64 {
	q := g.quota.Load()
	return min(q*int64(g.clientPct)/100, q-Reserve)
}

// Limit is the data line in bytes by the last reading (0: no reading).
func (g *Guard) Limit() int64 {
	return min(g.quota.Load()*int64(g.dataPct)/100, g.ClientLimit())
}

// admit counts a write of n bytes made for ctx's class, or refuses it
// with ErrFull when it would pass the class's line. Both lines judge the
// bytes in use, so what compaction frees is the clients' again. The
// client line also judges the backend's size, its high-water mark, when
// that comes within half the Reserve of etcd's quota: etcd refuses a
// write by its size plus the write's cost, free pages or not, and only a
// defragmentation shrinks it. The agent's own writes are counted and
// never refused, nor are deletes (allow).
func (g *Guard) admit(ctx context.Context, n int64, allow bool) (gen int64, err error) {
	gen = g.gen.Load()
	admitted := g.admitted.Add(n)
	c := classOf(ctx)
	if allow || c == classAgent || g.quota.Load() == 0 {
		return gen, nil
	}
	inUse, size := g.inUse.Load(), g.size.Load()
	switch {
	case c == classData && g.dataPct < 100 && inUse+admitted > g.Limit():
		admitted = g.admitted.Add(-n)
		if g.refusedData.Add(1) == 1 {
			g.lg.Warn("refusing writes of data: etcd's backend reached the data line",
				zap.Int64("in_use", inUse), zap.Int64("admitted_since", admitted), zap.Int64("limit", g.Limit()), zap.Int64("quota", g.quota.Load()))
		}
		return gen, rpcerr.Wrap(ErrFull, fmt.Sprintf(
			"etcd's backend holds %s of its %s quota (%s by its last reading, %s written through this agent since), and this write adds %s; writes of data (config values, queue messages and gates, fenced puts, proposals over 1 KiB) stop at %d%% (data-quota-percent %d) so sessions, locks, registrations and acks keep working: delete data and wait for compaction (hourly), or raise etcd-quota-backend-bytes",
			humanize.IBytes(uint64(inUse+admitted)), humanize.IBytes(uint64(g.quota.Load())),
			humanize.IBytes(uint64(inUse)), humanize.IBytes(uint64(admitted)), humanize.IBytes(uint64(n)), g.dataPct, g.dataPct))
	case g.clientPct < 100 && (inUse+admitted > g.ClientLimit() || size+admitted > g.quota.Load()-Reserve/2):
		admitted = g.admitted.Add(-n)
		if g.refusedClient.Add(1) == 1 {
			g.lg.Warn("refusing clients' writes: etcd's backend reached the client line",
				zap.Int64("in_use", inUse), zap.Int64("size", size), zap.Int64("admitted_since", admitted), zap.Int64("limit", g.ClientLimit()), zap.Int64("quota", g.quota.Load()))
		}
		return gen, rpcerr.Wrap(ErrFull, fmt.Sprintf(
			"etcd's backend holds %s of its %s quota (in use %s, its file %s by its last reading, %s written through this agent since), and this write adds %s; clients' writes stop at %d%% (client-quota-percent %d), the rest is the agents' own: delete data and wait for compaction (hourly), defragment the members (etcdctl defrag) if the file is much larger than its use, or raise etcd-quota-backend-bytes",
			humanize.IBytes(uint64(max(inUse+admitted, size))), humanize.IBytes(uint64(g.quota.Load())),
			humanize.IBytes(uint64(inUse)), humanize.IBytes(uint64(size)), humanize.IBytes(uint64(admitted)), humanize.IBytes(uint64(n)), g.clientPct, g.clientPct))
	}
	return gen, nil
}

// unadmit takes back n bytes counted, under reading gen, for a write
// that failed or wrote less than it was counted for. Under a later
// reading there is nothing to take back: the reading saw what the write
// did, and the count started again.
func (g *Guard) unadmit(n, gen int64) {
	if n > 0 && g.gen.Load() == gen {
		g.admitted.Add(-n)
	}
}
