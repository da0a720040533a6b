package pki

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/beaconhq/beacon/acl"
)

// TestReservedNamesRefused: a certificate named like one of beacon's etcd
// users (in any case) is refused, since etcd would take its CN for that
// user; the names are acl's.
func TestReservedNamesRefused(t *testing.T) {
	if strings.Join(ReservedNames, ",") != acl.EtcdRootUser+","+acl.EtcdAgentUser {
		t.Fatalf("ReservedNames %v are not acl's etcd users %s, %s", ReservedNames, acl.EtcdRootUser, acl.EtcdAgentUser)
	}
	dir := newPKI(t)
	for _, name := range []string{"root", "ROOT", "beacon-agent", "Beacon-Agent"} {
		err := Issue(dir, CertOptions{Name: name, ClientOnly: true})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("--name %s: %v; want it refused as reserved", name, err)
		}
		if cert, _ := CertFiles(dir, name); fileExists(cert) {
			t.Errorf("--name %s: %s was written", name, cert)
		}
	}
	if err := Issue(dir, CertOptions{Name: "rooted", ClientOnly: true}); err != nil {
		t.Errorf("--name rooted: %v", err)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
