package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
)

// TestLeaderCutWithinNodeTTL: at a node TTL of 3 s, the etcd leader's
// host is cut off from every other host. The two other voters elect a
// new leader; until they do, a follower forwards its agent's lease
// renewals to the old leader, where they hang (etcd bounds a forwarded
// renewal only by its request timeout, 7 s). The agents on the majority
// side (the two voters and the proxy) must keep their leases all the
// same:
//
//   - their instances never leave any majority agent's answers;
//   - the cut leader's instances leave them once its leases expire;
//   - after the heal every agent converges.
func TestLeaderCutWithinNodeTTL(t *testing.T) {
	ctx := t.Context()
	h := New(t, WithAgentArgs("--node-ttl", nodeTTL.String()))
	vs, ps := h.StartCluster(ctx, 3, 1)
	all := append(append([]*Host{}, vs...), ps...)
	rep := h.NewReport("leader-cut")
	defer rep.Finish(t)
	w := NewRegistryWorkload(h, rep, "db")
	start := time.Now()
	for _, x := range all {
		if id, o, err := w.Register(ctx, x); o != OK {
			t.Fatalf("register %s on %s: %s: %v", id, x, o, err)
		}
	}
	if _, err := w.WaitConverged(ctx, start, all, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	leader, err := leaderHost(ctx, vs)
	if err != nil {
		t.Fatal(err)
	}
	var majority []*Host
	var majorityIDs []string
	for _, x := range all {
		if x != leader {
			majority = append(majority, x)
			majorityIDs = append(majorityIDs, w.Registered(x)...)
		}
	}
	leaderIDs := w.Registered(leader)
	w.SetInvariant(func(x *Host, got map[string]bool) error {
		if x == leader {
			return nil // cut off: it answers from its last catalog
		}
		for _, id := range majorityIDs {
			if !got[id] {
				return fmt.Errorf("lost live instance %s on the majority side (its lease expired while the majority was healthy): answered %s", id, setString(got))
			}
		}
		return nil
	})
	stop := w.Probe(ctx, all, 100*time.Millisecond)
	defer stop()

	f, err := h.Inject(ctx, Isolate(leader))
	if err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	err = majority[0].WaitReady(rctx)
	cancel()
	if err != nil {
		rep.Anomaly("the majority side has no quorum: %v", err)
	} else {
		rep.Measure("leader cut → majority ready (a leader on its side)", time.Since(cutAt), 10*time.Second)
	}
	// The cut leader's instances leave the majority's answers when its
	// leases expire: the new leader gives every lease a full TTL plus an
	// election timeout on taking over.
	gone := map[*Host]time.Duration{}
	err = testcluster.Eventually(nodeTTL+20*time.Second, func() error {
		for _, x := range majority {
			if _, ok := gone[x]; ok {
				continue
			}
			got := w.Last(x)
			if !slices.ContainsFunc(leaderIDs, func(id string) bool { return got[id] }) {
				gone[x] = time.Since(cutAt)
			}
		}
		if len(gone) < len(majority) {
			return fmt.Errorf("%d of %d majority agents still answer %s's instances", len(majority)-len(gone), len(majority), leader)
		}
		return nil
	})
	for _, x := range majority {
		if d, ok := gone[x]; ok {
			rep.Measure(fmt.Sprintf("leader cut → its instances gone from %s's answers (TTL %s)", x, nodeTTL), d, nodeTTL+5*time.Second)
		} else {
			rep.Anomaly("%s never dropped the cut leader's instances: %v", x, err)
		}
	}
	// Hold the cut until any lease renewed only through the old leader
	// would have expired (the forwarded renewal's 7 s request timeout
	// plus a TTL).
	if wait := 7*time.Second + nodeTTL + time.Second - time.Since(cutAt); wait > 0 {
		time.Sleep(wait)
	}
	w.SetInvariant(nil)
	healAt := time.Now()
	if err := f.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := w.WaitConverged(ctx, healAt, all, 60*time.Second)
	if err != nil {
		rep.Anomaly("after %s healed: %v", f, err)
	} else {
		rep.Measure(fmt.Sprintf("heal of %s → every agent converged", f), d, 20*time.Second)
	}
}

// leaderHost is the voter that `beacon status` on the voters names as
// the etcd leader.
func leaderHost(ctx context.Context, vs []*Host) (*Host, error) {
	var last error
	for _, x := range vs {
		r := x.Run(ctx, "status", "-w", "json", "--call-timeout", "5s")
		if !r.OK() {
			last = fmt.Errorf("%s: beacon status: %s", x, r.Line())
			continue
		}
		var st struct {
			Leader string `json:"leader"`
		}
		if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
			last = fmt.Errorf("%s: beacon status -w json: %v", x, err)
			continue
		}
		for _, v := range vs {
			if v.Name == st.Leader {
				return v, nil
			}
		}
		last = fmt.Errorf("%s: beacon status names leader %q, not a voter", x, st.Leader)
	}
	return nil, last
}
