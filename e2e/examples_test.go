package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/beaconhq/beacon/internal/testcluster"
	"github.com/miekg/dns"
)

// usageLines are the `go run ./examples/NAME ARGS` lines of an example's
// doc comment, as argument lists.
func usageLines(t *testing.T, name string) [][]string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "examples", name, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^//\s+go run \./examples/` + name + `(.*)$`)
	var out [][]string
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		out = append(out, strings.Fields(m[1]))
	}
	if len(out) == 0 {
		t.Fatalf("examples/%s documents no go run line", name)
	}
	return out
}

// runExample starts an example with the agent's address in BEACON_AGENT
// (as a user's shell would have it), returning its first line of output.
func runExample(t *testing.T, bin string, a *testcluster.Agent, args []string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "BEACON_AGENT="+a.APIAddr)
	return firstLine(t, cmd)
}

// TestExamplesAsDocumented runs the examples' usage lines as written
// against a real agent: register's serves and is answered in DNS;
// resolve's serve, register and call themselves through the resolver
// (the second through a tag), with nothing else running.
func TestExamplesAsDocumented(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start()
	a.WaitReady(readyWithin)

	reg := buildExample(t, "register")
	for _, args := range usageLines(t, "register") {
		line := runExample(t, reg, a, args)
		if !strings.HasPrefix(line, "registered ") {
			t.Fatalf("register %v printed %q", args, line)
		}
	}
	waitDNS(t, a, "web.service.beacon", dns.TypeSRV, "the documented register", has(".web.service.beacon."))

	res := buildExample(t, "resolve")
	for _, args := range usageLines(t, "resolve") {
		cmd := exec.Command(res, args...)
		cmd.Env = append(os.Environ(), "BEACON_AGENT="+a.APIAddr)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SERVING") {
			t.Errorf("resolve %v: %v\n%s", args, err, out)
		}
	}
}
