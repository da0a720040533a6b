package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/testcluster"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// electProc is a beacon (or etcdctl) process of a test, its output in a
// file (a pipe would keep Wait waiting on CMD's leftover children).
type electProc struct {
	cmd  *exec.Cmd
	out  string
	done chan struct{}
}

func startElectProc(t *testing.T, bin string, env []string, args ...string) *electProc {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	p := &electProc{cmd: exec.Command(bin, args...), out: out, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() { p.signal(syscall.SIGKILL); <-p.done })
	return p
}

func (p *electProc) signal(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

func (p *electProc) output() string {
	b, _ := os.ReadFile(p.out)
	return string(b)
}

// waitOutput waits until the process has printed want.
func (p *electProc) waitOutput(t *testing.T, want string) {
	t.Helper()
	err := testcluster.Eventually(30*time.Second, func() error {
		if strings.Contains(p.output(), want) {
			return nil
		}
		return fmt.Errorf("no %q in %q", want, p.output())
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (p *electProc) wait(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%v did not exit; output:\n%s", p.cmd.Args, p.output())
	}
}

// electCandidates waits until n candidates campaign for name.
func electCandidates(t *testing.T, cli *clientv3.Client, name string, n int64) {
	t.Helper()
	err := testcluster.Eventually(30*time.Second, func() error {
		resp, err := cli.Get(context.Background(), "/beacon/elections/"+name+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if resp.Count != n {
			return fmt.Errorf("%d candidates, want %d", resp.Count, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// electProcessGone reports whether pid has exited (a zombie nobody reaped
// counts as gone: it runs nothing).
func electProcessGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

// The leader's CMD logs when it starts and stops believing it leads (the
// trap first, so that no start goes without its stop).
const electLeaderScript = `trap 'echo "stop $CAND $BEACON_LEADER_REV $(date +%s%N)" >> "$LOG"; exit 0' TERM
echo "start $CAND $BEACON_LEADER_REV $(date +%s%N) $$" >> "$LOG"
while :; do sleep 0.05; done`

type electInterval struct {
	cand       string
	rev        int64
	start, end int64
	pid        int
}

// TestElectionNoTwoLeaders: candidates on three agents; the leader is
// killed at random, by kill -9 of its beacon, SIGTERM of its beacon,
// SIGTERM of its CMD, or kill -9 of its agent. Every leadership is logged
// by its CMD with its leader revision; revisions must strictly increase
// and no two leaderships may overlap in time.
func TestElectionNoTwoLeaders(t *testing.T) {
	c := testcluster.New(t)
	agents := startStatic(t, c, 3)
	bin := testcluster.Binary(t)
	const name = "no-two"
	logFile := filepath.Join(t.TempDir(), "leaders.log")
	// Observe from the first agent, which is never killed.
	obs := startElectProc(t, bin, nil, "elect", "--observe", name, "-w", "json", "--agent", agents[0].APIAddr)
	obs.waitOutput(t, "revision")

	cands := map[string]*electProc{}
	next := 0
	spawn := func(a *testcluster.Agent) {
		next++
		id := fmt.Sprintf("c%d", next)
		cands[id] = startElectProc(t, bin, []string{"CAND=" + id, "LOG=" + logFile},
			"elect", name, "--agent", a.APIAddr, "--ttl", "3s", "--grace", "1s", "--proposal", id, "--", "sh", "-c", electLeaderScript)
	}
	agentOf := map[string]int{}
	for i := 0; i < 6; i++ {
		spawn(agents[i%3])
		agentOf[fmt.Sprintf("c%d", next)] = i % 3
	}
	kills := map[string]int64{} // candidates killed with kill -9 (or their CMD killed with them), and when
	var lastRev int64
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 4))
	const rounds = 9
	agentKilled := false
	var actions [4]int
	for round := 0; round < rounds; round++ {
		iv := electWaitLeader(t, logFile, lastRev)
		electCheck(t, electParse(t, logFile, kills), false)
		lastRev = iv.rev
		p := cands[iv.cand]
		action := rng.IntN(3)
		if round >= rounds/2 && !agentKilled && agentOf[iv.cand] != 0 {
			action, agentKilled = 3, true
		}
		actions[action]++
		switch action {
		case 0: // kill -9 of beacon: CMD dies with it, no stop line
			p.signal(syscall.SIGKILL)
			kills[iv.cand] = time.Now().UnixNano()
			p.wait(t)
		case 1: // SIGTERM of beacon: CMD stops, then beacon resigns
			p.signal(syscall.SIGTERM)
			p.wait(t)
		case 2: // CMD stops on its own: beacon resigns and exits with its code
			_ = syscall.Kill(iv.pid, syscall.SIGTERM)
			p.wait(t)
		case 3: // the agent dies: the session's lease expires after the TTL
			a := agents[agentOf[iv.cand]]
			a.Kill()
			electWaitLeader(t, logFile, lastRev) // somebody else leads, after the TTL
			a.Start("--initial-cluster", testcluster.InitialCluster(agents...))
			a.WaitReady(readyWithin)
			continue // the candidates on it reconnect and campaign again
		}
		if p.cmd.ProcessState != nil && action != 0 && p.cmd.ProcessState.ExitCode() != 0 {
			t.Errorf("%s exited with %d after SIGTERM; output:\n%s", iv.cand, p.cmd.ProcessState.ExitCode(), p.output())
		}
		ai := agentOf[iv.cand]
		delete(cands, iv.cand)
		spawn(agents[ai])
		agentOf[fmt.Sprintf("c%d", next)] = ai
	}
	electWaitLeader(t, logFile, lastRev)
	for _, p := range cands {
		p.signal(syscall.SIGTERM)
	}
	for _, p := range cands {
		p.wait(t)
	}

	ivs := electParse(t, logFile, kills)
	electCheck(t, ivs, true)
	if len(ivs) < rounds {
		t.Fatalf("%d leaderships for %d rounds", len(ivs), rounds)
	}
	// The observer saw every leadership a CMD ran for, in order.
	err := testcluster.Eventually(10*time.Second, func() error {
		var seen []int64
		for _, line := range strings.Split(strings.TrimSpace(obs.output()), "\n") {
			var ev struct {
				Leader *struct {
					Rev int64 `json:"rev"`
				} `json:"leader"`
			}
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				return fmt.Errorf("observe line %q: %v", line, err)
			}
			if ev.Leader != nil {
				if len(seen) > 0 && ev.Leader.Rev <= seen[len(seen)-1] {
					t.Fatalf("observed leader revisions out of order: %v then %d", seen, ev.Leader.Rev)
				}
				seen = append(seen, ev.Leader.Rev)
			}
		}
		for _, iv := range ivs {
			if i := sort.Search(len(seen), func(i int) bool { return seen[i] >= iv.rev }); i == len(seen) || seen[i] != iv.rev {
				return fmt.Errorf("leader rev %d (%s) never observed; observed %v", iv.rev, iv.cand, seen)
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	t.Logf("%d leaderships, revisions %d..%d; leaders stopped by kill -9 of beacon %d, SIGTERM of beacon %d, SIGTERM of CMD %d, kill -9 of the agent %d",
		len(ivs), ivs[0].rev, ivs[len(ivs)-1].rev, actions[0], actions[1], actions[2], actions[3])
}

// electWaitLeader waits for a leadership above rev to start and returns
// the latest.
func electWaitLeader(t *testing.T, logFile string, rev int64) electInterval {
	t.Helper()
	var found electInterval
	err := testcluster.Eventually(30*time.Second, func() error {
		for _, iv := range electParse(t, logFile, nil) {
			if iv.rev > rev && iv.rev > found.rev {
				found = iv
			}
		}
		if found.rev == 0 {
			return fmt.Errorf("no leader after rev %d", rev)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// electCheck fails the test if two leaderships overlap or a leader's
// revision is not above its predecessor's. A leadership that has not
// ended overlaps any that started after it; with all ended set, every
// leadership must have ended.
func electCheck(t *testing.T, ivs []electInterval, allEnded bool) {
	t.Helper()
	for i, cur := range ivs {
		if cur.end == 0 && (allEnded || i < len(ivs)-1) {
			t.Fatalf("the leadership of %s at rev %d never ended, yet %d leaderships in all: %+v", cur.cand, cur.rev, len(ivs), ivs)
		}
		if i == 0 {
			continue
		}
		prev := ivs[i-1]
		if cur.rev <= prev.rev {
			t.Fatalf("leader revisions not increasing: %s rev %d, then %s rev %d", prev.cand, prev.rev, cur.cand, cur.rev)
		}
		if cur.start < prev.end {
			t.Fatalf("two leaders at once: %s (rev %d) until %d, %s (rev %d) from %d", prev.cand, prev.rev, prev.end, cur.cand, cur.rev, cur.start)
		}
	}
}

// electParse reads the leaderships the CMDs logged, each ended by its
// stop line or by the kill -9 of its candidate, sorted by start.
func electParse(t *testing.T, logFile string, kills map[string]int64) []electInterval {
	t.Helper()
	f, err := os.Open(logFile)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	byKey := map[string]*electInterval{}
	var all []*electInterval
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 {
			continue // a line being written
		}
		rev, _ := strconv.ParseInt(fs[2], 10, 64)
		ts, _ := strconv.ParseInt(fs[3], 10, 64)
		key := fs[1] + "/" + fs[2]
		switch fs[0] {
		case "start":
			if len(fs) < 5 {
				continue
			}
			pid, _ := strconv.Atoi(fs[4])
			iv := &electInterval{cand: fs[1], rev: rev, start: ts, pid: pid}
			byKey[key] = iv
			all = append(all, iv)
		case "stop":
			if iv := byKey[key]; iv != nil {
				iv.end = ts
			}
		}
	}
	for _, iv := range all {
		if k, ok := kills[iv.cand]; ok && iv.end == 0 && k > iv.start {
			iv.end = k
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].start < all[j].start })
	out := make([]electInterval, len(all))
	for i, iv := range all {
		out[i] = *iv
	}
	return out
}

// TestElectionKillLeaderProcess: kill -9 of the leader's `beacon elect`
// takes its CMD with it, and a candidate on another agent leads although
// the session's TTL is a minute: only the agent's revoke can do that.
func TestElectionKillLeaderProcess(t *testing.T) {
	c := testcluster.New(t)
	a, b := memberAndProxy(t, c, "b")
	bin := testcluster.Binary(t)
	const name = "kill9"
	first := startElectProc(t, bin, nil, "elect", name, "--agent", a.APIAddr, "--ttl", "60s", "--",
		"sh", "-c", `echo "cmd $$ $BEACON_LEADER_REV"; exec sleep 1000`)
	first.waitOutput(t, "cmd ")
	var pid int
	var rev1 int64
	if _, err := fmt.Sscanf(first.output()[strings.Index(first.output(), "cmd "):], "cmd %d %d", &pid, &rev1); err != nil {
		t.Fatalf("CMD's line: %v in %q", err, first.output())
	}
	second := startElectProc(t, bin, nil, "elect", name, "--agent", b.APIAddr, "--ttl", "60s", "--",
		"sh", "-c", `echo "second leads $BEACON_LEADER_REV"; exec sleep 1000`)
	electCandidates(t, a.Client(), name, 2)
	if strings.Contains(second.output(), "second leads") {
		t.Fatalf("the second candidate leads while the first does:\n%s", second.output())
	}

	first.signal(syscall.SIGKILL)
	first.wait(t)
	if err := testcluster.Eventually(10*time.Second, func() error {
		if !electProcessGone(pid) {
			return fmt.Errorf("CMD (pid %d) still runs after its beacon was killed", pid)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	second.waitOutput(t, "second leads")
	var rev2 int64
	out := second.output()
	fmt.Sscanf(out[strings.Index(out, "second leads"):], "second leads %d", &rev2)
	if rev2 <= rev1 {
		t.Fatalf("new leader's rev %d is not above %d", rev2, rev1)
	}
}

// TestElectionEtcdctlInterop: `etcdctl elect /beacon/elections/NAME` and
// `beacon elect NAME` take turns in one election.
func TestElectionEtcdctlInterop(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start()
	a.WaitReady(readyWithin)
	bin, etcdctl := testcluster.Binary(t), testcluster.Etcdctl(t)
	const name = "interop"
	listen := startElectProc(t, etcdctl, nil, "--endpoints", a.ClientURL, "elect", "-l", "/beacon/elections/"+name)

	b1 := startElectProc(t, bin, nil, "elect", name, "--agent", a.APIAddr, "--proposal", "beacon-1", "--",
		"sh", "-c", `echo leading; exec sleep 1000`)
	b1.waitOutput(t, "leading")
	ectl := startElectProc(t, etcdctl, nil, "--endpoints", a.ClientURL, "elect", "/beacon/elections/"+name, "etcd-prop")
	electCandidates(t, a.Client(), name, 2)
	if strings.Contains(ectl.output(), "etcd-prop") {
		t.Fatalf("etcdctl elect leads while beacon does: %q", ectl.output())
	}
	listen.waitOutput(t, "beacon-1")

	// beacon resigns on SIGTERM; etcdctl leads.
	b1.signal(syscall.SIGTERM)
	b1.wait(t)
	ectl.waitOutput(t, "etcd-prop")
	b2 := startElectProc(t, bin, nil, "elect", name, "--agent", a.APIAddr, "--proposal", "beacon-2", "--",
		"sh", "-c", `echo leading; exec sleep 1000`)
	electCandidates(t, a.Client(), name, 2)
	cl, err := client.New(a.APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	lead, err := beaconpb.NewElectionClient(cl.Conn()).Leader(context.Background(), &beaconpb.ElectionLeaderRequest{Name: name})
	if err != nil || lead.Leader.Proposal != "etcd-prop" {
		t.Fatalf("beacon's view of the leader: %v %v", lead, err)
	}
	if strings.Contains(b2.output(), "leading") {
		t.Fatalf("beacon leads while etcdctl does:\n%s", b2.output())
	}
	// etcdctl's observer sees etcdctl lead (it can lag by a good part of a
	// second); then etcdctl resigns on SIGINT and beacon leads.
	listen.waitOutput(t, "etcd-prop")
	ectl.signal(syscall.SIGINT)
	ectl.wait(t)
	b2.waitOutput(t, "leading")
	listen.waitOutput(t, "beacon-2")
	out := listen.output()
	if i, j, k := strings.Index(out, "beacon-1"), strings.Index(out, "etcd-prop"), strings.Index(out, "beacon-2"); !(i < j && j < k) {
		t.Fatalf("etcdctl elect -l saw the leaders out of order:\n%s", out)
	}
}

// TestElectionObserve: `beacon elect --observe` prints every change of
// leader and proposal, in order, in both formats.
func TestElectionObserve(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start()
	a.WaitReady(readyWithin)
	bin := testcluster.Binary(t)
	const name = "observed"
	jsonObs := startElectProc(t, bin, nil, "elect", "--observe", name, "-w", "json", "--agent", a.APIAddr)
	tableObs := startElectProc(t, bin, nil, "elect", "--observe", name, "--agent", a.APIAddr)
	jsonObs.waitOutput(t, "revision")
	tableObs.waitOutput(t, "no leader")

	cl, err := client.New(a.APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ec := beaconpb.NewElectionClient(cl.Conn())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s1, err := cl.NewSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := cl.NewSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	won, err := ec.Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: name, SessionId: s1.ID, Proposal: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ec.Proclaim(ctx, &beaconpb.ElectionProclaimRequest{Name: name, SessionId: s1.ID, Rev: won.Leader.Rev, Proposal: "p2"}); err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() {
		_, err := ec.Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: name, SessionId: s2.ID, Proposal: "q1"})
		second <- err
	}()
	electCandidates(t, a.Client(), name, 2)
	if _, err := ec.Resign(ctx, &beaconpb.ElectionResignRequest{Name: name, SessionId: s1.ID, Rev: won.Leader.Rev}); err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	s2.Close() // the agent revokes its lease: no leader

	want := []string{"", "p1", "p2", "q1", ""}
	var got []string
	err = testcluster.Eventually(30*time.Second, func() error {
		got = got[:0]
		var lastRevision int64
		for _, line := range strings.Split(strings.TrimSpace(jsonObs.output()), "\n") {
			var ev struct {
				Leader *struct {
					Proposal string `json:"proposal"`
				} `json:"leader"`
				Revision int64 `json:"revision"`
			}
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				return fmt.Errorf("%q: %v", line, err)
			}
			if ev.Revision <= lastRevision {
				return fmt.Errorf("revisions out of order in %q", jsonObs.output())
			}
			lastRevision = ev.Revision
			p := ""
			if ev.Leader != nil {
				p = ev.Leader.Proposal
			}
			got = append(got, p)
		}
		if len(got) < len(want) {
			return fmt.Errorf("observed %q so far", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("observed %q, want %q", got, want)
	}
	var lines []string
	if err := testcluster.Eventually(30*time.Second, func() error {
		lines = strings.Split(strings.TrimSpace(tableObs.output()), "\n")
		if len(lines) < len(want) {
			return fmt.Errorf("table observer printed %q so far", lines)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i, w := range []string{"no leader", `proposal "p1"`, `proposal "p2"`, `proposal "q1"`, "no leader"} {
		if !strings.Contains(lines[i], w) {
			t.Fatalf("table line %d %q lacks %q; all:\n%s", i, lines[i], w, tableObs.output())
		}
	}
	if len(lines) != len(want) {
		t.Fatalf("table observer printed more than the changes:\n%s", tableObs.output())
	}
}

// TestElectionBadInput: bad names, proposals, timeouts, revisions and
// TTLs are refused with InvalidArgument naming the field (gRPC) or a usage
// error naming the flag (CLI).
func TestElectionBadInput(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start()
	a.WaitReady(readyWithin)
	cl, err := client.New(a.APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := cl.NewSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ec := beaconpb.NewElectionClient(cl.Conn())
	check := func(what string, err error, code codes.Code, field string) {
		t.Helper()
		st, _ := status.FromError(err)
		if st.Code() != code || !strings.Contains(st.Message(), field) {
			t.Errorf("%s: %v, want %v naming %q", what, err, code, field)
		}
	}
	_, err = ec.Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: "", SessionId: s.ID})
	check("empty name", err, codes.InvalidArgument, "name")
	_, err = ec.Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: "a/b", SessionId: s.ID})
	check("name with /", err, codes.InvalidArgument, "name")
	_, err = ec.Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: "x", SessionId: s.ID, Proposal: strings.Repeat("p", 1<<20+1)})
	check("proposal over 1 MiB", err, codes.InvalidArgument, "proposal")
	_, err = ec.Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: "x", SessionId: s.ID, Timeout: durationpb.New(-5 * time.Millisecond)})
	check("negative timeout", err, codes.InvalidArgument, "timeout")
	_, err = ec.Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: "x", SessionId: s.ID, Timeout: durationpb.New(25 * time.Hour)})
	check("timeout over a day", err, codes.InvalidArgument, "timeout")
	_, err = ec.Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: "x"})
	check("no session", err, codes.InvalidArgument, "session_id")
	_, err = ec.Campaign(ctx, &beaconpb.ElectionCampaignRequest{Name: "x", SessionId: "0123"})
	check("unknown session", err, codes.NotFound, "session_id")
	_, err = ec.Proclaim(ctx, &beaconpb.ElectionProclaimRequest{Name: "x", SessionId: s.ID})
	check("proclaim without rev", err, codes.InvalidArgument, "rev")
	_, err = ec.Leader(ctx, &beaconpb.ElectionLeaderRequest{Name: "x/"})
	check("leader of a bad name", err, codes.InvalidArgument, "name")
	_, err = ec.Leader(ctx, &beaconpb.ElectionLeaderRequest{Name: "nobody-campaigns"})
	check("leader of an empty election", err, codes.NotFound, "no leader")
	// Nothing was written by the refused calls.
	if resp, err := a.Client().Get(ctx, "/beacon/elections/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count != 0 {
		t.Errorf("elections in etcd after refused calls: %v %v", resp, err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"elect", "", "--", "true"}, "name"},
		{[]string{"elect", "a/b", "--", "true"}, "name"},
		{[]string{"elect", "x", "--ttl", "0s", "--", "true"}, "--ttl"},
		{[]string{"elect", "x", "--ttl", "25h", "--", "true"}, "--ttl"},
		{[]string{"elect", "--observe", "x", "--", "true"}, "--observe"},
		{[]string{"elect", "x", "true"}, "--"},
	} {
		_, stderr, err := a.CLI(tc.args...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("beacon %.60q: %v, stderr %q; want exit 2 naming %q", tc.args, err, stderr, tc.want)
		}
	}
}
