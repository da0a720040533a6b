package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/client/viperwatch"
	"github.com/beaconhq/beacon/internal/testcluster"
	"github.com/spf13/viper"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// configPair starts a member and a proxy; config is written through one
// and read through the other in the tests below.
func configPair(t *testing.T) (a, b *testcluster.Agent, ca, cb beaconpb.ConfigClient) {
	t.Helper()
	a, b = memberAndProxy(t, testcluster.New(t), "b")
	for _, x := range []struct {
		agent *testcluster.Agent
		out   *beaconpb.ConfigClient
	}{{a, &ca}, {b, &cb}} {
		c, err := client.New(x.agent.APIAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		*x.out = c.Config()
	}
	return a, b, ca, cb
}

func cfgCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestConfigKV: get/put/del/list through the CLI and gRPC, compare-and-
// swap on the mod revision, and bad input answered InvalidArgument naming
// the field.
func TestConfigKV(t *testing.T) {
	a, b, ca, _ := configPair(t)
	ctx := cfgCtx(t)

	if out, stderr, err := a.CLI("config", "put", "app/db/host", "db1.internal"); err != nil || !strings.Contains(out, "revision") {
		t.Fatalf("put: %q %q %v", out, stderr, err)
	}
	// Read through the other agent, as a value and as JSON.
	out, _, err := b.CLI("config", "get", "app/db/host")
	if err != nil || out != "db1.internal\n" {
		t.Fatalf("get: %q %v", out, err)
	}
	out, _, err = b.CLI("config", "get", "app/db/host", "-w", "json")
	var got struct {
		Key      string `json:"key"`
		Value    string `json:"value"`
		Revision int64  `json:"revision"`
	}
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || got.Key != "app/db/host" || got.Value != "db1.internal" || got.Revision <= 0 {
		t.Fatalf("get -w json: %q %v", out, err)
	}
	// etcd holds it under the namespace, for etcdctl and clientv3 alike.
	if r, err := a.Client().Get(ctx, "/beacon/config/app/db/host"); err != nil || len(r.Kvs) != 1 || r.Kvs[0].ModRevision != got.Revision {
		t.Fatalf("etcd: %v %v", r, err)
	}

	// CAS: a stale revision fails, naming the current one; the right one wins.
	_, stderr, err := a.CLI("config", "put", "app/db/host", "db2", "--if-revision", strconv.FormatInt(got.Revision-1, 10))
	if err == nil || !strings.Contains(stderr, "failed precondition") || !strings.Contains(stderr, fmt.Sprintf("its revision is %d", got.Revision)) {
		t.Fatalf("stale --if-revision: %q %v", stderr, err)
	}
	_, err = ca.Put(ctx, &beaconpb.ConfigPutRequest{Key: "app/db/host", Value: []byte("db2"), IfRevision: cfgPtr(int64(0))})
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || len(st.Details()) != 1 ||
		st.Details()[0].(*beaconpb.ConfigEntry).ModRevision != got.Revision {
		t.Fatalf("put if absent on an existing key: %v, want FailedPrecondition with the current revision in details", err)
	}
	if _, stderr, err := a.CLI("config", "put", "app/db/host", "db2", "--if-revision", strconv.FormatInt(got.Revision, 10)); err != nil {
		t.Fatalf("put at the right revision: %q %v", stderr, err)
	}
	if out, _, _ := a.CLI("config", "get", "app/db/host"); out != "db2\n" {
		t.Fatalf("after CAS: %q", out)
	}

	// stdin, list, del.
	cmd := exec.Command(testcluster.Binary(t), "config", "put", "app/motd", "--agent", a.APIAddr)
	cmd.Stdin = strings.NewReader("line one\nline two\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("put from stdin: %s %v", out, err)
	}
	out, _, err = b.CLI("config", "list", "app/", "-w", "json")
	var list struct {
		Entries []struct{ Key, Value string } `json:"entries"`
	}
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list.Entries) != 2 ||
		list.Entries[0].Key != "app/db/host" || list.Entries[1].Value != "line one\nline two\n" {
		t.Fatalf("list: %q %v", out, err)
	}
	if out, _, err := a.CLI("config", "del", "app/motd"); err != nil || !strings.Contains(out, "deleted app/motd") {
		t.Fatalf("del: %q %v", out, err)
	}
	if _, stderr, err := b.CLI("config", "get", "app/motd"); err == nil || !strings.Contains(stderr, "not found") {
		t.Fatalf("get after del: %q %v", stderr, err)
	}

	// Bad input, through the CLI and gRPC.
	for _, tc := range []struct {
		args  []string
		field string
	}{
		{[]string{"config", "put", "", "v"}, "key:"},
		{[]string{"config", "get", "/etc/passwd"}, "key:"},
		{[]string{"config", "del", "app/../x"}, "key:"},
		{[]string{"config", "list", "a//b"}, "prefix:"},
		{[]string{"config", "put", strings.Repeat("k", 1025), "v"}, "key:"},
	} {
		_, stderr, err := a.CLI(tc.args...)
		if err == nil || !strings.Contains(stderr, "invalid argument: "+tc.field) {
			t.Errorf("beacon %.60v: %q %v, want invalid argument naming %s", tc.args, stderr, err, tc.field)
		}
	}
	_, err = ca.Put(ctx, &beaconpb.ConfigPutRequest{Key: "big", Value: make([]byte, 1<<20+1)})
	cfgWantInvalid(t, "value over 1 MiB", err, "value:")
	_, err = ca.Put(ctx, &beaconpb.ConfigPutRequest{Key: "k", IfRevision: cfgPtr(int64(-2))})
	cfgWantInvalid(t, "negative if_revision", err, "if_revision:")
	for prefix, from := range map[string]int64{"/x": 0, "a/..": 0, "ok/": -1} {
		s, err := ca.Watch(ctx, &beaconpb.ConfigWatchRequest{Prefix: prefix, FromRevision: from})
		if err == nil {
			_, err = s.Recv()
		}
		field := "prefix:"
		if from < 0 {
			field = "from_revision:"
		}
		cfgWantInvalid(t, "watch "+prefix, err, field)
	}
	if _, err := ca.Put(ctx, &beaconpb.ConfigPutRequest{Key: "big", Value: make([]byte, 1<<20)}); err != nil {
		t.Fatalf("a value of exactly 1 MiB: %v", err)
	}
}

