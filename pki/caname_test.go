package pki

import (
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// Two CAs made the same way have distinct names, each "beacon CA" and the
// start of its own key id; a name given is the CA's name; a bad one is
// refused.
func TestCANamesDistinct(t *testing.T) {
	var names []string
	for range 2 {
		ca, err := ReadCert(filepath.Join(newPKI(t), CAFile))
		if err != nil {
			t.Fatal(err)
		}
		want := "beacon CA " + hex.EncodeToString(ca.SubjectKeyId[:4])
		if ca.Subject.CommonName != want || len(ca.SubjectKeyId) != 20 {
			t.Fatalf("CA named %q with key id %x; want %q", ca.Subject.CommonName, ca.SubjectKeyId, want)
		}
		names = append(names, ca.Subject.CommonName)
	}
	if names[0] == names[1] {
		t.Fatalf("two CAs share the name %q", names[0])
	}

	dir := t.TempDir()
	if err := InitNamedCA(dir, "payments prod CA", 0); err != nil {
		t.Fatal(err)
	}
	if ca, err := ReadCert(filepath.Join(dir, CAFile)); err != nil || ca.Subject.CommonName != "payments prod CA" {
		t.Fatalf("named CA: %v %v", ca.Subject.CommonName, err)
	}
	for _, bad := range []string{strings.Repeat("x", 65), "a\nb", "\x1b[31mred"} {
		if err := InitNamedCA(t.TempDir(), bad, 0); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "--name") {
			t.Errorf("CA name %q: %v, want ErrInvalid naming --name", bad, err)
		}
	}
}

// A certificate of one CA checked against another: the message names
// both CAs by name and key id.
func TestCAMismatchNamesBoth(t *testing.T) {
	ours, theirs := newPKI(t), newPKI(t)
	if err := Issue(theirs, CertOptions{Name: "x1", IPs: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	cert, key := CertFiles(theirs, "x1")
	err := Check(filepath.Join(ours, CAFile), cert, key, Server, "127.0.0.1")
	if !errors.Is(err, ErrCert) {
		t.Fatalf("a certificate of another CA: %v", err)
	}
	for _, dir := range []string{ours, theirs} {
		ca, rerr := ReadCert(filepath.Join(dir, CAFile))
		if rerr != nil {
			t.Fatal(rerr)
		}
		want := fmt.Sprintf("%q (key id %s)", ca.Subject.CommonName, hex.EncodeToString(ca.SubjectKeyId[:8]))
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the message does not name %s: %v", want, err)
		}
	}
	t.Log(err)
}
