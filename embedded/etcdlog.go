package embedded

import (
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The embedded member's log at the agent's level. etcd tells at INFO what
// an etcd operator follows (raft elections, storage bootstrapping, every
// listener): 60 to 100 lines at each start, which buried the agent's own
// handful. At any agent level above debug, etcd's INFO lines are kept at
// debug, and so are the warnings and errors below, which a beacon user can
// do nothing about because beacon chose them or expects them; everything
// else etcd warns about still shows. At debug, etcd speaks as it is.
var quietEtcdMessages = map[string]func(fields []zapcore.Field) bool{
	// beacon serves gRPC and HTTP on the client URL on purpose (one port
	// per host, DESIGN.md).
	"Running http and grpc server on single port. This is not recommended for production.": always,
	// Simple tokens are only used under ACLs, with short TTLs, on the
	// members' own client URLs.
	"simple token is not cryptographically signed": always,
	// The listeners etcd closes during an orderly stop.
	"stopping insecure grpc server due to error": always,
	"stopped insecure grpc server due to error":  always,
	"stopping secure grpc server due to error":   always,
	"stopped secure grpc server due to error":    always,
	// A joining agent asks to be added and promoted until the cluster
	// agrees (see join.go): the leader's refusals until the new member
	// is connected and has caught up are part of every normal join.
	"rejecting member add request; local member has not been connected to majority peers, reconfigure breaks active quorum": always,
	"rejecting promote learner: learner is not ready":                                                                       always,
	"failed to promote a member": errorHas("can only promote a learner member which is in sync with leader"),
	// A member that has just joined has no term in its backend until it
	// applies its first entries; etcd's storage-version monitor tries
	// again later.
	"Failed to detect schema version":  errorHas("missing term information"),
	"failed to update storage version": errorHas("missing term information"),
}

func always([]zapcore.Field) bool { return true }

// errorHas matches an entry whose "error" field contains text.
func errorHas(text string) func([]zapcore.Field) bool {
	return func(fields []zapcore.Field) bool {
		for _, f := range fields {
			if f.Key != "error" {
				continue
			}
			if err, ok := f.Interface.(error); ok && strings.Contains(err.Error(), text) {
				return true
			}
			if strings.Contains(f.String, text) {
				return true
			}
		}
		return false
	}
}

// quietEtcd wraps etcd's logger so that, unless level is debug, etcd's
// INFO lines and quietEtcdMessages are logged at debug.
func quietEtcd(lg *zap.Logger, level string) *zap.Logger {
	if level == "debug" {
		return lg
	}
	return lg.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return quietCore{Core: c} }))
}

// quietCore lowers etcd's entries as quietEtcdMessages say. Which of them
// to lower can depend on their fields, which zap gives only to Write: such
// an entry is taken at its own level in Check and lowered, or dropped, in
// Write.
type quietCore struct {
	zapcore.Core
	with []zapcore.Field // fields added by With, for the predicates
}

func (q quietCore) With(fields []zapcore.Field) zapcore.Core {
	return quietCore{Core: q.Core.With(fields), with: append(q.with[:len(q.with):len(q.with)], fields...)}
}

func (q quietCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if ent.Level == zapcore.InfoLevel {
		ent.Level = zapcore.DebugLevel
		return q.Core.Check(ent, ce)
	}
	if quietEtcdMessages[ent.Message] != nil && q.Core.Enabled(ent.Level) {
		return ce.AddCore(ent, q)
	}
	return q.Core.Check(ent, ce)
}

func (q quietCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	if quiet := quietEtcdMessages[ent.Message]; quiet != nil && (quiet(fields) || quiet(q.with)) {
		ent.Level = zapcore.DebugLevel
		if !q.Core.Enabled(ent.Level) {
			return nil
		}
	}
	return q.Core.Write(ent, fields)
}
