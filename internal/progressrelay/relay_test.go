package progressrelay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type sent struct {
	percent int
	message string
}

// recorder is a Send that records what it was given and can be held.
type recorder struct {
	mu      sync.Mutex
	got     []sent
	started chan struct{}
	hold    chan struct{}
	err     error
}

func (r *recorder) send(ctx context.Context, percent int, message string) error {
	r.mu.Lock()
	r.got = append(r.got, sent{percent, message})
	r.mu.Unlock()
	if r.started != nil {
		r.started <- struct{}{}
	}
	if r.hold != nil {
		<-r.hold
	}
	return r.err
}

func (r *recorder) sent() []sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sent(nil), r.got...)
}

// A report reaches Send, and the caller hears back once it was sent; the
// socket sits in a directory only its user can enter, removed on Close.
func TestReportForwarded(t *testing.T) {
	rec := &recorder{}
	r, err := Start(rec.send)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Dir(r.Path()))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("the socket's directory: %v %v; want mode 0700", fi, err)
	}
	if err := Report(ctxT(t), r.Path(), 50, "copying"); err != nil {
		t.Fatal(err)
	}
	if got := rec.sent(); len(got) != 1 || got[0] != (sent{50, "copying"}) {
		t.Fatalf("sent %+v", got)
	}
	r.Close()
	if _, err := os.Stat(filepath.Dir(r.Path())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket's directory after Close: %v", err)
	}
	if err := Report(ctxT(t), r.Path(), 60, ""); err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Errorf("a report after Close: %v", err)
	}
}

// Reports arriving while one is being sent are coalesced: the latest is
// sent next, the ones it replaced are not sent at all, and every caller
// is answered.
func TestReportsCoalesced(t *testing.T) {
	rec := &recorder{started: make(chan struct{}, 16), hold: make(chan struct{})}
	r, err := Start(rec.send)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	errs := make(chan error, 10)
	go func() { errs <- Report(ctxT(t), r.Path(), 1, "first") }()
	<-rec.started // the first is being sent: the others wait behind it
	for i := 2; i <= 9; i++ {
		if err := waitPending(t, r, i-2); err != nil {
			t.Fatal(err)
		}
		go func(i int) { errs <- Report(ctxT(t), r.Path(), i*10, "later") }(i)
	}
	if err := waitPending(t, r, 8); err != nil {
		t.Fatal(err)
	}
	close(rec.hold)
	for i := 0; i < 9; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("a caller: %v", err)
		}
	}
	if got := rec.sent(); len(got) != 2 || got[0].percent != 1 || got[1].percent != 90 {
		t.Fatalf("sent %+v; want the first, then the latest only", got)
	}
}

// waitPending waits until n reports wait behind the one being sent.
func waitPending(t *testing.T, r *Relay, n int) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		have := 0
		if r.pending != nil {
			have = len(r.pending.waiters)
		}
		r.mu.Unlock()
		if have >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("the reports did not arrive")
		}
		time.Sleep(time.Millisecond)
	}
}

// The agent's refusal reaches the caller as its one line; a report
// waiting when the work ends is told so.
func TestReportErrors(t *testing.T) {
	rec := &recorder{err: errors.New("failed precondition: stale receipt")}
	r, err := Start(rec.send)
	if err != nil {
		t.Fatal(err)
	}
	if err := Report(ctxT(t), r.Path(), 5, ""); err == nil || err.Error() != "failed precondition: stale receipt" {
		t.Errorf("a refused report: %v", err)
	}
	r.Close()

	held := &recorder{started: make(chan struct{}, 1), hold: make(chan struct{})}
	r, err = Start(held.send)
	if err != nil {
		t.Fatal(err)
	}
	defer close(held.hold)
	go func() { _ = Report(ctxT(t), r.Path(), 1, "") }()
	<-held.started
	done := make(chan error, 1)
	go func() { done <- Report(ctxT(t), r.Path(), 2, "") }()
	if err := waitPending(t, r, 1); err != nil {
		t.Fatal(err)
	}
	go r.Close()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "the work has ended") {
		t.Errorf("a report waiting at Close: %v", err)
	}
}

// A relay starting removes the directories of relays whose processes are
// gone (a worker killed with kill -9 leaves its own), and keeps those of
// live ones and everything else.
func TestStaleDirectoriesSwept(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	keep := []string{fmt.Sprintf("%s%d-1", dirPrefix, os.Getpid()), "beacon-progress-notapid-2", "other-dir"}
	stale := fmt.Sprintf("%s%d-3", dirPrefix, gone.Process.Pid)
	for _, d := range append(keep, stale) {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	r, err := Start((&recorder{}).send)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !strings.HasPrefix(filepath.Base(filepath.Dir(r.Path())), fmt.Sprintf("%s%d-", dirPrefix, os.Getpid())) {
		t.Errorf("the relay's directory %s is not named for this process", filepath.Dir(r.Path()))
	}
	if _, err := os.Stat(filepath.Join(tmp, stale)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the directory of a gone process is still there: %v", err)
	}
	for _, d := range keep {
		if _, err := os.Stat(filepath.Join(tmp, d)); err != nil {
			t.Errorf("%s was removed: %v", d, err)
		}
	}
}
