//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package dnsserver

import "syscall"

// Elsewhere: one UDP socket, replies from the kernel's source address.
const (
	reusePortSupported = false
	pktinfoSupported   = false
)

func socketControl(bool, bool) func(network, address string, c syscall.RawConn) error {
	return nil
}
