package dnsserver

import (
	"strings"

	"github.com/miekg/dns"
)

// kind is what a name in the zone stands for.
type kind uint8

const (
	kindNX      kind = iota // no such name
	kindApex                // the zone itself: SOA, NS
	kindNS                  // ns.<zone>: the server's own address
	kindEmpty               // an empty non-terminal (service.<zone>, node.<zone>, _tcp.service.<zone>): exists, owns nothing
	kindService             // <service>.service, _<service>._<tag|tcp|udp>.service
	kindTagOrID             // <x>.<service>.service: an instance id if the service has one, else a tag
	kindNode                // <node>.node
)

// target is a parsed name of the zone. Every field is lower-case.
type target struct {
	kind    kind
	service string
	tag     string // kindService: "" means no tag filter
	label   string // kindTagOrID
	node    string
}

// parse places a lower-cased, fully qualified name: in the zone or not,
// and what it stands for when it is.
func (h *handler) parse(name string) (t target, inZone bool) {
	if name == h.zone {
		return target{kind: kindApex}, true
	}
	if !strings.HasSuffix(name, h.dotZone) {
		return target{}, false
	}
	if strings.IndexByte(name, '\\') >= 0 {
		// A label with an escaped byte (a dot, a space, a control byte)
		// is never one of ours; a suffix match on the text is not enough
		// to say whether the name is in the zone.
		if dns.IsSubDomain(h.zone, name) {
			return target{kind: kindNX}, true
		}
		return target{}, false
	}
	rest := name[:len(name)-len(h.dotZone)]
	var labels [4]string // right to left
	n := 0
	for rest != "" {
		if n == len(labels) {
			return target{kind: kindNX}, true
		}
		i := strings.LastIndexByte(rest, '.')
		labels[n] = rest[i+1:]
		rest = rest[:max(i, 0)]
		n++
	}
	switch {
	case n == 1:
		switch labels[0] {
		case "ns":
			return target{kind: kindNS}, true
		case "service", "node":
			return target{kind: kindEmpty}, true
		}
	case n == 2 && labels[0] == "service":
		if x, ok := strings.CutPrefix(labels[1], "_"); ok {
			if x == "tcp" || x == "udp" {
				return target{kind: kindEmpty}, true
			}
			break
		}
		return target{kind: kindService, service: labels[1]}, true
	case n == 2 && labels[0] == "node":
		return target{kind: kindNode, node: labels[1]}, true
	case n == 3 && labels[0] == "service":
		proto, p := strings.CutPrefix(labels[1], "_")
		svc, s := strings.CutPrefix(labels[2], "_")
		switch {
		case p && s: // RFC 2782: _<service>._<tag>
			if proto == "tcp" || proto == "udp" {
				proto = ""
			}
			return target{kind: kindService, service: svc, tag: proto}, true
		case !p && !s:
			return target{kind: kindTagOrID, service: labels[1], label: labels[2]}, true
		}
	}
	return target{kind: kindNX}, true
}
