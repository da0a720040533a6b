package dnsserver

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
)

// A socket bound to 0.0.0.0 or :: must answer from the address each query
// came to, or the client drops the answer. The kernel says which in a
// control message (IP_PKTINFO, IPV6_PKTINFO) and takes the reply's source
// in one. They are read and written here into buffers each worker owns,
// so that this path allocates nothing either (miekg/dns's SessionUDP
// allocates some ten times a packet).

// pktinfoBuf is one UDP worker's control-message memory.
type pktinfoBuf struct {
	in  [128]byte // what the kernel says of a packet read
	out [64]byte  // what the reply tells it: the source address
}

var cmsgHeader = syscall.CmsgLen(0) // a control message's header, aligned

// readPktinfo reads a packet into b, and returns with it the control
// message its reply must carry (in pb.out; nil when the kernel said
// nothing of the destination).
func readPktinfo(c *net.UDPConn, b []byte, pb *pktinfoBuf) (n int, from netip.AddrPort, reply []byte, err error) {
	n, oobn, _, from, err := c.ReadMsgUDPAddrPort(b, pb.in[:])
	if err != nil {
		return n, from, nil, err
	}
	dst, ok := pktinfoDst(pb.in[:oobn])
	if !ok {
		return n, from, nil, nil
	}
	return n, from, pktinfoSrc(pb.out[:0], dst), nil
}

// pktinfoDst finds among control messages the local address a packet
// came to: the source its reply must have.
func pktinfoDst(oob []byte) (netip.Addr, bool) {
	lenSize := syscall.SizeofCmsghdr - 8 // cmsg_len is a size_t
	for len(oob) >= cmsgHeader {
		var msgLen int
		if lenSize == 8 {
			msgLen = int(binary.NativeEndian.Uint64(oob))
		} else {
			msgLen = int(binary.NativeEndian.Uint32(oob))
		}
		if msgLen < cmsgHeader || msgLen > len(oob) {
			return netip.Addr{}, false
		}
		level := int32(binary.NativeEndian.Uint32(oob[lenSize:]))
		typ := int32(binary.NativeEndian.Uint32(oob[lenSize+4:]))
		data := oob[cmsgHeader:msgLen]
		switch {
		case level == syscall.IPPROTO_IP && typ == syscall.IP_PKTINFO && len(data) >= 12:
			// struct in_pktinfo: ifindex, spec_dst, addr. spec_dst is the
			// local address the packet came to: the header's destination
			// for unicast, the interface's address for a broadcast, which
			// is no source a reply can have.
			return netip.AddrFrom4([4]byte(data[4:8])), true
		case level == syscall.IPPROTO_IPV6 && typ == syscall.IPV6_PKTINFO && len(data) >= 16:
			// struct in6_pktinfo: addr, ifindex
			return netip.AddrFrom16([16]byte(data[:16])).Unmap(), true
		}
		oob = oob[min(syscall.CmsgSpace(msgLen-cmsgHeader), len(oob)):]
	}
	return netip.Addr{}, false
}

// pktinfoSrc appends to out the control message that sends a reply from
// src: IP_PKTINFO's spec_dst for IPv4 (a dual-stack socket's IPv4 clients
// too), IPV6_PKTINFO's addr for IPv6.
func pktinfoSrc(out []byte, src netip.Addr) []byte {
	level, typ, size := syscall.IPPROTO_IPV6, syscall.IPV6_PKTINFO, 20
	if src.Is4() {
		level, typ, size = syscall.IPPROTO_IP, syscall.IP_PKTINFO, 12
	}
	start := len(out)
	out = append(out, make([]byte, syscall.CmsgSpace(size))...)
	msg := out[start:]
	if syscall.SizeofCmsghdr-8 == 8 {
		binary.NativeEndian.PutUint64(msg, uint64(syscall.CmsgLen(size)))
	} else {
		binary.NativeEndian.PutUint32(msg, uint32(syscall.CmsgLen(size)))
	}
	lenSize := syscall.SizeofCmsghdr - 8
	binary.NativeEndian.PutUint32(msg[lenSize:], uint32(level))
	binary.NativeEndian.PutUint32(msg[lenSize+4:], uint32(typ))
	data := msg[cmsgHeader:]
	if src.Is4() {
		a := src.As4()
		copy(data[4:8], a[:]) // spec_dst
	} else {
		a := src.As16()
		copy(data[:16], a[:])
	}
	return out
}
