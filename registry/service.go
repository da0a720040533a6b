package registry

import (
	"cmp"
	"context"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/healthcheck"
	"github.com/beaconhq/beacon/internal/apiduration"
	"github.com/beaconhq/beacon/internal/rpcerr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Service implements the Registry gRPC service on one agent: writes go to
// this agent's Local, reads come from its Catalog.
type Service struct {
	beaconpb.UnimplementedRegistryServer
	local   *Local
	catalog *Catalog
}

// NewService returns the Registry service.
func NewService(local *Local, catalog *Catalog) *Service {
	return &Service{local: local, catalog: catalog}
}

// Register adds an instance on this agent's node.
func (s *Service) Register(ctx context.Context, req *beaconpb.RegisterRequest) (*beaconpb.RegisterResponse, error) {
	if req.Instance == nil {
		return nil, status.Error(codes.InvalidArgument, "instance: required")
	}
	check, err := checkFromProto(req.Check)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	owner, err := s.local.ownerOf(req.SessionId)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	in, rev, err := s.local.Register(ctx, instanceFromProto(req.Instance), check, owner)
	if err != nil {
		return nil, rpcerr.FromCluster(s.local.cli, err)
	}
	return &beaconpb.RegisterResponse{Instance: in.Proto(), Revision: rev}, nil
}

// Deregister removes an instance registered on this agent.
func (s *Service) Deregister(ctx context.Context, req *beaconpb.DeregisterRequest) (*beaconpb.DeregisterResponse, error) {
	if req.Id == "" {
		return nil, status.Error(codes.InvalidArgument, "id: required")
	}
	caller, err := s.local.ownerOf(req.SessionId)
	if err == nil {
		err = s.local.DeregisterAs(ctx, caller, req.Service, req.Id)
	}
	if err != nil {
		return nil, rpcerr.FromCluster(s.local.cli, err)
	}
	return &beaconpb.DeregisterResponse{}, nil
}

// Heartbeat reports a TTL check's status.
func (s *Service) Heartbeat(_ context.Context, req *beaconpb.HeartbeatRequest) (*beaconpb.HeartbeatResponse, error) {
	caller, err := s.local.ownerOf(req.SessionId)
	if err == nil {
		err = s.local.Heartbeat(caller, req.Service, req.Id, req.Status, req.Output)
	}
	if err != nil {
		return nil, rpcerr.From(err)
	}
	return &beaconpb.HeartbeatResponse{}, nil
}

// Get reads one instance from the catalog.
func (s *Service) Get(_ context.Context, req *beaconpb.GetRequest) (*beaconpb.Instance, error) {
	in, ok := s.catalog.Instance(strings.ToLower(req.Service), strings.ToLower(req.Id))
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no instance %q of service %q", req.Id, req.Service)
	}
	return in.Proto(), nil
}

// List reads instances from the catalog, a page at a time when asked.
func (s *Service) List(_ context.Context, req *beaconpb.ListRequest) (*beaconpb.ListResponse, error) {
	if req.Limit < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "limit: %d is not a count of instances", req.Limit)
	}
	afterService, afterID, paged := strings.Cut(strings.ToLower(req.StartAfter), "/") // names and ids are kept lower-case
	if req.StartAfter != "" && (!paged || afterService == "") {
		return nil, status.Errorf(codes.InvalidArgument, "start_after: %q is not service/id", req.StartAfter)
	}
	match := matcher(req.Service, req.Tags, req.HealthyOnly, req.IncludeWarning)
	rev := s.catalog.Revision()
	var names []string
	if req.Service != "" {
		names = []string{strings.ToLower(req.Service)}
	} else {
		names = s.catalog.Services()
	}
	resp := &beaconpb.ListResponse{Revision: rev}
	size := 0 // of a page's instances, encoded
	for _, name := range names {
		if paged && name < afterService {
			continue
		}
		list := s.catalog.Service(name)
		if paged && name == afterService {
			list = list[sort.Search(len(list), func(i int) bool { return list[i].ID > afterID }):]
		}
		for _, in := range list {
			if !match(in) {
				continue
			}
			if req.Limit > 0 && (len(resp.Instances) == int(req.Limit) || size > listPageBytes) {
				resp.More = true
				return resp, nil
			}
			p := in.Proto()
			resp.Instances = append(resp.Instances, p)
			if req.Limit > 0 {
				size += proto.Size(p) + 4
			}
		}
	}
	return resp, nil
}

// snapshotPart is the most a part of a Watch snapshot holds, in bytes:
// well under gRPC's default 4 MB limit on what a client receives. A page
// of List stops after listPageBytes too, whatever its limit: 5000
// instances with 64 KiB of meta each would be 320 MB.
const (
	snapshotPart  = 1 << 20
	listPageBytes = 1 << 20
)

