package agent

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/beaconhq/beacon/pki"
)

// TestTLSConfigSchemes: the three files switch every URL to https (the
// defaults follow by themselves, a bare join host:port too); an http URL
// with them, an https URL without them, or only some of the files stop
// the agent naming the key.
func TestTLSConfigSchemes(t *testing.T) {
	files := []string{"--ca-file", "ca.pem", "--cert-file", "n1.pem", "--key-file", "n1-key.pem"}
	c, err := load(t, "", append(files, "--join", "10.0.0.1:2379")...)
	if err != nil {
		t.Fatal(err)
	}
	if c.TLS == nil || c.ClientURL != "https://127.0.0.1:2379" || c.PeerURL != "https://127.0.0.1:2380" ||
		len(c.Join) != 1 || c.Join[0] != "https://10.0.0.1:2379" {
		t.Errorf("with TLS files: tls %v, client %s, peer %s, join %v; want https everywhere", c.TLS, c.ClientURL, c.PeerURL, c.Join)
	}
	c, err = load(t, "")
	if err != nil || c.TLS != nil || c.ClientURL != "http://127.0.0.1:2379" {
		t.Errorf("without TLS files: tls %v, client %s, %v", c.TLS, c.ClientURL, err)
	}
	for _, tc := range []struct {
		args []string
		key  string
		want string
	}{
		{append(files, "--client-url", "http://127.0.0.2:2379"), "client-url", "every URL is https"},
		{append(files, "--join", "http://10.0.0.1:2379"), "join", "every URL is https"},
		{[]string{"--peer-url", "https://127.0.0.2:2380"}, "peer-url", "https needs ca-file, cert-file and key-file"},
		{[]string{"--ca-file", "ca.pem", "--cert-file", "n1.pem"}, "ca-file", "key-file"},
		{append(files, "--role", "member", "--initial-cluster", "n1=http://127.0.0.1:2380", "--name", "n1"), "initial-cluster", "every URL is https"},
	} {
		_, err := load(t, "", tc.args...)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error naming %s with %q", tc.args, err, tc.key, tc.want)
		}
	}
}

// TestCheckTLSNamesKeyAndFile: checkTLS checks the certificate against
// every address the configuration serves at (a wildcard listen address
// aside), and its line names the key, the file and the missing address.
func TestCheckTLSNamesKeyAndFile(t *testing.T) {
	dir := t.TempDir()
	if err := pki.InitCA(dir, 0); err != nil {
		t.Fatal(err)
	}
	if err := pki.Issue(dir, pki.CertOptions{Name: "n1", IPs: []string{"127.0.0.5"}}); err != nil {
		t.Fatal(err)
	}
	cert, key := pki.CertFiles(dir, "n1")
	files := []string{"--ca-file", filepath.Join(dir, pki.CAFile), "--cert-file", cert, "--key-file", key}
	at := func(extra ...string) []string {
		return append(append([]string{}, files...), append([]string{"--client-url", "https://127.0.0.5:2379",
			"--peer-url", "https://127.0.0.5:2380", "--api-addr", "127.0.0.5:7600", "--http-addr", "0.0.0.0:7601"}, extra...)...)
	}
	c, err := load(t, "", at()...)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkTLS(&c); err != nil {
		t.Fatalf("a certificate covering every address: %v", err)
	}
	c, err = load(t, "", at("--peer-url", "https://127.0.0.6:2380")...)
	if err != nil {
		t.Fatal(err)
	}
	err = checkTLS(&c)
	if err == nil || !strings.Contains(err.Error(), "peer-url https://127.0.0.6:2380") || !strings.Contains(err.Error(), cert) ||
		!strings.Contains(err.Error(), "does not cover 127.0.0.6") {
		t.Errorf("peer-url outside the SANs: %v", err)
	}
	// A proxy serves no peer URL: its certificate need not cover it.
	c, err = load(t, "", at("--peer-url", "https://127.0.0.6:2380", "--role", "proxy", "--join", "127.0.0.5:2379")...)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkTLS(&c); err != nil {
		t.Errorf("a proxy's unused peer-url was checked: %v", err)
	}
}
