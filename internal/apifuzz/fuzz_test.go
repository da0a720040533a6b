package apifuzz

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// One agent per test process (each fuzzing worker is a process of its
// own), started by the first input and stopped by TestMain.
var (
	agentOnce sync.Once
	shared    *Agent
	sharedErr error
)

func theAgent(t testing.TB) *Agent {
	agentOnce.Do(func() { shared, sharedErr = StartAgent() })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	os.Exit(code)
}

// seeds are well-formed requests of every method, most in the fuzzing
// agent's session, and a few that are wrong in the ways clients get
// them wrong: the fuzzer starts from them.
func seeds() map[string][]proto.Message {
	sec := durationpb.New(time.Second)
	inst := &beaconpb.Instance{Id: "web-1", Service: "web", Address: "127.0.0.1", Port: 8080, Tags: []string{"v1"}, Meta: map[string]string{"zone": "a"}}
	return map[string][]proto.Message{
		beaconpb.Registry_Register_FullMethodName: {
			&beaconpb.RegisterRequest{Instance: inst, SessionId: SessionPlaceholder},
			&beaconpb.RegisterRequest{Instance: inst, Check: &beaconpb.Check{Ttl: durationpb.New(10 * time.Second)}, SessionId: SessionPlaceholder},
			&beaconpb.RegisterRequest{Instance: &beaconpb.Instance{Service: "web", Address: "not-an-ip", Port: 70000}},
			&beaconpb.RegisterRequest{Instance: inst, Check: &beaconpb.Check{Tcp: "127.0.0.1:1", Interval: &durationpb.Duration{Nanos: 2e9}}},
		},
		beaconpb.Registry_Deregister_FullMethodName: {&beaconpb.DeregisterRequest{Service: "web", Id: "web-1", SessionId: SessionPlaceholder}},
		beaconpb.Registry_Heartbeat_FullMethodName:  {&beaconpb.HeartbeatRequest{Service: "web", Id: "web-1", Status: "passing", SessionId: SessionPlaceholder}},
		beaconpb.Registry_Get_FullMethodName:        {&beaconpb.GetRequest{Service: "web", Id: "web-1"}},
		beaconpb.Registry_List_FullMethodName:       {&beaconpb.ListRequest{Service: "web", Tags: []string{"v1"}, HealthyOnly: true, Limit: 10}},
		beaconpb.Lock_Acquire_FullMethodName: {
			&beaconpb.LockAcquireRequest{Name: "batch", SessionId: SessionPlaceholder, Timeout: durationpb.New(100 * time.Millisecond)},
			&beaconpb.LockAcquireRequest{Name: "batch", SessionId: SessionPlaceholder, Timeout: durationpb.New(time.Hour), Limit: 2},
			&beaconpb.LockAcquireRequest{Name: "batch", SessionId: SessionPlaceholder, Timeout: &durationpb.Duration{Seconds: 1, Nanos: -1}},
		},
		beaconpb.Lock_TryAcquire_FullMethodName: {&beaconpb.LockAcquireRequest{Name: "try", SessionId: SessionPlaceholder}},
		beaconpb.Lock_Release_FullMethodName:    {&beaconpb.LockReleaseRequest{Key: "/beacon/locks/batch/694d", Token: 7, SessionId: SessionPlaceholder}},
		beaconpb.Lock_Fenced_FullMethodName: {&beaconpb.LockFencedRequest{Key: "/beacon/locks/batch/694d", Token: 7,
			Ops: []*beaconpb.LockFencedOp{{Type: beaconpb.LockOpType(1), Key: "counter", Value: []byte("1")}}}},
		beaconpb.Election_Campaign_FullMethodName: {&beaconpb.ElectionCampaignRequest{Name: "sched", SessionId: SessionPlaceholder, Proposal: "me", Timeout: durationpb.New(100 * time.Millisecond)}},
		beaconpb.Election_Proclaim_FullMethodName: {&beaconpb.ElectionProclaimRequest{Name: "sched", SessionId: SessionPlaceholder, Rev: 5, Proposal: "again"}},
		beaconpb.Election_Resign_FullMethodName:   {&beaconpb.ElectionResignRequest{Name: "sched", SessionId: SessionPlaceholder, Rev: 5}},
		beaconpb.Election_Leader_FullMethodName:   {&beaconpb.ElectionLeaderRequest{Name: "sched"}},
		beaconpb.Queue_Enqueue_FullMethodName:     {&beaconpb.QueueEnqueueRequest{Queue: "jobs", Payload: []byte("job"), DedupId: "d1", DedupWindow: sec, Delay: durationpb.New(-time.Second)}},
		beaconpb.Queue_Reserve_FullMethodName:     {&beaconpb.QueueReserveRequest{Queue: "jobs", SessionId: SessionPlaceholder, Visibility: sec, Wait: durationpb.New(time.Hour)}},
		beaconpb.Queue_Ack_FullMethodName:         {&beaconpb.QueueAckRequest{Receipt: "jobs/1/2", SessionId: SessionPlaceholder}},
		beaconpb.Queue_Nack_FullMethodName:        {&beaconpb.QueueNackRequest{Receipt: "jobs/1/2", Delay: sec, SessionId: SessionPlaceholder}},
		beaconpb.Queue_Extend_FullMethodName:      {&beaconpb.QueueExtendRequest{Receipt: "jobs/1/2", Visibility: sec, SessionId: SessionPlaceholder}},
		beaconpb.Queue_Progress_FullMethodName:    {&beaconpb.QueueProgressRequest{Receipt: "jobs/1/2", Percent: 150, Message: "half", SessionId: SessionPlaceholder}},
		beaconpb.Queue_Stats_FullMethodName:       {&beaconpb.QueueStatsRequest{Queue: "jobs", InFlight: true}},
		beaconpb.Queue_Gate_FullMethodName: {
			&beaconpb.QueueGateRequest{Queue: "jobs", Condition: &beaconpb.QueueGateRequest_Key{Key: &beaconpb.QueueGateKey{Key: "app/go", Value: []byte("yes")}}},
			&beaconpb.QueueGateRequest{Queue: "jobs", Condition: &beaconpb.QueueGateRequest_Count{Count: 1 << 31}},
		},
		beaconpb.Queue_DeadLetters_FullMethodName: {&beaconpb.QueueDeadLettersRequest{Queue: "jobs", Limit: 10}},
		beaconpb.Queue_Redrive_FullMethodName:     {&beaconpb.QueueDeadRequest{Queue: "jobs", Ids: []string{"1"}}},
		beaconpb.Queue_PurgeDead_FullMethodName:   {&beaconpb.QueueDeadRequest{Queue: "jobs", All: true}},
		beaconpb.Queue_Wait_FullMethodName:        {&beaconpb.QueueWaitRequest{Queue: "jobs", Count: 1 << 40}},
		beaconpb.Config_Get_FullMethodName:        {&beaconpb.ConfigGetRequest{Key: "app/db"}},
		beaconpb.Config_Put_FullMethodName:        {&beaconpb.ConfigPutRequest{Key: "app/db", Value: []byte("dsn"), IfRevision: proto.Int64(0)}},
		beaconpb.Config_Delete_FullMethodName:     {&beaconpb.ConfigDeleteRequest{Key: "app/db", IfRevision: proto.Int64(3)}},
		beaconpb.Config_List_FullMethodName:       {&beaconpb.ConfigListRequest{Prefix: "app/", KeysOnly: true, Limit: -1}},
		beaconpb.Barrier_Leave_FullMethodName:     {&beaconpb.BarrierLeaveRequest{Name: "deploy", SessionId: SessionPlaceholder, Round: 1, Rev: 5}},
	}
}

