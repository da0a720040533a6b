//go:build !linux

package dnsserver

import (
	"net"
	"net/netip"
)

// pktinfoBuf is unused where pktinfoSupported is false.
type pktinfoBuf struct{}

func readPktinfo(c *net.UDPConn, b []byte, _ *pktinfoBuf) (int, netip.AddrPort, []byte, error) {
	n, from, err := c.ReadFromUDPAddrPort(b)
	return n, from, nil, err
}
