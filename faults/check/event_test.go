package check

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestAppendEventRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n1.jsonl")
	in := []Event{
		{Time: ms(1), Kind: Enter, Host: "n1", PID: 10, PPID: 9, Token: 57, Name: "report"},
		{Time: ms(2), Kind: Exit, Host: "n1", PID: 10, PPID: 9, Token: 57, Name: "report"},
		{Time: ms(3), Kind: Dead, Host: "n1"},
	}
	for _, e := range in {
		if err := AppendEvent(path, e); err != nil {
			t.Fatal(err)
		}
	}
	out := must[[]Event](t)(ReadEvents(path))
	if len(out) != len(in) {
		t.Fatalf("read %d events, want %d", len(out), len(in))
	}
	for i := range in {
		in[i].Source = fmt.Sprintf("%s:%d", path, i+1)
		if out[i] != in[i] {
			t.Errorf("event %d: got %+v, want %+v", i, out[i], in[i])
		}
	}
}

func TestAppendEventStampsNowAndValidates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "e.jsonl")
	if err := AppendEvent(path, Event{Kind: Enter, Host: "n1", PID: 1}); err != nil {
		t.Fatal(err)
	}
	if ev := must[[]Event](t)(ReadEvents(path)); len(ev) != 1 || ev[0].Time <= 0 {
		t.Fatalf("got %+v, want one event stamped with the time", ev)
	}
	for _, bad := range []Event{
		{Kind: "start", Host: "n1", PID: 1},
		{Kind: Enter, PID: 1},
		{Kind: Exit, Host: "n1"},
	} {
		if err := AppendEvent(path, bad); err == nil {
			t.Errorf("AppendEvent(%+v) succeeded, want an error", bad)
		}
	}
}

func TestParseDropsATornLastLine(t *testing.T) {
	log := `{"t":1,"ev":"enter","host":"n1","pid":5,"token":3}` + "\n" +
		"\n" +
		`{"t":2,"ev":"exit","host":"n1","pid":5,"token":3}` + "\n" +
		`{"t":3,"ev":"ent`
	ev, err := ParseEvents(strings.NewReader(log), "n1.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) != 2 || ev[1].Kind != Exit || ev[1].Source != "n1.jsonl:3" {
		t.Fatalf("got %+v, want the two whole events", ev)
	}
	// A whole last line without its newline is kept.
	ev = must[[]Event](t)(ParseEvents(strings.NewReader(strings.TrimSuffix(log, `{"t":3,"ev":"ent`)+`{"t":3,"ev":"dead","host":"n1"}`), "x"))
	if len(ev) != 3 || ev[2].Kind != Dead {
		t.Fatalf("got %+v, want three events", ev)
	}
}

func TestParseRefusesACorruptLine(t *testing.T) {
	for name, log := range map[string]string{
		"torn in the middle": `{"t":1,"ev":"enter","host":"n1","pid":5}` + "\n" + `{"t":2,"ev":"ex` + "\n" + `{"t":3,"ev":"exit","host":"n1","pid":5}` + "\n",
		"unknown field":      `{"t":1,"ev":"enter","host":"n1","pid":5}` + "\n" + `{"t":2,"ev":"exit","host":"n1","pid":5,"tok":3}` + "\n",
		"invalid event":      `{"t":1,"ev":"enter","host":"n1","pid":5}` + "\n" + `{"t":2,"ev":"exit","host":"n1"}` + "\n",
		"two values":         `{"t":1,"ev":"enter","host":"n1","pid":5}` + "\n" + `{"t":2,"ev":"exit","host":"n1","pid":5} {}` + "\n",
	} {
		_, err := ParseEvents(strings.NewReader(log), "n1.jsonl")
		var pe *ParseError
		if !errors.As(err, &pe) || !errors.Is(err, ErrCorrupt) || pe.Line != 2 || pe.File != "n1.jsonl" {
			t.Errorf("%s: got %v, want a ParseError at n1.jsonl:2", name, err)
		}
	}
}

// Appends from many writers to one file interleave by whole lines: each is
// one write(2) on an O_APPEND descriptor.
func TestConcurrentAppendsStayWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.jsonl")
	const writers, each = 8, 100
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				e := Event{Kind: Enter, Host: fmt.Sprintf("host-%d-%s", w, strings.Repeat("x", 200)), PID: i + 1}
				if err := AppendEvent(path, e); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if ev := must[[]Event](t)(ReadEvents(path)); len(ev) != writers*each {
		t.Fatalf("read %d events, want %d", len(ev), writers*each)
	}
}

func TestShellAppend(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	if out, err := exec.Command("date", "+%s%N").Output(); err != nil || strings.Contains(string(out), "N") {
		t.Skip("no GNU date")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "it's here.jsonl")
	host, name := `n1 "quoted" 100%s`, "re'port"
	script := ShellAppend(path, Enter, host, name, "BEACON_LOCK_TOKEN") + "; " +
		ShellAppend(path, Exit, host, name, "BEACON_LOCK_TOKEN") + "; " +
		ShellAppend(path, Dead, host, "", "")
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = append(os.Environ(), "BEACON_LOCK_TOKEN=42")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s\nscript: %s", err, out, script)
	}
	ev := must[[]Event](t)(ReadEvents(path))
	if len(ev) != 3 {
		t.Fatalf("got %+v, want 3 events", ev)
	}
	pid := cmd.ProcessState.Pid()
	for i, kind := range []EventKind{Enter, Exit} {
		e := ev[i]
		if e.Kind != kind || e.Host != host || e.Name != name || e.Token != 42 || e.PID != pid || e.PPID != os.Getpid() || e.Time <= 0 {
			t.Errorf("event %d: %+v, want %s of pid %d ppid %d token 42", i, e, kind, pid, os.Getpid())
		}
	}
	if ev[2].Kind != Dead || ev[2].Token != 0 || ev[2].Name != "" {
		t.Errorf("event 2: %+v, want a dead event without token and name", ev[2])
	}
	if ivs, anomalies := BuildIntervals(ev); len(anomalies) != 0 || len(ivs) != 1 || ivs[0].How != Exited {
		t.Errorf("intervals %v, anomalies %v: want one exited interval", ivs, anomalies)
	}
}
