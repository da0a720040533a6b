package racecheck

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// racePackages are the packages whose unit tests run goroutines against a
// real etcd (locks, watches, sessions, checks, the catalog, DNS): a data
// race there is a bug the tests only show under -race. The end-to-end
// packages (e2e, faults) run the beacon binary, which -race here would
// not instrument, and are left out.
var racePackages = []string{
	"./apiserver", "./barrier", "./client", "./cluster", "./config", "./dataquota", "./dnsserver", "./election",
	"./healthcheck", "./internal/fanout", "./internal/progressrelay", "./internal/supervise", "./lock", "./queue",
	"./registry", "./session",
}

// raceTimeout bounds the run; it took 3m51s on 2 shared cores with a warm
// build cache.
const raceTimeout = 12 * time.Minute

// TestUnitTestsUnderRace runs `go test -race` on racePackages, one package
// at a time (-p 1: the rest of the suite runs beside it on the same
// cores), and fails with the output if they fail.
func TestUnitTestsUnderRace(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	ctx, cancel := context.WithTimeout(context.Background(), raceTimeout)
	defer cancel()
	args := append([]string{"test", "-race", "-count=1", "-p", "1", "-timeout", raceTimeout.String()}, racePackages...)
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = filepath.Join("..", "..") // the module root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("go test -race of %d packages took %s", len(racePackages), time.Since(start).Round(time.Second))
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	if strings.Contains(out.String(), "WARNING: DATA RACE") {
		t.Fatalf("a data race was reported:\n%s", out.String())
	}
}
