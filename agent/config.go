package agent

import (
	"errors"
	"fmt"
	"github.com/beaconhq/beacon/cluster"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/beaconhq/beacon/acl"
	"github.com/beaconhq/beacon/barrier"
	"github.com/beaconhq/beacon/config"
	"github.com/beaconhq/beacon/dataquota"
	"github.com/beaconhq/beacon/embedded"
	"github.com/beaconhq/beacon/pki"
	"github.com/beaconhq/beacon/queue"
	"github.com/beaconhq/beacon/registry"
	"github.com/beaconhq/beacon/session"
	"github.com/spf13/cast"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Config is everything an agent needs to start, validated.
type Config struct {
	Name    string
	DataDir string
	Role    cluster.Role

	ClientURL      string   // etcd client URL, listened on and advertised
	PeerURL        string   // etcd peer URL, listened on and advertised
	InitialCluster string   // name=peerURL,... for a static bootstrap
	ClusterToken   string   // distinguishes clusters bootstrapped on the same addresses
	Join           []string // client URLs of running members or proxies
	Endpoints      []string // an external cluster's client URLs
	Voters         int      // auto: become a member while fewer voters than this

	APIAddr   string // gRPC API, TCP
	APISocket string // gRPC API, unix socket path ("" = none)
	HTTPAddr  string
	DNSAddr   string
	Domain    string // DNS zone, fully qualified ("beacon.")
	Namespace string // key prefix in etcd, "/beacon/"

	LogLevel         string
	LeaveOnTerminate bool
	NodeTTL          time.Duration // TTL of the lease behind nodes/<name>
	// AntiEntropyInterval: how often the registry compares this agent's
	// registrations with etcd unprompted.
	AntiEntropyInterval time.Duration

	DNSTTL          time.Duration // TTL of DNS answers
	DNSAllowWarning bool          // DNS answers warning instances too
	DNSRecursors    []string      // upstreams for names outside the zone; none = REFUSED
	// DNSForwardAllow are the client networks forwarded for; the DNS
	// over TCP bounds are dnsserver.Config's.
	DNSForwardAllow         []string
	DNSTCPMaxConns          int
	DNSTCPMaxConnsPerClient int
	DNSTCPIdleTimeout       time.Duration
	DNSTCPMaxLifetime       time.Duration
	DNSTCPMaxQueries        int
	// Limits on what clients hold: sessions on the agent, sessions and
	// calls in flight per connection, connections and calls in flight on
	// the agent and connections per client address (apiserver.Limits),
	// bytes a watcher may leave unread.
	MaxSessions         int
	MaxSessionsPerConn  int
	MaxSessionsPerToken int
	MaxStreamsPerConn   int
	MaxConns            int
	MaxConnsPerClient   int
	MaxStreams          int
	MaxWatchBufferBytes int
	APIHandshakeTimeout time.Duration
	// MaxQueueViews bounds the queues the agent follows at once (a watch
	// each; see queue/views.go).
	MaxQueueViews int
	// MaxBarrierParticipants bounds one barrier round's participants
	// (barrier/).
	MaxBarrierParticipants int
	// EtcdSnapshotCount and EtcdSnapshotCatchUpEntries bound the raft
	// entries a member holds in memory (embedded/raftlog.go).
	EtcdSnapshotCount          uint64
	EtcdSnapshotCatchUpEntries uint64
	// EtcdQuotaBackendBytes is a member's backend quota; DataQuotaPercent
	// the share of it client data may use (dataquota/).
	EtcdQuotaBackendBytes int64
	DataQuotaPercent      int
	ClientQuotaPercent    int

	// TLS is this host's certificate files; with them every hop is TLS
	// (see tls.go). nil: plain.
	TLS *pki.Files
	// EnableDebug serves pprof on http-addr and etcd's /debug/vars and
	// pprof on the client URL; off, nobody gets them.
	EnableDebug bool

	// ACL requires a token on every API call (default deny); the unix
	// socket stays the host's operator. See acl/.
	ACL bool
	// DNSPolicy is what DNS answers (DNS carries no token); the default
	// answers every service and node, ACLs on or off.
	DNSPolicy *acl.DNSPolicy
	// EtcdCredentialsFile holds etcd's root and agent passwords, with ACL.
	EtcdCredentialsFile string

	// Services are the services: blocks of the config file.
	Services []registry.Registration
	// Templates are the templates: blocks of the config file (config
	// render, run by the agent).
	Templates []config.TemplateBlock

	// settings are the keys' values as read (flag, env, file, default),
	// for telling a reload which keys changed.
	settings map[string]string
}

// changedKeys are the keys whose values differ between c and next,
// services: and templates: aside.
func (c Config) changedKeys(next Config) []string {
	var out []string
	for _, o := range options() {
		if c.settings[o.key] != next.settings[o.key] {
			out = append(out, o.key)
		}
	}
	return out
}

// ConfigError names the config key whose value stopped the agent.
type ConfigError struct {
	Key string
	Err error
}

func (e *ConfigError) Error() string { return fmt.Sprintf("config: %s: %v", e.Key, e.Err) }
func (e *ConfigError) Unwrap() error { return e.Err }

// option is one configuration key: its flag, its default and its help.
// The same list defines the flags, the defaults, and the keys a config file
// may hold, so the three never drift apart.
type option struct {
	key   string
	def   any
	usage string
}

func options() []option {
	host, _ := os.Hostname()
	if host == "" {
		host = "default"
	}
	return []option{
		{"name", host, "node name, unique in the cluster"},
		{"data-dir", "./beacon-data", "where etcd data and local state live"},
		{"role", string(cluster.RoleMember), "member, proxy, auto or external"},
		{"client-url", "http://127.0.0.1:2379", "etcd client URL, listened on and advertised"},
		{"peer-url", "http://127.0.0.1:2380", "etcd peer URL, listened on and advertised"},
		{"initial-cluster", "", "static bootstrap: name=peer-url,... of every first member"},
		{"initial-cluster-token", "beacon", "static bootstrap: a token unique to this cluster, the same on every first member"},
		{"join", "", "client URLs (comma-separated) of any running member or proxy"},
		{"endpoints", "", "role external: client URLs of an existing etcd cluster"},
		{"voters", 3, "role auto: become a voting member while the cluster has fewer voters than this"},
		{"api-addr", "127.0.0.1:7600", "agent gRPC API address"},
		{"api-socket", "", "agent gRPC API unix socket (default <data-dir>/beacon.sock, \"-\" for none)"},
		{"http-addr", "127.0.0.1:7601", "HTTP address for /health, /ready, /metrics, /version"},
		{"dns-addr", "127.0.0.1:8600", "DNS address (UDP and TCP)"},
		{"domain", "beacon.", "DNS zone"},
		{"namespace", "/beacon/", "key prefix in etcd"},
		{"log-level", "info", "debug, info, warn or error"},
		{"leave-on-terminate", false, "on SIGTERM, leave the cluster before stopping"},
		{"node-ttl", "10s", "TTL of the lease behind this agent's nodes/<name> key and its own registrations"},
		{"anti-entropy-interval", "5s", "how often the agent compares its registrations with etcd unprompted, writing back what etcd lost and removing what it no longer has"},
		{"dns-ttl", "5s", "TTL of DNS answers"},
		{"dns-allow-warning", false, "DNS answers instances whose check is warning, not only passing"},
		{"dns-recursors", "", "host:port upstreams (comma-separated) for names outside the zone; empty = answer REFUSED"},
		{"ca-file", "", "TLS: the fleet's CA (ca.pem); with cert-file and key-file, every hop is TLS and URLs are https"},
		{"cert-file", "", "TLS: this host's certificate (beacon tls cert), for serving and dialing"},
		{"key-file", "", "TLS: this host's key"},
		{"enable-debug", false, "serve pprof on http-addr and etcd's /debug/vars and pprof on the client URL"},
		{"acl", false, "require an ACL token on every API call (default deny); the unix socket is the host's operator"},
		{"dns-policy", "", "which names DNS answers: service:/node: rules, comma-separated (default service:*:read,node:*:read; none)"},
		{"dns-forward-allow", "127.0.0.0/8,::1", "client networks (CIDRs or IPs, comma-separated) whose queries outside the zone are forwarded to dns-recursors; others get REFUSED"},
		{"dns-tcp-max-conns", 1024, "DNS over TCP: connections of all clients together (the least recently used one makes room)"},
		{"dns-tcp-max-conns-per-client", 16, "DNS over TCP: connections of one client address (IPv6: of one /64)"},
		{"dns-tcp-idle-timeout", "5s", "DNS over TCP: a connection idle this long is closed"},
		{"dns-tcp-max-lifetime", "30s", "DNS over TCP: a connection open this long is closed, however busy"},
		{"dns-tcp-max-queries", 1000, "DNS over TCP: a connection is closed after answering this many queries"},
		{"max-sessions", 16384, "sessions open on this agent at once"},
		{"max-sessions-per-connection", 1024, "sessions open on one client connection at once"},
		{"max-sessions-per-token", session.DefaultMaxSessionsPerOwner, "with acl: sessions one ACL token may have open on this agent at once (not the management token, nor the unix socket)"},
		{"max-streams-per-connection", 4096, "calls in flight on one client connection, streams and unary calls together"},
		{"max-barrier-participants", barrier.DefaultMaxParticipants, "participants of one barrier round at once (each watches the round); a count above it, or entering a round that holds it, is refused"},
		{"max-queue-views", queue.DefaultMaxViews, "queues this agent follows at once, a watch each (the least recently used idle one makes room)"},
		{"etcd-snapshot-count", embedded.DefaultSnapshotCount, "member: raft entries applied between etcd's disk snapshots (the WAL replayed into memory at restart)"},
		{"etcd-snapshot-catchup-entries", embedded.DefaultSnapshotCatchUpEntries, "member: raft entries kept in memory for a slow follower; one further behind is sent the whole database"},
		{"max-streams", 32768, "calls in flight on this agent, streams and unary calls together, over every TCP connection (the unix socket has as many of its own)"},
		{"max-connections", 4096, "API client connections open at once over TCP (the unix socket has as many of its own); one past it is closed at once"},
		{"max-connections-per-client", 256, "API connections over TCP from one client address (IPv6: one /64); not applied on the owner-only unix socket"},
		{"api-handshake-timeout", "10s", "a new API connection that has not become HTTP/2 (TLS handshake included) by then is closed, giving back its connection slot"},
		{"etcd-quota-backend-bytes", embedded.DefaultQuotaBackendBytes, "member: etcd's backend quota; past it etcd refuses every write that adds bytes (32 MiB to 64 GiB)"},
		{"data-quota-percent", dataquota.DefaultPercent, "writes of data through the API (config values, queue messages and gates, fenced puts, election proposals over 1 KiB) are refused once etcd's backend uses this percent of its quota, keeping the rest for sessions, locks, registrations and acks; 100: only etcd's quota"},
		{"client-quota-percent", dataquota.DefaultClientPercent, "every write of an API call (sessions, lock, election and barrier keys, registrations and their status) is refused past this percent of etcd's quota, deletes excepted; the rest is the agents' own (at least data-quota-percent)"},
		{"max-watch-buffer-bytes", 16 << 20, "bytes of changes one watcher (Config.Watch, Registry.Watch, Election.Observe) may leave unread before it is cut off"},
		{"etcd-credentials-file", "", "with acl: etcd's root and agent passwords (default <data-dir>/etcd-credentials.json; the first member writes it, every other agent needs a copy)"},
	}
}

// BindFlags registers the agent's flags on fs, plus --config.
func BindFlags(fs *pflag.FlagSet) {
	fs.String("config", "", "YAML config file")
	for _, o := range options() {
		switch d := o.def.(type) {
		case string:
			fs.String(o.key, d, o.usage)
		case int:
			fs.Int(o.key, d, o.usage)
		case bool:
			fs.Bool(o.key, d, o.usage)
		}
	}
}

// LoadConfig reads the configuration with precedence flag > BEACON_* env >
// config file > default, and validates it. The error names the key at fault.
func LoadConfig(fs *pflag.FlagSet) (Config, error) {
	v := viper.New()
	known := map[string]bool{"services": true, "templates": true} // blocks are file-only
	for _, o := range options() {
		v.SetDefault(o.key, o.def)
		known[o.key] = true
	}
	v.SetEnvPrefix("BEACON")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()

	if file, _ := fs.GetString("config"); file != "" {
		if err := readConfigFile(v, file, known); err != nil {
			return Config{}, err
		}
	}
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name != "config" && known[f.Name] {
			_ = v.BindPFlag(f.Name, f) // only fails for a nil flag
		}
	})
	return parseConfig(v)
}