func cfgWantInvalid(t *testing.T, what string, err error, field string) {
	t.Helper()
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), field) {
		t.Errorf("%s: %v, want InvalidArgument naming %s", what, err, field)
	}
}

func cfgPtr[T any](v T) *T { return &v }

// TestConfigRender: `beacon config render` rewrites the file once after a
// burst of changes and runs exec once; a failing check keeps the old file.
// The renderer reads through the proxy; the changes go through the member.
func TestConfigRender(t *testing.T) {
	_, b, ca, _ := configPair(t)
	ctx := cfgCtx(t)
	dir := t.TempDir()
	tmpl, out := filepath.Join(dir, "app.tmpl"), filepath.Join(dir, "app.conf")
	execs, checks := filepath.Join(dir, "execs"), filepath.Join(dir, "checks")
	cfgWrite(t, tmpl, "port={{ key \"app/port\" }}\n{{ range ls \"app/upstreams/\" }}server {{ .Key }} {{ .Value }}\n{{ end }}")
	cfgWrite(t, out, "old\n")
	if err := os.Chmod(out, 0o640); err != nil {
		t.Fatal(err)
	}
	put := func(k, v string) int64 {
		t.Helper()
		r, err := ca.Put(ctx, &beaconpb.ConfigPutRequest{Key: k, Value: []byte(v)})
		if err != nil {
			t.Fatal(err)
		}
		return r.Revision
	}
	put("app/port", "8080")

	// --once with a failing check: the old file stays, the exit says why.
	_, stderr, err := b.CLI("config", "render", "--once", "--template", tmpl, "--out", out, "--check", "exit 7")
	if err == nil || !strings.Contains(stderr, "check failed") || cfgRead(t, out) != "old\n" {
		t.Fatalf("render --once with a failing check: %q %v; file %q", stderr, err, cfgRead(t, out))
	}

	// The check logs the candidate it saw and accepts only a numeric port.
	check := `echo "$1" >> ` + checks + `; grep -q '^port=[0-9][0-9]*$' {{.}}`
	render := exec.Command(testcluster.Binary(t), "config", "render", "--agent", b.APIAddr, "--prefix", "app/",
		"--template", tmpl, "--out", out, "--check", check, "--exec", `echo "$BEACON_RENDER_REVISION" >> `+execs, "--wait", "1s:30s")
	logs := &cfgBuffer{}
	render.Stdout, render.Stderr = logs, logs
	if err := render.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = render.Process.Kill(); _ = render.Wait() })

	// The first render, at once.
	cfgWait(t, "first render", func() error { return cfgFileIs(out, "port=8080\n") })
	cfgWait(t, "first exec", func() error { return cfgLinesAtLeast(execs, 1) })
	if st, _ := os.Stat(out); st.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want 0640 kept", st.Mode())
	}

	// A burst of 30 changes: one render, one exec.
	var last int64
	for i := 0; i < 30; i++ {
		last = put(fmt.Sprintf("app/upstreams/u%02d", i%10), fmt.Sprintf("10.0.0.%d:80", i))
	}
	var want strings.Builder
	want.WriteString("port=8080\n")
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&want, "server u%02d 10.0.0.%d:80\n", i, i+20)
	}
	cfgWait(t, "render of the burst", func() error { return cfgFileIs(out, want.String()) })
	cfgWait(t, "exec after the burst", func() error { return cfgLastLineAtLeast(execs, last) })
	if n := cfgLines(execs); n != 2 {
		t.Fatalf("exec ran %d times, want 2 (first render, burst):\n%s", n, cfgRead(t, execs))
	}
	if n := cfgLines(checks); n != 2 || !strings.Contains(cfgRead(t, checks), ".app.conf.beacon-") {
		t.Fatalf("check ran %d times on %q, want 2 on candidates beside the file", n, cfgRead(t, checks))
	}

	// A change the check refuses: the old file stays, the log says why.
	put("app/port", "eighty")
	cfgWait(t, "check failure logged", func() error {
		if !strings.Contains(logs.String(), "check failed") {
			return fmt.Errorf("log: %s", logs.String())
		}
		return nil
	})
	if got := cfgRead(t, out); got != want.String() {
		t.Fatalf("after a failing check: %q, want the old file", got)
	}
	// Then a good one is installed, and exec runs for it alone.
	good := put("app/port", "9090")
	cfgWait(t, "render after the failure", func() error {
		return cfgFileIs(out, strings.Replace(want.String(), "8080", "9090", 1))
	})
	cfgWait(t, "exec after the failure", func() error { return cfgLastLineAtLeast(execs, good) })
	if n := cfgLines(execs); n != 3 {
		t.Fatalf("exec ran %d times, want 3:\n%s", n, cfgRead(t, execs))
	}
	if files, _ := filepath.Glob(filepath.Join(dir, ".app.conf.beacon-*")); len(files) != 0 {
		t.Fatalf("candidates left behind: %v", files)
	}
}

