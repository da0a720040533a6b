package dnsserver

import (
	"io"
	"net"
	"testing"

	"github.com/miekg/dns"
)

// BenchmarkAnswer asks for web.service.beacon SRV over real UDP, from one
// socket, one query at a time: beacon's server over its catalog, and
// beside it the plain way, a miekg/dns server returning beacon's answer
// fixed. Compare the two ns/op (the ratio is beacon/plain).
func BenchmarkAnswer(b *testing.B) {
	srv := start(b, fixture(), nil)
	q := new(dns.Msg)
	q.SetQuestion("web.service.beacon.", dns.TypeSRV)
	q.SetEdns0(1232, false)
	answer := query(b, srv.Addr(), "web.service.beacon.", dns.TypeSRV, edns(1232))

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	plain := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := answer.Copy()
		m.Id = r.Id
		_ = w.WriteMsg(m)
	})}
	go func() { _ = plain.ActivateAndServe() }()
	defer func() { _ = plain.Shutdown() }()

	pkt, err := q.Pack()
	if err != nil {
		b.Fatal(err)
	}
	for _, target := range []struct{ name, addr string }{{"beacon", srv.Addr()}, {"plain", pc.LocalAddr().String()}} {
		b.Run(target.name, func(b *testing.B) {
			conn, err := net.Dial("udp", target.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			buf := make([]byte, 1500)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := conn.Write(pkt); err != nil {
					b.Fatal(err)
				}
				if _, err := conn.Read(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAnswerTCP asks for web.service.beacon SRV over one TCP
// connection, one query at a time, and (ConnPerQuery) over a new
// connection each time: what the connection limits cost per query and
// per connection.
func BenchmarkAnswerTCP(b *testing.B) {
	srv := start(b, fixture(), nil)
	q := new(dns.Msg)
	q.SetQuestion("web.service.beacon.", dns.TypeSRV)
	pkt, err := q.Pack()
	if err != nil {
		b.Fatal(err)
	}
	msg := append([]byte{byte(len(pkt) >> 8), byte(len(pkt))}, pkt...)
	try := func(c net.Conn, buf []byte) error {
		if _, err := c.Write(msg); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, buf[:2]); err != nil {
			return err
		}
		_, err := io.ReadFull(c, buf[:int(buf[0])<<8|int(buf[1])])
		return err
	}
	ask := func(b *testing.B, c net.Conn, buf []byte) {
		if err := try(c, buf); err != nil {
			b.Fatal(err)
		}
	}
	// Reusing the connection as a client does: reconnecting when the
	// server has closed it (after TCPMaxQueries answers).
	b.Run("OneConn", func(b *testing.B) {
		c, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			b.Fatal(err)
		}
		defer func() { c.Close() }()
		buf := make([]byte, 65536)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if try(c, buf) != nil {
				c.Close()
				if c, err = net.Dial("tcp", srv.Addr()); err != nil {
					b.Fatal(err)
				}
				ask(b, c, buf)
			}
		}
	})
	b.Run("ConnPerQuery", func(b *testing.B) {
		buf := make([]byte, 65536)
		for i := 0; i < b.N; i++ {
			c, err := net.Dial("tcp", srv.Addr())
			if err != nil {
				b.Fatal(err)
			}
			ask(b, c, buf)
			c.Close()
		}
	})
}
