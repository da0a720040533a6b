package lock

import (
	"context"
	"errors"
	"fmt"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/rpcerr"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Release gives a grant up; see the proto.
func (s *Service) Release(ctx context.Context, req *beaconpb.LockReleaseRequest) (*beaconpb.LockReleaseResponse, error) {
	if _, err := s.checkKey("key", req.Key, req.Token); err != nil {
		return nil, rpcerr.From(err)
	}
	// Only the holder's session may release: a key and token are no
	// secret (TryAcquire lists them), a session id is.
	if req.SessionId == "" {
		return nil, rpcerr.From(ErrNoSession)
	}
	sess, err := s.session(req.SessionId)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	if err := s.checkHolder(ctx, sess, req.Key, req.Token); err != nil {
		return nil, rpcerr.From(err)
	}
	// Mark the grant as being released before the delete commits, so a
	// Watch that sees the delete can tell a release from a loss.
	s.mu.Lock()
	g := s.grants[req.Key]
	if g != nil && (g.token != req.Token || g.release != nil) {
		g = nil
	}
	if g != nil {
		g.release = make(chan struct{})
	}
	s.mu.Unlock()
	err = s.hub.Release(ctx, s.cli, req.Key, req.Token)
	if g != nil {
		s.mu.Lock()
		g.released = err == nil
		if g.released && s.grants[g.key] == g {
			delete(s.grants, g.key)
		}
		close(g.release)
		s.mu.Unlock()
	}
	if err != nil {
		return nil, rpcerr.FromCluster(s.cli, err) // names a lost quorum
	}
	return &beaconpb.LockReleaseResponse{}, nil
}

// Watch follows a grant until it ends; see the proto.
func (s *Service) Watch(req *beaconpb.LockWatchRequest, stream beaconpb.Lock_WatchServer) error {
	if _, err := s.checkKey("key", req.Key, req.Token); err != nil {
		return rpcerr.From(err)
	}
	g := s.lookup(req.Key, req.Token)
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	if g != nil {
		// This agent learns of a lease change before etcd's delete event
		// can reach anyone: tell the holder at once.
		go func() {
			select {
			case <-g.lost:
				cancel(fmt.Errorf("%w: %s", ErrLost, g.reason))
			case <-ctx.Done():
			}
		}()
	}
	var held bool
	var sendErr error
	err := Watch(ctx, s.cli, req.Key, req.Token, func() {
		held = true
		sendErr = stream.Send(&beaconpb.LockEvent{State: beaconpb.LockState_LOCK_STATE_HELD, Key: req.Key, Token: req.Token})
		if sendErr != nil {
			cancel(sendErr)
		}
	})
	switch {
	case stream.Context().Err() != nil:
		return stream.Context().Err()
	case sendErr != nil:
		return sendErr
	case !held || !errors.Is(err, ErrLost):
		return rpcerr.From(err)
	}
	ev := &beaconpb.LockEvent{State: beaconpb.LockState_LOCK_STATE_LOST, Key: req.Key, Token: req.Token, Reason: err.Error()}
	if s.wasReleased(stream.Context(), g) {
		ev.State, ev.Reason = beaconpb.LockState_LOCK_STATE_RELEASED, "released"
	}
	return stream.Send(ev)
}

// wasReleased says whether this agent's Release ended g (waiting for a
// Release in flight to answer).
func (s *Service) wasReleased(ctx context.Context, g *grant) bool {
	if g == nil {
		return false
	}
	s.mu.Lock()
	rel := g.release
	s.mu.Unlock()
	if rel == nil {
		return false
	}
	select {
	case <-rel:
	case <-ctx.Done():
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return g.released
}

// Fenced runs ops only while the grant holds; see the proto.
func (s *Service) Fenced(ctx context.Context, req *beaconpb.LockFencedRequest) (*beaconpb.LockFencedResponse, error) {
	if err := s.checkFenceKey(req.Key, req.Token); err != nil {
		return nil, rpcerr.From(err)
	}
	if err := s.checkOps(req.Ops); err != nil {
		return nil, rpcerr.From(err)
	}
	ops := make([]clientv3.Op, len(req.Ops))
	for i, op := range req.Ops {
		switch op.Type {
		case beaconpb.LockOpType_LOCK_OP_PUT:
			ops[i] = clientv3.OpPut(op.Key, string(op.Value))
		case beaconpb.LockOpType_LOCK_OP_DELETE:
			ops[i] = clientv3.OpDelete(op.Key)
		default:
			ops[i] = clientv3.OpGet(op.Key)
		}
	}
	resp, err := Fenced(ctx, s.cli, req.Key, req.Token, ops...)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	out := &beaconpb.LockFencedResponse{Revision: resp.Header.Revision, Results: make([]*beaconpb.LockFencedResult, len(req.Ops))}
	for i, op := range req.Ops {
		r := &beaconpb.LockFencedResult{Key: op.Key}
		switch op.Type {
		case beaconpb.LockOpType_LOCK_OP_GET:
			if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) > 0 {
				r.Found, r.Value, r.ModRevision = true, kvs[0].Value, kvs[0].ModRevision
			}
		case beaconpb.LockOpType_LOCK_OP_DELETE:
			r.Deleted = resp.Responses[i].GetResponseDeleteRange().Deleted
		}
		out.Results[i] = r
	}
	return out, nil
}