func readConfigFile(v *viper.Viper, file string, known map[string]bool) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return &ConfigError{Key: "config file", Err: err}
	}
	settings, err := checkFileKeys(file, data, known)
	if err != nil {
		return err
	}
	// viper ranks its config layer below env and flags, which keeps the
	// precedence flag > env > file > default.
	return v.MergeConfigMap(settings)
}

// blockError is a ConfigError on the key a block parser names (the parsers
// answer a FieldError such as services[0].port), else on the block's key.
func blockError(key string, err error) error {
	var fe *registry.FieldError
	if errors.As(err, &fe) {
		return &ConfigError{fe.Field, errors.New(fe.Msg)}
	}
	return &ConfigError{key, err}
}

func parseConfig(v *viper.Viper) (Config, error) {
	var c Config
	var errs []error
	str := func(key string) string {
		s, err := cast.ToStringE(v.Get(key))
		if err != nil {
			errs = append(errs, &ConfigError{key, fmt.Errorf("%v is not a string", v.Get(key))})
		}
		return strings.TrimSpace(s)
	}
	check := func(key string, err error) {
		if err != nil {
			errs = append(errs, &ConfigError{key, err})
		}
	}

	c.Name = str("name")
	check("name", validName(c.Name))
	c.DataDir = str("data-dir")
	if c.DataDir == "" {
		check("data-dir", errors.New("must not be empty"))
	}
	c.Role = cluster.Role(str("role"))
	switch c.Role {
	case cluster.RoleMember, cluster.RoleProxy, cluster.RoleAuto, cluster.RoleExternal:
	default:
		check("role", fmt.Errorf("%q is not one of member, proxy, auto, external", c.Role))
	}

	var err error
	c.TLS, err = pki.FilesOf(str("ca-file"), str("cert-file"), str("key-file"))
	check("ca-file", err)
	c.EnableDebug, err = cast.ToBoolE(v.Get("enable-debug"))
	if err != nil {
		check("enable-debug", fmt.Errorf("%v is not true or false", v.Get("enable-debug")))
	}
	scheme := schemeOf(c.TLS)
	c.ClientURL, err = parseURL(schemeDefault(str("client-url"), "client-url", scheme), scheme)
	check("client-url", err)
	c.PeerURL, err = parseURL(schemeDefault(str("peer-url"), "peer-url", scheme), scheme)
	check("peer-url", err)
	c.Join, err = parseURLList(str("join"), scheme)
	check("join", err)
	c.Endpoints, err = parseURLList(str("endpoints"), scheme)
	check("endpoints", err)
	c.ClusterToken = str("initial-cluster-token")
	if c.ClusterToken == "" {
		check("initial-cluster-token", errors.New("must not be empty"))
	}
	c.InitialCluster = str("initial-cluster")
	if c.InitialCluster != "" {
		check("initial-cluster", validInitialCluster(c.InitialCluster, c.Name, c.PeerURL, scheme))
	}

	voters, err := cast.ToIntE(v.Get("voters"))
	if err != nil || voters < 1 || voters > 9 {
		check("voters", fmt.Errorf("%v is not a whole number from 1 to 9", v.Get("voters")))
	}
	c.Voters = voters

	c.APIAddr = str("api-addr")
	check("api-addr", validHostPort(c.APIAddr))
	c.HTTPAddr = str("http-addr")
	check("http-addr", validHostPort(c.HTTPAddr))
	c.DNSAddr = str("dns-addr")
	check("dns-addr", validHostPort(c.DNSAddr))
	c.APISocket = str("api-socket")
	switch c.APISocket {
	case "":
		c.APISocket = filepath.Join(c.DataDir, "beacon.sock")
	case "-":
		c.APISocket = ""
	}
	if c.APISocket != "" && len(c.APISocket) > 100 {
		check("api-socket", fmt.Errorf("%q is longer than a unix socket path may be (100 bytes); set api-socket to a shorter path or \"-\"", c.APISocket))
	}

	c.Domain = strings.ToLower(str("domain"))
	if !strings.HasSuffix(c.Domain, ".") {
		c.Domain += "."
	}
	check("domain", validDomain(c.Domain))
	c.Namespace = str("namespace")
	if !strings.HasPrefix(c.Namespace, "/") || strings.Contains(c.Namespace, "//") || len(c.Namespace) < 2 {
		check("namespace", fmt.Errorf("%q must start with / and name a prefix, like /beacon/", c.Namespace))
	} else if !strings.HasSuffix(c.Namespace, "/") {
		c.Namespace += "/"
	}

	c.LogLevel = strings.ToLower(str("log-level"))
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		check("log-level", fmt.Errorf("%q is not one of debug, info, warn, error", c.LogLevel))
	}
	c.LeaveOnTerminate, err = cast.ToBoolE(v.Get("leave-on-terminate"))
	if err != nil {
		check("leave-on-terminate", fmt.Errorf("%v is not true or false", v.Get("leave-on-terminate")))
	}
	c.NodeTTL, err = cast.ToDurationE(v.Get("node-ttl"))
	if err != nil || c.NodeTTL < 2*time.Second || c.NodeTTL > time.Hour {
		check("node-ttl", fmt.Errorf("%v is not a duration from 2s to 1h", v.Get("node-ttl")))
	}
	c.AntiEntropyInterval, err = cast.ToDurationE(v.Get("anti-entropy-interval"))
	if err != nil || c.AntiEntropyInterval < time.Second || c.AntiEntropyInterval > 24*time.Hour {
		check("anti-entropy-interval", fmt.Errorf("%v is not a duration from 1s to 24h", v.Get("anti-entropy-interval")))
	}

	dnsTTL, err := cast.ToDurationE(v.Get("dns-ttl"))
	if err != nil || dnsTTL < time.Second || dnsTTL > 24*time.Hour {
		check("dns-ttl", fmt.Errorf("%v is not a duration from 1s to 24h", v.Get("dns-ttl")))
	}
	c.DNSTTL = dnsTTL
	c.DNSAllowWarning, err = cast.ToBoolE(v.Get("dns-allow-warning"))
	if err != nil {
		check("dns-allow-warning", fmt.Errorf("%v is not true or false", v.Get("dns-allow-warning")))
	}
	for _, r := range strings.Split(str("dns-recursors"), ",") {
		if r = strings.TrimSpace(r); r != "" {
			if err := validHostPort(r); err != nil {
				check("dns-recursors", err)
			}
			c.DNSRecursors = append(c.DNSRecursors, r)
		}
	}
	for _, n := range strings.Split(str("dns-forward-allow"), ",") {
		if n = strings.TrimSpace(n); n != "" {
			c.DNSForwardAllow = append(c.DNSForwardAllow, n)
		}
	}
	positive := func(key string, max int) int {
		n, err := cast.ToIntE(v.Get(key))
		if err != nil || n < 1 || n > max {
			check(key, fmt.Errorf("%v is not a whole number from 1 to %d", v.Get(key), max))
		}
		return n
	}
	duration := func(key string, min, max time.Duration) time.Duration {
		d, err := cast.ToDurationE(v.Get(key))
		if err != nil || d < min || d > max {
			check(key, fmt.Errorf("%v is not a duration from %s to %s", v.Get(key), min, max))
		}
		return d
	}
	c.DNSTCPMaxConns = positive("dns-tcp-max-conns", 1<<20)
	c.DNSTCPMaxConnsPerClient = positive("dns-tcp-max-conns-per-client", 1<<20)
	c.DNSTCPIdleTimeout = duration("dns-tcp-idle-timeout", 100*time.Millisecond, time.Hour)
	c.DNSTCPMaxLifetime = duration("dns-tcp-max-lifetime", time.Second, 24*time.Hour)
	c.DNSTCPMaxQueries = positive("dns-tcp-max-queries", 1<<30)
	c.MaxSessions = positive("max-sessions", 1<<24)
	c.MaxSessionsPerConn = positive("max-sessions-per-connection", 1<<24)
	c.MaxSessionsPerToken = positive("max-sessions-per-token", 1<<24)
	c.MaxStreamsPerConn = positive("max-streams-per-connection", 1<<24)
	c.MaxQueueViews = positive("max-queue-views", 1<<20)
	c.MaxBarrierParticipants = positive("max-barrier-participants", barrier.MaxParticipantsCeiling)
	c.EtcdSnapshotCount = uint64(positive("etcd-snapshot-count", 10_000_000))
	c.EtcdSnapshotCatchUpEntries = uint64(positive("etcd-snapshot-catchup-entries", 10_000_000))
	c.MaxStreams = positive("max-streams", 1<<24)
	c.MaxConns = positive("max-connections", 1<<20)
	c.MaxConnsPerClient = positive("max-connections-per-client", 1<<20)
	c.MaxWatchBufferBytes = positive("max-watch-buffer-bytes", 1<<40)
	if c.EtcdQuotaBackendBytes = int64(positive("etcd-quota-backend-bytes", 64<<30)); c.EtcdQuotaBackendBytes < 32<<20 {
		// The data quota keeps dataquota.Reserve (8 MiB) below it.
		check("etcd-quota-backend-bytes", fmt.Errorf("%d is below 32 MiB (33554432)", c.EtcdQuotaBackendBytes))
	}
	c.DataQuotaPercent = positive("data-quota-percent", 100)
	if c.ClientQuotaPercent = positive("client-quota-percent", 100); c.ClientQuotaPercent > 0 && c.ClientQuotaPercent < c.DataQuotaPercent {
		check("client-quota-percent", fmt.Errorf("%d is below data-quota-percent %d", c.ClientQuotaPercent, c.DataQuotaPercent))
	}
	c.APIHandshakeTimeout = duration("api-handshake-timeout", 100*time.Millisecond, 2*time.Minute)
	c.ACL, err = cast.ToBoolE(v.Get("acl"))
	if err != nil {
		check("acl", fmt.Errorf("%v is not true or false", v.Get("acl")))
	}
	c.DNSPolicy, err = acl.ParseDNSPolicy(str("dns-policy"))
	check("dns-policy", err)
	if c.EtcdCredentialsFile = str("etcd-credentials-file"); c.EtcdCredentialsFile == "" {
		c.EtcdCredentialsFile = filepath.Join(c.DataDir, "etcd-credentials.json")
	}

	c.Services, err = registry.ParseServiceBlocks(v.Get("services"))
	if err != nil {
		errs = append(errs, blockError("services", err))
	}
	c.Templates, err = config.ParseTemplateBlocks(v.Get("templates"))
	if err != nil {
		errs = append(errs, blockError("templates", err))
	}

	if len(errs) == 0 {
		errs = append(errs, c.checkRole())
	}
	c.settings = map[string]string{}
	for _, o := range options() {
		c.settings[o.key] = fmt.Sprint(v.Get(o.key))
	}
	return c, errors.Join(errs...)
}

