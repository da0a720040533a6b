package client

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"
)

// Scheme is the gRPC target scheme of beacon services: beacon:///payments,
// or beacon:///payments?tag=v2 for the instances with a tag.
const Scheme = "beacon"

type weightKey struct{}

// WeightOf is the SRV weight of an address the resolver produced (1 if it
// has none), for a weighted balancer.
func WeightOf(addr resolver.Address) uint32 {
	if w, ok := addr.BalancerAttributes.Value(weightKey{}).(uint32); ok {
		return w
	}
	return 1
}

// ResolverBuilder resolves beacon:/// targets through the local agent.
type ResolverBuilder struct {
	agentAddr string
}

// NewResolverBuilder returns a builder that asks the agent at agentAddr
// (see Addr); pass it with grpc.WithResolvers.
func NewResolverBuilder(agentAddr string) *ResolverBuilder {
	return &ResolverBuilder{agentAddr: agentAddr}
}

// RegisterResolver makes beacon:/// targets resolvable process-wide.
func RegisterResolver(agentAddr string) { resolver.Register(NewResolverBuilder(agentAddr)) }

// Scheme implements resolver.Builder.
func (b *ResolverBuilder) Scheme() string { return Scheme }

// Build starts watching the service's healthy instances.
func (b *ResolverBuilder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	service := strings.TrimPrefix(target.URL.Path, "/")
	if service == "" {
		service = target.URL.Host
	}
	if service == "" || strings.Contains(service, "/") {
		return nil, fmt.Errorf("beacon resolver: target %q: want beacon:///SERVICE[?tag=T]", target.URL.String())
	}
	c, err := New(b.agentAddr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &beaconResolver{
		c: c, cc: cc, cancel: cancel,
		req: &beaconpb.WatchRequest{Service: service, Tags: target.URL.Query()["tag"], HealthyOnly: true},
	}
	r.wg.Add(1)
	go r.run(ctx)
	return r, nil
}

type beaconResolver struct {
	c      *Client
	cc     resolver.ClientConn
	req    *beaconpb.WatchRequest
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// run keeps a watch open, re-opening it after errors, and pushes the
// instance set to gRPC on every change.
func (r *beaconResolver) run(ctx context.Context) {
	defer r.wg.Done()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		served, err := r.watch(ctx)
		if ctx.Err() != nil {
			return
		}
		if served {
			backoff = 100 * time.Millisecond // the watch worked; retry soon
		}
		r.cc.ReportError(fmt.Errorf("beacon resolver: watching %s: %w", r.req.Service, err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

// watch follows one Watch stream; served says whether it delivered
// anything before it ended.
func (r *beaconResolver) watch(ctx context.Context) (served bool, err error) {
	stream, err := r.c.Registry.Watch(ctx, r.req)
	if err != nil {
		return false, err
	}
	set := map[string]*beaconpb.Instance{}
	var parts map[string]*beaconpb.Instance // a snapshot arriving in parts
	for {
		msg, err := stream.Recv()
		if err != nil {
			return served, err
		}
		served = true
		switch msg.Type {
		case beaconpb.WatchResponse_SNAPSHOT:
			if parts == nil {
				parts = map[string]*beaconpb.Instance{}
			}
			for _, in := range msg.Instances {
				parts[in.Id] = in
			}
			if msg.More {
				continue // the channel hears of the whole set only
			}
			set, parts = parts, nil
		case beaconpb.WatchResponse_PUT:
			for _, in := range msg.Instances {
				set[in.Id] = in
			}
		case beaconpb.WatchResponse_DELETE:
			for _, in := range msg.Instances {
				delete(set, in.Id)
			}
		}
		if err := r.cc.UpdateState(resolver.State{Addresses: addresses(set)}); err != nil {
			// The channel rejected the state (e.g. no address yet with a
			// balancer that needs one); the next change tries again.
			continue
		}
	}
}

func addresses(set map[string]*beaconpb.Instance) []resolver.Address {
	out := make([]resolver.Address, 0, len(set))
	for _, in := range set {
		host := in.Address
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		out = append(out, resolver.Address{
			Addr:               fmt.Sprintf("%s:%d", host, in.Port),
			BalancerAttributes: attributes.New(weightKey{}, in.Weight),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out
}

// ResolveNow is a no-op: the watch already pushes every change.
func (r *beaconResolver) ResolveNow(resolver.ResolveNowOptions) {}

// Close stops the watch.
func (r *beaconResolver) Close() {
	r.cancel()
	r.wg.Wait()
	_ = r.c.Close()
}
