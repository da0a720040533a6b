package pki

import (
	"crypto/ecdsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// A CA is told apart by its name (its subject's common name) and its key
// id (the SHA-1 of its public key, RFC 5280 4.2.1.2, as Go and OpenSSL
// compute it); a certificate names its CA by the issuer's name and
// authority key id. `beacon tls init` names a CA "beacon CA" and the first
// 4 bytes of its key id unless told otherwise, and a mismatch names both
// sides, so that two fleets' CAs are never confused in a message.

// maxCANameLen is X.509's upper bound of a common name.
const maxCANameLen = 64

// subjectKeyID is the key id of a public key: the SHA-1 of its
// subjectPublicKey bits (for ECDSA, the uncompressed point).
func subjectKeyID(pub *ecdsa.PublicKey) []byte {
	point, err := pub.Bytes()
	if err != nil {
		return nil // not a curve point: CreateCertificate refuses it anyway
	}
	sum := sha1.Sum(point)
	return sum[:]
}

// defaultCAName is "beacon CA" and the first 4 bytes of the key id.
func defaultCAName(keyID []byte) string {
	return "beacon CA " + hex.EncodeToString(keyID[:min(4, len(keyID))])
}

// checkCAName: a CA name is 1 to 64 printable characters ("" means the
// default).
func checkCAName(name string) error {
	if name == "" {
		return nil
	}
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxCANameLen {
		return fmt.Errorf("%w --name %q: give 1 to %d characters of UTF-8", ErrInvalid, name, maxCANameLen)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w --name %q: give printable characters only", ErrInvalid, name)
		}
	}
	return nil
}

// keyIDString is a key id as the messages print it: its first 8 bytes in
// hex, of which the default CA name shows the first 4.
func keyIDString(id []byte) string {
	if len(id) == 0 {
		return "none"
	}
	return hex.EncodeToString(id[:min(8, len(id))])
}

// DescribeCA names a CA certificate in a message: its common name and key
// id.
func DescribeCA(ca *x509.Certificate) string {
	return fmt.Sprintf("%q (key id %s)", ca.Subject.CommonName, keyIDString(ca.SubjectKeyId))
}

// DescribeIssuer names the CA that signed c, as c names it: the issuer's
// common name and the authority key id.
func DescribeIssuer(c *x509.Certificate) string {
	return fmt.Sprintf("%q (key id %s)", c.Issuer.CommonName, keyIDString(c.AuthorityKeyId))
}
