package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/testcluster"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// sdkSessions opens n sessions with the SDK as the holder of secret on
// addr (the agent's TCP address or its unix socket), and fails the test
// on any error.
func sdkSessions(t *testing.T, addr, secret string, n int) []*client.Session {
	t.Helper()
	var out []*client.Session
	for i := range n {
		s, err := sdkSession(t, addr, secret)
		if err != nil {
			t.Fatalf("session %d of %d with token %.8s…: %v", i+1, n, secret, err)
		}
		out = append(out, s)
	}
	return out
}

// sdkSession opens one session with the SDK on a client of its own.
func sdkSession(t *testing.T, addr, secret string) (*client.Session, error) {
	t.Helper()
	cl, err := client.New(addr, client.WithToken(secret))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := cl.NewSession(ctx, client.WithName("share"))
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

// With ACLs on, one token opens sessions up to its share
// (max-sessions-per-token) and no further, while another token still
// opens its own: one tenant cannot take the agent's whole session pool
// (review find: any valid token could open all of max-sessions). The
// management token and the unix socket (the operator) have no share of
// their own; a session that ends gives its place back.
func TestSessionsPerTokenLimit(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start("--acl", "--max-sessions-per-token", "3", "--max-sessions", "20")
	a.WaitReady(readyWithin)

	mgmt := aclBootstrap(t, a)
	hog := aclCreate(t, a, mgmt.Secret, "lock:*:write")
	other := aclCreate(t, a, mgmt.Secret, "lock:*:write")

	hogs := sdkSessions(t, a.APIAddr, hog.Secret, 3)
	_, err := sdkSession(t, a.APIAddr, hog.Secret)
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "max-sessions-per-token 3") ||
		!strings.Contains(st.Message(), hog.Token.AccessorID) {
		t.Fatalf("the hog's 4th session: %v; want ResourceExhausted naming its token and max-sessions-per-token 3", err)
	}
	if strings.Contains(st.Message(), hog.Secret) {
		t.Fatalf("the refusal shows the token's secret: %q", st.Message())
	}
	// The CLI says it on one line.
	wantCLIRefused(t, a, []string{"resource exhausted", "max-sessions-per-token 3"},
		"lock", "batch", "--token", hog.Secret, "--", "true")

	// Another token opens its own while the hog is at its share.
	sdkSessions(t, a.APIAddr, other.Secret, 3)
	// The operator: the management token and the unix socket have no share.
	sdkSessions(t, a.APIAddr, mgmt.Secret, 4)
	sdkSessions(t, socketOf(a), "", 4)

	// A closed session gives its place back.
	if err := hogs[0].Close(); err != nil {
		t.Fatal(err)
	}
	err = testcluster.Eventually(15*time.Second, func() error {
		_, err := sdkSession(t, a.APIAddr, hog.Secret)
		return err
	})
	if err != nil {
		t.Fatalf("the hog's session after closing one: %v", err)
	}
}
