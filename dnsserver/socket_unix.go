//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package dnsserver

import "syscall"

const reusePortSupported = true

// socketControl sets SO_REUSEPORT so that several UDP sockets share the
// port and the kernel spreads queries over them, and, for a socket bound
// to an unspecified address, asks for each packet's destination address
// so that the reply leaves from the address the client asked.
func socketControl(reusePort, pktinfo bool) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var opErr error
		err := c.Control(func(fd uintptr) {
			if reusePort {
				opErr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
			}
			if opErr == nil && pktinfo {
				setPktinfo(int(fd))
			}
		})
		if err != nil {
			return err
		}
		return opErr
	}
}
