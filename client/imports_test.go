package client

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestImportGraph: an application that only registers links package
// client, so its transitive imports stay small: no viper, no etcd client,
// no config recipe (its template renderer runs shell commands). Those live
// in client/viperwatch.
func TestImportGraph(t *testing.T) {
	gotool, err := exec.LookPath("go")
	if err != nil {
		gotool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(gotool, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 || deps[len(deps)-1] != "github.com/beaconhq/beacon/client" {
		t.Fatalf("go list -deps listed no package client:\n%s", out)
	}
	for _, d := range deps {
		switch {
		case d == "github.com/spf13/viper" || strings.HasPrefix(d, "github.com/spf13/viper/"),
			d == "go.etcd.io/etcd/client/v3",
			d == "github.com/beaconhq/beacon/config":
			t.Errorf("package client imports %s", d)
		}
	}
}
