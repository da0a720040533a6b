package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// LockOptions tune `beacon bench lock`. With no Agent, the benchmark
// starts its own.
type LockOptions struct {
	Agent      string // agent API address
	Endpoint   string // the same agent's etcd client URL, for the plain way
	Samples    int    // uncontended acquire+release pairs per side
	Contenders int
	Duration   time.Duration // of the contended run, per side
}

// Lock measures the agent's Lock service against etcd's
// concurrency.Mutex on the same cluster, in the same run: uncontended
// acquire+release latency, and handoffs per second with Contenders
// sessions looping acquire→release on one lock.
func Lock(ctx context.Context, w io.Writer, o LockOptions) error {
	if o.Agent == "" && CompareTLS && CompareACL {
		return fmt.Errorf("give --tls or --acl, not both: each compares one thing")
	}
	if o.Agent == "" && CompareTLS {
		return lockTLS(ctx, w, o)
	}
	if o.Agent == "" && CompareACL {
		return lockACL(ctx, w, o)
	}
	var a *agentProc
	if o.Agent == "" {
		own, done, err := ownAgent(ctx, "bench-lock")
		if err != nil {
			return err
		}
		defer done()
		a = own
	} else {
		// A running agent: TLS as the environment says (BEACON_CA_FILE…).
		a = &agentProc{API: o.Agent, ClientURL: o.Endpoint}
		if files, err := client.TLSFromEnv(); err != nil {
			return err
		} else if files != nil {
			a.sec = &benchTLS{client: files}
		}
	}
	f, err := lockMeasure(ctx, o, a)
	if err != nil {
		return err
	}
	f.print(w, o)
	return nil
}

// lockFigures are one run of the lock benchmark: the agent's Lock
// service (b) and concurrency.Mutex (p) on the same cluster.
type lockFigures struct {
	bLat, pLat   []time.Duration // uncontended acquire+release
	bRate, pRate float64         // contended handoffs/s
	bWAL         walLoad         // etcd WAL fsyncs during beacon's contended run
	bWALKnown    bool
}

// lockMeasure runs the benchmark against agent a: its API and, for the
// plain way, its etcd client URL.
func lockMeasure(ctx context.Context, o LockOptions, a *agentProc) (*lockFigures, error) {
	c, err := a.client()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	lc := beaconpb.NewLockClient(c.Conn())
	ecfg, err := a.etcdConfig(a.ClientURL)
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(ecfg)
	if err != nil {
		return nil, err
	}
	defer cli.Close()

	run := time.Now().UnixNano() % 100000
	name := fmt.Sprintf("bench-%d", run)
	plainPrefix := fmt.Sprintf("/beacon/locks/bench-plain-%d", run)

	// Uncontended: one session, acquire then release, one after another.
	sessions, err := beaconSessions(ctx, c, o.Contenders)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, s := range sessions {
			_ = s.Close()
		}
	}()
	f := &lockFigures{bLat: make([]time.Duration, o.Samples), pLat: make([]time.Duration, o.Samples)}
	for i := range f.bLat {
		t0 := time.Now()
		if err := beaconCycle(ctx, lc, name, sessions[0].ID); err != nil {
			return nil, fmt.Errorf("through the agent: %w", err)
		}
		f.bLat[i] = time.Since(t0)
	}
	plainSessions, err := plainSessionsOf(cli, o.Contenders)
	if err != nil {
		return nil, fmt.Errorf("plain way: %w", err)
	}
	defer func() {
		for _, s := range plainSessions {
			_ = s.Close()
		}
	}()
	m := concurrency.NewMutex(plainSessions[0], plainPrefix)
	for i := range f.pLat {
		t0 := time.Now()
		if err := m.Lock(ctx); err != nil {
			return nil, fmt.Errorf("plain way: %w", err)
		}
		if err := m.Unlock(ctx); err != nil {
			return nil, fmt.Errorf("plain way: %w", err)
		}
		f.pLat[i] = time.Since(t0)
	}

	// Contended: every contender loops acquire → release on one lock.
	wal0, wal0ok := readWALSyncs(ctx, ecfg)
	f.bRate, err = handoffs(ctx, o, func(ctx context.Context, i int, inside func()) error {
		r, err := lc.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: name + "-c", SessionId: sessions[i].ID})
		if err != nil {
			return err
		}
		inside()
		_, err = lc.Release(context.Background(), &beaconpb.LockReleaseRequest{Key: r.Key, Token: r.Token, SessionId: sessions[i].ID})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("through the agent, contended: %w", err)
	}
	if wal1, ok := readWALSyncs(ctx, ecfg); ok && wal0ok {
		f.bWAL, f.bWALKnown = walLoadOf(wal0, wal1, f.bRate*o.Duration.Seconds())
	}
	mutexes := make([]*concurrency.Mutex, o.Contenders)
	for i := range mutexes {
		mutexes[i] = concurrency.NewMutex(plainSessions[i], plainPrefix+"-c")
	}
	f.pRate, err = handoffs(ctx, o, func(ctx context.Context, i int, inside func()) error {
		if err := mutexes[i].Lock(ctx); err != nil {
			return err
		}
		inside()
		return mutexes[i].Unlock(context.Background())
	})
	if err != nil {
		return nil, fmt.Errorf("plain way, contended: %w", err)
	}
	return f, nil
}

