package registry

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"

	"go.uber.org/zap"
)

// The agent-owned registrations are kept in the data dir as a snapshot,
// services.json (the format of earlier versions), and a journal,
// services.log, of the changes since: one JSON line per change. A change
// appends its line and syncs the journal, instead of rewriting and
// syncing every registration (10k registrations with 2 KB of meta took
// 13 min 50 s that way). Changes that arrive while a write is in flight
// are written together by the next one (a group commit), and each caller
// returns once a write that includes its change is durable. The journal
// is folded into the snapshot at start and whenever it outgrows it.
const (
	journalName = "services.log"
	// minCompactBytes: the journal is folded into the snapshot once it is
	// larger than this and than the snapshot.
	minCompactBytes = 4 << 20
)

// journalRecord is one line of services.log: a registration as it is now
// (Put), or the service/id of one that is gone (Delete).
type journalRecord struct {
	Put    *Registration `json:"put,omitempty"`
	Delete string        `json:"delete,omitempty"`
}

// keptEntry is a registration as it was last made durable: r and its
// status identify what was written (a registration is replaced, never
// changed, except for its status and output).
type keptEntry struct {
	r              *registration // nil when loaded from the data dir
	status, output string
	reg            Registration
}

// journal is the writer of the kept registrations.
type journal struct {
	mu      sync.Mutex
	cond    *sync.Cond
	wanted  uint64 // persist calls so far
	done    uint64 // the persist calls covered by a finished write
	writing bool   // a writer goroutine runs
	rounds  int    // writes made, for tests

	// Owned by the writer (and by loading, before any writer).
	kept         map[string]keptEntry
	log          *os.File
	logBytes     int64
	compactBytes int64
}

// persist makes the agent-owned registrations durable as they are now,
// and returns once they are (or once the write failed, which is logged).
func (l *Local) persist() {
	j := &l.journal
	j.mu.Lock()
	defer j.mu.Unlock()
	j.wanted++
	ticket := j.wanted
	if !j.writing {
		j.writing = true
		go l.writeKept()
	}
	for j.done < ticket {
		j.cond.Wait()
	}
}

// writeKept writes rounds until every persist call so far is covered.
func (l *Local) writeKept() {
	j := &l.journal
	j.mu.Lock()
	for j.done < j.wanted {
		target := j.wanted
		j.mu.Unlock()
		if err := l.writeRound(); err != nil {
			l.lg.Warn("could not keep registrations in the data dir", zap.Error(err))
		}
		j.mu.Lock()
		j.done = target
		j.cond.Broadcast()
	}
	j.writing = false
	j.mu.Unlock()
}

