package dnsserver

import "syscall"

// pktinfoSupported: replies leave from the address each query came to.
const pktinfoSupported = true

// setPktinfo asks for IP_PKTINFO and IPV6_RECVPKTINFO; a socket takes
// whichever its family allows (a dual-stack socket takes both).
func setPktinfo(fd int) {
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, syscall.IP_PKTINFO, 1)
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_RECVPKTINFO, 1)
}
