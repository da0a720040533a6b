package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/testcluster"
	"github.com/miekg/dns"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// aclToken is what `beacon acl bootstrap|token create -w json` prints.
type aclToken struct {
	Token struct {
		AccessorID string   `json:"accessor_id"`
		Rules      []string `json:"rules"`
	} `json:"token"`
	Secret string `json:"secret"`
}

// socketOf is the agent's owner-only unix socket, as the CLI's --agent.
func socketOf(a *testcluster.Agent) string {
	return "unix:" + filepath.Join(a.DataDir, "beacon.sock")
}

// aclBootstrap runs `beacon acl bootstrap` over the agent's unix socket
// (--data-dir: the CLI finds the socket there) and returns the
// management token.
func aclBootstrap(t *testing.T, a *testcluster.Agent) aclToken {
	t.Helper()
	var tok aclToken
	err := testcluster.Eventually(readyWithin, func() error {
		out, stderr, err := testcluster.RunCLI(t, "acl", "bootstrap", "--data-dir", a.DataDir, "-w", "json")
		if err != nil {
			return fmt.Errorf("beacon acl bootstrap: %v: %s", err, stderr)
		}
		return json.Unmarshal([]byte(out), &tok)
	})
	if err != nil || tok.Secret == "" {
		t.Fatalf("bootstrap: %v (secret %q)", err, tok.Secret)
	}
	return tok
}

// aclCreate makes a token with rules through the agent's API, as the
// holder of secret.
func aclCreate(t *testing.T, a *testcluster.Agent, secret string, rules ...string) aclToken {
	t.Helper()
	args := []string{"acl", "token", "create", "--token", secret, "-w", "json"}
	for _, r := range rules {
		args = append(args, "--rule", r)
	}
	out, stderr, err := aclCLI(t, a, args...)
	var tok aclToken
	if err != nil || json.Unmarshal([]byte(out), &tok) != nil || tok.Secret == "" {
		t.Fatalf("beacon acl token create %v: %v: %s%s", rules, err, out, stderr)
	}
	return tok
}

// aclCLI runs beacon against the agent's TCP API; --agent goes first, so
// that it is not taken for a flag of a lock's CMD (a later --agent wins).
func aclCLI(t *testing.T, a *testcluster.Agent, args ...string) (string, string, error) {
	t.Helper()
	return testcluster.RunCLI(t, append([]string{"--agent", a.APIAddr}, args...)...)
}

// wantCLIRefused runs a CLI command that must fail with one line on stderr
// holding every one of want.
func wantCLIRefused(t *testing.T, a *testcluster.Agent, want []string, args ...string) {
	t.Helper()
	out, stderr, err := aclCLI(t, a, args...)
	line := strings.TrimRight(stderr, "\n")
	if err == nil || strings.Contains(line, "\n") {
		t.Errorf("beacon %s: err %v, stdout %q, stderr %q; want a refusal on one line", strings.Join(args, " "), err, out, stderr)
		return
	}
	for _, w := range want {
		if !strings.Contains(line, w) {
			t.Errorf("beacon %s: %q does not say %q", strings.Join(args, " "), line, w)
		}
	}
}

// wantCLIRan runs a CLI command that must succeed and print want.
func wantCLIRan(t *testing.T, a *testcluster.Agent, want string, args ...string) {
	t.Helper()
	out, stderr, err := aclCLI(t, a, args...)
	if err != nil || !strings.Contains(out, want) {
		t.Errorf("beacon %s: err %v, stdout %q, stderr %q; want it to print %q", strings.Join(args, " "), err, out, stderr, want)
	}
}

