package barrier_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/barrier"
	"github.com/beaconhq/beacon/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/beaconhq/beacon/internal/rpcerr"
)

type entered struct {
	e   barrier.Entered
	err error
}

func enterAsync(ctx context.Context, b *barrier.Barrier, lease clientv3.LeaseID, node string, count int) <-chan entered {
	ch := make(chan entered, 1)
	go func() {
		e, err := b.Enter(ctx, lease, barrier.Info{Node: node, Pid: 1, Count: count}, nil)
		ch <- entered{e, err}
	}()
	return ch
}

func grant(t *testing.T, cli *clientv3.Client) clientv3.LeaseID {
	t.Helper()
	l, err := cli.Grant(context.Background(), 60)
	if err != nil {
		t.Fatal(err)
	}
	return l.ID
}

// waitKeys waits until prefix holds n keys.
func waitKeys(t *testing.T, cli *clientv3.Client, prefix string, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d keys, want %d", prefix, resp.Count, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitRemaining waits until a WaitLeft report lists n members inside.
func waitRemaining(t *testing.T, reports <-chan int, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case k := <-reports:
			if k == n {
				return
			}
		case <-deadline:
			t.Fatalf("WaitLeft never reported %d inside", n)
		}
	}
}

func notYet(t *testing.T, ch <-chan entered, who string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s returned before the barrier tripped: %+v", who, r)
	default:
	}
}

func get(t *testing.T, ch <-chan entered, who string) barrier.Entered {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%s: %v", who, r.err)
		}
		return r.e
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return after the barrier tripped", who)
	}
	return barrier.Entered{}
}

