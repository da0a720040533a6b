// Package registry is beacon's service registry: the instance model, this
// agent's own registrations with their health checks, anti-entropy, the
// watch-fed catalog of every instance, and the Registry gRPC service.
package registry

import (
	"fmt"
	"hash/fnv"
	"net"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/beaconhq/beacon/internal/rpcerr"
)

// Instance statuses, as health checks set them.
const (
	StatusPassing  = "passing"
	StatusWarning  = "warning"
	StatusCritical = "critical"
)

// Limits on what one instance may carry: it is stored in etcd, held in
// every agent's catalog and sent to every watcher, so a client must not
// make it grow without bound. Far above what service discovery uses
// (Consul allows 64 meta pairs; a tag is a DNS label).
const (
	// MaxTags bounds an instance's tags; each is a DNS label of at most
	// 63 characters.
	MaxTags = 64
	// MaxMetaKeys bounds the number of an instance's meta pairs.
	MaxMetaKeys = 64
	// MaxMetaKeyBytes bounds one meta key.
	MaxMetaKeyBytes = 128
	// MaxMetaBytes bounds an instance's meta (keys and values together).
	MaxMetaBytes = 64 << 10
)

// Instance is the value of services/<service>/<id>.
type Instance struct {
	ID       string            `json:"id"`
	Service  string            `json:"service"`
	Node     string            `json:"node"`
	Address  string            `json:"address"`
	Port     int               `json:"port"`
	Tags     []string          `json:"tags,omitempty"`
	Meta     map[string]string `json:"meta,omitempty"`
	Weight   int               `json:"weight"`
	Priority int               `json:"priority"`
	Status   string            `json:"status"`
	Output   string            `json:"output,omitempty"`

	// Revision is the etcd revision that last wrote the instance, as the
	// catalog saw it; not part of the stored value.
	Revision int64 `json:"-"`
	// Lease is the etcd lease the instance's key is under, as the catalog
	// read it: anti-entropy moves a key still under a dead run's lease.
	Lease int64 `json:"-"`
}

// FieldError names the field of an instance that is wrong; it answers
// INVALID_ARGUMENT.
type FieldError = rpcerr.FieldError

// ErrInvalid is what every FieldError is.
var ErrInvalid = rpcerr.ErrInvalid

// Healthy says whether DNS and healthy-only listings include the instance.
func (in *Instance) Healthy(includeWarning bool) bool {
	return in.Status == StatusPassing || includeWarning && in.Status == StatusWarning
}