func (f *lockFigures) print(w io.Writer, o LockOptions) {
	b50, b99 := percentiles(f.bLat)
	p50, p99 := percentiles(f.pLat)
	ratio := f.bRate / max(f.pRate, 1e-9)
	fmt.Fprintf(w, "beacon bench lock: %d uncontended pairs per side; %d contenders for %s per side\n\n", o.Samples, o.Contenders, o.Duration)
	fmt.Fprintf(w, "%-34s %12s %12s %8s\n", "", "beacon", "plain", "ratio")
	fmt.Fprintf(w, "%-34s %12s %12s %7.2fx\n", "acquire+release p50", b50.Round(time.Microsecond), p50.Round(time.Microsecond), float64(b50)/float64(p50))
	fmt.Fprintf(w, "%-34s %12s %12s %7.2fx\n", "acquire+release p99", b99.Round(time.Microsecond), p99.Round(time.Microsecond), float64(b99)/float64(p99))
	fmt.Fprintf(w, "%-34s %12.0f %12.1f %7.1fx   target ≥ 10x: %s\n", fmt.Sprintf("handoffs/s, %d contenders", o.Contenders), f.bRate, f.pRate, ratio, okIf(ratio >= 10))
	fmt.Fprintf(w, "%-34s %12s %12s\n", "time per handoff", perOp(f.bRate), perOp(f.pRate))
	if f.bWALKnown {
		fmt.Fprintf(w, "\netcd WAL fsyncs in beacon's contended run: %s.\n", f.bWAL.share(f.bRate))
		fmt.Fprintln(w, "(A handoff is a release and an enqueue, each a raft entry the member syncs to disk one after another,")
		fmt.Fprintln(w, "so a slower disk lowers beacon's rate; concurrency.Mutex waits on etcd's 100 ms catch-up loop instead.)")
	}
	fmt.Fprintln(w, "\nbeacon: Lock.Acquire/Release over gRPC, one session per contender, through the agent.")
	fmt.Fprintln(w, "plain: etcd's concurrency.Mutex Lock/Unlock, one concurrency.Session per contender, on the same member.")
}

func beaconSessions(ctx context.Context, c *client.Client, n int) ([]*client.Session, error) {
	var out []*client.Session
	for i := 0; i < n; i++ {
		s, err := c.NewSession(ctx, client.WithName(fmt.Sprintf("bench-lock-%d", i)))
		if err != nil {
			for _, s := range out {
				_ = s.Close()
			}
			return nil, fmt.Errorf("opening a session on the agent: %w", err)
		}
		out = append(out, s)
	}
	return out, nil
}

func plainSessionsOf(cli *clientv3.Client, n int) ([]*concurrency.Session, error) {
	var out []*concurrency.Session
	for i := 0; i < n; i++ {
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
		if err != nil {
			for _, s := range out {
				_ = s.Close()
			}
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func beaconCycle(ctx context.Context, lc beaconpb.LockClient, name, sessionID string) error {
	r, err := lc.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: name, SessionId: sessionID})
	if err != nil {
		return err
	}
	_, err = lc.Release(ctx, &beaconpb.LockReleaseRequest{Key: r.Key, Token: r.Token, SessionId: sessionID})
	return err
}

// handoffs runs o.Contenders loops of cycle for o.Duration and returns
// the grants per second. It also checks that no two contenders were ever
// inside at once.
func handoffs(ctx context.Context, o LockOptions, cycle func(ctx context.Context, i int, inside func()) error) (float64, error) {
	rctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	var count, in atomic.Int64
	var overlap atomic.Bool
	inside := func() {
		if in.Add(1) != 1 {
			overlap.Store(true)
		}
		count.Add(1)
		in.Add(-1)
	}
	var wg sync.WaitGroup
	errs := make(chan error, o.Contenders)
	start := time.Now()
	for i := 0; i < o.Contenders; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for rctx.Err() == nil {
				if err := cycle(rctx, i, inside); err != nil {
					// The run's end shows as the context's error, or as the
					// agent's DEADLINE_EXCEEDED, which can come first.
					if rctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) && status.Code(err) != codes.DeadlineExceeded {
						errs <- err
					}
					return
				}
			}
		}(i)
	}
	wg.Wait()
	elapsed := min(time.Since(start), o.Duration)
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	if overlap.Load() {
		return 0, fmt.Errorf("two contenders held the lock at once")
	}
	return float64(count.Load()) / elapsed.Seconds(), nil
}

func perOp(rate float64) string {
	if rate <= 0 {
		return "-"
	}
	return time.Duration(float64(time.Second) / rate).Round(10 * time.Microsecond).String()
}
