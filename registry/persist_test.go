package registry

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beaconhq/beacon/healthcheck"
	"go.uber.org/zap"
)

// keptIn is what an agent starting on dir would restore.
func keptIn(dir string) ([]Registration, error) {
	l := &Local{store: &fileStore{dir: dir}, lg: zap.NewNop()}
	return l.loadKept()
}

// writtenBytes is what this process has written with write(2) so far.
func writtenBytes(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no wchar in /proc/self/io")
	return 0
}

// Agent-owned registrations with 2 KB of meta, one after another: each is
// kept by appending it, not by rewriting all the others. (The whole file
// was rewritten for each: 1000 of them wrote about 1 GB.) They all come
// back after a restart, the deregistered ones excepted.
func TestKeptRegistrationsAreAppended(t *testing.T) {
	const n = 1000
	dir := t.TempDir()
	l, _ := testLocal(t, dir)
	ctx := context.Background()
	meta := map[string]string{"blob": strings.Repeat("x", 2048)}
	before := writtenBytes(t)
	for i := range n {
		in := Instance{Service: "bulk", ID: fmt.Sprintf("i%d", i), Port: 80, Meta: meta}
		if _, _, err := l.Register(ctx, in, healthcheck.Definition{}, OwnerAgent); err != nil {
			t.Fatal(err)
		}
	}
	written := writtenBytes(t) - before
	// The registrations themselves are about 2.3 MB; etcd's own writes
	// (its WAL, in this process) a few times that. Rewriting the file for
	// each registration writes n*n/2 * 2.3 KB.
	if limit := int64(64 << 20); written > limit {
		t.Fatalf("%d registrations wrote %d MB, want under %d MB", n, written>>20, limit>>20)
	}
	t.Logf("%d registrations with 2 KB of meta wrote %.1f MB (etcd's writes included)", n, float64(written)/(1<<20))
	for i := 0; i < n; i += 10 {
		if err := l.Deregister(ctx, "bulk", fmt.Sprintf("i%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	kept, err := keptIn(dir)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, r := range kept {
		if r.Instance.Meta["blob"] != meta["blob"] {
			t.Fatalf("%s kept without its meta", r.Instance.ID)
		}
		ids[r.Instance.ID] = true
	}
	for i := range n {
		if want := i%10 != 0; ids[fmt.Sprintf("i%d", i)] != want {
			t.Fatalf("i%d kept: %v, want %v (%d kept)", i, !want, want, len(kept))
		}
	}
	// Loading folded the journal into the snapshot.
	if _, err := os.Stat(filepath.Join(dir, journalName)); !os.IsNotExist(err) {
		t.Fatalf("the journal is still there after a start: %v", err)
	}
	if again, err := keptIn(dir); err != nil || len(again) != len(kept) {
		t.Fatalf("after folding: %d kept, %v; want %d", len(again), err, len(kept))
	}
}

// Registrations that arrive together are written together, and each
// Register returns only once its own is durable.
func TestConcurrentRegistrationsAreKept(t *testing.T) {
	dir := t.TempDir()
	l, _ := testLocal(t, dir)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := Instance{Service: "many", ID: fmt.Sprintf("i%d", i), Port: 80}
			if _, _, err := l.Register(ctx, in, healthcheck.Definition{}, OwnerAgent); err != nil {
				errs <- err
				return
			}
			// Returned: its registration is in the data dir now.
			kept, err := readJournal(dir)
			if err != nil {
				errs <- err
			} else if !kept[regKey("many", in.ID)] {
				errs <- fmt.Errorf("%s returned before it was kept", in.ID)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	l.journal.mu.Lock() // no writer runs: every persist returned
	t.Logf("200 concurrent registrations: %d journal writes", l.journal.rounds)
	l.journal.mu.Unlock()
}

// readJournal is the set of service/id the journal has put, without
// folding it (the agent is running).
func readJournal(dir string) (map[string]bool, error) {
	f, err := os.Open(filepath.Join(dir, journalName))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	j := &journal{kept: map[string]keptEntry{}}
	if err := j.replay(f, f.Name(), zap.NewNop()); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for k := range j.kept {
		out[k] = true
	}
	return out, nil
}

// A journal whose last line was cut short by a crash loads without it;
// one damaged in the middle is refused with the line named.
func TestJournalDamage(t *testing.T) {
	dir := t.TempDir()
	good := `{"put":{"instance":{"id":"a","service":"web","node":"n1","address":"127.0.0.1","port":80,"weight":1,"priority":0,"status":"passing"},"check":{},"owner":"agent"}}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, journalName), []byte(good+`{"put":{"inst`), 0o600); err != nil {
		t.Fatal(err)
	}
	kept, err := keptIn(dir)
	if err != nil || len(kept) != 1 || kept[0].Instance.ID != "a" {
		t.Fatalf("torn last line: %v, %v; want instance a", kept, err)
	}
	if err := os.WriteFile(filepath.Join(dir, journalName), []byte(`{"put":{"inst`+"\n"+good), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := keptIn(dir); err == nil || !strings.Contains(err.Error(), "line 1 is damaged") {
		t.Fatalf("damaged first line: %v, want an error naming line 1", err)
	}
}

// BenchmarkKeepRegistrations: agent-owned registrations with 2 KB of meta
// kept one after another, by the journal and, for comparison, the plain
// way (the whole file rewritten and synced for each).
func BenchmarkKeepRegistrations(b *testing.B) {
	const n = 500
	meta := map[string]string{"blob": strings.Repeat("x", 2048)}
	reg := func(i int) *registration {
		return &registration{Registration: Registration{Owner: OwnerAgent, Instance: Instance{
			Service: "bulk", ID: fmt.Sprintf("i%d", i), Node: "n1", Address: "127.0.0.1", Port: 80, Meta: meta, Status: StatusPassing}}}
	}
	b.Run("journal", func(b *testing.B) {
		for b.Loop() {
			dir := b.TempDir()
			l := &Local{store: &fileStore{dir: dir}, lg: zap.NewNop(), regs: map[string]*registration{}}
			if _, err := l.loadKept(); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			for i := range n {
				r := reg(i)
				l.mu.Lock()
				l.regs[regKey(r.Instance.Service, r.Instance.ID)] = r
				l.mu.Unlock()
				l.persist()
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/n, "µs/registration")
		}
	})
	b.Run("rewrite", func(b *testing.B) {
		for b.Loop() {
			store := &fileStore{dir: b.TempDir()}
			var all []Registration
			start := time.Now()
			for i := range n {
				all = append(all, reg(i).Registration)
				if err := store.save(append([]Registration(nil), all...)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/n, "µs/registration")
		}
	})
}
