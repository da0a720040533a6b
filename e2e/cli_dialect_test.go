package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
)

// dialectErr checks that a command failed with exit code want and one
// error line that starts "beacon: " once, and returns the line.
func dialectErr(t *testing.T, what, stderr string, code, want int) string {
	t.Helper()
	line := strings.TrimSpace(stderr)
	if code != want || strings.Contains(line, "\n") || !strings.HasPrefix(line, "beacon: ") || strings.Contains(line, "beacon: beacon") {
		t.Errorf("%s: want exit %d and one line \"beacon: …\", got exit %d: %q", what, want, code, stderr)
	}
	return line
}

// dialectJSON decodes a command's JSON output into a map (nil, and the
// test failed, if it is no JSON object).
func dialectJSON(t *testing.T, what, out string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Errorf("%s: not JSON: %v\n%s", what, err, out)
	}
	return m
}

// TestCLIDialect: issue 10's findings 1, 3 and 4 on one agent, through
// the real binary: bad input fails (exit 2, a suggestion), empty values
// need --empty, JSON is one dialect (numbers, text, base64 flagged),
// and flags and messages agree.
func TestCLIDialect(t *testing.T) {
	a, cli := lockOneAgent(t)
	run := func(stdin []byte, args ...string) (string, string, int) {
		t.Helper()
		return queueCLI(t, a, stdin, args...)
	}

	t.Run("UnknownSubcommands", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"config", "gte", "app/port"}, "did you mean get?"},
			{[]string{"queue", "frobnicate"}, "its commands are ack, dead"},
			{[]string{"bench", "frobnicate"}, "its commands are agent"},
			{[]string{"confg"}, "did you mean config?"},
		} {
			out, stderr, code := run(nil, tc.args...)
			line := dialectErr(t, strings.Join(tc.args, " "), stderr, code, 2)
			if !strings.Contains(line, "unknown command") || !strings.Contains(line, tc.want) || out != "" {
				t.Errorf("beacon %v: %q (stdout %q), want %q", tc.args, line, out, tc.want)
			}
		}
	})

	t.Run("EmptyValues", func(t *testing.T) {
		_, stderr, code := run(nil, "config", "put", "app/port")
		if line := dialectErr(t, "config put without a value", stderr, code, 2); !strings.Contains(line, "--empty") {
			t.Errorf("config put without a value: %q lacks --empty", line)
		}
		if _, stderr, code := run(nil, "config", "get", "app/port"); code != 1 || !strings.Contains(stderr, "not found") {
			t.Errorf("the refused put wrote app/port: exit %d %s", code, stderr)
		}
		_, stderr, code = run(nil, "queue", "push", "empties")
		if line := dialectErr(t, "queue push without data", stderr, code, 2); !strings.Contains(line, "--empty") {
			t.Errorf("queue push without data: %q lacks --empty", line)
		}
		out, _, _ := run(nil, "queue", "stats", "empties", "-w", "json")
		if st := dialectJSON(t, "stats", out); st["depth"] != float64(0) {
			t.Errorf("the refused push added a message: %s", out)
		}
		// Meant empty: written.
		if _, stderr, code := run(nil, "config", "put", "app/blank", "--empty"); code != 0 {
			t.Fatalf("config put --empty: exit %d %s", code, stderr)
		}
		if _, stderr, code := run(nil, "queue", "push", "empties", "--empty"); code != 0 {
			t.Fatalf("queue push --empty: exit %d %s", code, stderr)
		}
	})

	t.Run("JSON", func(t *testing.T) {
		run(nil, "queue", "push", "jobs", "hello")
		out, _, code := run(nil, "queue", "stats", "jobs", "-w", "json")
		st := dialectJSON(t, "queue stats", out)
		if code != 0 || st["depth"] != float64(1) || st["ready"] != float64(1) {
			t.Errorf("queue stats -w json: integers must be numbers: %s", out)
		}
		if _, ok := st["revision"].(float64); !ok {
			t.Errorf("queue stats -w json: revision is not a number: %s", out)
		}
		out, _, _ = run(nil, "queue", "reserve", "jobs", "-w", "json")
		msg, _ := dialectJSON(t, "queue reserve", out)["message"].(map[string]any)
		if msg["payload"] != "hello" || msg["deliveries"] != float64(1) || msg["payload_encoding"] != nil {
			t.Errorf("queue reserve -w json: a text payload must be text: %s", out)
		}

		run([]byte{0xff, 0x00, 0x01}, "config", "put", "bin")
		run(nil, "config", "put", "text", "v")
		out, _, _ = run(nil, "config", "get", "bin", "-w", "json")
		if e := dialectJSON(t, "config get bin", out); e["value"] != "/wAB" || e["value_encoding"] != "base64" {
			t.Errorf("config get -w json of binary: want base64 and value_encoding: %s", out)
		}
		out, _, _ = run(nil, "config", "get", "text", "-w", "json")
		if e := dialectJSON(t, "config get text", out); e["value"] != "v" || e["value_encoding"] != nil {
			t.Errorf("config get -w json of text: %s", out)
		}

		out, stderr, code := run(nil, "register", "--name", "web", "--port", "8080", "--id", "web1", "--tag", "blue", "-w", "json")
		reg := dialectJSON(t, "register -w json: "+stderr, out)
		if in, _ := reg["instance"].(map[string]any); code != 0 || in["id"] != "web1" || in["port"] != float64(8080) {
			t.Errorf("register -w json: %s", out)
		}
		err := testcluster.Eventually(30*time.Second, func() error {
			out, _, _ = run(nil, "services", "-w", "json")
			var l struct {
				Services []struct {
					Service   string   `json:"service"`
					Instances int      `json:"instances"`
					Passing   int      `json:"passing"`
					Tags      []string `json:"tags"`
				} `json:"services"`
				Revision int64 `json:"revision"`
			}
			if err := json.Unmarshal([]byte(out), &l); err != nil {
				return err
			}
			if len(l.Services) != 1 || l.Services[0].Service != "web" || l.Services[0].Instances != 1 ||
				strings.Join(l.Services[0].Tags, ",") != "blue" || l.Revision == 0 {
				return fmt.Errorf("services -w json should list services as the table does: %s", out)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		out, _, code = run(nil, "deregister", "web1", "-w", "json")
		if d := dialectJSON(t, "deregister -w json", out); code != 0 || d["id"] != "web1" || d["deregistered"] != true {
			t.Errorf("deregister -w json: %s", out)
		}
		out, _, _ = run(nil, "version", "-w", "json")
		if v := dialectJSON(t, "version -w json", out); v["version"] == nil || v["go"] == nil {
			t.Errorf("version -w json: %s", out)
		}
	})

	t.Run("Flags", func(t *testing.T) {
		// --wait is the wait everywhere; --timeout stays as its older name.
		for _, args := range [][]string{
			{"lock", "w1", "--wait", "10s", "--", "true"},
			{"lock", "w1", "--timeout", "10s", "--", "true"},
			{"elect", "w1", "--wait", "10s", "--", "true"},
		} {
			if _, stderr, code := run(nil, args...); code != 0 {
				t.Errorf("beacon %v: exit %d %s", args, code, stderr)
			}
		}
		_, stderr, code := run(nil, "lock", "w1", "--wait", "1s", "--timeout", "1s", "--", "true")
		dialectErr(t, "--wait with --timeout", stderr, code, 2)

		// beacon check takes the global -w; its note is --note.
		if _, stderr, code := run(nil, "register", "--name", "ttl", "--port", "9000", "--id", "ttl1", "--ttl", "30s"); code != 0 {
			t.Fatalf("register --ttl: %s", stderr)
		}
		out, stderr, code := run(nil, "check", "pass", "ttl1", "--note", "fine", "-w", "json")
		if c := dialectJSON(t, "check -w json: "+stderr, out); code != 0 || c["status"] != "pass" || c["note"] != "fine" {
			t.Errorf("check pass -w json: exit %d %s %s", code, out, stderr)
		}

		// A flag's usage names its type, not a command.
		out, _, _ = run(nil, "register", "--help")
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "--ttl ") && !strings.Contains(l, "--ttl duration ") {
				t.Errorf("register --help: %q", l)
			}
		}

		// Interrupted while waiting for a lock: 128 + SIGINT, as elect and
		// queue reserve.
		dir := t.TempDir()
		holder := lockStart(t, dir, "holder", "--agent", a.APIAddr, "lock", "w2", "--", "sleep", "60")
		lockWaitHolders(t, cli, "w2", 1)
		waiter := lockStart(t, dir, "waiter", "--agent", a.APIAddr, "lock", "w2", "--wait", "60s", "--", "true")
		lockWaitHolders(t, cli, "w2", 2)
		_ = waiter.cmd.Process.Signal(syscall.SIGINT)
		if code := waiter.exitCode(t, 30*time.Second); code != 128+int(syscall.SIGINT) || !strings.Contains(waiter.output(), "interrupted") {
			t.Errorf("lock interrupted while waiting: exit %d, %s", code, waiter.output())
		}
		_ = holder.cmd.Process.Signal(syscall.SIGTERM)
		holder.exitCode(t, 30*time.Second)
	})

	t.Run("ElectSignals", func(t *testing.T) {
		// The help says what happens: SIGHUP only passed on, SIGINT passed
		// on as SIGINT and ends beacon with CMD's status.
		help, _, _ := run(nil, "elect", "--help")
		flat := strings.Join(strings.Fields(help), " ")
		for _, want := range []string{"(SIGINT as SIGINT, SIGTERM as SIGTERM)", "SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH are only passed on"} {
			if !strings.Contains(flat, want) {
				t.Errorf("elect --help lacks %q", want)
			}
		}
		// CMD's own marker, printed once its traps are set: beacon's
		// "leading at rev" line comes before CMD starts, and a SIGHUP sent
		// on it could reach sh before its trap (it failed that way).
		script := `trap 'echo got-HUP' HUP; trap 'echo got-INT; exit 7' INT; echo traps-set; while :; do sleep 0.1; done`
		p := startElectProc(t, testcluster.Binary(t), nil, "--agent", a.APIAddr, "elect", "sig", "--", "sh", "-c", script)
		p.waitOutput(t, "traps-set")
		p.signal(syscall.SIGHUP)
		p.waitOutput(t, "got-HUP")
		p.signal(syscall.SIGINT)
		p.wait(t)
		if code := p.cmd.ProcessState.ExitCode(); code != 7 || !strings.Contains(p.output(), "got-INT") {
			t.Errorf("elect after SIGHUP then SIGINT: exit %d, want CMD's 7 after it got SIGINT; output:\n%s", code, p.output())
		}
	})

	t.Run("Messages", func(t *testing.T) {
		// One flag-error prefix.
		_, stderr, code := run(nil, "agent", "--no-such-flag")
		if line := dialectErr(t, "agent --no-such-flag", stderr, code, 2); !strings.Contains(line, "beacon: agent: unknown flag") {
			t.Errorf("agent --no-such-flag: %q", line)
		}
		// One port check, one message.
		num := regexp.MustCompile(`-?\d+`)
		var msgs []string
		for _, port := range []string{"70000", "0"} {
			_, stderr, code := run(nil, "register", "--name", "web", "--port", port)
			line := dialectErr(t, "--port "+port, stderr, code, 2)
			if !strings.Contains(line, "port: "+port+" is not a port from 1 to 65535") {
				t.Errorf("--port %s: %q", port, line)
			}
			msgs = append(msgs, num.ReplaceAllString(line, "N"))
		}
		if msgs[0] != msgs[1] {
			t.Errorf("--port 70000 and --port 0 fail differently: %q, %q", msgs[0], msgs[1])
		}
		// A value over the limit is named by its size and the limit's.
		_, stderr, code = run(bytes.Repeat([]byte("a"), 2_000_000), "config", "put", "big")
		line := dialectErr(t, "a 2 MB value", stderr, code, 1)
		if !strings.Contains(line, "2.0 MB") || !strings.Contains(line, "1 MiB") || strings.Contains(line, "1048577") {
			t.Errorf("a 2 MB value: %q", line)
		}
	})
}

