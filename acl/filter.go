package acl

import (
	"context"

	"github.com/beaconhq/beacon/api/beaconpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// A listing of every service (Registry.List or Watch without a service,
// `beacon services`) answers a token the instances of the services it may
// read, as Consul filters its catalog listings, rather than refusing it
// for lacking service:*:read.

// everyService is the need of a token that sees every service unfiltered.
var everyService = Need{Kind: KindService, Prefix: true, Access: AccessRead}

// listFilter is the policy to filter a listing of every service by; nil
// when nothing needs filtering (the operator, a token that reads every
// service, a request for one service).
func (g *Gate) listFilter(ctx context.Context, m method, req any) *Policy {
	if m.everyService == nil || !m.everyService(req) || fromOperatorSocket(ctx) {
		return nil
	}
	a := g.auth.Load()
	if a == nil {
		return nil // check refused the call already
	}
	pol, err := a.Policy(tokenFromContext(ctx))
	if err != nil || pol.Allows(everyService) {
		return nil
	}
	return pol
}

func visible(pol *Policy, in *beaconpb.Instance) bool {
	return pol.Allows(Need{Kind: KindService, Name: in.GetService(), Access: AccessRead})
}

// listVisible answers a List of every service with the instances pol may
// read. The registry pages by instance; a page filtered down may be short,
// so further pages are read until the page is full or the catalog ends:
// a client paging by the last instance it got still sees every visible
// one.
func listVisible(ctx context.Context, req *beaconpb.ListRequest, handler grpc.UnaryHandler, pol *Policy) (any, error) {
	page := proto.Clone(req).(*beaconpb.ListRequest)
	out := &beaconpb.ListResponse{}
	for first := true; ; first = false {
		r, err := handler(ctx, page)
		if err != nil {
			return nil, err
		}
		resp := r.(*beaconpb.ListResponse)
		if first {
			out.Revision = resp.Revision
		}
		for _, in := range resp.Instances {
			if !visible(pol, in) {
				continue
			}
			if req.Limit > 0 && len(out.Instances) == int(req.Limit) {
				out.More = true
				return out, nil
			}
			out.Instances = append(out.Instances, in)
		}
		if !resp.More || len(resp.Instances) == 0 {
			return out, nil
		}
		last := resp.Instances[len(resp.Instances)-1]
		page.StartAfter = last.Service + "/" + last.Id
	}
}

// filterWatch is a Watch message without the instances pol may not read
// (a copy: the registry may share a message among streams); send is false
// when nothing is left of a change (a snapshot part is always sent: the
// client counts on its end marker).
func filterWatch(pol *Policy, msg any) (filtered any, send bool) {
	w, ok := msg.(*beaconpb.WatchResponse)
	if !ok {
		return msg, true
	}
	var kept []*beaconpb.Instance
	for _, in := range w.Instances {
		if visible(pol, in) {
			kept = append(kept, in)
		}
	}
	if len(kept) == len(w.Instances) {
		return msg, true
	}
	c := proto.Clone(w).(*beaconpb.WatchResponse)
	c.Instances = kept
	return c, len(kept) > 0 || w.Type == beaconpb.WatchResponse_SNAPSHOT
}
