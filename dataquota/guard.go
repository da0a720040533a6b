// Package dataquota keeps room in etcd's backend for coordination.
//
// etcd refuses every write that adds bytes once its database reaches its
// quota (the NOSPACE alarm, which stays raised until an operator disarms
// it): no session can be granted, no lock taken, no instance
// registered. Left alone, one client writing config values or queue
// messages as fast as it can fills a 2 GiB backend in about a minute and
// stops the whole fleet's coordination with it.
//
// A Guard judges every write an API call makes, on two lines of etcd's
// quota: a client's data past data-quota-percent, any other write of a
// client's call past client-quota-percent, so that what is left stays for
// what keeps the fleet running. It reads the backend's size from etcd,
// and counts what it admitted since, until readings have had time to see
// it. See README.md.
package dataquota

import (
	"context"
	"fmt"
	"sync"
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

	mu sync.Mutex
	// The last reading: bytes in use, the backend's size (its high-water
	// mark, which etcd's own quota judges), the quota.
	inUse, size, quota int64
	// admitted[i] is what was admitted i readings ago (0: since the last).
	// A write shows in a reading only once it is in the backend (raft,
	// then etcd's batch commit, every 100 ms), so what was admitted under
	// the last settleReadings readings is still counted beside them.
	admitted [settleReadings + 1]int64
	gen      int64         // readings taken
	read     chan struct{} // closed at the next reading

	refusedData   atomic.Int64 // writes refused at the data line, ever
	refusedClient atomic.Int64 // at the client line
	refusedShare  atomic.Int64 // past this agent's share of the room, after waiting
	readErrs      atomic.Int64 // failed readings in a row
}

// settleReadings is how many readings a write's bytes stay counted
// beside: two intervals, at least 200 ms on a member.
const settleReadings = 2

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
	g := &Guard{dataPct: percent, clientPct: max(DefaultClientPercent, percent), lg: zap.NewNop(), read: make(chan struct{})}
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
		g.reading(ctx, read, every)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (g *Guard) off() bool { return g.dataPct >= 100 && g.clientPct >= 100 }

// reading takes one reading. When it fails the last reading stands, with
// what was admitted since still counted: a guard that cannot read does
// not open up.
func (g *Guard) reading(ctx context.Context, read Reader, timeout time.Duration) {
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
	g.mu.Lock()
	g.inUse, g.size, g.quota = st.DbSizeInUse, max(st.DbSize, st.DbSizeInUse), quota
	copy(g.admitted[1:], g.admitted[:settleReadings])
	g.admitted[0] = 0
	g.gen++
	close(g.read)
	g.read = make(chan struct{})
	g.mu.Unlock()
}

// defaultEtcdQuota is etcd's quota when none is set (an older member
// does not say which it has).
const defaultEtcdQuota = 2 << 30

// Reserve is what the lines always leave below etcd's quota, whatever
// their percents: the agents' own writes, and what the cluster commits
// before readings see it. The data line keeps half of it again below the
// client line, so that coordination goes on past the data line.
const Reserve = 8 << 20

func (g *Guard) clientLimitLocked() int64 {
	return min(g.quota*int64(g.clientPct)/100, g.quota-Reserve)
}

func (g *Guard) limitLocked() int64 {
	return min(g.quota*int64(g.dataPct)/100, g.clientLimitLocked()-Reserve/2)
}

// Limit is the data line in bytes by the last reading (0: no reading).
func (g *Guard) Limit() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.quota == 0 {
		return 0
	}
	return g.limitLocked()
}

// ClientLimit is the client line in bytes by the last reading (0: no
// reading).
func (g *Guard) ClientLimit() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.quota == 0 {
		return 0
	}
	return g.clientLimitLocked()
}

// Why a write is refused.
type refusal int

const (
	admitted refusal = iota
	pastData
	pastClient
	pastShare
)

// judgeLocked judges a write of n bytes of class c, already counted in
// g.admitted[0]. Both lines judge the bytes in use plus what was
// admitted under the last readings; the client line also the backend's
// size, its high-water mark, once that comes within half the Reserve of
// etcd's quota (etcd refuses a write by its size plus the write's cost,
// free pages or not, and only a defragmentation shrinks it). Each agent
// admits, between two readings, at most a quarter of the room its last
// reading left below the line (its share: agents do not know of each
// other's writes), though always a first write that fits.
func (g *Guard) judgeLocked(c class, n int64) refusal {
	pending := g.pendingLocked()
	if c == classData && g.dataPct < 100 && g.inUse+pending > g.limitLocked() {
		return pastData
	}
	if g.clientPct < 100 && (g.inUse+pending > g.clientLimitLocked() || g.size+pending > g.quota-Reserve/2) {
		return pastClient
	}
	line := g.clientLimitLocked()
	if c == classData {
		line = g.limitLocked()
	}
	room := line - (g.inUse + pending - g.admitted[0])
	if before := g.admitted[0] - n; before > 0 && g.admitted[0] > room/4 {
		return pastShare
	}
	return admitted
}

