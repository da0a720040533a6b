package dnsserver

import "errors"

// ErrClosed is returned by Listen after Shutdown.
var ErrClosed = errors.New("dnsserver: server is shut down")

// ErrRecursorIsSelf: a recursor is the server's own address, so that
// every query forwarded would come back to be forwarded again.
var ErrRecursorIsSelf = errors.New("is this server's own DNS address")

type malformedError struct{}

func (malformedError) Error() string { return "malformed EDNS0" }

// errMalformed: a request's EDNS0 breaks RFC 6891 (FORMERR).
var errMalformed error = malformedError{}
