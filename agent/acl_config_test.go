package agent

import (
	"crypto/tls"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// TestACLConfig: acl, dns-policy and etcd-credentials-file parse from a
// flag, the environment and the file; a bad value stops the agent naming
// its key.
func TestACLConfig(t *testing.T) {
	c, err := load(t, "", "--data-dir", "d")
	if err != nil {
		t.Fatal(err)
	}
	if c.ACL || c.EtcdCredentialsFile != filepath.Join("d", "etcd-credentials.json") ||
		!c.DNSPolicy.ServiceVisible("payments") || !c.DNSPolicy.NodeVisible("n1") {
		t.Errorf("defaults: acl %v, credentials %q, dns policy answers payments %v; want off, <data-dir>/etcd-credentials.json, every name",
			c.ACL, c.EtcdCredentialsFile, c.DNSPolicy.ServiceVisible("payments"))
	}
	for _, tc := range []struct {
		body, key, want string
	}{
		{"acl: maybe\n", "acl", "not true or false"},
		{"dns-policy: lock:*:read\n", "dns-policy", "only service and node"},
		{"dns-policy: service:web\n", "dns-policy", "web"},
	} {
		_, err := load(t, writeFile(t, tc.body))
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error naming %s with %q", tc.body, err, tc.key, tc.want)
		}
	}
	t.Setenv("BEACON_DNS_POLICY", "service:web-*:read,node:*:read")
	file := writeFile(t, "acl: true\netcd-credentials-file: /etc/beacon/etcd-credentials.json\n")
	c, err = load(t, file)
	if err != nil {
		t.Fatal(err)
	}
	if !c.ACL || c.EtcdCredentialsFile != "/etc/beacon/etcd-credentials.json" ||
		!c.DNSPolicy.ServiceVisible("web-1") || c.DNSPolicy.ServiceVisible("payments") {
		t.Errorf("set: acl %v, credentials %q, web-1 %v, payments %v; want on, the file's path, web-1 only",
			c.ACL, c.EtcdCredentialsFile, c.DNSPolicy.ServiceVisible("web-1"), c.DNSPolicy.ServiceVisible("payments"))
	}
}

// TestAPIClientAuthWithACL: with ACLs on, the API's TLS listener takes a
// client without a certificate (a token authenticates it); off, it
// requires one.
func TestAPIClientAuthWithACL(t *testing.T) {
	if got := apiClientAuth(true); got != tls.VerifyClientCertIfGiven {
		t.Errorf("acl on: %v, want VerifyClientCertIfGiven", got)
	}
	if got := apiClientAuth(false); got != tls.RequireAndVerifyClientCert {
		t.Errorf("acl off: %v, want RequireAndVerifyClientCert", got)
	}
}