// FuzzRequest unmarshals fuzzed bytes into the request of a method and
// sends it to a real agent: never a code that leaves the error
// unclassified, never a call past its deadline, and the agent answers a
// health check after each.
func FuzzRequest(f *testing.F) {
	methods, err := Methods()
	if err != nil {
		f.Fatal(err)
	}
	for name, reqs := range seeds() {
		for _, r := range reqs {
			b, err := proto.Marshal(r)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(name, b)
		}
		f.Add(name, []byte{})
	}
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		m := Pick(methods, name)
		req := m.NewRequest()
		if err := proto.Unmarshal(data, req); err != nil {
			return // not a request: gRPC itself would refuse the bytes
		}
		a := theAgent(t)
		start := time.Now()
		resp, code, err := a.Call(m, req)
		if Unclassified(code) {
			t.Fatalf("%s %v: %v", m.FullName, req, err)
		}
		if d := time.Since(start); d > CallTimeout+5*time.Second {
			t.Fatalf("%s %v: answered after %v, past its deadline of %v", m.FullName, req, d, CallTimeout)
		}
		if code == codes.OK {
			a.cleanUp(resp)
		}
		if err := a.Healthy(5 * time.Second); err != nil {
			t.Fatalf("after %s %v: health check: %v", m.FullName, req, err)
		}
	})
}

// TestMethodsCovered: every unary method the brief names is fuzzed, and
// every fuzzed method has a seed.
func TestMethodsCovered(t *testing.T) {
	methods, err := Methods()
	if err != nil {
		t.Fatal(err)
	}
	s := seeds()
	for _, m := range methods {
		if len(s[m.FullName]) == 0 {
			t.Errorf("%s has no seed", m.FullName)
		}
	}
	if len(methods) != len(s) {
		t.Errorf("%d methods fuzzed, %d seeded", len(methods), len(s))
	}
	fmt.Fprintf(os.Stderr, "%d methods fuzzed\n", len(methods))
}
