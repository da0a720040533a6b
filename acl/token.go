package acl

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
)

// Sizes of a token's two parts, in random bytes (hex in text).
const (
	accessorBytes = 16 // 128 bits: public, names the token
	secretBytes   = 32 // 256 bits: the credential
)

// Token is a token as etcd keeps it: the secret only as its SHA-256 (the
// secret has 256 random bits, so a fast hash is enough: there is nothing
// to guess a dictionary for).
type Token struct {
	AccessorID  string    `json:"accessor_id"`
	SecretHash  string    `json:"secret_sha256"`
	Description string    `json:"description,omitempty"`
	Rules       []string  `json:"rules"`
	Created     time.Time `json:"created"`
	Management  bool      `json:"management,omitempty"`
}

// newSecret is a fresh secret and its hash.
func newSecret() (secret, hash string) {
	secret = randomHex(secretBytes)
	return secret, HashSecret(secret)
}

// HashSecret is the hash a secret is stored and looked up by.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func newAccessorID() string { return randomHex(accessorBytes) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails since Go 1.24 (it aborts the process instead of yielding weak bytes)
	return hex.EncodeToString(b)
}

// validAccessorID checks the form of an accessor id given by a client.
func validAccessorID(id string) bool {
	if len(id) != 2*accessorBytes {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

func (t *Token) marshal() string {
	b, _ := json.Marshal(t)
	return string(b)
}

func unmarshalToken(b []byte) (*Token, error) {
	var t Token
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, err
	}
	if t.SecretHash == "" || t.AccessorID == "" {
		return nil, fmt.Errorf("token record without accessor or secret hash")
	}
	return &t, nil
}

// Policy parses the token's rules (stored rules were valid when made; a
// rule that no longer parses grants nothing).
func (t *Token) Policy() *Policy {
	var rules []Rule
	for _, s := range t.Rules {
		if r, err := ParseRule(s); err == nil {
			rules = append(rules, r)
		}
	}
	return NewPolicy(rules)
}

// PB is the token as listed: no secret, no hash.
func (t *Token) PB() *beaconpb.ACLToken {
	return &beaconpb.ACLToken{AccessorId: t.AccessorID, Description: t.Description,
		Rules: append([]string(nil), t.Rules...), Created: t.Created.UTC().Format(time.RFC3339), Management: t.Management}
}