// TestConfigWatchResume: a watch resumed from a revision etcd still has
// gets exactly the changes from it; from a compacted revision it relists
// (a fresh snapshot, then the changes), through gRPC and the CLI.
func TestConfigWatchResume(t *testing.T) {
	a, b, ca, cb := configPair(t)
	ctx := cfgCtx(t)
	put := func(k, v string) int64 {
		t.Helper()
		r, err := ca.Put(ctx, &beaconpb.ConfigPutRequest{Key: k, Value: []byte(v)})
		if err != nil {
			t.Fatal(err)
		}
		return r.Revision
	}
	r1 := put("w/a", "1")
	r2 := put("w/b", "2")
	put("x/other", "-")
	r3 := put("w/a", "3")

	// Resume from r2: the changes at r2 and r3, in order, nothing else.
	s, err := cb.Watch(ctx, &beaconpb.ConfigWatchRequest{Prefix: "w/", FromRevision: r2})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []int64{r2, r3} {
		m, err := s.Recv()
		if err != nil || m.Type != beaconpb.ConfigWatchResponse_CHANGES || m.Revision != want {
			t.Fatalf("resume: %v %v, want the change at %d", m, err, want)
		}
	}

	// Compact past r1: a watch from r1 relists.
	if _, err := a.Client().Compact(ctx, r3); err != nil {
		t.Fatal(err)
	}
	s, err = cb.Watch(ctx, &beaconpb.ConfigWatchRequest{Prefix: "w/", FromRevision: r1})
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Recv()
	if err != nil || m.Type != beaconpb.ConfigWatchResponse_SNAPSHOT || !m.Relisted || m.CompactRevision != r3 ||
		m.Revision < r3 || len(m.Entries) != 2 || string(m.Entries[0].Value) != "3" || m.More {
		t.Fatalf("watch from a compacted revision: %v %v", m, err)
	}

	// The CLI prints the relist, the keys, then each change on a line.
	cmd := exec.Command(testcluster.Binary(t), "config", "watch", "w/", "--from-revision", strconv.FormatInt(r1, 10), "--agent", b.APIAddr)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	out := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out <- sc.Text()
		}
		close(out)
	}()
	read := func() string {
		t.Helper()
		select {
		case l := <-out:
			return l
		case <-time.After(20 * time.Second):
			t.Fatal("beacon config watch printed nothing")
			return ""
		}
	}
	if l := read(); !strings.HasSuffix(l, fmt.Sprintf("RELIST compacted-at %d", r3)) {
		t.Fatalf("first line %q, want a RELIST", l)
	}
	if l1, l2 := read(), read(); !strings.HasSuffix(l1, "SNAPSHOT w/a 3") || !strings.HasSuffix(l2, "SNAPSHOT w/b 2") {
		t.Fatalf("snapshot cfgLines %q %q", l1, l2)
	}
	r4 := put("w/c", "two words")
	if _, err := ca.Delete(ctx, &beaconpb.ConfigDeleteRequest{Key: "w/b"}); err != nil {
		t.Fatal(err)
	}
	if l := read(); l != fmt.Sprintf("%d PUT w/c two words", r4) {
		t.Fatalf("put line %q", l)
	}
	if l := read(); l != fmt.Sprintf("%d DELETE w/b", r4+1) {
		t.Fatalf("delete line %q", l)
	}
}

