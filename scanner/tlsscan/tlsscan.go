package tlsscan

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"iter"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
)

// TypeName is the name of the task type.
const TypeName = "tls"

func ptr[T any](v T) *T { return &v }

// TaskType describes tls tasks: no requirements, so they run in the
// external pool.
func TaskType() *scanfleet.TaskType {
	return &scanfleet.TaskType{
		Name:        TypeName,
		Description: "Completes a TLS handshake with each target, records and checks its certificate, and probes the TLS versions it accepts.",
		Params: []scanfleet.Param{
			{Name: "ports", Type: scanfleet.ParamPortList, Default: "443", Description: "Ports tried on targets that name none."},
			{Name: "timeout", Type: scanfleet.ParamDuration, Default: "5s", Description: "How long one connection and handshake may take."},
			{Name: "concurrency", Type: scanfleet.ParamInteger, Default: 20, Min: ptr[int64](1), Max: ptr[int64](1000), Description: "Endpoints probed at once."},
			{Name: "rate", Type: scanfleet.ParamInteger, Default: 100, Min: ptr[int64](1), Max: ptr[int64](100_000), Description: "Handshakes started per second."},
			{Name: "versions", Type: scanfleet.ParamBoolean, Default: true, Description: "Probe TLS 1.0, 1.1, 1.2 and 1.3 each in a handshake of its own."},
			{Name: "ca_file", Type: scanfleet.ParamString, Description: "A PEM file on the worker holding the trusted roots, instead of the system's."},
		},
	}
}

// Config is how one tls task runs.
type Config struct {
	// Ports are tried on targets without a port. Default 443.
	Ports []uint16
	// Timeout bounds one connection and handshake. Default 5s.
	Timeout time.Duration
	// Concurrency is the most endpoints probed at once. Default 20.
	Concurrency int
	// Rate is the most handshakes started per second. Default 100.
	Rate int
	// Versions enables the per-version probes. Default false; the task
	// type's default is true.
	Versions bool
	// Roots are the trusted roots. Default the system's.
	Roots *x509.CertPool
}

// WithDefaults returns c with its zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if len(c.Ports) == 0 {
		c.Ports = []uint16{443}
	}
	c.Timeout = cmp.Or(c.Timeout, 5*time.Second)
	c.Concurrency = cmp.Or(c.Concurrency, 20)
	c.Rate = cmp.Or(c.Rate, 100)
	if c.Roots == nil {
		c.Roots, _ = x509.SystemCertPool() // nil still means the system's to Verify
	}
	return c
}

// Executor runs tls tasks.
type Executor struct {
	// Resolver resolves target names; default net.DefaultResolver.
	Resolver scanner.Resolver
}

var _ scanfleet.Executor = Executor{}

// TaskType returns TaskType().
func (Executor) TaskType() *scanfleet.TaskType { return TaskType() }

func config(args scanner.Args) (Config, error) {
	c := Config{
		Timeout:     args.Duration("timeout"),
		Concurrency: int(args.Int("concurrency")),
		Rate:        int(args.Int("rate")),
		Versions:    args.Bool("versions"),
	}
	ports, err := scanfleet.ParsePortList(cmp.Or(args.String("ports"), "443"))
	if err != nil {
		return c, scanfleet.Errorf(scanfleet.EINVALID, "args.ports: %v", err)
	}
	c.Ports = ports
	if path := args.String("ca_file"); path != "" {
		pem, err := os.ReadFile(path)
		if err != nil {
			return c, scanfleet.Errorf(scanfleet.EINVALID, "args.ca_file: %v", err)
		}
		c.Roots = x509.NewCertPool()
		if !c.Roots.AppendCertsFromPEM(pem) {
			return c, scanfleet.Errorf(scanfleet.EINVALID, "args.ca_file: %s holds no PEM certificate", path)
		}
	}
	return c.WithDefaults(), nil
}

// target is one parsed target: a host (name or address) or a prefix.
type target struct {
	raw    string
	host   string
	port   int // 0: the ports parameter
	prefix netip.Prefix
}

