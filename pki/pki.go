// Package pki makes the certificates beacon's TLS needs, with Go's crypto
// libraries alone: a CA per fleet (`beacon tls init`), and per host a
// certificate with the SANs and key usages its roles need (`beacon tls
// cert`). Keys are ECDSA P-256; files are PEM, keys readable by their
// owner only.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// File names in a PKI directory.
const (
	CAFile    = "ca.pem"
	CAKeyFile = "ca-key.pem"
)

// Defaults for validity.
const (
	DefaultCADays   = 3650
	DefaultCertDays = 365
	MaxDays         = 36500
)

var (
	// ErrExists: a file to be written is there already; nothing was
	// overwritten.
	ErrExists = errors.New("already exists")
	// ErrInvalid: a bad argument.
	ErrInvalid = errors.New("invalid")
)

// CertOptions describe a certificate to issue.
type CertOptions struct {
	Name string   // the files are Name.pem and Name-key.pem; also the CN
	IPs  []string // IP SANs
	DNS  []string // DNS SANs
	// ClientOnly issues a client certificate alone; otherwise the
	// certificate serves both ways (server and client usages), as a peer
	// needs.
	ClientOnly bool
	Days       int // validity; 0: DefaultCertDays
}

// ReservedNames are the etcd users of a beacon cluster with ACLs on
// (acl.EtcdRootUser, acl.EtcdAgentUser). etcd with client-certificate auth
// takes a certificate's CN as the caller's user name when it brings no
// token, so a certificate of one of these names would be that user.
var ReservedNames = []string{"root", "beacon-agent"}

// fileName is what a certificate may be named: it becomes a file name.
var fileName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CertFiles are the certificate and key files of name in dir.
func CertFiles(dir, name string) (cert, key string) {
	return filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
}

// InitCA makes a new CA in dir: ca.pem and ca-key.pem, named after its
// key (see InitNamedCA). It overwrites nothing.
func InitCA(dir string, days int) error { return InitNamedCA(dir, "", days) }

// InitNamedCA makes a new CA in dir named name, its subject's common
// name; "" names it "beacon CA <key id>" (see caname.go), so that two
// fleets' CAs never share a name. It overwrites nothing.
func InitNamedCA(dir, name string, days int) error {
	if days == 0 {
		days = DefaultCADays
	}
	if err := checkDays(days); err != nil {
		return err
	}
	if err := checkCAName(name); err != nil {
		return err
	}
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile)
	if err := absent(certPath, keyPath); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	keyID := subjectKeyID(&key.PublicKey)
	if name == "" {
		name = defaultCAName(keyID)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"beacon"}},
		SubjectKeyId:          keyID,
		NotBefore:             now.Add(-time.Hour), // hosts' clocks differ a little
		NotAfter:              now.AddDate(0, 0, days),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	return writePair(dir, certPath, keyPath, der, key)
}

// Issue makes a certificate signed by the CA in dir and writes it there
// as NAME.pem and NAME-key.pem. It overwrites nothing.
func Issue(dir string, o CertOptions) error {
	if !fileName.MatchString(o.Name) {
		return fmt.Errorf("%w --name %q: give 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrInvalid, o.Name)
	}
	for _, r := range ReservedNames {
		if strings.EqualFold(o.Name, r) {
			return fmt.Errorf("%w --name %q: reserved: with ACLs on, etcd takes a client certificate's name for its user, and %s is one of beacon's own etcd users (%s)",
				ErrInvalid, o.Name, r, strings.Join(ReservedNames, ", "))
		}
	}
	if o.Days == 0 {
		o.Days = DefaultCertDays
	}
	if err := checkDays(o.Days); err != nil {
		return err
	}
	var ips []net.IP
	for _, s := range o.IPs {
		ip := net.ParseIP(s)
		if ip == nil {
			return fmt.Errorf("%w --ip %q: not an IP address", ErrInvalid, s)
		}
		ips = append(ips, ip)
	}
	for _, d := range o.DNS {
		if !validHost(d) {
			return fmt.Errorf("%w --dns %q: not a host name", ErrInvalid, d)
		}
	}
	if len(ips) == 0 && len(o.DNS) == 0 && !o.ClientOnly {
		return fmt.Errorf("%w: a server or peer certificate needs at least one --ip or --dns (the addresses others reach this host at); give --client for a client certificate", ErrInvalid)
	}
	ca, caKey, err := LoadCA(dir)
	if err != nil {
		return err
	}
	certPath, keyPath := CertFiles(dir, o.Name)
	if err := absent(certPath, keyPath); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	now := time.Now()
	usages := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if o.ClientOnly {
		usages = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	notAfter := now.AddDate(0, 0, o.Days)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter // a certificate cannot outlive its CA's trust
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: o.Name, Organization: []string{"beacon"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usages,
		IPAddresses:  ips,
		DNSNames:     o.DNS,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	return writePair(dir, certPath, keyPath, der, key)
}

// LoadCA reads the CA of dir.
func LoadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile)
	cert, err := ReadCert(certPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("%s: no CA here; run beacon tls init --dir %s first", certPath, dir)
		}
		return nil, nil, err
	}
	b, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, nil, fmt.Errorf("%s: no PEM block", keyPath)
	}
	key, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %v", keyPath, err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%s is not the key of %s", keyPath, certPath)
	}
	return cert, key, nil
}

// ReadCert reads the first certificate of a PEM file.
func ReadCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return c, nil
}

func checkDays(days int) error {
	if days < 1 || days > MaxDays {
		return fmt.Errorf("%w --days %d: give 1 to %d", ErrInvalid, days, MaxDays)
	}
	return nil
}

func absent(paths ...string) error {
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s: %w; remove it first to make a new one", p, ErrExists)
		}
	}
	return nil
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// writePair writes a certificate and its key, the key owner-only. The
// key goes first, created exclusively, so a concurrent run fails instead
// of interleaving.
func writePair(dir, certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	if err := writeNew(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		os.Remove(keyPath)
		return err
	}
	return nil
}

func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s: %w; remove it first to make a new one", path, ErrExists)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

var hostLabel = regexp.MustCompile(`^(\*|[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)$`)

// validHost accepts a DNS name, with a leading "*." wildcard allowed.
func validHost(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			label := s[start:i]
			if !hostLabel.MatchString(label) || (label == "*" && start != 0) {
				return false
			}
			start = i + 1
		}
	}
	return true
}
