package agent

import (
	"errors"
	"github.com/beaconhq/beacon/cluster"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func load(t *testing.T, file string, args ...string) (Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	BindFlags(fs)
	if file != "" {
		args = append(args, "--config", file)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return LoadConfig(fs)
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "beacon.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPrecedence: flag > env > file > default, key by key.
func TestPrecedence(t *testing.T) {
	file := writeFile(t, "name: from-file\nvoters: 5\nnode-ttl: 20s\nlog-level: warn\ndomain: file.example\n")
	t.Setenv("BEACON_VOTERS", "7")
	t.Setenv("BEACON_LOG_LEVEL", "error")
	t.Setenv("BEACON_NAME", "from-env")
	c, err := load(t, file, "--name", "from-flag")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		key       string
		got, want any
	}{
		{"name (flag beats env and file)", c.Name, "from-flag"},
		{"voters (env beats file)", c.Voters, 7},
		{"log-level (env beats file)", c.LogLevel, "error"},
		{"node-ttl (file beats default)", c.NodeTTL, 20 * time.Second},
		{"domain (file, made absolute)", c.Domain, "file.example."},
		{"api-addr (default)", c.APIAddr, "127.0.0.1:7600"},
		{"api-socket (default in data dir)", c.APISocket, filepath.Join("beacon-data", "beacon.sock")},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %v, want %v", ch.key, ch.got, ch.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	c, err := load(t, "")
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	want := Config{
		Name: host, DataDir: "./beacon-data", Role: cluster.RoleMember,
		ClientURL: "http://127.0.0.1:2379", PeerURL: "http://127.0.0.1:2380", Voters: 3,
		APIAddr: "127.0.0.1:7600", APISocket: filepath.Join("beacon-data", "beacon.sock"),
		HTTPAddr: "127.0.0.1:7601", DNSAddr: "127.0.0.1:8600", Domain: "beacon.", Namespace: "/beacon/",
		LogLevel: "info", NodeTTL: 10 * time.Second,
	}
	if c.Name != want.Name || c.DataDir != want.DataDir || c.Role != want.Role || c.ClientURL != want.ClientURL ||
		c.PeerURL != want.PeerURL || c.Voters != want.Voters || c.APIAddr != want.APIAddr || c.APISocket != want.APISocket ||
		c.HTTPAddr != want.HTTPAddr || c.DNSAddr != want.DNSAddr || c.Domain != want.Domain || c.Namespace != want.Namespace ||
		c.LogLevel != want.LogLevel || c.NodeTTL != want.NodeTTL {
		t.Fatalf("defaults:\n got %+v\nwant %+v", c, want)
	}
}

// TestErrorsNameTheKey: each bad value is a ConfigError for its key.
func TestErrorsNameTheKey(t *testing.T) {
	cases := map[string]string{
		"voters: 0\n":                   "voters",
		"voters: 10\n":                  "voters",
		"namespace: beacon\n":           "namespace",
		"domain: \"bad domain\"\n":      "domain",
		"name: \"a/b\"\n":               "name",
		"leave-on-terminate: maybe\n":   "leave-on-terminate",
		"client-url: http://[::1\n":     "client-url",
		"endpoints: ftp://1.2.3.4:21\n": "endpoints",
		"initial-cluster: n1\n":         "initial-cluster",
		"http-addr: 127.0.0.1:99999\n":  "http-addr",
		"dns-addr: example.com:53\n":    "dns-addr",
		"role: external\nendpoints: \n": "endpoints",
	}
	for body, key := range cases {
		_, err := load(t, writeFile(t, body))
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != key {
			t.Errorf("%q: got %v, want an error naming %s", body, err, key)
		}
	}
}

// TestExampleConfigLoads: the commented example in the repo is valid.
func TestExampleConfigLoads(t *testing.T) {
	if _, err := load(t, filepath.Join("..", "beacon.example.yaml")); err != nil {
		t.Fatal(err)
	}
}

// TestExampleConfigDocumentsEveryKey: every key --help lists, and the
// services: and templates: blocks, appear in the example (set or
// commented out), so the example is the whole reference.
func TestExampleConfigDocumentsEveryKey(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "beacon.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"services", "templates"}
	for _, o := range options() {
		keys = append(keys, o.key)
	}
	for _, k := range keys {
		if !regexp.MustCompile(`(?m)^(# )?` + regexp.QuoteMeta(k) + `:`).Match(b) {
			t.Errorf("beacon.example.yaml does not show %s", k)
		}
	}
}

// TestLimitKeys: the limits the agent's refusals name can be set, and a
// bad value is refused naming its key.
func TestLimitKeys(t *testing.T) {
	c, err := load(t, "", "--max-sessions", "7", "--max-sessions-per-connection", "3", "--max-streams-per-connection", "9",
		"--max-sessions-per-token", "5", "--dns-tcp-max-conns-per-client", "2", "--dns-tcp-idle-timeout", "1s", "--dns-forward-allow", "10.0.0.0/8, 127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxSessions != 7 || c.MaxSessionsPerConn != 3 || c.MaxStreamsPerConn != 9 || c.MaxSessionsPerToken != 5 || c.DNSTCPMaxConnsPerClient != 2 ||
		c.DNSTCPIdleTimeout != time.Second || len(c.DNSForwardAllow) != 2 || c.DNSForwardAllow[0] != "10.0.0.0/8" {
		t.Fatalf("limits not taken: %+v", c)
	}
	d, err := load(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if d.MaxSessions != 16384 || d.MaxSessionsPerToken != 4096 || d.DNSTCPMaxConns != 1024 || d.DNSTCPMaxLifetime != 30*time.Second {
		t.Fatalf("defaults: %+v", d)
	}
	for _, bad := range [][]string{{"--max-sessions", "0"}, {"--dns-tcp-max-lifetime", "1ms"}, {"--max-streams-per-connection", "-4"}, {"--max-sessions-per-token", "0"}} {
		_, err := load(t, "", bad...)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != bad[0][2:] {
			t.Errorf("%v: %v; want a ConfigError naming %s", bad, err, bad[0][2:])
		}
	}
}

// TestConfigFileKeysStrict: a key is written as --help lists it (or as
// the contract's leave_on_terminate); another spelling is refused naming
// the key it looks like, and one key set twice is refused naming both.
func TestConfigFileKeysStrict(t *testing.T) {
	refused := map[string]struct{ key, mention string }{
		"client_url: http://127.0.0.1:2379\n":                {"client_url", `did you mean "client-url"`},
		"Client-URL: http://127.0.0.1:2379\n":                {"Client-URL", `did you mean "client-url"`},
		"VOTERS: 3\n":                                        {"VOTERS", `did you mean "voters"`},
		"colour: blue\n":                                     {"colour", "beacon agent --help"},
		"leave_on_terminate: true\nleave-on-terminate: no\n": {"leave-on-terminate", `"leave_on_terminate" (line 1) and "leave-on-terminate" (line 2)`},
		"- a\n- b\n":                                         {"config file", "not a mapping"},
	}
	for body, want := range refused {
		_, err := load(t, writeFile(t, body))
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != want.key || !strings.Contains(err.Error(), want.mention) {
			t.Errorf("%q: got %v, want an error naming %s and saying %s", body, err, want.key, want.mention)
		}
	}
	c, err := load(t, writeFile(t, "leave_on_terminate: true\nvoters: 5\n"))
	if err != nil || !c.LeaveOnTerminate || c.Voters != 5 {
		t.Fatalf("the contract's spelling: %+v, %v", c, err)
	}
	if _, err := load(t, writeFile(t, "")); err != nil {
		t.Fatalf("an empty file: %v", err)
	}
}

// The agent-wide limits of issue 9 (connections, calls in flight, bytes a
// watcher leaves unread) are config keys with defaults, and a bad value
// stops the agent naming its key.
func TestAgentWideLimitKeys(t *testing.T) {
	c, err := load(t, "", "--max-connections", "11", "--max-connections-per-client", "5", "--max-streams", "50",
		"--max-watch-buffer-bytes", "4194304", "--api-handshake-timeout", "2s")
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxConns != 11 || c.MaxConnsPerClient != 5 || c.MaxStreams != 50 || c.MaxWatchBufferBytes != 4<<20 || c.APIHandshakeTimeout != 2*time.Second {
		t.Fatalf("limits not taken: %+v", c)
	}
	d, err := load(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if d.MaxConns != 4096 || d.MaxConnsPerClient != 256 || d.MaxStreams != 32768 || d.MaxWatchBufferBytes != 16<<20 || d.APIHandshakeTimeout != 10*time.Second {
		t.Fatalf("defaults: conns %d per client %d streams %d watch bytes %d", d.MaxConns, d.MaxConnsPerClient, d.MaxStreams, d.MaxWatchBufferBytes)
	}
	for _, bad := range [][]string{{"--max-connections", "0"}, {"--max-connections-per-client", "0"}, {"--max-streams", "-1"}, {"--max-watch-buffer-bytes", "0"}, {"--api-handshake-timeout", "1ms"}} {
		_, err := load(t, "", bad...)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != bad[0][2:] {
			t.Errorf("%v: %v; want a ConfigError naming %s", bad, err, bad[0][2:])
		}
	}
}

// TestAntiEntropyIntervalKey: the interval can be set (a test lengthens
// it to tell the session's revoke from anti-entropy's removal), defaults
// to 5s, and a bad value is refused naming its key.
func TestAntiEntropyIntervalKey(t *testing.T) {
	c, err := load(t, "", "--anti-entropy-interval", "1h")
	if err != nil || c.AntiEntropyInterval != time.Hour {
		t.Fatalf("--anti-entropy-interval 1h: %v %v", c.AntiEntropyInterval, err)
	}
	if d, err := load(t, ""); err != nil || d.AntiEntropyInterval != 5*time.Second {
		t.Fatalf("default: %v %v", d.AntiEntropyInterval, err)
	}
	for _, bad := range []string{"0s", "500ms", "48h", "soon"} {
		_, err := load(t, "", "--anti-entropy-interval", bad)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != "anti-entropy-interval" {
			t.Errorf("--anti-entropy-interval %s: %v, want an error naming the key", bad, err)
		}
	}
}
