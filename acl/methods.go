package acl

import (
	"strings"

	"github.com/beaconhq/beacon/api/beaconpb"
)

// access is how a method is let in.
type access int

const (
	byRequest access = iota // the request names what it needs (needs)
	anyToken                // any valid token: Session.Open, reflection
	open                    // no token: the standard health check
	bootstrap               // ACL.Bootstrap: the unix socket or a verified client certificate
)

// method is one RPC's ACL mapping.
type method struct {
	how   access
	needs func(ns string, req any) []Need // for byRequest
	// everyService says whether a request asks for every service's
	// instances (Registry.List and Watch without a service): any valid
	// token may, and sees the services its rules let it read.
	everyService func(req any) bool
}

func one(k Kind, a Access, name func(req any) string) method {
	return method{needs: func(_ string, req any) []Need { return []Need{{Kind: k, Name: name(req), Access: a}} }}
}

// every is a need on every name under prefix (all names: "").
func every(k Kind, a Access, prefix func(req any) string) method {
	return method{needs: func(_ string, req any) []Need {
		return []Need{{Kind: k, Name: prefix(req), Prefix: true, Access: a}}
	}}
}

func fixed(k Kind, name string, a Access) method {
	return method{needs: func(string, any) []Need { return []Need{{Kind: k, Name: name, Access: a}} }}
}

// Operator names: what each part of the operator kind covers.
const (
	OperatorCluster  = "cluster"  // Members, Status, Leave, RemoveMember
	OperatorACL      = "acl"      // tokens
	OperatorSnapshot = "snapshot" // etcd snapshots
	OperatorEtcd     = "etcd"     // fenced writes to keys outside the namespace
	OperatorAPI      = "api"      // a method this table does not know
)

