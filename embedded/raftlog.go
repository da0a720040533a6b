package embedded

import "go.etcd.io/etcd/server/v3/embed"

// How many raft entries a member holds in memory. etcd keeps every entry
// since its last in-memory snapshot (taken every 100 applies) plus
// SnapshotCatchUpEntries before it, so that a follower a little behind is
// sent entries rather than the whole database; at a restart it replays
// into memory the WAL since its last disk snapshot, taken every
// SnapshotCount entries. Entries are counted, not weighed, and one can
// hold a request of up to etcd's max-request-bytes (1.5 MiB): with etcd's
// defaults (10,000 and 5,000) a run of 1 MiB puts held about 5 GiB, and a
// restart could replay 10 GiB.
//
// 1,000 each bound that to about 1,100 entries running (1.1 GiB of 1 MiB
// values at the worst, 1.6 GiB of requests of the largest size) and 1,000
// replayed. The price: a follower more than 1,000 entries behind the
// leader (a second or so of beacon's heaviest write rates on a small
// host, or a member restarting after a pause) is sent a snapshot of the
// database instead of the entries it missed; a disk snapshot every 1,000
// entries costs a backend commit and a small file, which etcd 3.6+ makes
// cheap (the raft snapshot holds only the membership).
const (
	DefaultSnapshotCount          = 1000
	DefaultSnapshotCatchUpEntries = 1000
)

// applyRaftLog sets the member's snapshot count and catch-up entries.
func applyRaftLog(cfg *embed.Config, o Options) {
	cfg.SnapshotCount = DefaultSnapshotCount
	if o.SnapshotCount > 0 {
		cfg.SnapshotCount = o.SnapshotCount
	}
	cfg.SnapshotCatchUpEntries = DefaultSnapshotCatchUpEntries
	if o.SnapshotCatchUpEntries > 0 {
		cfg.SnapshotCatchUpEntries = o.SnapshotCatchUpEntries
	}
}

// DefaultQuotaBackendBytes is the member's backend quota unless set:
// etcd's own default, 2 GiB. Past it etcd refuses every write that adds
// bytes until an operator disarms its alarm; dataquota keeps the last
// part of it for coordination.
const DefaultQuotaBackendBytes = 2 << 30

// applyQuota sets the member's backend quota.
func applyQuota(cfg *embed.Config, o Options) {
	cfg.QuotaBackendBytes = DefaultQuotaBackendBytes
	if o.QuotaBackendBytes > 0 {
		cfg.QuotaBackendBytes = o.QuotaBackendBytes
	}
}
