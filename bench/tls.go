package bench

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/pki"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// CompareTLS makes `beacon bench dns` and `beacon bench lock`, when they
// start their own agents, run the same workload against agents with TLS
// on every hop too, and print both and the ratio: the cost of TLS. Set by
// `beacon bench --tls`.
var CompareTLS bool

// benchTLS is a CA of the benchmark's own, made with pki as `beacon tls
// init` makes one, and a client certificate for the loader.
type benchTLS struct {
	dir    string
	client *pki.Files
}

func newBenchTLS(dir string) (*benchTLS, error) {
	if err := pki.InitCA(dir, 1); err != nil {
		return nil, err
	}
	if err := pki.Issue(dir, pki.CertOptions{Name: "bench-client", ClientOnly: true, Days: 1}); err != nil {
		return nil, err
	}
	cert, key := pki.CertFiles(dir, "bench-client")
	return &benchTLS{dir: dir, client: &pki.Files{CA: filepath.Join(dir, pki.CAFile), Cert: cert, Key: key}}, nil
}

// host issues an agent's certificate for ip (and 127.0.0.1, where
// connections between loopback addresses come from).
func (b *benchTLS) host(name, ip string) (*pki.Files, error) {
	if err := pki.Issue(b.dir, pki.CertOptions{Name: name, IPs: []string{ip, "127.0.0.1"}, Days: 1}); err != nil {
		return nil, err
	}
	cert, key := pki.CertFiles(b.dir, name)
	return &pki.Files{CA: filepath.Join(b.dir, pki.CAFile), Cert: cert, Key: key}, nil
}

// httpReady probes /ready, over mutual TLS when b is not nil.
func (b *benchTLS) httpReady(ctx context.Context, url string) error {
	if b == nil {
		return httpReady(ctx, url)
	}
	tc, err := b.client.ClientConfig()
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	defer hc.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}

// client is an SDK client of the agent's API, over mutual TLS when the
// agent was started with it.
func (p *agentProc) client() (*client.Client, error) {
	var opts []client.Option
	if p.token != "" {
		opts = append(opts, client.WithToken(p.token))
	}
	if p.sec == nil {
		return client.New(p.API, append(opts, client.WithTLS(nil))...)
	}
	return client.New(p.API, append(opts, client.WithTLS(p.sec.client))...)
}

// etcdConfig is a clientv3 configuration for endpoint of the agent, over
// mutual TLS when the agent was started with it.
func (p *agentProc) etcdConfig(endpoint string) (clientv3.Config, error) {
	cfg := clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if p.etcdUser != nil {
		p.etcdUser.Agent(&cfg)
	}
	if p.sec != nil {
		tc, err := p.sec.client.ClientConfig()
		if err != nil {
			return cfg, err
		}
		cfg.TLS = tc
	}
	return cfg, nil
}

// tlsName labels a side of a TLS comparison.
func tlsName(on bool) string {
	if on {
		return "TLS on"
	}
	return "TLS off"
}

// newEtcdClient is a clientv3 client of endpoint for a benchmark pointed
// at running agents: an https endpoint is dialed with the TLS files of the
// environment (BEACON_CA_FILE, BEACON_CERT_FILE, BEACON_KEY_FILE), as the
// CLI's --ca-file, --cert-file and --key-file put them there.
func newEtcdClient(endpoint string) (*clientv3.Client, error) {
	cfg := clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if strings.HasPrefix(endpoint, "https://") {
		files, err := client.TLSFromEnv()
		if err != nil {
			return nil, err
		}
		if files == nil {
			return nil, fmt.Errorf("%s is https: give --ca-file, --cert-file and --key-file", endpoint)
		}
		if cfg.TLS, err = files.ClientConfig(); err != nil {
			return nil, err
		}
	}
	return clientv3.New(cfg)
}