// methods maps each method of api/beaconpb to what it needs. A method
// missing here needs operator:api:write: a new RPC is closed until it is
// mapped (default deny).
var methods = map[string]method{
	beaconpb.Registry_Register_FullMethodName: one(KindService, AccessWrite, func(r any) string {
		return serviceName(r.(*beaconpb.RegisterRequest).GetInstance().GetService())
	}),
	beaconpb.Registry_Deregister_FullMethodName: serviceOrEvery(AccessWrite, func(r any) string { return r.(*beaconpb.DeregisterRequest).Service }),
	beaconpb.Registry_Heartbeat_FullMethodName:  serviceOrEvery(AccessWrite, func(r any) string { return r.(*beaconpb.HeartbeatRequest).Service }),
	beaconpb.Registry_Get_FullMethodName:        one(KindService, AccessRead, func(r any) string { return serviceName(r.(*beaconpb.GetRequest).Service) }),
	beaconpb.Registry_List_FullMethodName:       serviceOrAll(func(r any) string { return r.(*beaconpb.ListRequest).Service }),
	beaconpb.Registry_Watch_FullMethodName:      serviceOrAll(func(r any) string { return r.(*beaconpb.WatchRequest).Service }),

	beaconpb.Lock_Acquire_FullMethodName:    one(KindLock, AccessWrite, func(r any) string { return r.(*beaconpb.LockAcquireRequest).Name }),
	beaconpb.Lock_TryAcquire_FullMethodName: one(KindLock, AccessWrite, func(r any) string { return r.(*beaconpb.LockAcquireRequest).Name }),
	beaconpb.Lock_Release_FullMethodName: {needs: func(ns string, r any) []Need {
		return []Need{{Kind: KindLock, Name: heldName(ns+"locks/", r.(*beaconpb.LockReleaseRequest).Key), Access: AccessWrite}}
	}},
	beaconpb.Lock_Watch_FullMethodName: {needs: func(ns string, r any) []Need {
		return []Need{{Kind: KindLock, Name: heldName(ns+"locks/", r.(*beaconpb.LockWatchRequest).Key), Access: AccessRead}}
	}},
	beaconpb.Lock_Fenced_FullMethodName: {needs: fencedNeeds},

	beaconpb.Election_Campaign_FullMethodName: one(KindElection, AccessWrite, func(r any) string { return r.(*beaconpb.ElectionCampaignRequest).Name }),
	beaconpb.Election_Proclaim_FullMethodName: one(KindElection, AccessWrite, func(r any) string { return r.(*beaconpb.ElectionProclaimRequest).Name }),
	beaconpb.Election_Resign_FullMethodName:   one(KindElection, AccessWrite, func(r any) string { return r.(*beaconpb.ElectionResignRequest).Name }),
	beaconpb.Election_Leader_FullMethodName:   one(KindElection, AccessRead, func(r any) string { return r.(*beaconpb.ElectionLeaderRequest).Name }),
	beaconpb.Election_Observe_FullMethodName:  one(KindElection, AccessRead, func(r any) string { return r.(*beaconpb.ElectionObserveRequest).Name }),
	beaconpb.Election_WatchLeadership_FullMethodName: one(KindElection, AccessRead, func(r any) string {
		return r.(*beaconpb.ElectionWatchLeadershipRequest).Name
	}),

	// Barriers have no kind of their own (DESIGN.md's kinds are fixed):
	// they are the lock kind's, named barriers/<name>, a name no lock can
	// have (a lock name holds no '/'). See BarrierRuleName.
	beaconpb.Barrier_Enter_FullMethodName: one(KindLock, AccessWrite, func(r any) string {
		return BarrierRuleName(r.(*beaconpb.BarrierEnterRequest).Name)
	}),
	beaconpb.Barrier_Leave_FullMethodName: one(KindLock, AccessWrite, func(r any) string {
		return BarrierRuleName(r.(*beaconpb.BarrierLeaveRequest).Name)
	}),
	beaconpb.Barrier_WaitLeft_FullMethodName: one(KindLock, AccessRead, func(r any) string {
		return BarrierRuleName(r.(*beaconpb.BarrierWaitLeftRequest).Name)
	}),

	beaconpb.Queue_Enqueue_FullMethodName:     one(KindQueue, AccessWrite, func(r any) string { return r.(*beaconpb.QueueEnqueueRequest).Queue }),
	beaconpb.Queue_Reserve_FullMethodName:     one(KindQueue, AccessWrite, func(r any) string { return r.(*beaconpb.QueueReserveRequest).Queue }),
	beaconpb.Queue_Ack_FullMethodName:         one(KindQueue, AccessWrite, func(r any) string { return receiptQueue(r.(*beaconpb.QueueAckRequest).Receipt) }),
	beaconpb.Queue_Nack_FullMethodName:        one(KindQueue, AccessWrite, func(r any) string { return receiptQueue(r.(*beaconpb.QueueNackRequest).Receipt) }),
	beaconpb.Queue_Extend_FullMethodName:      one(KindQueue, AccessWrite, func(r any) string { return receiptQueue(r.(*beaconpb.QueueExtendRequest).Receipt) }),
	beaconpb.Queue_Progress_FullMethodName:    one(KindQueue, AccessWrite, func(r any) string { return receiptQueue(r.(*beaconpb.QueueProgressRequest).Receipt) }),
	beaconpb.Queue_Stats_FullMethodName:       one(KindQueue, AccessRead, func(r any) string { return r.(*beaconpb.QueueStatsRequest).Queue }),
	beaconpb.Queue_DeadLetters_FullMethodName: one(KindQueue, AccessRead, func(r any) string { return r.(*beaconpb.QueueDeadLettersRequest).Queue }),
	beaconpb.Queue_Redrive_FullMethodName:     one(KindQueue, AccessWrite, func(r any) string { return r.(*beaconpb.QueueDeadRequest).Queue }),
	beaconpb.Queue_PurgeDead_FullMethodName:   one(KindQueue, AccessWrite, func(r any) string { return r.(*beaconpb.QueueDeadRequest).Queue }),
	beaconpb.Queue_Wait_FullMethodName:        one(KindQueue, AccessRead, func(r any) string { return r.(*beaconpb.QueueWaitRequest).Queue }),
	beaconpb.Queue_Gate_FullMethodName:        {needs: gateNeeds},

	beaconpb.Config_Get_FullMethodName:    one(KindConfig, AccessRead, func(r any) string { return r.(*beaconpb.ConfigGetRequest).Key }),
	beaconpb.Config_Put_FullMethodName:    one(KindConfig, AccessWrite, func(r any) string { return r.(*beaconpb.ConfigPutRequest).Key }),
	beaconpb.Config_Delete_FullMethodName: one(KindConfig, AccessWrite, func(r any) string { return r.(*beaconpb.ConfigDeleteRequest).Key }),
	beaconpb.Config_List_FullMethodName:   every(KindConfig, AccessRead, func(r any) string { return r.(*beaconpb.ConfigListRequest).Prefix }),
	beaconpb.Config_Watch_FullMethodName:  every(KindConfig, AccessRead, func(r any) string { return r.(*beaconpb.ConfigWatchRequest).Prefix }),

	beaconpb.Cluster_Members_FullMethodName:      fixed(KindOperator, OperatorCluster, AccessRead),
	beaconpb.Cluster_Status_FullMethodName:       fixed(KindOperator, OperatorCluster, AccessRead),
	beaconpb.Cluster_Leave_FullMethodName:        fixed(KindOperator, OperatorCluster, AccessWrite),
	beaconpb.Cluster_RemoveMember_FullMethodName: fixed(KindOperator, OperatorCluster, AccessWrite),

	beaconpb.Session_Open_FullMethodName: {how: anyToken},

	beaconpb.ACL_Bootstrap_FullMethodName:   {how: bootstrap},
	beaconpb.ACL_TokenCreate_FullMethodName: fixed(KindOperator, OperatorACL, AccessWrite),
	beaconpb.ACL_TokenList_FullMethodName:   fixed(KindOperator, OperatorACL, AccessRead),
	beaconpb.ACL_TokenRevoke_FullMethodName: fixed(KindOperator, OperatorACL, AccessWrite),

	"/grpc.health.v1.Health/Check":                                   {how: open},
	"/grpc.health.v1.Health/Watch":                                   {how: open},
	"/grpc.health.v1.Health/List":                                    {how: open},
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      {how: anyToken},
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": {how: anyToken},
}

