package embedded

import (
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// stopCause remembers why the embedded etcd server stopped on its own.
// etcd reports it only as a "server error" log entry (for instance "the
// member has been permanently removed from the cluster"), so a thin core
// around the logger catches that entry whatever the log level.
type stopCause struct {
	zapcore.Core
	shared *stopCauseValue
}

type stopCauseValue struct {
	mu  sync.Mutex
	err string
}

// closingNoise is the message etcd logs as an error for each listener it
// closes during an orderly stop.
const closingNoise = "setting up serving from embedded etcd failed."

func newStopCause(lg *zap.Logger) (*zap.Logger, *stopCauseValue) {
	v := &stopCauseValue{}
	wrapped := lg.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return &stopCause{Core: c, shared: v}
	}))
	return wrapped, v
}

func (v *stopCauseValue) get() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.err
}

func (c *stopCause) With(fields []zapcore.Field) zapcore.Core {
	return &stopCause{Core: c.Core.With(fields), shared: c.shared}
}

// Enabled lets warnings through to Check whatever the level, since
// zap asks Enabled first and "server error" is a warning.
func (c *stopCause) Enabled(l zapcore.Level) bool {
	return l >= zapcore.WarnLevel || c.Core.Enabled(l)
}

func (c *stopCause) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if ent.Message == closingNoise {
		// etcd reports its own listeners closing at shutdown as errors;
		// they are the expected end of a stop, so debug only.
		ent.Level = zapcore.DebugLevel
	}
	if ent.Message == "server error" || c.Core.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c *stopCause) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	if ent.Message == closingNoise {
		ent.Level = zapcore.DebugLevel
	}
	if ent.Message == "server error" {
		for _, f := range fields {
			if f.Key == "error" {
				if err, ok := f.Interface.(error); ok {
					c.shared.mu.Lock()
					c.shared.err = err.Error()
					c.shared.mu.Unlock()
				}
			}
		}
	}
	if !c.Core.Enabled(ent.Level) {
		return nil
	}
	return c.Core.Write(ent, fields)
}
