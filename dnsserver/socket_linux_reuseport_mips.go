//go:build linux && (mips || mipsle || mips64 || mips64le || sparc64)

package dnsserver

// soReusePort is SO_REUSEPORT on these architectures.
const soReusePort = 0x200
