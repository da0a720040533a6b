package check

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
)

// EventKind says what an Event records.
type EventKind string

// Kinds of interval events.
const (
	// Enter: CMD started running as a holder (first thing it does).
	Enter EventKind = "enter"
	// Exit: CMD stopped running as a holder (last thing it does, or its
	// trap on SIGTERM).
	Exit EventKind = "exit"
	// Dead: written by the workload, not by CMD: every process matching
	// Host (and PID, and Name, and Token when set) that entered before
	// Time was dead by Time, e.g. because the workload reaped it after a
	// SIGKILL. It closes intervals that never logged an exit.
	Dead EventKind = "dead"
)

// An Event is one line of an interval log: a JSON object on a line of its
// own, for example
//
//	{"t":1754321000123456789,"ev":"enter","host":"n1","pid":4242,"ppid":4240,"token":57,"name":"report"}
//
// Times come from one machine clock (all the fault hosts are namespaces of
// one kernel), in nanoseconds since the Unix epoch, so events of different
// hosts can be compared directly. (Host, PID, Token) identifies a holder:
// its exit must repeat them.
type Event struct {
	Time  int64     `json:"t"`
	Kind  EventKind `json:"ev"`
	Host  string    `json:"host"`
	PID   int       `json:"pid,omitempty"`
	PPID  int       `json:"ppid,omitempty"`  // CMD's parent: the `beacon lock|elect` process a workload reaps
	Token int64     `json:"token,omitempty"` // fencing token (BEACON_LOCK_TOKEN) or leadership rev (BEACON_LEADER_REV)
	Name  string    `json:"name,omitempty"`  // the lock or election; histories of several names are checked apart

	// Source is file:line of the record, for reports; not part of the
	// format.
	Source string `json:"-"`
}

func (e Event) validate() error {
	switch {
	case e.Kind != Enter && e.Kind != Exit && e.Kind != Dead:
		return fmt.Errorf("unknown event kind %q (want enter, exit or dead)", e.Kind)
	case e.Time <= 0:
		return fmt.Errorf("event without a time (\"t\", nanoseconds since the epoch)")
	case e.Host == "":
		return fmt.Errorf("event without a host")
	case e.Kind != Dead && e.PID <= 0:
		return fmt.Errorf("%s event without a pid", e.Kind)
	}
	return nil
}

// AppendEvent appends e to the log at path as one line, creating the file
// if needed. A zero e.Time is set to now. The line goes out in a single
// write(2) on an O_APPEND descriptor, so it lands whole after whatever is
// already there even if the process is killed right after; only a write cut
// short (full disk) can leave a torn last line, which the parser skips. Use
// one file per writing process: lines of one file then are in time order.
func AppendEvent(path string, e Event) error {
	if e.Time == 0 {
		e.Time = time.Now().UnixNano()
	}
	if err := e.validate(); err != nil {
		return fmt.Errorf("append event to %s: %w", path, err)
	}
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(line); err != nil {
		f.Close()
		return fmt.Errorf("append event to %s: %w", path, err)
	}
	return f.Close()
}

// ShellAppend returns a POSIX sh command that appends one event of the
// given kind to path, for CMDs that are shell scripts:
//
//	enter := check.ShellAppend(p, check.Enter, "n1", "report", "BEACON_LOCK_TOKEN")
//	exit := check.ShellAppend(p, check.Exit, "n1", "report", "BEACON_LOCK_TOKEN")
//	exec.Command("beacon", "lock", "report", "--", "sh", "-c", enter+"; sleep 0.2; "+exit)
//
// The pid is the shell's own ($$), the ppid its parent's ($PPID: the beacon
// process), the token is read from the environment variable tokenVar (0 if
// unset or empty; no token if tokenVar is ""), the time from GNU date's
// %s%N. GNU date writes the whole line itself, its format holding the
// event (host's and name's % doubled), in one write(2) through the >>
// (O_APPEND) redirection. So a date killed by a signal sent to CMD's
// group (a hold's SIGTERM) writes nothing rather than a line without its
// time, which a printf of "$(date)" did; a script may define date() to
// retry.
func ShellAppend(path string, kind EventKind, host, name, tokenVar string) string {
	lit := func(s string) string { return shellQuote(strings.ReplaceAll(s, "%", "%%")) }
	w := "date " + lit(`+{"t":`) + "%s%N" + lit(`,"ev":"`+string(kind)+`","host":`+jsonString(host)+`,"pid":`) +
		`"$$"` + lit(`,"ppid":`) + `"$PPID"`
	if tokenVar != "" {
		w += lit(`,"token":`) + `"${` + tokenVar + `:-0}"`
	}
	if name != "" {
		w += lit(`,"name":` + jsonString(name))
	}
	return w + lit(`}`) + " >> " + shellQuote(path)
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// shellQuote quotes s for sh: single quotes, each ' written as '\”.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