// TestACLAgent: a member with --acl. The unix socket bootstraps; without
// a token a call is UNAUTHENTICATED; a lock:batch-*:write token takes
// batch-1 and not payments; a read token cannot write; DNS answers
// under the default dns-policy; the SDK sends its token; a revoked token
// is refused.
func TestACLAgent(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start("--acl")
	a.WaitReady(readyWithin)

	mgmt := aclBootstrap(t, a)
	wantCLIRefused(t, a, []string{"failed precondition", "already done"}, "acl", "bootstrap", "--agent", socketOf(a))
	// Over TCP without a certificate, bootstrap is refused.
	wantCLIRefused(t, a, []string{"permission denied", "unix socket"}, "acl", "bootstrap")

	wantCLIRefused(t, a, []string{"unauthenticated", "needs a token"}, "lock", "x", "--", "true")
	wantCLIRefused(t, a, []string{"unauthenticated", "needs a token"}, "members")
	wantCLIRefused(t, a, []string{"unauthenticated", "not known"}, "lock", "x", "--token", strings.Repeat("ab", 32), "--", "true")

	batch := aclCreate(t, a, mgmt.Secret, "lock:batch-*:write")
	wantCLIRan(t, a, "under batch-1", "lock", "batch-1", "--token", batch.Secret, "--", "echo", "under batch-1")
	wantCLIRefused(t, a, []string{"permission denied", "lock:payments:write", batch.Token.AccessorID},
		"lock", "payments", "--token", batch.Secret, "--", "true")

	// A read token reads and cannot write.
	read := aclCreate(t, a, mgmt.Secret, "service:*:read", "operator:cluster:read")
	wantCLIRan(t, a, "voter", "members", "--token", read.Secret)
	wantCLIRefused(t, a, []string{"permission denied", "service:web:write"},
		"register", "--token", read.Secret, "--name", "web", "--port", "8080")
	wantCLIRefused(t, a, []string{"permission denied", "operator:cluster:write"}, "leave", "--token", read.Secret)

	// DNS answers what a token registered, under the default dns-policy.
	wantCLIRan(t, a, "registered", "register", "--token", mgmt.Secret, "--name", "web", "--port", "8080")
	waitDNS(t, a, "web.service.beacon", dns.TypeSRV, "web's SRV", has("8080 a-web-8080.web.service.beacon."))
	wantCLIRan(t, a, "web", "services", "--token", read.Secret)

	// The SDK sends WithToken's secret; without one it is refused.
	sdkRegister(t, a, "", codes.Unauthenticated)
	sdkRegister(t, a, read.Secret, codes.PermissionDenied)
	api := aclCreate(t, a, mgmt.Secret, "service:api:write")
	sdkRegister(t, a, api.Secret, codes.OK)
	waitDNS(t, a, "api.service.beacon", dns.TypeSRV, "the SDK's registration", has("9090"))

	// A revoked token is refused as soon as `token revoke` answers.
	wantCLIRan(t, a, "revoked", "acl", "token", "revoke", "--token", mgmt.Secret, batch.Token.AccessorID)
	wantCLIRefused(t, a, []string{"unauthenticated", "not known"}, "lock", "batch-1", "--token", batch.Secret, "--", "true")

	// The unix socket is the host's operator: no token.
	wantCLIRan(t, a, "voter", "members", "--agent", socketOf(a))
}

// sdkRegister registers api:9090 with the Go SDK, sending secret (none
// when ""), and checks the call's code.
func sdkRegister(t *testing.T, a *testcluster.Agent, secret string, want codes.Code) {
	t.Helper()
	cl, err := client.New(a.APIAddr, client.WithToken(secret))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() }) // the registration lives as long as the client
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = cl.Register(ctx, &beaconpb.Instance{Service: "api", Port: 9090}, nil)
	if got := status.Code(err); got != want {
		t.Errorf("SDK Register with token %q: %v; want %v", secret, err, want)
	}
}

// TestACLOff: without --acl every call works without a token, as before,
// and the ACL commands say that ACLs are off.
func TestACLOff(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start()
	a.WaitReady(readyWithin)
	wantCLIRan(t, a, "ran", "lock", "payments", "--", "echo", "ran")
	wantCLIRan(t, a, "registered", "register", "--name", "web", "--port", "8080")
	waitDNS(t, a, "web.service.beacon", dns.TypeSRV, "web's SRV", has("8080"))
	// A token nobody made changes nothing with ACLs off.
	wantCLIRan(t, a, "voter", "members", "--token", strings.Repeat("ab", 32))
	wantCLIRefused(t, a, []string{"failed precondition", "ACLs are off"}, "acl", "bootstrap", "--agent", socketOf(a))
}
