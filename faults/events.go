package faults

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Now is the shared clock of the harness: CLOCK_REALTIME in nanoseconds.
// Every namespace shares the machine's clock, so a Go checker, an agent
// and a shell script (`date +%s%N`) all stamp events on one time line.
func Now() int64 { return time.Now().UnixNano() }

// Events is a directory of event files, one per source, that any process
// of any host appends to: one line per event,
//
//	<ns> <kind> <detail…>
//
// where <ns> is Now() (or `date +%s%N`). Every process the harness starts
// gets the directory in $BFX_EVENTS, so a CMD run by `beacon lock` can
// write `echo "$(date +%s%N) acquired $BFX_HOST" >> "$BFX_EVENTS/lock.events"`.
// The harness itself writes faults and agent starts to harness.events.
type Events struct {
	Dir string
	mu  sync.Mutex
}

// Event is one line of an event file.
type Event struct {
	At     int64  // ns, the shared clock
	Source string // the file's name without .events
	Kind   string
	Detail string
}

func (e Event) String() string {
	return fmt.Sprintf("%s %s %s %s", time.Unix(0, e.At).Format("15:04:05.000000"), e.Source, e.Kind, e.Detail)
}

// Record appends one event, stamped now, to <source>.events.
func (e *Events) Record(source, kind, detail string) {
	e.RecordAt(Now(), source, kind, detail)
}

// RecordAt appends one event with a given time.
func (e *Events) RecordAt(at int64, source, kind, detail string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f, err := os.OpenFile(filepath.Join(e.Dir, source+".events"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%d %s %s\n", at, kind, strings.ReplaceAll(detail, "\n", " "))
}

// Read merges every event file, ordered by time. Lines that do not start
// with a number are skipped.
func (e *Events) Read() ([]Event, error) {
	files, err := filepath.Glob(filepath.Join(e.Dir, "*.events"))
	if err != nil {
		return nil, err
	}
	var out []Event
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		source := strings.TrimSuffix(filepath.Base(name), ".events")
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.SplitN(sc.Text(), " ", 3)
			at, err := strconv.ParseInt(fields[0], 10, 64)
			if err != nil || len(fields) < 2 {
				continue
			}
			ev := Event{At: at, Source: source, Kind: fields[1]}
			if len(fields) == 3 {
				ev.Detail = fields[2]
			}
			out = append(out, ev)
		}
		f.Close()
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At < out[j].At })
	return out, nil
}