// writeRound appends what changed since the last durable write, in one
// write and one sync, and folds the journal into the snapshot once it has
// outgrown it.
func (l *Local) writeRound() error {
	j := &l.journal
	next, recs := l.keptChanges()
	if len(recs) == 0 {
		return nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, rec := range recs {
		if err := enc.Encode(rec); err != nil {
			return err
		}
	}
	if err := j.append(l.store.dir, buf.Bytes()); err != nil {
		return err
	}
	j.rounds++
	j.kept = next
	if j.logBytes > max(minCompactBytes, j.compactBytes) {
		return j.compact(l.store)
	}
	return nil
}

// keptChanges compares the agent-owned registrations with what was last
// written: the records to append, and the kept state once they are.
func (l *Local) keptChanges() (map[string]keptEntry, []journalRecord) {
	j := &l.journal
	next := make(map[string]keptEntry, len(j.kept))
	var recs []journalRecord
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, r := range l.regs {
		if r.Owner != OwnerAgent {
			continue
		}
		e, ok := j.kept[k]
		same := ok && e.r == r && e.status == r.Instance.Status && e.output == r.Instance.Output
		if ok && e.r == nil && reflect.DeepEqual(e.reg, r.Registration) {
			same = true // loaded from the data dir, and unchanged since
		}
		if same {
			e.r = r
			next[k] = e
			continue
		}
		reg := r.Registration
		next[k] = keptEntry{r: r, status: reg.Instance.Status, output: reg.Instance.Output, reg: reg}
		recs = append(recs, journalRecord{Put: &reg})
	}
	for k := range j.kept {
		if _, ok := next[k]; !ok {
			recs = append(recs, journalRecord{Delete: k})
		}
	}
	return next, recs
}

// append writes b at the journal's end and syncs it.
func (j *journal) append(dir string, b []byte) error {
	if j.log == nil {
		f, err := os.OpenFile(filepath.Join(dir, journalName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		// A new file's name is durable once its directory is.
		if err := syncDir(dir); err != nil {
			f.Close()
			return err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return err
		}
		j.log, j.logBytes = f, st.Size()
	}
	prev := j.logBytes
	if _, err := j.log.Write(b); err != nil {
		// A line cut short (a full disk) must not stay in the middle of
		// the journal: take the write back; the next round writes again.
		_ = j.log.Truncate(prev)
		return err
	}
	j.logBytes += int64(len(b))
	if err := j.log.Sync(); err != nil {
		// Whether the lines reached the disk is unknown: the next round
		// writes them again (a record written twice replays the same).
		j.log.Close()
		j.log = nil
		return err
	}
	return nil
}

// compact writes the kept registrations as the snapshot, then empties the
// journal. A crash between the two leaves a journal whose changes the
// snapshot already has: replaying them again ends in the same state.
func (j *journal) compact(store *fileStore) error {
	regs := make([]Registration, 0, len(j.kept))
	for _, e := range j.kept {
		regs = append(regs, e.reg)
	}
	if err := store.save(regs); err != nil {
		return err
	}
	if st, err := os.Stat(filepath.Join(store.dir, storeName)); err == nil {
		j.compactBytes = st.Size()
	}
	if j.log != nil {
		j.log.Close()
		j.log = nil
	}
	j.logBytes = 0
	if err := os.Remove(filepath.Join(store.dir, journalName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return syncDir(store.dir)
}

// loadKept reads the snapshot and replays the journal over it, then folds
// the journal into the snapshot, so that every start begins with an empty
// journal.
func (l *Local) loadKept() ([]Registration, error) {
	j := &l.journal
	j.cond = sync.NewCond(&j.mu)
	regs, err := l.store.load()
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(filepath.Join(l.store.dir, storeName)); err == nil {
		j.compactBytes = st.Size()
	}
	j.kept = make(map[string]keptEntry, len(regs))
	for _, r := range regs {
		j.kept[regKey(r.Instance.Service, r.Instance.ID)] = keptEntry{reg: r}
	}
	path := filepath.Join(l.store.dir, journalName)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return regs, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := j.replay(f, path, l.lg); err != nil {
		return nil, err
	}
	if err := j.compact(l.store); err != nil {
		return nil, fmt.Errorf("folding %s into %s: %w", journalName, storeName, err)
	}
	out := make([]Registration, 0, len(j.kept))
	for _, e := range j.kept {
		out = append(out, e.reg)
	}
	return out, nil
}

// replay applies the journal's records to j.kept. A last line cut short
// (a crash while it was written, so its caller never heard it was kept)
// is ignored.
func (j *journal) replay(f *os.File, path string, lg *zap.Logger) error {
	r := bufio.NewReader(f)
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		if len(b) > 0 && b[len(b)-1] != '\n' {
			lg.Warn("ignoring the last, unfinished line of the registrations journal", zap.String("file", path))
			return nil
		}
		if len(b) > 0 {
			var rec journalRecord
			if derr := json.Unmarshal(b, &rec); derr != nil {
				return fmt.Errorf("%s line %d is damaged (%v); move it aside to start without the changes it holds", path, line, derr)
			}
			switch {
			case rec.Put != nil:
				j.kept[regKey(rec.Put.Instance.Service, rec.Put.Instance.ID)] = keptEntry{reg: *rec.Put}
			case rec.Delete != "":
				delete(j.kept, rec.Delete)
			}
		}
		if err != nil {
			return nil // io.EOF: the whole journal was read
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
