package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// A prober runs one check, bounded by ctx, and returns its raw result;
// the monitor applies the thresholds. It never panics and always returns a
// status, because "no answer" is itself an answer: critical.
type prober func(ctx context.Context) Result

const (
	userAgent = "beacon-healthcheck"

	// maxRedirects caps how far an HTTP check follows redirects. A check
	// is about this instance; a chain of hops (or a loop) says more about
	// somebody else, so past the cap the last 3xx is the verdict.
	maxRedirects = 5
)

// httpClient is shared by every HTTP check. It is built rather than taken
// from http.DefaultClient because the defaults are wrong here:
//   - no proxy: HTTP_PROXY is meant for the app's traffic, and a check of a
//     local instance through a remote proxy would test the proxy;
//   - no keep-alive: each check opens its own connection, so it proves the
//     instance still accepts connections, and thousands of checks leave no
//     idle sockets behind between intervals;
//   - capped redirects and header size, so a hostile or broken endpoint
//     cannot make a check do unbounded work.
//
// Timeouts come from the context each check carries.
var httpClient = &http.Client{
	Transport: &http.Transport{
		Proxy:                  nil,
		DialContext:            (&net.Dialer{}).DialContext,
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 64 << 10,
	},
	CheckRedirect: func(_ *http.Request, via []*http.Request) error {
		if len(via) >= maxRedirects {
			return http.ErrUseLastResponse
		}
		return nil
	},
}

func newProber(d Definition) prober {
	switch d.Kind() {
	case KindHTTP:
		return httpProber(d.HTTP, d.Timeout)
	case KindTCP:
		return tcpProber(d.TCP, d.Timeout)
	case KindGRPC:
		return grpcProber(d.GRPC, d.Timeout)
	}
	return nil
}

// httpProber GETs rawURL: 2xx is passing, 429 Too Many Requests warning,
// anything else critical. The body is never read: the status line is the
// whole answer, and a large or endless body must cost nothing.
func httpProber(rawURL string, timeout time.Duration) prober {
	shown := rawURL
	if u, err := url.Parse(rawURL); err == nil {
		shown = u.Redacted() // a password in the URL must not land in the catalog
	}
	prefix := "HTTP GET " + shown + ": "
	return func(ctx context.Context) Result {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
		if err != nil {
			return Result{StatusCritical, prefix + err.Error()}
		}
		req.Header.Set("User-Agent", userAgent)
		req.Header.Set("Accept", "text/plain, text/*, */*")
		resp, err := httpClient.Do(req)
		if err != nil {
			return Result{StatusCritical, prefix + describeErr(ctx, err, timeout)}
		}
		resp.Body.Close()
		out := prefix + resp.Status
		switch {
		case resp.StatusCode >= 200 && resp.StatusCode <= 299:
			return Result{StatusPassing, out}
		case resp.StatusCode == http.StatusTooManyRequests:
			return Result{StatusWarning, out}
		}
		return Result{StatusCritical, out}
	}
}

// tcpProber connects to addr and hangs up: a completed handshake is passing.
func tcpProber(addr string, timeout time.Duration) prober {
	return func(ctx context.Context) Result {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			if ctx.Err() == context.DeadlineExceeded {
				return Result{StatusCritical, "TCP connect " + addr + ": timed out after " + timeout.String()}
			}
			return Result{StatusCritical, err.Error()} // "dial tcp addr: connect: connection refused" says it all
		}
		conn.Close()
		return Result{StatusPassing, "TCP connect " + addr + ": success"}
	}
}

// grpcProber asks the grpc.health.v1 Health service at target (host:port,
// optionally /service) for its status: SERVING is passing, anything else,
// including an unknown service, critical.
//
// It dials afresh for every check rather than keeping a connection: a kept
// connection would hide whether a new client can connect at all, and after
// an outage grpc's reconnect backoff (up to two minutes) would keep a
// recovered server critical long after it came back.
func grpcProber(target string, timeout time.Duration) prober {
	addr, svc, _ := strings.Cut(target, "/")
	prefix := "gRPC health check " + target + ": "
	return func(ctx context.Context) Result {
		// passthrough hands addr to the dialer as is, like net.Dial, rather
		// than starting a DNS resolver goroutine per check.
		conn, err := grpc.NewClient("passthrough:///"+addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithUserAgent(userAgent))
		if err != nil {
			return Result{StatusCritical, prefix + err.Error()}
		}
		defer conn.Close()
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			return Result{StatusCritical, prefix + describeGRPCErr(ctx, err, timeout)}
		}
		st := resp.GetStatus()
		if st == healthpb.HealthCheckResponse_SERVING {
			return Result{StatusPassing, prefix + st.String()}
		}
		return Result{StatusCritical, prefix + st.String()}
	}
}

// describeErr says why a probe got no answer, saying "timed out" plainly
// rather than the several wordings the net and http packages use for it.
func describeErr(ctx context.Context, err error, timeout time.Duration) string {
	if ctx.Err() == context.DeadlineExceeded {
		return "timed out after " + timeout.String()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // url.Error repeats the method and URL already in the output
	}
	return err.Error()
}

func describeGRPCErr(ctx context.Context, err error, timeout time.Duration) string {
	if ctx.Err() == context.DeadlineExceeded {
		return "timed out after " + timeout.String()
	}
	s := status.Convert(err)
	if s.Code() == codes.NotFound {
		return fmt.Sprintf("service unknown to the server (%s)", s.Message())
	}
	return fmt.Sprintf("%s: %s", s.Code(), s.Message())
}
