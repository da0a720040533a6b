package supervise

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/holdclock"
)

// fakeHold is a hold whose deadline and loss the test sets.
type fakeHold struct {
	mu       sync.Mutex
	deadline time.Duration // holdclock
	lost     chan struct{}
	err      error
}

func newFakeHold(left time.Duration) *fakeHold {
	return &fakeHold{deadline: holdclock.Now() + left, lost: make(chan struct{})}
}

func (h *fakeHold) Lost() <-chan struct{} { return h.lost }
func (h *fakeHold) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}
func (h *fakeHold) Remaining() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.deadline - holdclock.Now()
}
func (h *fakeHold) extend(left time.Duration) {
	h.mu.Lock()
	h.deadline = holdclock.Now() + left
	h.mu.Unlock()
}
func (h *fakeHold) lose(err error) {
	h.mu.Lock()
	h.err = err
	h.mu.Unlock()
	close(h.lost)
}

func sh(script string, args ...string) []string {
	return append([]string{"sh", "-c", script}, args...)
}

func run(t *testing.T, h Hold, o RunOptions) (Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o.Env = os.Environ()
	return RunWhile(ctx, h, o)
}

// A CMD that ignores SIGTERM is killed at the deadline when nothing
// confirms the hold; it got SIGTERM first, at deadline - grace.
func TestRunWhileKillsAtTheDeadline(t *testing.T) {
	dir := t.TempDir()
	h := newFakeHold(800 * time.Millisecond)
	res, err := run(t, h, RunOptions{Grace: 300 * time.Millisecond,
		Args: sh(`trap 'echo term > "$0/term"' TERM; echo started > "$0/started"; while :; do sleep 0.01; done`, dir)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 128+int(syscall.SIGKILL) {
		t.Errorf("exit code %d, want %d (SIGKILL)", res.Code, 128+int(syscall.SIGKILL))
	}
	if !errors.Is(res.Lost, ErrDeadline) {
		t.Errorf("Lost = %v, want ErrDeadline", res.Lost)
	}
	if _, err := os.Stat(filepath.Join(dir, "term")); err != nil {
		t.Error("CMD got no SIGTERM before the SIGKILL")
	}
	if h.Remaining() > 0 {
		t.Errorf("RunWhile returned %s before the deadline of a CMD that ignores SIGTERM", h.Remaining())
	}
}

// A hold confirmed in time never disturbs CMD, which exits on its own.
func TestRunWhileHealthyHold(t *testing.T) {
	h := newFakeHold(300 * time.Millisecond)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				h.extend(300 * time.Millisecond)
			}
		}
	}()
	res, err := run(t, h, RunOptions{Grace: 100 * time.Millisecond, Args: sh(`trap 'exit 99' TERM; sleep 1; exit 3`)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 3 || res.Lost != nil {
		t.Errorf("got code %d, lost %v; want 3 and nil", res.Code, res.Lost)
	}
}

// A hold lost outright stops CMD with SIGTERM at once.
func TestRunWhileLost(t *testing.T) {
	h := newFakeHold(time.Hour)
	dir := t.TempDir()
	go func() {
		for i := 0; i < 1000; i++ { // lose it once CMD runs
			if _, err := os.Stat(filepath.Join(dir, "started")); err == nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		h.lose(errors.New("key deleted"))
	}()
	res, err := run(t, h, RunOptions{Grace: time.Minute, Args: sh(`trap 'exit 42' TERM; touch "$0/started"; while :; do sleep 0.01; done`, dir)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 42 || res.Lost == nil || res.Lost.Error() != "key deleted" {
		t.Errorf("got code %d, lost %v; want 42 and the loss", res.Code, res.Lost)
	}
}

// A hold lost outright with CMD ignoring SIGTERM: killed grace later, not
// at a deadline far ahead.
func TestRunWhileLostGrace(t *testing.T) {
	h := newFakeHold(time.Hour)
	dir := t.TempDir()
	go func() {
		for i := 0; i < 1000; i++ {
			if _, err := os.Stat(filepath.Join(dir, "started")); err == nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		h.lose(errors.New("key deleted"))
	}()
	res, err := run(t, h, RunOptions{Grace: 200 * time.Millisecond, Args: sh(`trap '' TERM; touch "$0/started"; while :; do sleep 0.01; done`, dir)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 128+int(syscall.SIGKILL) || res.Lost == nil {
		t.Errorf("got code %d, lost %v; want SIGKILL and the loss", res.Code, res.Lost)
	}
}

// Signals pass on to CMD; a terminating one is not a loss.
func TestRunWhileSignals(t *testing.T) {
	h := newFakeHold(time.Hour)
	dir := t.TempDir()
	sigs := make(chan os.Signal, 1)
	go func() {
		for i := 0; i < 1000; i++ {
			if _, err := os.Stat(filepath.Join(dir, "started")); err == nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		sigs <- syscall.SIGINT
	}()
	res, err := run(t, h, RunOptions{Grace: time.Minute, Signals: sigs,
		Args: sh(`trap 'exit 7' INT; touch "$0/started"; while :; do sleep 0.01; done`, dir)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 7 || res.Lost != nil || res.Signal != syscall.SIGINT {
		t.Errorf("got code %d, lost %v, signal %v; want 7, nil, SIGINT", res.Code, res.Lost, res.Signal)
	}
}

// CMD does not start under a hold that is lost or within its grace.
func TestRunWhileRefusesAShortHold(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	if _, err := run(t, newFakeHold(50*time.Millisecond), RunOptions{Grace: 100 * time.Millisecond, Args: sh(`touch "$0"`, marker)}); !errors.Is(err, ErrDeadline) {
		t.Errorf("err = %v, want ErrDeadline", err)
	}
	lost := newFakeHold(time.Hour)
	lost.lose(errors.New("gone"))
	if _, err := run(t, lost, RunOptions{Args: sh(`touch "$0"`, marker)}); err == nil {
		t.Error("a lost hold started CMD")
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("CMD ran")
	}
}