// TestConfigViper: the Go helper keeps a viper instance fed through an
// agent: changes made through another agent show, deletes fall back to
// the default.
func TestConfigViper(t *testing.T) {
	a, b, _, _ := configPair(t)
	ctx := cfgCtx(t)
	if _, stderr, err := a.CLI("config", "put", "svc/http/port", "8081"); err != nil {
		t.Fatal(stderr)
	}
	c, err := client.New(b.APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v := viper.New()
	v.SetDefault("http.timeout", "5s")
	feed, err := viperwatch.Watch(ctx, c, "svc/", v)
	if err != nil {
		t.Fatal(err)
	}
	read := func(f func(*viper.Viper) string) string {
		var s string
		feed.View(func(v *viper.Viper) { s = f(v) })
		return s
	}
	if p := read(func(v *viper.Viper) string { return v.GetString("http.port") }); p != "8081" {
		t.Fatalf("http.port = %q", p)
	}
	if _, stderr, err := a.CLI("config", "put", "svc/http/timeout", "30s"); err != nil {
		t.Fatal(stderr)
	}
	cfgWait(t, "viper sees the put", func() error {
		if d := read(func(v *viper.Viper) string { return v.GetDuration("http.timeout").String() }); d != "30s" {
			return fmt.Errorf("http.timeout = %s", d)
		}
		return nil
	})
	if _, stderr, err := a.CLI("config", "del", "svc/http/timeout"); err != nil {
		t.Fatal(stderr)
	}
	cfgWait(t, "viper falls back to the default", func() error {
		if d := read(func(v *viper.Viper) string { return v.GetDuration("http.timeout").String() }); d != "5s" {
			return fmt.Errorf("http.timeout = %s", d)
		}
		return nil
	})
}

func cfgWrite(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func cfgRead(t *testing.T, path string) string {
	t.Helper()
	b, _ := os.ReadFile(path)
	return string(b)
}

func cfgFileIs(path, want string) error {
	b, _ := os.ReadFile(path)
	if string(b) != want {
		return fmt.Errorf("%s holds %q, want %q", path, b, want)
	}
	return nil
}

func cfgLines(path string) int {
	b, _ := os.ReadFile(path)
	return bytes.Count(b, []byte("\n"))
}

func cfgLinesAtLeast(path string, n int) error {
	if got := cfgLines(path); got < n {
		return fmt.Errorf("%s has %d cfgLines, want %d", path, got, n)
	}
	return nil
}

// cfgLastLineAtLeast: the file's last line is a revision ≥ rev.
func cfgLastLineAtLeast(path string, rev int64) error {
	b, _ := os.ReadFile(path)
	ls := strings.Fields(string(b))
	if len(ls) == 0 {
		return fmt.Errorf("%s is empty", path)
	}
	if n, _ := strconv.ParseInt(ls[len(ls)-1], 10, 64); n < rev {
		return fmt.Errorf("%s: last revision %d, want %d", path, n, rev)
	}
	return nil
}

func cfgWait(t *testing.T, what string, f func() error) {
	t.Helper()
	if err := testcluster.Eventually(30*time.Second, f); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// cfgBuffer collects a process's output for the test to read while it
// runs.
type cfgBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *cfgBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *cfgBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var _ io.Writer = (*cfgBuffer)(nil)