// checkRole checks the flags that go with each role.
func (c *Config) checkRole() error {
	switch {
	case c.InitialCluster != "" && len(c.Join) > 0:
		return &ConfigError{"join", errors.New("use either initial-cluster (bootstrap a new cluster) or join (enter a running one), not both")}
	case c.Role == cluster.RoleProxy && len(c.Join) == 0:
		return &ConfigError{"join", errors.New("role proxy needs join: the client URL of a running member or proxy")}
	case c.Role == cluster.RoleProxy && c.InitialCluster != "":
		return &ConfigError{"initial-cluster", errors.New("a proxy holds no raft state and cannot bootstrap a cluster; use join")}
	case c.Role == cluster.RoleExternal && len(c.Endpoints) == 0:
		return &ConfigError{"endpoints", errors.New("role external needs endpoints: the client URLs of an existing etcd cluster")}
	case c.Role != cluster.RoleExternal && len(c.Endpoints) > 0:
		return &ConfigError{"endpoints", fmt.Errorf("endpoints is for role external; role %s uses join", c.Role)}
	}
	return nil
}

func validName(name string) error {
	if name == "" {
		return errors.New("must not be empty")
	}
	if len(name) > 63 {
		return fmt.Errorf("%q is longer than 63 characters", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("%q may hold only letters, digits, '-', '_' and '.'", name)
		}
	}
	return nil
}

func validHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return fmt.Errorf("%q: host must be an IP address or localhost", addr)
	}
	if p, err := cast.ToIntE(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: port must be a number from 0 to 65535", addr)
	}
	return nil
}

func validDomain(domain string) error {
	if domain == "." {
		return errors.New("the root zone cannot be beacon's zone")
	}
	for _, label := range strings.Split(strings.TrimSuffix(domain, "."), ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q is not a valid DNS name", domain)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("%q is not a valid DNS name (letters, digits and '-' only)", domain)
			}
		}
	}
	return nil
}
