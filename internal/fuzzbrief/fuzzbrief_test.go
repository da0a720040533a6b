// Package fuzzbrief runs the repository's fuzz targets for a short while
// as part of the plain test command, so that CI fuzzes on every run and
// not only over the committed seed corpora (which `go test` replays on its
// own). A longer run is `go test -run '^$' -fuzz '^FuzzHandler$'
// -fuzztime 10m ./dnsserver/` and the like; docs/security.md lists the
// longest runs so far.
package fuzzbrief

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// targets are the fuzz targets that guard network-facing input: DNS
// packets (and recursors' answers relayed), and every unary API request.
var targets = []struct{ pkg, name string }{
	{"./dnsserver/", "FuzzHandler"},
	{"./internal/apifuzz/", "FuzzRequest"},
}

// fuzzTime is each target's share; the whole test stays well under a
// minute of fuzzing on 2 cores.
const fuzzTime = "15s"

func TestFuzzTargetsBriefly(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = "go"
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
			defer cancel()
			// -parallel 2: two fuzz workers, not one per core of a
			// machine the rest of the suite shares.
			cmd := exec.CommandContext(ctx, gobin, "test", "-run", "^$", "-fuzz", "^"+tg.name+"$",
				"-fuzztime", fuzzTime, "-parallel", "2", tg.pkg)
			cmd.Dir = root
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("go test -fuzz %s %s: %v\n%s", tg.name, tg.pkg, err, out)
			}
			t.Logf("%s", lastLines(string(out), 4))
		})
	}
}

func lastLines(s string, n int) string {
	end := len(s)
	for i := len(s) - 1; i >= 0 && n >= 0; i-- {
		if s[i] == '\n' {
			n--
			if n < 0 {
				return s[i+1 : end]
			}
		}
	}
	return s
}
