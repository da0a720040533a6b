package config

import "go.uber.org/zap"

// Option configures NewTemplates and NewMirror.
type Option func(*options)

type options struct{ lg *zap.Logger }

// WithLogger sets the logger (default none).
func WithLogger(lg *zap.Logger) Option { return func(o *options) { o.lg = lg } }

func loggerOf(opts []Option) *zap.Logger {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.lg == nil {
		return zap.NewNop()
	}
	return o.lg
}
