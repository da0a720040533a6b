package dnsserver

import (
	"errors"
	"sort"

	"github.com/miekg/dns"
)

var errTooBig = errors.New("response does not fit")

// fit packs m, compressed, into at most limit bytes, the RFC 2181 way:
//
//  1. everything, when it fits;
//  2. else the additional section (glue) goes first: as much of it as
//     fits is kept, without TC, because the answer is still complete;
//  3. else the answer itself does not fit: TC is set and the response
//     carries as many whole answer records as fit, no authority and no
//     glue; the client asks again over TCP and gets it all there.
//
// The OPT record always stays.
func fit(m *dns.Msg, limit int, buf []byte) ([]byte, error) {
	m.Compress = true
	if out, err := m.PackBuffer(buf); err == nil && len(out) <= limit {
		return out, nil
	}

	var opt dns.RR
	glue := make([]dns.RR, 0, len(m.Extra))
	for _, rr := range m.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			opt = rr
		} else {
			glue = append(glue, rr)
		}
	}
	setGlue := func(n int) {
		extra := make([]dns.RR, 0, n+1)
		extra = append(extra, glue[:n]...)
		if opt != nil {
			extra = append(extra, opt)
		}
		m.Extra = extra
	}
	setGlue(0)
	if m.Len() <= limit {
		setGlue(largest(len(glue), func(n int) bool { setGlue(n); return m.Len() <= limit }))
	} else {
		m.Truncated = true
		m.Ns = nil
		answers := m.Answer
		m.Answer = answers[:largest(len(answers), func(n int) bool { m.Answer = answers[:n]; return m.Len() <= limit })]
	}
	// Len is an estimate that should be exact; trust only the packed size.
	for {
		out, err := m.PackBuffer(buf)
		switch {
		case err != nil:
			return nil, err
		case len(out) <= limit:
			return out, nil
		case len(m.Extra) > 0 && (opt == nil || len(m.Extra) > 1):
			setGlue(len(m.Extra) - 1 - boolInt(opt != nil))
		case len(m.Answer) > 0:
			m.Truncated = true
			m.Answer = m.Answer[:len(m.Answer)-1]
		default:
			return nil, errTooBig
		}
	}
}

// largest is the largest n in [0, limit] for which ok(n) holds, given that
// ok holds up to some n and not after.
func largest(limit int, ok func(n int) bool) int {
	return max(sort.Search(limit+1, func(n int) bool { return !ok(n) })-1, 0)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