// hasTags says whether the instance carries every tag given.
func (in *Instance) hasTags(tags []string) bool {
	for _, want := range tags {
		found := false
		for _, t := range in.Tags {
			if strings.EqualFold(t, want) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Normalize fills defaults and checks every field. node and nodeAddr are
// the registering agent's.
func (in *Instance) Normalize(node, nodeAddr string) error {
	in.Service = strings.ToLower(strings.TrimSpace(in.Service))
	if err := validLabel("service", in.Service); err != nil {
		return err
	}
	if err := ValidPort(in.Port); err != nil {
		return err
	}
	in.Node = node
	if in.Address == "" {
		in.Address = nodeAddr
	}
	if ip := net.ParseIP(in.Address); ip == nil {
		return &FieldError{Field: "address", Msg: fmt.Sprintf("%q is not an IPv4 or IPv6 address", in.Address)}
	} else {
		in.Address = ip.String()
	}
	if in.ID == "" {
		in.ID = defaultID(node, in.Service, in.Port)
	}
	in.ID = strings.ToLower(in.ID)
	if err := validLabel("id", in.ID); err != nil {
		return err
	}
	if len(in.Tags) > MaxTags {
		return &FieldError{Field: "tags", Msg: fmt.Sprintf("%d tags is over the limit of %d (max-tags)", len(in.Tags), MaxTags)}
	}
	for i, t := range in.Tags {
		in.Tags[i] = strings.ToLower(t)
		if err := validLabel("tags", in.Tags[i]); err != nil {
			return err
		}
	}
	sort.Strings(in.Tags)
	if err := validMeta(in.Meta); err != nil {
		return err
	}
	if in.Weight == 0 {
		in.Weight = 1
	}
	return ValidSRV(in.Weight, in.Priority)
}

// ValidPort checks an instance's port; the CLI checks --port with it
// too, so that every bad port gets the same message.
func ValidPort(port int) error {
	if port < 1 || port > 65535 {
		return &FieldError{Field: "port", Msg: fmt.Sprintf("%d is not a port from 1 to 65535", port)}
	}
	return nil
}

// ValidSRV checks an instance's SRV weight (0 is taken as 1) and
// priority.
func ValidSRV(weight, priority int) error {
	if weight < 0 || weight > 65535 {
		return &FieldError{Field: "weight", Msg: fmt.Sprintf("%d is not from 1 to 65535", weight)}
	}
	if priority < 0 || priority > 65535 {
		return &FieldError{Field: "priority", Msg: fmt.Sprintf("%d is not from 0 to 65535", priority)}
	}
	return nil
}

// validMeta checks meta's keys and its size against the limits.
func validMeta(meta map[string]string) error {
	if len(meta) > MaxMetaKeys {
		return &FieldError{Field: "meta", Msg: fmt.Sprintf("%d keys is over the limit of %d (max-meta-keys)", len(meta), MaxMetaKeys)}
	}
	size := 0
	for k, v := range meta {
		if len(k) > MaxMetaKeyBytes {
			return &FieldError{Field: "meta", Msg: fmt.Sprintf("key %.32q…: %d bytes is over the limit of %d (max-meta-key-bytes)", k, len(k), MaxMetaKeyBytes)}
		}
		if k == "" || !utf8.ValidString(k) || !utf8.ValidString(v) {
			return &FieldError{Field: "meta", Msg: fmt.Sprintf("key %q: keys must be non-empty and keys and values UTF-8", k)}
		}
		size += len(k) + len(v)
	}
	if size > MaxMetaBytes {
		return &FieldError{Field: "meta", Msg: fmt.Sprintf("%d bytes is over the limit of %d (max-meta-bytes)", size, MaxMetaBytes)}
	}
	return nil
}

// validLabel checks that s is a DNS label: 1 to 63 letters, digits and
// '-', not starting or ending with '-'.
func validLabel(field, s string) error {
	if s == "" {
		return &FieldError{Field: field, Msg: "must not be empty"}
	}
	if len(s) > 63 {
		return &FieldError{Field: field, Msg: fmt.Sprintf("%q is longer than 63 characters", s)}
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' && i > 0 && i < len(s)-1
		if !ok {
			return &FieldError{Field: field, Msg: fmt.Sprintf("%q is not a DNS label (lower-case letters, digits and inner '-')", s)}
		}
	}
	return nil
}

// servicesPrefix is where instances live in etcd.
func servicesPrefix(namespace string) string { return namespace + "services/" }

// Key is the instance's key in etcd.
func Key(namespace, service, id string) string {
	return servicesPrefix(namespace) + service + "/" + id
}

// splitKey returns the service and id of an instance key.
func splitKey(namespace, key string) (service, id string, ok bool) {
	rest, ok := strings.CutPrefix(key, servicesPrefix(namespace))
	if !ok {
		return "", "", false
	}
	service, id, ok = strings.Cut(rest, "/")
	return service, id, ok && service != "" && id != ""
}

// defaultID is <node>-<service>-<port> made a DNS label: host names like
// ip-10-0-0-1.ec2.internal or db_01 keep their letters and digits, other
// characters become '-', and a long result is cut and suffixed with a hash
// so ids stay unique.
func defaultID(node, service string, port int) string {
	var b strings.Builder
	for _, r := range strings.ToLower(node) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	id := strings.Trim(b.String(), "-") + "-" + service + "-" + strconv.Itoa(port)
	id = strings.Trim(id, "-")
	if len(id) > 63 {
		h := fnv.New32a()
		_, _ = h.Write([]byte(id))
		id = strings.TrimRight(id[:54], "-") + "-" + fmt.Sprintf("%08x", h.Sum32())
	}
	return id
}