// pendingLocked is what was admitted under the readings still settling.
func (g *Guard) pendingLocked() int64 {
	n := int64(0)
	for _, a := range g.admitted {
		n += a
	}
	return n
}

// shareWaits is how many readings a write past this agent's share of the
// room waits for before it is refused.
const shareWaits = 20

// admit counts a write of n bytes made for ctx's class, or refuses it
// with ErrFull when it would pass the class's line. A write past this
// agent's share of the room waits for the next reading and is judged
// again, up to shareWaits readings (backpressure: near the line, writes
// through one agent go at the pace of its readings). The agent's own
// writes are counted and never refused, nor are deletes (allow) and
// writes marked Freeing. gen is
// the reading the write was counted under, for unadmit.
func (g *Guard) admit(ctx context.Context, n int64, allow bool) (gen int64, err error) {
	c := classOf(ctx)
	for waits := 0; ; waits++ {
		g.mu.Lock()
		gen = g.gen
		g.admitted[0] += n
		if allow || c == classAgent || g.quota == 0 || freeing(ctx) {
			g.mu.Unlock()
			return gen, nil
		}
		why := g.judgeLocked(c, n)
		if why == admitted {
			g.mu.Unlock()
			return gen, nil
		}
		g.admitted[0] -= n
		next := g.read
		err := g.refuseLocked(why, c, n)
		g.mu.Unlock()
		if why != pastShare || waits == shareWaits {
			return gen, err
		}
		select {
		case <-next:
		case <-ctx.Done():
			return gen, err
		}
	}
}

// refuseLocked is the refusal of a write of n bytes of class c.
func (g *Guard) refuseLocked(why refusal, c class, n int64) error {
	pending := g.pendingLocked()
	held := humanize.IBytes(uint64(max(g.inUse+pending, g.size)))
	sizes := fmt.Sprintf("etcd's backend holds %s of its %s quota (in use %s and its file %s by the last reading, %s written through this agent lately), and this write adds %s",
		held, humanize.IBytes(uint64(g.quota)), humanize.IBytes(uint64(g.inUse)), humanize.IBytes(uint64(g.size)), humanize.IBytes(uint64(pending)), humanize.IBytes(uint64(n)))
	if why == pastShare {
		g.refusedShare.Add(1)
	}
	switch {
	case why == pastData || why == pastShare && c == classData:
		if why == pastData && g.refusedData.Add(1) == 1 {
			g.lg.Warn("refusing writes of data: etcd's backend reached the data line", zap.Int64("in_use", g.inUse), zap.Int64("pending", pending), zap.Int64("limit", g.limitLocked()))
		}
		line := fmt.Sprintf("stop at %s (data-quota-percent %d", humanize.IBytes(uint64(g.limitLocked())), g.dataPct)
		if why == pastShare {
			return rpcerr.Wrap(ErrFull, sizes+"; near the data line, "+line+"), this agent takes a quarter of the room left between two readings of the backend: retry in a moment")
		}
		return rpcerr.Wrap(ErrFull, sizes+"; writes of data (config values, queue messages and gates, fenced puts, proposals over 1 KiB) "+line+
			") so sessions, locks, registrations and acks keep working: delete data and wait for compaction (hourly), or raise etcd-quota-backend-bytes")
	default:
		if why == pastClient && g.refusedClient.Add(1) == 1 {
			g.lg.Warn("refusing clients' writes: etcd's backend reached the client line", zap.Int64("in_use", g.inUse), zap.Int64("size", g.size), zap.Int64("pending", pending), zap.Int64("limit", g.clientLimitLocked()))
		}
		line := fmt.Sprintf("stop at %s (client-quota-percent %d", humanize.IBytes(uint64(g.clientLimitLocked())), g.clientPct)
		if why == pastShare {
			return rpcerr.Wrap(ErrFull, sizes+"; near the client line, "+line+"), this agent takes a quarter of the room left between two readings of the backend: retry in a moment")
		}
		return rpcerr.Wrap(ErrFull, sizes+"; clients' writes "+line+"), the rest is the agents' own: delete data and wait for compaction (hourly), defragment the members (etcdctl defrag) if the file is much larger than its use, or raise etcd-quota-backend-bytes")
	}
}

// unadmit takes back n bytes counted under reading gen, for a write that
// failed or wrote less than it was counted for. Past the settling
// readings there is nothing to take back: the count has moved on.
func (g *Guard) unadmit(n, gen int64) {
	if n <= 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if i := g.gen - gen; i >= 0 && i < int64(len(g.admitted)) {
		g.admitted[i] = max(g.admitted[i]-n, 0)
	}
}
