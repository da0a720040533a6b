package embedded

import (
	"errors"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestQuietEtcd(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	lg := quietEtcd(zap.New(core), "info")
	lg.Info("became leader at term 2")
	lg.Warn("simple token is not cryptographically signed")
	lg.Warn("failed to promote a member", zap.Error(errors.New("etcdserver: can only promote a learner member which is in sync with leader")))
	lg.Warn("failed to promote a member", zap.Error(errors.New("etcdserver: no leader")))
	lg.With(zap.Error(errors.New("cannot detect storage schema version: missing term information"))).Error("failed to update storage version")
	lg.Error("failed to update storage version", zap.Error(errors.New("disk full")))
	lg.Warn("apply request took too long")

	var got []string
	for _, e := range logs.All() {
		got = append(got, e.Level.String()+" "+e.Message)
	}
	want := []string{
		"warn failed to promote a member", // another cause: a fault, kept
		"error failed to update storage version",
		"warn apply request took too long",
	}
	if len(got) != len(want) {
		t.Fatalf("logged %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("logged %q, want %q", got, want)
		}
	}

	// At debug etcd speaks as it is.
	core, logs = observer.New(zapcore.DebugLevel)
	quietEtcd(zap.New(core), "debug").Info("became leader at term 2")
	if e := logs.All(); len(e) != 1 || e[0].Level != zapcore.InfoLevel {
		t.Fatalf("at debug: %+v", e)
	}
}