// BarrierRuleName is the name a lock: rule gives a barrier:
// lock:barriers/deploy:write lets a token enter and leave the barrier
// deploy, lock:barriers/*:read wait for any barrier's participants to
// leave.
func BarrierRuleName(name string) string { return "barriers/" + name }

var unmapped = fixed(KindOperator, OperatorAPI, AccessWrite)

func methodOf(full string) method {
	if m, ok := methods[full]; ok {
		return m
	}
	return unmapped
}

// serviceOrAll: one service's instances (service:<name>:read), or with
// no service every one, filtered by the token's rules (filter.go).
func serviceOrAll(name func(any) string) method {
	return method{needs: func(_ string, r any) []Need {
		if n := serviceName(name(r)); n != "" {
			return []Need{{Kind: KindService, Name: n, Access: AccessRead}}
		}
		return nil
	}, everyService: func(r any) bool { return serviceName(name(r)) == "" }}
}

// serviceOrEvery needs a on the request's service, or, when it names
// none (the registry then finds the instance by its id alone, under any
// service), on every service: service:*:write with service:payments:read
// must not deregister a payments instance by leaving the service out.
func serviceOrEvery(a Access, name func(any) string) method {
	return method{needs: func(_ string, r any) []Need {
		if n := serviceName(name(r)); n != "" {
			return []Need{{Kind: KindService, Name: n, Access: a}}
		}
		return []Need{{Kind: KindService, Name: "", Prefix: true, Access: a}}
	}}
}

// serviceName is a service's name as the registry keeps it (lower case),
// so that a token's rules see the name that is written: "PAYMENTS" is
// payments.
func serviceName(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// heldName is the name in a held key (<root><name>/<lease id>), cut as
// the lock service cuts it. A key that is not one gives "" (only a '*'
// rule covers it), and the service then refuses it as INVALID_ARGUMENT.
func heldName(root, key string) string {
	rest, ok := strings.CutPrefix(key, root)
	i := strings.LastIndexByte(rest, '/')
	if !ok || i < 0 {
		return ""
	}
	return rest[:i]
}

// receiptQueue is the queue a receipt (QUEUE/SEQ/KEY/REV) names.
func receiptQueue(receipt string) string {
	q, _, _ := strings.Cut(receipt, "/")
	return q
}

// fencedNeeds: the grant's lock (or the leadership's election), write;
// and each operation's key: under config/ the config key, elsewhere in
// etcd operator:etcd (beacon's own state is refused by the service).
func fencedNeeds(ns string, r any) []Need {
	req := r.(*beaconpb.LockFencedRequest)
	var needs []Need
	if strings.HasPrefix(req.Key, ns+"elections/") {
		needs = append(needs, Need{Kind: KindElection, Name: heldName(ns+"elections/", req.Key), Access: AccessWrite})
	} else {
		needs = append(needs, Need{Kind: KindLock, Name: heldName(ns+"locks/", req.Key), Access: AccessWrite})
	}
	for _, op := range req.Ops {
		a := AccessWrite
		if op.GetType() == beaconpb.LockOpType_LOCK_OP_GET {
			a = AccessRead
		}
		if key, ok := strings.CutPrefix(op.Key, ns+"config/"); ok {
			needs = append(needs, Need{Kind: KindConfig, Name: key, Access: a})
		} else if !strings.HasPrefix(op.Key, ns) {
			needs = append(needs, Need{Kind: KindOperator, Name: OperatorEtcd, Access: a})
		}
	}
	return needs
}

// needsOf is what req, a request of method m, needs. A request of another
// type than the method's (which gRPC never hands over) needs the
// operator's api:write rather than stopping the agent.
func (m method) needsOf(ns string, req any) (needs []Need) {
	defer func() {
		if recover() != nil {
			needs = unmapped.needs(ns, req)
		}
	}()
	return m.needs(ns, req)
}

// gateNeeds: reading a queue's gate is queue:Q:read; setting it,
// queue:Q:write, and for a key condition config:KEY:read as well (an open
// gate would tell the key's value).
func gateNeeds(_ string, r any) []Need {
	req := r.(*beaconpb.QueueGateRequest)
	if req.Condition == nil {
		return []Need{{Kind: KindQueue, Name: req.Queue, Access: AccessRead}}
	}
	needs := []Need{{Kind: KindQueue, Name: req.Queue, Access: AccessWrite}}
	if k := req.GetKey(); k != nil {
		needs = append(needs, Need{Kind: KindConfig, Name: k.GetKey(), Access: AccessRead})
	}
	return needs
}
