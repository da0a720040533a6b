package healthcheck

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestTCPOpenThenClosed(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	_, rec := start(t, Definition{TCP: addr, Interval: 20 * time.Millisecond}, Result{Status: StatusCritical}, nil)
	if e := rec.next(); e.Result != (Result{StatusPassing, "TCP connect " + addr + ": success"}) {
		t.Fatalf("open listener: got %v", e)
	}

	ln.Close()
	e := rec.next()
	if e.Status != StatusCritical || !strings.HasPrefix(e.Output, "dial tcp "+addr) || !strings.Contains(e.Output, "connection refused") {
		t.Fatalf("closed listener: got %v", e)
	}
}