// parseTarget reads "host", "host:port", "[v6]:port", an https URL or a
// CIDR prefix.
func parseTarget(s string) (target, error) {
	t := target{raw: s}
	s = strings.TrimSpace(s)
	if s == "" {
		return t, fmt.Errorf("empty target")
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil || u.Hostname() == "" {
			return t, fmt.Errorf("not a URL with a host")
		}
		if !strings.EqualFold(u.Scheme, "https") {
			return t, fmt.Errorf("a %s URL does not speak TLS", u.Scheme)
		}
		t.host, t.port = u.Hostname(), 443
		if p := u.Port(); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				return t, fmt.Errorf("port %q is not between 1 and 65535", p)
			}
			t.port = n
		}
	} else {
		var err error
		if t.host, t.port, t.prefix, err = scanner.SplitTarget(s); err != nil || t.prefix.IsValid() {
			return t, err
		}
	}
	if a, err := netip.ParseAddr(t.host); err == nil {
		if a.Zone() != "" {
			return t, fmt.Errorf("an address with a zone")
		}
		t.host = a.Unmap().String()
		return t, nil
	}
	t.host = strings.TrimSuffix(strings.ToLower(t.host), ".")
	if t.host == "" || strings.ContainsAny(t.host, " \t\r\n/\\@?#[]") {
		return t, fmt.Errorf("%q is not a host", t.host)
	}
	return t, nil
}

// endpoint is one handshake to make.
type endpoint struct {
	target string
	host   string // an address, or a name resolved at dial time
	port   int
}

// name returns the SNI of the endpoint: its host when that is a name.
func (e endpoint) name() string {
	if _, err := netip.ParseAddr(e.host); err == nil {
		return ""
	}
	return e.host
}

// run is the state of one task.
type run struct {
	cfg     Config
	m       *scanfleet.ScopeMatcher
	dialer  *scanner.Dialer
	limiter *rate.Limiter

	counts   scanner.Counts
	statuses scanner.Counts

	scanner.Tracker
}

// Run probes every endpoint of in's targets.
func (e Executor) Run(ctx context.Context, in *scanfleet.TaskInput, env scanfleet.ExecEnv) error {
	cfg, m, err := scanner.Setup(TaskType(), in, config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r := &run{
		cfg: cfg, m: m, Tracker: scanner.Tracker{Env: env, Cancel: cancel, Name: "tls"},
		dialer:  &scanner.Dialer{Matcher: m, Resolver: e.Resolver, Timeout: cfg.Timeout},
		limiter: rate.NewLimiter(rate.Limit(cfg.Rate), 1),
	}
	defer r.result()
	targets := r.plan(in.Targets)
	env.Log(fmt.Sprintf("tls: %d endpoints, ports %s, versions %v", r.Total(), scanfleet.FormatPortList(cfg.Ports), cfg.Versions))
	scanner.Each(ctx, cfg.Concurrency, r.endpoints(targets), func(ep endpoint) {
		r.probe(ctx, ep)
		r.Step()
	})
	if err := r.Finish(ctx); err != nil {
		return err
	}
	env.Log(fmt.Sprintf("tls: done: %d certificates, %d findings", r.counts.Get("certificates"), r.counts.Get("findings")))
	return nil
}

func (r *run) result() {
	for _, k := range []string{"endpoints", "certificates", "findings", "out_of_scope", "skipped"} {
		r.Env.Result(k, r.counts.Get(k))
	}
	r.Env.Result("statuses", r.statuses.Map())
}

// plan parses the targets, clips prefixes to the scope and counts the
// endpoints; what it refuses is logged and counted.
func (r *run) plan(raw []string) []target {
	var out []target
	total := new(big.Int)
	for _, s := range raw {
		t, err := parseTarget(s)
		if err != nil {
			r.counts.Add("skipped", 1)
			r.Env.Log(fmt.Sprintf("tls: skip target %q: %v", s, err))
			continue
		}
		ports := int64(len(r.cfg.Ports))
		if t.port != 0 {
			ports = 1
		}
		if t.prefix.IsValid() {
			clipped := r.m.Clip(t.prefix)
			if len(clipped) == 0 {
				r.outOfScope(s, r.m.Check(t.prefix.String()).Reason)
				continue
			}
			if !slices.Equal(clipped, []netip.Prefix{t.prefix}) {
				r.Env.Log(fmt.Sprintf("tls: target %q is partly out of scope; only its in-scope addresses are probed", s))
			}
			for _, p := range clipped {
				n := new(big.Int).Lsh(big.NewInt(1), uint(p.Addr().BitLen()-p.Bits()))
				total.Add(total, n.Mul(n, big.NewInt(ports)))
			}
			t.prefix = netip.Prefix{}
			for _, p := range clipped {
				c := t
				c.prefix = p
				out = append(out, c)
			}
			continue
		}
		total.Add(total, big.NewInt(ports))
		out = append(out, t)
	}
	r.SetTotal(total.Int64())
	if !total.IsInt64() {
		r.SetTotal(1<<63 - 1)
	}
	r.counts.Add("endpoints", 0)
	return out
}

// endpoints yields every endpoint of the targets, addresses of prefixes
// one by one.
func (r *run) endpoints(targets []target) iter.Seq[endpoint] {
	return func(yield func(endpoint) bool) {
		for _, t := range targets {
			ports := r.cfg.Ports
			if t.port != 0 {
				ports = []uint16{uint16(t.port)}
			}
			for h := range scanner.Hosts(t.host, t.prefix) {
				for _, p := range ports {
					if !yield(endpoint{target: t.raw, host: h, port: int(p)}) {
						return
					}
				}
			}
		}
	}
}

// probe handshakes with one endpoint and reports what it saw.
func (r *run) probe(ctx context.Context, ep endpoint) {
	r.counts.Add("endpoints", 1)
	addr := net.JoinHostPort(ep.host, strconv.Itoa(ep.port))
	state, remote, err := r.handshake(ctx, addr, ep.name(), 0)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		st := scanner.StatusOf(err)
		r.statuses.Add(string(st), 1)
		if st == scanner.StatusOutOfScope {
			r.outOfScope(ep.target, err.Error())
			return
		}
		r.Fail(fmt.Sprintf("tls: %s (%s): %s: %v", addr, ep.target, st, err))
		return
	}
	r.statuses.Add(string(scanner.StatusSuccess), 1)
	if len(state.PeerCertificates) == 0 {
		r.Env.Log(fmt.Sprintf("tls: %s: the server sent no certificate", addr))
		return
	}
	ip := remote.Addr().Unmap()
	versions := []uint16{state.Version}
	if r.cfg.Versions {
		// The other versions go to the address that answered, so that
		// every probe sees the same server.
		at := net.JoinHostPort(ip.String(), strconv.Itoa(ep.port))
		for _, v := range probeVersions {
			if v == state.Version || ctx.Err() != nil {
				continue
			}
			if _, _, err := r.handshake(ctx, at, ep.name(), v); err == nil {
				versions = append(versions, v)
			}
		}
		slices.Sort(versions)
	}
	if ctx.Err() != nil {
		return
	}
	seen := sighting{ip: ip, port: ep.port, hostname: ep.name(), versions: versions}
	c := analyze(state.PeerCertificates, r.cfg.Roots, seen, time.Now())
	if !r.Emit(ctx, c.record) {
		return
	}
	r.counts.Add("certificates", 1)
	for _, name := range c.names {
		if !r.m.Contains(name.name) {
			continue
		}
		rec := map[string]any{"kind": "domain", "name": name.name, "source": "tls-san", "certificate": c.record["sha256"]}
		if name.wildcard {
			rec["wildcard_san"] = true
		}
		if !r.Emit(ctx, rec) {
			return
		}
	}
	for _, f := range c.findings {
		if !r.Emit(ctx, f) {
			return
		}
		r.counts.Add("findings", 1)
	}
}

