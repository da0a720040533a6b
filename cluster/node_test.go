package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/etcdtest"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestAnnounceKeepsAnotherAgentsName: an agent that announces a node name
// another running agent has (both past their start's check, started at the
// same moment) does not take the record, so its stop leaves the other
// listed; an earlier run of the same agent is taken over at once.
func TestAnnounceKeepsAnotherAgentsName(t *testing.T) {
	cli, _ := etcdtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key := NodesPrefix("/beacon/") + "n1"
	record := func() (NodeInfo, int64, error) {
		resp, err := cli.Get(ctx, key)
		if err != nil || len(resp.Kvs) == 0 {
			return NodeInfo{}, 0, fmt.Errorf("no record: %v", err)
		}
		var n NodeInfo
		err = json.Unmarshal(resp.Kvs[0].Value, &n)
		return n, resp.Kvs[0].Lease, err
	}
	waitRecord := func(what string, ok func(NodeInfo) bool) int64 {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			n, lease, err := record()
			if err == nil && ok(n) {
				return lease
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: last %+v, %v", what, n, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	real := NodeInfo{Name: "n1", Address: "127.0.0.1", Role: "member", ClientURL: "http://127.0.0.1:2379"}
	dup := NodeInfo{Name: "n1", Address: "127.0.0.2", Role: "proxy", ClientURL: "http://127.0.0.2:2379"}

	a := Announce(cli, "/beacon/", real, 10*time.Second, zap.NewNop())
	defer a.Stop(ctx)
	waitRecord("the first agent's record", func(n NodeInfo) bool { return n.Address == real.Address })

	core, logs := observer.New(zap.InfoLevel)
	b := Announce(cli, "/beacon/", dup, 10*time.Second, zap.New(core))
	// b tries, is refused (and says so), tries again.
	deadline := time.Now().Add(30 * time.Second)
	for logs.FilterMessageSnippet("another agent has this node name").Len() < 3 {
		if n, _, err := record(); err != nil || n.Address != real.Address {
			t.Fatalf("another agent of the name announced itself: the record is %+v (%v)", n, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the other agent of the name was not refused 3 times in 30s: %v", logs.All())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n, _, err := record(); err != nil || n.Address != real.Address {
		t.Fatalf("after 3 claims by another agent of the name, the record is %+v (%v)", n, err)
	}
	b.Stop(ctx)
	if n, _, err := record(); err != nil || n.Address != real.Address {
		t.Fatalf("after the other agent of the name stopped, the record is %+v (%v)", n, err)
	}

	// The same agent, restarted (its old lease still alive): it takes over.
	restarted := real
	restarted.Started = "later"
	oldLease := waitRecord("the first agent's record", func(n NodeInfo) bool { return true })
	a2 := Announce(cli, "/beacon/", restarted, 10*time.Second, zap.NewNop())
	defer a2.Stop(ctx)
	newLease := waitRecord("the restarted agent's record", func(n NodeInfo) bool { return n.Started == "later" })
	if newLease == oldLease {
		t.Fatalf("the restarted agent's record is under the old run's lease %x", oldLease)
	}

	if err := CheckNameFree(ctx, cli, "/beacon/", dup); !errors.Is(err, ErrNameInUse) {
		t.Fatalf("CheckNameFree for another agent of the name: %v", err)
	}
	if err := CheckNameFree(ctx, cli, "/beacon/", real); err != nil {
		t.Fatalf("CheckNameFree for the same agent: %v", err)
	}
}
