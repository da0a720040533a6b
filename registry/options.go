package registry

import (
	"time"

	"go.uber.org/zap"
)

// Option configures NewCatalog and NewLocal: what they can do without.
// What they cannot is in their arguments (and LocalConfig).
type Option func(*options)

type options struct {
	lg               *zap.Logger
	antiEntropyEvery time.Duration
}

// WithLogger sets the logger (default none).
func WithLogger(lg *zap.Logger) Option { return func(o *options) { o.lg = lg } }

// WithAntiEntropyInterval sets how often Local.RunAntiEntropy passes
// unprompted (default 5s; the agent's anti-entropy-interval). NewCatalog
// ignores it.
func WithAntiEntropyInterval(d time.Duration) Option {
	return func(o *options) { o.antiEntropyEvery = d }
}

func optionsOf(opts []Option) options {
	o := options{lg: zap.NewNop(), antiEntropyEvery: antiEntropyInterval}
	for _, opt := range opts {
		opt(&o)
	}
	if o.lg == nil {
		o.lg = zap.NewNop()
	}
	if o.antiEntropyEvery <= 0 {
		o.antiEntropyEvery = antiEntropyInterval
	}
	return o
}
