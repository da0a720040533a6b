//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package dnsserver

import "syscall"

const (
	soReusePort = syscall.SO_REUSEPORT
	// Replies from a socket bound to an unspecified address leave from
	// the kernel's choice of source address on these systems.
	pktinfoSupported = false
)

func setPktinfo(int) {}
