package apiserver

import (
	"context"
	"fmt"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// interceptorLogger adapts zap to the logging interceptor.
func interceptorLogger(lg *zap.Logger) logging.Logger {
	lg = lg.WithOptions(zap.AddCallerSkip(1))
	return logging.LoggerFunc(func(_ context.Context, lvl logging.Level, msg string, fields ...any) {
		// Most calls finish OK and log at debug: skip building fields that
		// zap would drop.
		if !lg.Core().Enabled(zapLevel(lvl)) {
			return
		}
		zf := make([]zap.Field, 0, len(fields)/2)
		for i := 0; i+1 < len(fields); i += 2 {
			zf = append(zf, zap.Any(fmt.Sprint(fields[i]), fields[i+1]))
		}
		switch lvl {
		case logging.LevelDebug:
			lg.Debug(msg, zf...)
		case logging.LevelInfo:
			lg.Info(msg, zf...)
		case logging.LevelWarn:
			lg.Warn(msg, zf...)
		default:
			lg.Error(msg, zf...)
		}
	})
}

func zapLevel(l logging.Level) zapcore.Level {
	switch l {
	case logging.LevelDebug:
		return zapcore.DebugLevel
	case logging.LevelInfo:
		return zapcore.InfoLevel
	case logging.LevelWarn:
		return zapcore.WarnLevel
	}
	return zapcore.ErrorLevel
}
