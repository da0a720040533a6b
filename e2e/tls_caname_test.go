package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
	"github.com/beaconhq/beacon/pki"
)

// Issue 9: every CA was named "beacon CA", so a message about a CA
// mismatch could not tell two fleets' CAs apart. Two `beacon tls init`
// runs now make CAs of distinct names, and the messages of a mismatch
// (an agent's own certificate of another CA; an agent of another fleet
// joining) name both CAs by name and key id.
func TestTLSCANamesTellFleetsApart(t *testing.T) {
	var fleets []*fleetPKI
	var descs []string
	for range 2 {
		p := &fleetPKI{t: t, dir: t.TempDir()}
		out, stderr, err := testcluster.RunCLI(t, "tls", "init", "--dir", p.dir)
		if err != nil {
			t.Fatalf("beacon tls init: %v: %s", err, stderr)
		}
		ca, err := pki.ReadCert(p.ca())
		if err != nil {
			t.Fatal(err)
		}
		d := pki.DescribeCA(ca)
		if !strings.Contains(out, d) {
			t.Fatalf("beacon tls init printed %q, not the CA's name and key id %s", out, d)
		}
		fleets, descs = append(fleets, p), append(descs, d)
	}
	if pa, pb := strings.Fields(descs[0])[2], strings.Fields(descs[1])[2]; pa == pb {
		t.Fatalf("two tls init runs made CAs of one name: %s and %s", descs[0], descs[1])
	}
	named := t.TempDir()
	if _, stderr, err := testcluster.RunCLI(t, "tls", "init", "--dir", named, "--name", "payments prod"); err != nil {
		t.Fatalf("beacon tls init --name: %v: %s", err, stderr)
	}
	if ca, err := pki.ReadCert(filepath.Join(named, pki.CAFile)); err != nil || ca.Subject.CommonName != "payments prod" {
		t.Fatalf("tls init --name: CA %v %v", ca.Subject.CommonName, err)
	}

	ours, theirs := fleets[0], fleets[1]
	ours.client("ops")
	c := testcluster.New(t)

	// This host's certificate is of the other fleet's CA.
	x := tlsHost(c, theirs, "x1")
	cert, key := pki.CertFiles(theirs.dir, "x1")
	x.Start("--ca-file", ours.ca(), "--cert-file", cert, "--key-file", key)
	if err := x.WaitExit(60 * time.Second); err == nil {
		t.Fatal("an agent with a certificate of another CA started")
	}
	if last := lastLine(x.Log()); !strings.Contains(last, descs[0]) || !strings.Contains(last, descs[1]) {
		t.Fatalf("the agent's last line does not name both CAs (%s, %s): %q", descs[0], descs[1], last)
	}

	// An agent of the other fleet joins a member of ours.
	m := tlsHost(c, ours, "m1")
	m.Start(ours.flags("m1")...)
	waitReadyTLS(t, ours, m)
	y := tlsHost(c, theirs, "y1")
	y.Start(append([]string{"--join", m.ClientURL}, theirs.flags("y1")...)...)
	if err := y.WaitExit(90 * time.Second); err == nil {
		t.Fatal("an agent of another CA joined")
	}
	last := lastLine(y.Log())
	if !strings.Contains(last, "TLS with "+m.IP+":2379 refused") ||
		!strings.Contains(last, "its certificate is of the CA "+descs[0]+", not of this host's CA "+descs[1]) {
		t.Fatalf("the joiner's last line does not name the member's CA %s and its own %s: %q", descs[0], descs[1], last)
	}
	t.Logf("joiner: %s", last)
}
