package dnsserver

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// A TCP connection costs the server a goroutine and a file descriptor
// for as long as the client keeps it, and a client that sends one query
// just before each idle timeout keeps it for ever: a thousand such
// connections once held every slot, and new clients waited in the
// kernel's backlog unanswered. So:
//
//   - every connection ends after TCPMaxLifetime or TCPMaxQueries
//     answers, whichever comes first, and after TCPIdleTimeout without a
//     query: a trickle cannot hold it open (RFC 7766 §6.2.3 lets a server
//     close connections to manage its resources; clients reconnect);
//   - a new connection is always accepted. When its client address
//     already holds TCPMaxConnsPerClient, that address's least recently
//     used connection is closed; when all clients together hold
//     TCPMaxConns, the least recently used connection of the address
//     holding the most is. One address can thus never keep another out,
//     and a new client is served until a whole cap's worth of newer
//     connections has arrived after it.

func (c *Config) normalizeTCP() error {
	for _, f := range []struct {
		name string
		v    *int
		def  int
	}{
		{"dns tcp max conns", &c.TCPMaxConns, DefaultTCPMaxConns},
		{"dns tcp max conns per client", &c.TCPMaxConnsPerClient, DefaultTCPMaxConnsPerClient},
		{"dns tcp max queries", &c.TCPMaxQueries, DefaultTCPMaxQueries},
	} {
		switch {
		case *f.v < 0:
			return fmt.Errorf("%s: %d is not a count", f.name, *f.v)
		case *f.v == 0:
			*f.v = f.def
		}
	}
	for _, f := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"dns tcp idle timeout", &c.TCPIdleTimeout, DefaultTCPIdleTimeout},
		{"dns tcp max lifetime", &c.TCPMaxLifetime, DefaultTCPMaxLifetime},
	} {
		switch {
		case *f.v < 0:
			return fmt.Errorf("%s: %v is not a duration", f.name, *f.v)
		case *f.v == 0:
			*f.v = f.def
		}
	}
	c.TCPMaxConnsPerClient = min(c.TCPMaxConnsPerClient, c.TCPMaxConns)
	return nil
}

// tcpConn is one connection being served.
type tcpConn struct {
	net.Conn
	client   netip.Addr // the address its cap counts against
	lastUsed atomic.Int64
	busy     atomic.Bool // between a query read and its answer written
	removed  bool        // guarded by connTable.mu
}

func (c *tcpConn) touch() { c.lastUsed.Store(time.Now().UnixNano()) }

// clientKey is what a client's cap counts against: its IPv4 address, or
// the /64 of its IPv6 one (a host usually has a whole /64 to pick from).
func clientKey(a net.Addr) netip.Addr {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip := ta.AddrPort().Addr().Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// connTable holds the connections being served and enforces the caps.
type connTable struct {
	max, perClient int

	mu       sync.Mutex
	conns    map[*tcpConn]struct{}
	byClient map[netip.Addr]int
}

func newConnTable(max, perClient int) *connTable {
	return &connTable{max: max, perClient: perClient, conns: map[*tcpConn]struct{}{}, byClient: map[netip.Addr]int{}}
}

// admit adds c, closing the connections the caps make room from.
func (t *connTable) admit(c *tcpConn) {
	c.touch()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.conns[c] = struct{}{}
	t.byClient[c.client]++
	for t.byClient[c.client] > t.perClient {
		t.evictLocked(t.victimLocked(c, c.client))
	}
	for len(t.conns) > t.max {
		t.evictLocked(t.victimLocked(c, netip.Addr{}))
	}
}

// victimLocked is the connection to close: of client when it is valid,
// else of the client holding the most; the least recently used of them,
// idle ones before busy ones, never the newcomer.
func (t *connTable) victimLocked(newcomer *tcpConn, client netip.Addr) *tcpConn {
	most := 0
	if !client.IsValid() {
		for _, n := range t.byClient {
			most = max(most, n)
		}
	}
	var v *tcpConn
	var vBusy bool
	var vUsed int64
	for c := range t.conns {
		if c == newcomer || client.IsValid() && c.client != client || !client.IsValid() && t.byClient[c.client] < most {
			continue
		}
		busy, used := c.busy.Load(), c.lastUsed.Load()
		if v == nil || !busy && vBusy || busy == vBusy && used < vUsed {
			v, vBusy, vUsed = c, busy, used
		}
	}
	if v == nil { // the newcomer alone: a cap of 0 is normalized away, so unreachable
		v = newcomer
	}
	return v
}

func (t *connTable) evictLocked(c *tcpConn) {
	t.removeLocked(c)
	c.Close() // its goroutine sees the error and ends
}

// remove forgets c; a connection already evicted is not counted twice.
func (t *connTable) remove(c *tcpConn) {
	t.mu.Lock()
	t.removeLocked(c)
	t.mu.Unlock()
}

func (t *connTable) removeLocked(c *tcpConn) {
	if c.removed {
		return
	}
	c.removed = true
	delete(t.conns, c)
	if t.byClient[c.client]--; t.byClient[c.client] <= 0 {
		delete(t.byClient, c.client)
	}
}

// count is how many connections client holds (all clients when invalid).
func (t *connTable) count(client netip.Addr) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !client.IsValid() {
		return len(t.conns)
	}
	return t.byClient[client]
}

// closeAll closes every connection, at shutdown.
func (t *connTable) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		c.Close()
	}
}