// Watch streams a snapshot, then every change in revision order. A
// watcher that leaves more than 4096 changes unread is cut off with
// ResourceExhausted (ErrWatchBehind): every send goes through its
// subscription, so the cut comes even while a send to a client that does
// not read is blocked, and the handler returns, releasing what it held.
func (s *Service) Watch(req *beaconpb.WatchRequest, stream beaconpb.Registry_WatchServer) error {
	match := matcher(req.Service, req.Tags, req.HealthyOnly, req.IncludeWarning)
	ctx := stream.Context()
	select {
	case <-s.catalog.Ready():
	case <-ctx.Done():
		return ctx.Err()
	}
	snap, rev, sub := s.catalog.Subscribe(match)
	defer s.catalog.Unsubscribe(sub)
	slices.SortFunc(snap, func(a, b *Instance) int {
		return cmp.Or(strings.Compare(a.Service, b.Service), strings.Compare(a.ID, b.ID))
	})
	send := func(m *beaconpb.WatchResponse) error {
		return sub.Send(ctx, func() error { return stream.Send(m) })
	}
	if err := sendSnapshot(send, snap, rev); err != nil {
		return err
	}
	return sub.Forward(ctx, func(ev Event) error {
		t := beaconpb.WatchResponse_PUT
		if ev.Type == EventDelete {
			t = beaconpb.WatchResponse_DELETE
		}
		// Forward runs this through the subscription's Send already.
		return stream.Send(&beaconpb.WatchResponse{Type: t, Instances: []*beaconpb.Instance{ev.Instance.Proto()}, Revision: ev.Revision})
	})
}

// sendSnapshot sends snap in parts of at most snapshotPart bytes (one
// part, empty or not, at the least).
func sendSnapshot(send func(*beaconpb.WatchResponse) error, snap []*Instance, rev int64) error {
	msg := &beaconpb.WatchResponse{Type: beaconpb.WatchResponse_SNAPSHOT, Revision: rev}
	size := 0
	for _, in := range snap {
		p := in.Proto()
		n := proto.Size(p) + 4 // and the field's tag and length
		if size+n > snapshotPart && len(msg.Instances) > 0 {
			msg.More = true
			if err := send(msg); err != nil {
				return err
			}
			msg = &beaconpb.WatchResponse{Type: beaconpb.WatchResponse_SNAPSHOT, Revision: rev}
			size = 0
		}
		msg.Instances = append(msg.Instances, p)
		size += n
	}
	return send(msg)
}

func matcher(service string, tags []string, healthyOnly, includeWarning bool) func(*Instance) bool {
	service = strings.ToLower(service)
	return func(in *Instance) bool {
		return (service == "" || in.Service == service) && in.hasTags(tags) && (!healthyOnly || in.Healthy(includeWarning))
	}
}

// Proto converts an instance for the API.
func (in *Instance) Proto() *beaconpb.Instance {
	return &beaconpb.Instance{
		Id: in.ID, Service: in.Service, Node: in.Node, Address: in.Address, Port: uint32(in.Port),
		Tags: in.Tags, Meta: in.Meta, Weight: uint32(in.Weight), Priority: uint32(in.Priority),
		Status: in.Status, Output: in.Output,
	}
}

func instanceFromProto(p *beaconpb.Instance) Instance {
	return Instance{
		ID: p.Id, Service: p.Service, Address: p.Address, Port: clampInt(p.Port),
		Tags: append([]string(nil), p.Tags...), Meta: p.Meta, Weight: clampInt(p.Weight), Priority: clampInt(p.Priority),
	}
}

// clampInt keeps out-of-range uint32s out of range as ints, so validation
// rejects them instead of seeing them wrap.
func clampInt(v uint32) int {
	if v > 1<<20 {
		return 1 << 20
	}
	return int(v)
}

// The check's duration fields (internal/apiduration): absent or zero is
// healthcheck's default (no TTL check, a 10s interval, a 5s timeout, never
// deregistered); healthcheck.Definition.Normalize checks the rest (an
// interval of at least 100ms, a TTL only without a probe…).
var (
	checkTTLField        = apiduration.Field{Name: "check.ttl", Max: healthcheck.MaxTTL}
	checkIntervalField   = apiduration.Field{Name: "check.interval", Max: healthcheck.MaxInterval}
	checkTimeoutField    = apiduration.Field{Name: "check.timeout", Max: healthcheck.MaxInterval}
	checkDeregisterField = apiduration.Field{Name: "check.deregister_critical_after", Max: healthcheck.MaxDeregisterCriticalAfter}
)

func checkFromProto(c *beaconpb.Check) (healthcheck.Definition, error) {
	var d healthcheck.Definition
	if c == nil {
		return d, nil
	}
	d.HTTP, d.TCP, d.GRPC = c.Http, c.Tcp, c.Grpc
	d.SuccessBeforePassing, d.FailuresBeforeCritical = int(c.SuccessBeforePassing), int(c.FailuresBeforeCritical)
	for _, f := range []struct {
		field apiduration.Field
		pb    *durationpb.Duration
		dst   *time.Duration
	}{{checkTTLField, c.Ttl, &d.TTL}, {checkIntervalField, c.Interval, &d.Interval}, {checkTimeoutField, c.Timeout, &d.Timeout},
		{checkDeregisterField, c.DeregisterCriticalAfter, &d.DeregisterCriticalAfter}} {
		v, err := f.field.Read(f.pb)
		if err != nil {
			return d, err
		}
		*f.dst = v
	}
	return d, nil
}
