package config

import (
	"context"
	"errors"
	"io"

	"github.com/beaconhq/beacon/api/beaconpb"
)

// Remote is a Source on an agent's gRPC Config service: what the CLI, the
// Go SDK and anything off the agent watch through.
type Remote struct {
	c beaconpb.ConfigClient
}

// NewRemote returns a Source that watches through c.
func NewRemote(c beaconpb.ConfigClient) *Remote { return &Remote{c: c} }

// Watch implements Source: it reassembles chunked snapshots and hands
// each complete Update to fn.
func (r *Remote) Watch(ctx context.Context, prefix string, fromRev int64, fn func(Update) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := r.c.Watch(ctx, &beaconpb.ConfigWatchRequest{Prefix: prefix, FromRevision: fromRev})
	if err != nil {
		return err
	}
	var snap *Update
	for {
		m, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return errWatchClosed
			}
			return err
		}
		if m.Type == beaconpb.ConfigWatchResponse_CHANGES {
			u := Update{Revision: m.Revision}
			for _, c := range m.Changes {
				kind := KindPut
				if c.Kind == beaconpb.ConfigChange_DELETE {
					kind = KindDelete
				}
				u.Changes = append(u.Changes, Change{Kind: kind, Entry: entryFromProto(c.Entry)})
			}
			if err := fn(u); err != nil {
				return err
			}
			continue
		}
		if snap == nil || snap.Revision != m.Revision {
			snap = &Update{Snapshot: true, Revision: m.Revision, Relisted: m.Relisted, CompactRevision: m.CompactRevision}
		}
		for _, e := range m.Entries {
			snap.Entries = append(snap.Entries, entryFromProto(e))
		}
		if !m.More {
			u := *snap
			snap = nil
			if err := fn(u); err != nil {
				return err
			}
		}
	}
}
