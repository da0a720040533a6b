package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/beaconhq/beacon/internal/testcluster"
)

// TestExternal: an agent fronting an existing etcd cluster embeds nothing,
// serves the API on it, and is listed as external.
func TestExternal(t *testing.T) {
	c := testcluster.New(t)
	etcd := c.Host("n1")
	etcd.Start()
	etcd.WaitReady(readyWithin)

	ext := c.Host("x1")
	ext.Start("--role", "external", "--endpoints", etcd.ClientURL, "--node-ttl", "1h")
	ext.WaitReady(readyWithin)
	waitMembers(t, []*testcluster.Agent{etcd, ext}, func(ms []testcluster.Member) error {
		if roles(ms) != "n1:voter x1:external" {
			return fmt.Errorf("want n1 voter and x1 external")
		}
		return nil
	})
	out, stderr, err := ext.CLI("status", "-w", "json")
	if err != nil {
		t.Fatalf("status: %v %s", err, stderr)
	}
	var st struct {
		LocalRole string `json:"local_role"`
		Leader    string `json:"leader"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.LocalRole != "external" || st.Leader != "n1" {
		t.Fatalf("status through the external agent: %s", out)
	}
	// Nothing listens on its own client URL: it embeds nothing.
	if conn, err := net.Dial("tcp", strings.TrimPrefix(ext.ClientURL, "http://")); err == nil {
		conn.Close()
		t.Fatal("an external agent should not serve etcd on its client URL")
	}
	// Its leave withdraws its record and leaves the cluster untouched.
	if _, stderr, err := ext.CLI("leave"); err != nil {
		t.Fatalf("leave: %v %s", err, stderr)
	}
	ext.WaitExit(readyWithin)
	waitMembers(t, []*testcluster.Agent{etcd}, func(ms []testcluster.Member) error {
		if roles(ms) != "n1:voter" {
			return fmt.Errorf("want n1 only")
		}
		return nil
	})
}