func newBarrier(t *testing.T, cli *clientv3.Client, name string, max int) *barrier.Barrier {
	t.Helper()
	b, err := barrier.New(cli, "/beacon/", name, barrier.WithMaxParticipants(max))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTripsWhenCountHaveEntered(t *testing.T) {
	cli, _ := etcdtest.New(t)
	b := newBarrier(t, cli, "trip", 0)
	ctx := context.Background()
	a := enterAsync(ctx, b, grant(t, cli), "a", 3)
	c := enterAsync(ctx, b, grant(t, cli), "b", 3)
	waitKeys(t, cli, b.Prefix()+"rounds/1/", 2)
	notYet(t, a, "a")
	notYet(t, c, "b")
	last := get(t, enterAsync(ctx, b, grant(t, cli), "c", 3), "c")
	first, second := get(t, a, "a"), get(t, c, "b")
	for _, e := range []barrier.Entered{first, second, last} {
		if e.Round != 1 || e.Trip != last.Trip || e.Trip.Count != 3 {
			t.Fatalf("entered %+v, want round 1 and the trip %+v", e, last.Trip)
		}
	}
	if last.Trip.Cutoff != last.Rev {
		t.Fatalf("cutoff %d, want the third's create revision %d", last.Trip.Cutoff, last.Rev)
	}
	if len(first.Members) != 3 {
		t.Fatalf("members %v, want 3", first.Members)
	}
}

func TestDeadParticipantIsNotCounted(t *testing.T) {
	cli, _ := etcdtest.New(t)
	b := newBarrier(t, cli, "dead", 0)
	ctx := context.Background()
	doomed := grant(t, cli)
	a := enterAsync(ctx, b, grant(t, cli), "a", 3)
	d := enterAsync(ctx, b, doomed, "doomed", 3)
	waitKeys(t, cli, b.Prefix()+"rounds/1/", 2)
	if _, err := cli.Revoke(ctx, doomed); err != nil {
		t.Fatal(err)
	}
	if r := <-d; !errors.Is(r.err, barrier.ErrLost) {
		t.Fatalf("the revoked participant got %v, want ErrLost", r.err)
	}
	c := enterAsync(ctx, b, grant(t, cli), "c", 3)
	waitKeys(t, cli, b.Prefix()+"rounds/1/", 2)
	notYet(t, a, "a")
	notYet(t, c, "c")
	e := get(t, enterAsync(ctx, b, grant(t, cli), "e", 3), "e")
	get(t, a, "a")
	get(t, c, "c")
	for _, m := range e.Members {
		if m.Node == "doomed" {
			t.Fatalf("the dead participant is a member: %v", e.Members)
		}
	}
}

func TestCountMismatchIsRefused(t *testing.T) {
	cli, _ := etcdtest.New(t)
	b := newBarrier(t, cli, "mismatch", 0)
	ctx := context.Background()
	a := enterAsync(ctx, b, grant(t, cli), "a", 3)
	waitKeys(t, cli, b.Prefix()+"rounds/1/", 1)
	_, err := b.Enter(ctx, grant(t, cli), barrier.Info{Node: "b", Count: 5}, nil)
	if !errors.Is(err, barrier.ErrCountMismatch) || status.Code(rpcerr.From(err)) != codes.FailedPrecondition {
		t.Fatalf("got %v, want ErrCountMismatch (FAILED_PRECONDITION)", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "count 5") || !strings.Contains(msg, "count 3") {
		t.Fatalf("%q does not name both counts", msg)
	}
	waitKeys(t, cli, b.Prefix()+"rounds/1/", 1) // the refused one withdrew
	notYet(t, a, "a")
}

func TestLateJoinerStartsTheNextRound(t *testing.T) {
	cli, _ := etcdtest.New(t)
	b := newBarrier(t, cli, "rounds", 0)
	ctx := context.Background()
	a := enterAsync(ctx, b, grant(t, cli), "a", 2)
	waitKeys(t, cli, b.Prefix()+"rounds/1/", 1)
	get(t, enterAsync(ctx, b, grant(t, cli), "b", 2), "b")
	get(t, a, "a")
	// The round-1 members are still inside (they have not left): a late
	// joiner must neither count them nor trip round 1 again.
	late := enterAsync(ctx, b, grant(t, cli), "late", 2)
	waitKeys(t, cli, b.Prefix()+"rounds/2/", 1)
	notYet(t, late, "the late joiner")
	e := get(t, enterAsync(ctx, b, grant(t, cli), "next", 2), "next")
	if e.Round != 2 || get(t, late, "late").Round != 2 {
		t.Fatalf("round %d, want 2", e.Round)
	}
}

func TestExtraArrivalEntersTheNextRound(t *testing.T) {
	cli, _ := etcdtest.New(t)
	b := newBarrier(t, cli, "extra", 0)
	ctx := context.Background()
	// Two participants of count 2 arrived (written as Enter writes them),
	// and nobody recorded the trip yet: the third one in is past the
	// cutoff and goes on to round 2.
	for _, n := range []string{"x", "y"} {
		l := grant(t, cli)
		if _, err := cli.Put(ctx, fmt.Sprintf("%s%x", b.Prefix()+"rounds/1/", int64(l)), `{"node":"`+n+`","count":2}`, clientv3.WithLease(l)); err != nil {
			t.Fatal(err)
		}
	}
	third := enterAsync(ctx, b, grant(t, cli), "third", 2)
	waitKeys(t, cli, b.Prefix()+"rounds/2/", 1)
	waitKeys(t, cli, b.Prefix()+"rounds/1/", 2)
	notYet(t, third, "the third")
	e := get(t, enterAsync(ctx, b, grant(t, cli), "fourth", 2), "fourth")
	if e.Round != 2 || get(t, third, "third").Round != 2 {
		t.Fatalf("round %d, want 2", e.Round)
	}
}

func TestWaitLeftCountsTheDeadAsLeft(t *testing.T) {
	cli, _ := etcdtest.New(t)
	b := newBarrier(t, cli, "leave", 0)
	ctx := context.Background()
	leases := []clientv3.LeaseID{grant(t, cli), grant(t, cli), grant(t, cli)}
	var chs []<-chan entered
	for i, l := range leases {
		chs = append(chs, enterAsync(ctx, b, l, fmt.Sprint("p", i), 3))
	}
	var es []barrier.Entered
	for i, ch := range chs {
		es = append(es, get(t, ch, fmt.Sprint("p", i)))
	}
	left := make(chan error, 1)
	remaining := make(chan int, 64)
	go func() {
		left <- b.WaitLeft(ctx, es[0].Trip, func(ps []barrier.Participant) {
			select {
			case remaining <- len(ps):
			default:
			}
		})
	}()
	if ok, err := b.Leave(ctx, es[0].Round, es[0].Lease, es[0].Rev); !ok || err != nil {
		t.Fatalf("leave: %v %v", ok, err)
	}
	if _, err := cli.Revoke(ctx, es[1].Lease); err != nil { // dies after the trip: it left
		t.Fatal(err)
	}
	waitKeys(t, cli, b.Prefix()+"rounds/1/", 1)
	// WaitLeft has seen the one left inside (not only the test's own
	// read), and has not returned for it.
	waitRemaining(t, remaining, 1)
	select {
	case err := <-left:
		t.Fatalf("WaitLeft returned (%v) while one member is inside", err)
	default:
	}
	if ok, err := b.Leave(ctx, es[2].Round, es[2].Lease, es[2].Rev); !ok || err != nil {
		t.Fatalf("leave: %v %v", ok, err)
	}
	select {
	case err := <-left:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitLeft did not return once all had left")
	}
	// The last one out tidied up: nothing of the barrier is left.
	waitKeys(t, cli, b.Prefix(), 0)
}

func TestTimeoutWithdraws(t *testing.T) {
	cli, _ := etcdtest.New(t)
	b := newBarrier(t, cli, "timeout", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var last barrier.Progress
	_, err := b.Enter(ctx, grant(t, cli), barrier.Info{Node: "a", Pid: 7, Count: 3}, func(p barrier.Progress) { last = p })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the deadline", err)
	}
	if got := last.String(); got != "waiting for 2 of 3; present: a (pid 7)" {
		t.Fatalf("progress %q", got)
	}
	waitKeys(t, cli, b.Prefix()+"rounds/", 0)
}

func TestParticipantBounds(t *testing.T) {
	cli, _ := etcdtest.New(t)
	b := newBarrier(t, cli, "bounds", 2)
	ctx := context.Background()
	_, err := b.Enter(ctx, grant(t, cli), barrier.Info{Count: 3}, nil)
	if !errors.Is(err, barrier.ErrTooMany) || !strings.Contains(err.Error(), "max-barrier-participants 2") {
		t.Fatalf("count over the bound: %v", err)
	}
	// Keys written by hand (no count) fill the round to the bound.
	for range 2 {
		l := grant(t, cli)
		if _, err := cli.Put(ctx, fmt.Sprintf("%s%x", b.Prefix()+"rounds/1/", int64(l)), "", clientv3.WithLease(l)); err != nil {
			t.Fatal(err)
		}
	}
	_, err = b.Enter(ctx, grant(t, cli), barrier.Info{Count: 2}, nil)
	if !errors.Is(err, barrier.ErrTooMany) || status.Code(rpcerr.From(err)) != codes.ResourceExhausted {
		t.Fatalf("full round: %v", err)
	}
	waitKeys(t, cli, b.Prefix()+"rounds/1/", 2)
}

// TestGoneParticipantIsNotAMember: a participant whose key is deleted in
// the very revision its round trips (its lease ended while it was cut
// off, say) is not told it is in: the others count it as left.
func TestGoneParticipantIsNotAMember(t *testing.T) {
	cli, _ := etcdtest.New(t)
	b := newBarrier(t, cli, "gone", 0)
	ctx := context.Background()
	a := enterAsync(ctx, b, grant(t, cli), "a", 2)
	waitKeys(t, cli, b.Prefix()+"rounds/1/", 1)
	resp, err := cli.Get(ctx, b.Prefix()+"rounds/1/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	key, rev := string(resp.Kvs[0].Key), resp.Kvs[0].CreateRevision
	trip := fmt.Sprintf(`{"round":2,"trips":[{"round":1,"count":2,"cutoff":%d}]}`, rev)
	if _, err := cli.Txn(ctx).Then(clientv3.OpDelete(key), clientv3.OpPut(b.Prefix()+"open", trip)).Commit(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-a:
		if !errors.Is(r.err, barrier.ErrLost) {
			t.Fatalf("got %+v, %v; want ErrLost", r.e, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the participant did not return")
	}
}

// TestParticipantNamesArePrintable: a participant's node, as another
// client may have written it, is printed without control characters.
func TestParticipantNamesArePrintable(t *testing.T) {
	p := barrier.Participant{Info: barrier.Info{Node: "evil\x1b[2J\nnode", Pid: 3}}
	if got := p.String(); got != "evil?[2J?node (pid 3)" {
		t.Fatalf("%q", got)
	}
}