// TestCLIMembersAndQuorum: `beacon members -w json` carries each
// member's raft state as status does (finding 2); without quorum status
// exits 3 and a registration says there is no quorum (findings 1 and 4).
func TestCLIMembersAndQuorum(t *testing.T) {
	c := testcluster.New(t)
	ms := startStatic(t, c, 3)
	type member struct {
		Name     string `json:"name"`
		IsLeader bool   `json:"is_leader"`
		Healthy  bool   `json:"healthy"`
		RaftTerm any    `json:"raft_term"`
	}
	err := testcluster.Eventually(readyWithin, func() error {
		out, stderr, err := ms[0].CLI("members", "-w", "json")
		if err != nil {
			return fmt.Errorf("members: %v %s", err, stderr)
		}
		var resp struct{ Members []member }
		if err := json.Unmarshal([]byte(out), &resp); err != nil {
			return fmt.Errorf("members -w json: %v: %s", err, out)
		}
		leaders := 0
		for _, m := range resp.Members {
			if term, _ := m.RaftTerm.(float64); !m.Healthy || term == 0 {
				return fmt.Errorf("members -w json: %s not healthy or without a raft term: %s", m.Name, out)
			}
			if m.IsLeader {
				leaders++
			}
		}
		if len(resp.Members) != 3 || leaders != 1 {
			return fmt.Errorf("members -w json: want 3 members, one leader: %s", out)
		}
		return nil
	})
	if err != nil {
		t.Error(err) // go on: the quorum checks are findings of their own
	}
	if _, stderr, err := ms[0].CLI("status"); err != nil {
		t.Fatalf("status with quorum: %v %s", err, stderr)
	}

	ms[1].Kill()
	ms[2].Kill()
	err = testcluster.Eventually(readyWithin, func() error {
		out, stderr, err := ms[0].CLI("status")
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(out, "quorum NO") || !strings.Contains(stderr, "no quorum") {
			return fmt.Errorf("status without quorum: %v, %q %q", err, out, stderr)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	_, stderr, err := ms[0].CLI("register", "--name", "web", "--port", "8080")
	line := strings.TrimSpace(stderr)
	if err == nil || !strings.HasPrefix(line, "beacon: unavailable: no quorum: ") || strings.Contains(line, "\n") {
		t.Fatalf("register without quorum: %v %q", err, stderr)
	}
	_, stderr, err = ms[0].CLI("queue", "push", "jobs", "data")
	line = strings.TrimSpace(stderr)
	if err == nil || !strings.HasPrefix(line, "beacon: unavailable: no quorum: ") || strings.Contains(line, "\n") {
		t.Fatalf("queue push without quorum: %v %q", err, stderr)
	}
}
