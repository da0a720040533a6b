package peercred

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

// wrapped hides a connection behind a type that says what it wraps, as
// the API's connection limiter and tls.Conn do.
type wrapped struct{ net.Conn }

func (w wrapped) NetConn() net.Conn { return w.Conn }

// The server's end of a real unix socket names this process, through a
// wrapper too; a TCP connection has no credentials.
func TestOfUnixPeer(t *testing.T) {
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cc, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	for _, c := range []net.Conn{sc, wrapped{sc}} {
		cred, ok := Of(c)
		if !ok || int(cred.PID) != os.Getpid() || int(cred.UID) != os.Getuid() {
			t.Errorf("Of(%T) = %+v, %v; want pid %d uid %d", c, cred, ok, os.Getpid(), os.Getuid())
		}
	}

	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	tc, err := net.Dial("tcp", tl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	ts, err := tl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	if cred, ok := Of(ts); ok {
		t.Errorf("a TCP connection has credentials %+v", cred)
	}
}
