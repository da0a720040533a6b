package pki

import (
	"crypto/tls"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FilesOf: none is TLS off, all three is TLS on, some is an error naming
// the missing ones.
func TestFilesOf(t *testing.T) {
	if f, err := FilesOf("", "", ""); f != nil || err != nil {
		t.Errorf("none: %v, %v", f, err)
	}
	if f, err := FilesOf("ca", "c", "k"); err != nil || f == nil || f.CA != "ca" || f.Cert != "c" || f.Key != "k" {
		t.Errorf("all three: %+v, %v", f, err)
	}
	_, err := FilesOf("ca", "", "k")
	if !errors.Is(err, ErrPartial) || !strings.Contains(err.Error(), "cert-file") {
		t.Errorf("cert-file missing: %v", err)
	}
}

// ServerConfig and ClientConfig make a mutual TLS handshake between two
// hosts of one CA; a host of another CA is refused either way.
func TestServerAndClientConfigs(t *testing.T) {
	dir, other := newPKI(t), newPKI(t)
	for _, d := range []string{dir, other} {
		if err := Issue(d, CertOptions{Name: "h", IPs: []string{"127.0.0.1"}}); err != nil {
			t.Fatal(err)
		}
	}
	files := func(d string) *Files {
		c, k := CertFiles(d, "h")
		return &Files{CA: filepath.Join(d, CAFile), Cert: c, Key: k}
	}
	srvCfg, err := files(dir).ServerConfig("h2")
	if err != nil {
		t.Fatal(err)
	}
	if srvCfg.ClientAuth != tls.RequireAndVerifyClientCert || len(srvCfg.NextProtos) != 1 {
		t.Fatalf("server config: client auth %v, ALPN %v", srvCfg.ClientAuth, srvCfg.NextProtos)
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); _, _ = c.Write([]byte("x")); c.Close() }()
		}
	}()
	dial := func(f *Files) error {
		cc, err := f.ClientConfig()
		if err != nil {
			return err
		}
		cc.ServerName = "127.0.0.1"
		c, err := tls.Dial("tcp", lis.Addr().String(), cc)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1)) // the server's verdict on our certificate
		return err
	}
	if err := dial(files(dir)); err != nil {
		t.Fatalf("a host of the same CA: %v", err)
	}
	if err := dial(files(other)); err == nil {
		t.Fatal("a host of another CA was let in")
	}
	// Trusting the fleet's CA but presenting another CA's certificate.
	mixed := files(other)
	mixed.CA = filepath.Join(dir, CAFile)
	if err := dial(mixed); err == nil {
		t.Fatal("a client certificate of another CA was let in")
	}
	if _, err := (&Files{CA: filepath.Join(dir, CAFile), Cert: mixed.Cert, Key: files(dir).Key}).ClientConfig(); !errors.Is(err, ErrCert) {
		t.Errorf("a key that is not the certificate's: %v", err)
	}
}