// probeVersions are the versions probed one by one.
var probeVersions = []uint16{tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13}

// allSuites offers every cipher suite Go implements, insecure ones
// included, so that a server that speaks only those still completes the
// handshake and shows its certificate.
var allSuites = func() []uint16 {
	var ids []uint16
	for _, s := range tls.CipherSuites() {
		ids = append(ids, s.ID)
	}
	for _, s := range tls.InsecureCipherSuites() {
		ids = append(ids, s.ID)
	}
	return ids
}()

// handshake connects to addr and completes a TLS handshake of version
// (0: any from 1.0 to 1.3), returning the connection's state and the
// address that answered.
func (r *run) handshake(ctx context.Context, addr, sni string, version uint16) (tls.ConnectionState, netip.AddrPort, error) {
	if err := r.limiter.Wait(ctx); err != nil {
		return tls.ConnectionState{}, netip.AddrPort{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	conn, err := r.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, netip.AddrPort{}, err
	}
	defer conn.Close()
	conf := &tls.Config{
		InsecureSkipVerify: true, // the executor checks the certificate itself
		ServerName:         sni,
		MinVersion:         tls.VersionTLS10,
		MaxVersion:         tls.VersionTLS13,
		CipherSuites:       allSuites,
	}
	if version != 0 {
		conf.MinVersion, conf.MaxVersion = version, version
	}
	tc := tls.Client(conn, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		if scanner.StatusOf(err) == scanner.StatusUnknownError {
			err = scanner.WithStatus(scanner.StatusProtocolError, err)
		}
		return tls.ConnectionState{}, netip.AddrPort{}, err
	}
	remote, _ := netip.ParseAddrPort(conn.RemoteAddr().String())
	return tc.ConnectionState(), remote, nil
}

func (r *run) outOfScope(target, reason string) {
	r.counts.Add("out_of_scope", 1)
	r.Env.Log(fmt.Sprintf("tls: skip %q: out of scope: %s", target, reason))
}
