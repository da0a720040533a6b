package session

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/etcdtest"
	"github.com/beaconhq/beacon/internal/rpcerr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type ownerKey struct{}

func as(owner string) context.Context {
	return context.WithValue(context.Background(), ownerKey{}, owner)
}

// One owner opens sessions up to its share and no further, while another
// owner, and a caller without a share, still open theirs; a session that
// ends gives its place back.
func TestSessionsPerOwner(t *testing.T) {
	cli, _ := etcdtest.New(t)
	m := NewManager(cli, WithMaxSessions(10), WithMaxSessionsPerOwner(3),
		WithOwner(func(ctx context.Context) string { s, _ := ctx.Value(ownerKey{}).(string); return s }))
	defer m.CloseAll(time.Second)

	var hog []*Session
	for i := range 3 {
		s, err := m.Open(as("hog"), "hog", 30*time.Second)
		if err != nil {
			t.Fatalf("hog's session %d: %v", i+1, err)
		}
		hog = append(hog, s)
	}
	_, err := m.Open(as("hog"), "hog", 30*time.Second)
	if !errors.Is(err, ErrTooManySessionsForOwner) || status.Code(rpcerr.From(err)) != codes.ResourceExhausted ||
		!strings.Contains(err.Error(), "max-sessions-per-token 3") || !strings.Contains(err.Error(), "token hog") {
		t.Fatalf("hog's 4th session: %v; want ResourceExhausted naming token hog and max-sessions-per-token 3", err)
	}
	if n := m.OwnerCount("hog"); n != 3 {
		t.Errorf("hog counts %d sessions after a refusal, want 3", n)
	}
	for i := range 3 {
		if _, err := m.Open(as("other"), "other", 30*time.Second); err != nil {
			t.Fatalf("another token's session %d, with hog at its share: %v", i+1, err)
		}
	}
	if _, err := m.Open(context.Background(), "operator", 30*time.Second); err != nil {
		t.Fatalf("a session without a share, with hog at its share: %v", err)
	}
	hog[0].Close()
	if _, err := m.Open(as("hog"), "hog", 30*time.Second); err != nil {
		t.Fatalf("hog's session after closing one: %v", err)
	}
	// The agent-wide bound still holds over the shares: 3+3+1 open, 3 left.
	for i := range 3 {
		if _, err := m.Open(context.Background(), "operator", 30*time.Second); err != nil {
			t.Fatalf("operator's session %d of the pool's last 3: %v", i+1, err)
		}
	}
	if _, err := m.Open(as("third"), "third", 30*time.Second); !errors.Is(err, ErrTooManySessions) {
		t.Fatalf("a session past max-sessions: %v; want ErrTooManySessions", err)
	}
	if n := m.OwnerCount("third"); n != 0 {
		t.Errorf("a token refused by max-sessions counts %d sessions, want 0", n)
	}
}
