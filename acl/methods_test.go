package acl

import (
	"reflect"
	"testing"

	"github.com/beaconhq/beacon/api/beaconpb"
	"google.golang.org/grpc"
)

// apiMethods are the full names of every method of every beacon service.
func apiMethods() []string {
	var out []string
	for _, sd := range []grpc.ServiceDesc{beaconpb.Registry_ServiceDesc, beaconpb.Lock_ServiceDesc, beaconpb.Election_ServiceDesc,
		beaconpb.Queue_ServiceDesc, beaconpb.Config_ServiceDesc, beaconpb.Cluster_ServiceDesc, beaconpb.Session_ServiceDesc,
		beaconpb.ACL_ServiceDesc} {
		for _, m := range sd.Methods {
			out = append(out, "/"+sd.ServiceName+"/"+m.MethodName)
		}
		for _, s := range sd.Streams {
			out = append(out, "/"+sd.ServiceName+"/"+s.StreamName)
		}
	}
	return out
}

func TestMethodNeeds(t *testing.T) {
	const ns = "/beacon/"
	for _, tc := range []struct {
		method string
		req    any
		want   []string
	}{
		{beaconpb.Lock_Acquire_FullMethodName, &beaconpb.LockAcquireRequest{Name: "batch-1"}, []string{"lock:batch-1:write"}},
		{beaconpb.Lock_Release_FullMethodName, &beaconpb.LockReleaseRequest{Key: ns + "locks/payments/1a2b"}, []string{"lock:payments:write"}},
		{beaconpb.Lock_Release_FullMethodName, &beaconpb.LockReleaseRequest{Key: "/x/locks/payments/1a2b"}, []string{"lock::write"}},
		{beaconpb.Lock_Fenced_FullMethodName, &beaconpb.LockFencedRequest{Key: ns + "elections/sched/1a", Ops: []*beaconpb.LockFencedOp{
			{Type: beaconpb.LockOpType_LOCK_OP_PUT, Key: ns + "config/app/x"},
			{Type: beaconpb.LockOpType_LOCK_OP_GET, Key: "/outside/y"},
		}}, []string{"election:sched:write", "config:app/x:write", "operator:etcd:read"}},
		{beaconpb.Barrier_Enter_FullMethodName, &beaconpb.BarrierEnterRequest{Name: "deploy"}, []string{"lock:barriers/deploy:write"}},
		{beaconpb.Barrier_Leave_FullMethodName, &beaconpb.BarrierLeaveRequest{Name: "deploy"}, []string{"lock:barriers/deploy:write"}},
		{beaconpb.Barrier_WaitLeft_FullMethodName, &beaconpb.BarrierWaitLeftRequest{Name: "deploy"}, []string{"lock:barriers/deploy:read"}},
		{beaconpb.Registry_List_FullMethodName, &beaconpb.ListRequest{}, nil}, // any token; filtered (filter.go)
		{beaconpb.Registry_Register_FullMethodName, &beaconpb.RegisterRequest{Instance: &beaconpb.Instance{Service: "web"}}, []string{"service:web:write"}},
		{beaconpb.Registry_Register_FullMethodName, &beaconpb.RegisterRequest{}, []string{"service::write"}},
		{beaconpb.Registry_Register_FullMethodName, &beaconpb.RegisterRequest{Instance: &beaconpb.Instance{Service: " PAYMENTS"}}, []string{"service:payments:write"}},
		{beaconpb.Registry_Deregister_FullMethodName, &beaconpb.DeregisterRequest{Service: "Payments"}, []string{"service:payments:write"}},
		{beaconpb.Registry_Deregister_FullMethodName, &beaconpb.DeregisterRequest{Id: "p1"}, []string{"service:*:write"}},
		{beaconpb.Registry_Heartbeat_FullMethodName, &beaconpb.HeartbeatRequest{Id: "p1"}, []string{"service:*:write"}},
		{beaconpb.Queue_Ack_FullMethodName, &beaconpb.QueueAckRequest{Receipt: "jobs/4/abc/9"}, []string{"queue:jobs:write"}},
		{beaconpb.Queue_Gate_FullMethodName, &beaconpb.QueueGateRequest{Queue: "jobs"}, []string{"queue:jobs:read"}},
		{beaconpb.Queue_Gate_FullMethodName, &beaconpb.QueueGateRequest{Queue: "jobs", Condition: &beaconpb.QueueGateRequest_Key{Key: &beaconpb.QueueGateKey{Key: "app/go"}}},
			[]string{"queue:jobs:write", "config:app/go:read"}},
		{beaconpb.Config_List_FullMethodName, &beaconpb.ConfigListRequest{Prefix: "app/"}, []string{"config:app/*:read"}},
		{beaconpb.Cluster_Leave_FullMethodName, &beaconpb.LeaveRequest{}, []string{"operator:cluster:write"}},
		{beaconpb.Cluster_Members_FullMethodName, &beaconpb.MembersRequest{}, []string{"operator:cluster:read"}},
		{beaconpb.ACL_TokenList_FullMethodName, &beaconpb.ACLTokenListRequest{}, []string{"operator:acl:read"}},
	} {
		var got []string
		for _, n := range methodOf(tc.method).needsOf(ns, tc.req) {
			got = append(got, n.String())
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s %v: needs %v; want %v", tc.method, tc.req, got, tc.want)
		}
	}
}
