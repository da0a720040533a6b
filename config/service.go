package config

import (
	"context"
	"errors"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/rpcerr"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/status"
)

// snapshotChunk bounds the values in one snapshot message, well under
// gRPC's default 4 MiB receive limit (one value is at most 1 MiB).
const snapshotChunk = 2 << 20

// Service implements the gRPC Config service on a Store.
type Service struct {
	beaconpb.UnimplementedConfigServer
	store *Store
}

// NewService returns the Config service of store.
func NewService(store *Store) *Service { return &Service{store: store} }

// Get reads one key.
func (s *Service) Get(ctx context.Context, req *beaconpb.ConfigGetRequest) (*beaconpb.ConfigGetResponse, error) {
	e, rev, err := s.store.Get(ctx, req.Key)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	return &beaconpb.ConfigGetResponse{Entry: entryProto(e), Revision: rev}, nil
}

// Put writes one key, if asked only at a given revision.
func (s *Service) Put(ctx context.Context, req *beaconpb.ConfigPutRequest) (*beaconpb.ConfigPutResponse, error) {
	var opts []WriteOption
	if req.IfRevision != nil {
		opts = append(opts, IfRevision(req.GetIfRevision()))
	}
	rev, err := s.store.Put(ctx, req.Key, req.Value, opts...)
	if err != nil {
		return nil, writeError(s.store.cli, err)
	}
	return &beaconpb.ConfigPutResponse{Revision: rev}, nil
}

// Delete removes one key, if asked only at a given revision.
func (s *Service) Delete(ctx context.Context, req *beaconpb.ConfigDeleteRequest) (*beaconpb.ConfigDeleteResponse, error) {
	var opts []WriteOption
	if req.IfRevision != nil {
		opts = append(opts, IfRevision(req.GetIfRevision()))
	}
	deleted, rev, err := s.store.Delete(ctx, req.Key, opts...)
	if err != nil {
		return nil, writeError(s.store.cli, err)
	}
	return &beaconpb.ConfigDeleteResponse{Deleted: deleted, Revision: rev}, nil
}

// writeError adds the key's current revision to a revision mismatch as a
// detail, so that a client can retry without parsing the message.
func writeError(cli *clientv3.Client, err error) error {
	var re *RevisionError
	if errors.As(err, &re) {
		st := status.New(re.GRPCCode(), re.Error())
		if d, derr := st.WithDetails(&beaconpb.ConfigEntry{Key: re.Key, ModRevision: re.Current}); derr == nil {
			st = d
		}
		return st.Err()
	}
	return rpcerr.FromCluster(cli, err)
}

// List reads the keys under a prefix.
func (s *Service) List(ctx context.Context, req *beaconpb.ConfigListRequest) (*beaconpb.ConfigListResponse, error) {
	opts := []ListOption{Limit(req.Limit)}
	if req.KeysOnly {
		opts = append(opts, KeysOnly())
	}
	entries, rev, more, err := s.store.List(ctx, req.Prefix, opts...)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	resp := &beaconpb.ConfigListResponse{Revision: rev, More: more}
	for _, e := range entries {
		resp.Entries = append(resp.Entries, entryProto(e))
	}
	return resp, nil
}

// Watch streams a snapshot (in chunks) and the changes after it.
func (s *Service) Watch(req *beaconpb.ConfigWatchRequest, stream beaconpb.Config_WatchServer) error {
	err := s.store.Watch(stream.Context(), req.Prefix, req.FromRevision, func(u Update) error {
		for _, m := range UpdateProto(u) {
			if err := stream.Send(m); err != nil {
				return err
			}
		}
		return nil
	})
	return rpcerr.From(err)
}

// entryProto converts an Entry to its wire form.
func entryProto(e Entry) *beaconpb.ConfigEntry {
	return &beaconpb.ConfigEntry{Key: e.Key, Value: e.Value, CreateRevision: e.CreateRevision,
		ModRevision: e.ModRevision, Version: e.Version}
}

// entryFromProto converts an entry from its wire form.
func entryFromProto(p *beaconpb.ConfigEntry) Entry {
	return Entry{Key: p.GetKey(), Value: p.GetValue(), CreateRevision: p.GetCreateRevision(),
		ModRevision: p.GetModRevision(), Version: p.GetVersion()}
}

// UpdateProto turns an Update into watch messages: one for changes, one or
// more (all but the last with more set) for a snapshot.
func UpdateProto(u Update) []*beaconpb.ConfigWatchResponse {
	if !u.Snapshot {
		m := &beaconpb.ConfigWatchResponse{Type: beaconpb.ConfigWatchResponse_CHANGES, Revision: u.Revision}
		for _, c := range u.Changes {
			kind := beaconpb.ConfigChange_PUT
			if c.Kind == KindDelete {
				kind = beaconpb.ConfigChange_DELETE
			}
			m.Changes = append(m.Changes, &beaconpb.ConfigChange{Kind: kind, Entry: entryProto(c.Entry)})
		}
		return []*beaconpb.ConfigWatchResponse{m}
	}
	newMsg := func() *beaconpb.ConfigWatchResponse {
		return &beaconpb.ConfigWatchResponse{Type: beaconpb.ConfigWatchResponse_SNAPSHOT, Revision: u.Revision,
			Relisted: u.Relisted, CompactRevision: u.CompactRevision}
	}
	msgs := []*beaconpb.ConfigWatchResponse{newMsg()}
	size := 0
	for _, e := range u.Entries {
		n := len(e.Key) + len(e.Value) + 64
		if size > 0 && size+n > snapshotChunk {
			msgs[len(msgs)-1].More = true
			msgs = append(msgs, newMsg())
			size = 0
		}
		cur := msgs[len(msgs)-1]
		cur.Entries = append(cur.Entries, entryProto(e))
		size += n
	}
	return msgs
}
