package portscan

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
)

// TaskTypeName is the name of the task type this package runs.
const TaskTypeName = "portscan"

// Defaults of the task's arguments.
const (
	DefaultPorts              = "top-100"
	DefaultConcurrency        = 1000
	DefaultPerHostConcurrency = 256
	DefaultTimeout            = time.Second
	DefaultRetries            = 1
	DefaultBannerTimeout      = 2 * time.Second
	// DefaultProgressEvery is how many probes pass between progress
	// reports.
	DefaultProgressEvery = 1000
)

// maxListed bounds the out-of-scope and unresolved targets the task's
// output and log name; the counts cover all of them.
const maxListed = 100

// maxLocalRetries bounds how often one probe is retried after this
// machine ran out of descriptors or ports before the task fails.
const maxLocalRetries = 50

// TaskType returns the portscan task type. It needs nothing of its worker,
// so it runs in the external pool.
func TaskType() *scanfleet.TaskType {
	i := func(v int64) *int64 { return &v }
	return &scanfleet.TaskType{
		Name: TaskTypeName,
		Description: "TCP connect scan: finds open ports, grabs their banners and guesses the service. " +
			"Needs no privileges.",
		Params: []scanfleet.Param{
			{Name: "ports", Type: scanfleet.ParamPortList, Default: DefaultPorts,
				Description: `Ports to probe: "22,80,8000-8100", named sets top-100, top-1000 (nmap's most often open) and all, or a mix ("top-100,8080"). The likeliest ports are probed first.`},
			{Name: "rate", Type: scanfleet.ParamInteger, Default: float64(0), Min: i(0), Max: i(10_000_000),
				Description: "Connection attempts per second over all hosts; 0 for no limit."},
			{Name: "per_host_rate", Type: scanfleet.ParamInteger, Default: float64(0), Min: i(0), Max: i(10_000_000),
				Description: "Connection attempts per second to any one host; 0 for no limit."},
			{Name: "per_host_concurrency", Type: scanfleet.ParamInteger, Default: float64(DefaultPerHostConcurrency), Min: i(0), Max: i(100_000),
				Description: "Probes in flight to any one host; 0 for no limit beyond concurrency."},
			{Name: "concurrency", Type: scanfleet.ParamInteger, Default: float64(DefaultConcurrency), Min: i(1), Max: i(100_000),
				Description: "Probes in flight in all; lowered to what the worker's open-file limit allows."},
			{Name: "timeout", Type: scanfleet.ParamDuration, Default: DefaultTimeout.String(),
				Description: "How long one connection attempt waits for the handshake."},
			{Name: "retries", Type: scanfleet.ParamInteger, Default: float64(DefaultRetries), Min: i(0), Max: i(10),
				Description: "How often a port that timed out is tried again."},
			{Name: "banners", Type: scanfleet.ParamBoolean, Default: true,
				Description: "Grab a banner from each open port and guess its service."},
			{Name: "banner_timeout", Type: scanfleet.ParamDuration, Default: DefaultBannerTimeout.String(),
				Description: "How long each step of a banner grab (greeting, TLS handshake, HTTP answer) waits."},
			{Name: "emit_closed", Type: scanfleet.ParamBoolean, Default: false,
				Description: "Emit closed, filtered and timed-out ports as service records too, not only counts; for small scans."},
		},
	}
}

// Config configures an Executor.
type Config struct {
	// Resolver resolves target names. Default net.DefaultResolver.
	Resolver scanner.Resolver
	// MaxConcurrency caps every task's concurrency argument, for a worker
	// that runs several tasks at once. Default 0: only the open-file
	// limit caps it.
	MaxConcurrency int
	// ProgressEvery is how many probes pass between progress reports.
	// Default DefaultProgressEvery.
	ProgressEvery int
}

// WithDefaults returns the config with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.ProgressEvery = cmp.Or(c.ProgressEvery, DefaultProgressEvery)
	return c
}

func (c Config) validate() error {
	switch {
	case c.MaxConcurrency < 0:
		return fmt.Errorf("MaxConcurrency: %d is negative", c.MaxConcurrency)
	case c.ProgressEvery < 0:
		return fmt.Errorf("ProgressEvery: %d is negative", c.ProgressEvery)
	}
	return nil
}

// Executor runs portscan tasks. It holds no state between runs, so a worker
// may run several of its tasks at once.
type Executor struct {
	cfg Config
	tt  *scanfleet.TaskType
}

var _ scanfleet.Executor = (*Executor)(nil)

// New returns an executor of portscan tasks.
func New(cfg Config) (*Executor, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("portscan: %w", err)
	}
	return &Executor{cfg: cfg.WithDefaults(), tt: TaskType()}, nil
}

// TaskType implements scanfleet.Executor.
func (e *Executor) TaskType() *scanfleet.TaskType { return e.tt }

// Run scans the in-scope addresses of in.Targets. It emits a service
// record per open port (and per other probe with emit_closed) and a host
// record per host with an open port, and sets the output fields counts
// (per status; out-of-scope counts refused targets), probes, attempts,
// hosts, ports, hosts_up, out_of_scope and unresolved (each at most 100
// entries, with a _count), and elapsed.
func (e *Executor) Run(ctx context.Context, in *scanfleet.TaskInput, env scanfleet.ExecEnv) error {
	args, err := e.tt.ValidateArgs(in.Args)
	if err != nil {
		return errors.New(scanfleet.ErrorMessage(err))
	}
	p, err := parseParams(args)
	if err != nil {
		return err
	}
	if err := scanner.RefusePorts(in.Targets); err != nil {
		return err
	}
	pl, err := scanner.NewPlan(ctx, in, e.cfg.Resolver)
	if err != nil {
		return err
	}
	listSkipped(env, "out_of_scope", "out of scope, never touched", pl.OutOfScope)
	listSkipped(env, "unresolved", "did not resolve", pl.Unresolved)
	s := &scan{p: p, pl: pl, hosts: pl.Count(), every: int64(e.cfg.ProgressEvery)}
	s.total = s.hosts * uint64(len(p.ports))
	if s.total == 0 {
		env.Log("portscan: no target is in scope: nothing was scanned")
		s.results(env, 0)
		return nil
	}
	workers := min(uint64(p.concurrency), uint64(max(16, (fileLimit()-256)/2)), s.total)
	if e.cfg.MaxConcurrency > 0 {
		workers = min(workers, uint64(e.cfg.MaxConcurrency))
	}
	globalRate := p.rate
	if s.hosts == 1 {
		// One host: its limits are the global ones, without the
		// bookkeeping per host.
		if p.perHostConcurrency > 0 {
			workers = min(workers, uint64(p.perHostConcurrency))
		}
		if p.perHostRate > 0 && (globalRate == 0 || p.perHostRate < globalRate) {
			globalRate = p.perHostRate
		}
	} else if (p.perHostConcurrency > 0 && uint64(p.perHostConcurrency) < workers) || p.perHostRate > 0 {
		var interval time.Duration
		if p.perHostRate > 0 {
			interval = time.Second / time.Duration(p.perHostRate)
		}
		s.hostLimits = newHostLimits(p.perHostConcurrency, interval)
	}
	if globalRate > 0 {
		// A burst of 10ms worth of tokens: without one, a high rate
		// would be a sleep per token, below the timer's resolution.
		s.limiter = rate.NewLimiter(rate.Limit(globalRate), max(1, globalRate/100))
	}
	env.Log(fmt.Sprintf("portscan: %d ports of %d hosts, %d probes in flight at most", len(p.ports), s.hosts, workers))

	start := time.Now()
	err = s.run(ctx, env, int(workers))
	elapsed := time.Since(start)
	s.results(env, elapsed)
	c := func(st Status) int64 { return s.counts[slices.Index(Statuses, st)].Load() }
	env.Log(fmt.Sprintf("portscan: %d probes in %s (%.0f/s): %d open, %d closed, %d filtered, %d timeout; %d hosts up",
		s.done.Load(), elapsed.Round(time.Millisecond), float64(s.done.Load())/max(elapsed.Seconds(), 1e-9),
		c(StatusOpen), c(StatusClosed), c(StatusFiltered), c(StatusTimeout), s.hostsUp))
	if err == nil && ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	return err
}

// params are a task's arguments, checked by ValidateArgs.
type params struct {
	ports              []uint16 // likeliest first
	rate, perHostRate  int
	concurrency        int
	perHostConcurrency int
	timeout            time.Duration
	bannerTimeout      time.Duration
	retries            int
	banners            bool
	emitClosed         bool
}

// parseParams reads arguments ValidateArgs returned: canonical values with
// the defaults filled in.
func parseParams(args map[string]any) (params, error) {
	var p params
	ports, err := scanfleet.ParsePortList(args["ports"])
	if err != nil {
		return p, fmt.Errorf("args.ports: %w", err)
	}
	slices.SortStableFunc(ports, func(a, b uint16) int { return cmp.Compare(scanfleet.PortRank(a), scanfleet.PortRank(b)) })
	p.ports = ports
	integer := func(name string) int {
		n, _ := args[name].(int64)
		return int(n)
	}
	duration := func(name string) time.Duration {
		s, _ := args[name].(string)
		d, e := time.ParseDuration(s)
		if e != nil && err == nil {
			err = fmt.Errorf("args.%s: %q is not a duration", name, s)
		}
		return d
	}
	p.rate = integer("rate")
	p.perHostRate = integer("per_host_rate")
	p.concurrency = integer("concurrency")
	p.perHostConcurrency = integer("per_host_concurrency")
	p.retries = integer("retries")
	p.timeout = duration("timeout")
	p.bannerTimeout = duration("banner_timeout")
	p.banners, _ = args["banners"].(bool)
	p.emitClosed, _ = args["emit_closed"].(bool)
	if err == nil && p.timeout <= 0 {
		err = errors.New("args.timeout: must be more than 0s")
	}
	if err == nil && p.banners && p.bannerTimeout <= 0 {
		err = errors.New("args.banner_timeout: must be more than 0s")
	}
	return p, err
}

// listSkipped logs skipped targets and sets key and key_count in the
// output, both naming at most maxListed of them.
func listSkipped(env scanfleet.ExecEnv, key, why string, skipped []scanner.Skipped) {
	for _, s := range skipped[:min(len(skipped), maxListed)] {
		env.Log(fmt.Sprintf("portscan: %s %s: %s", why, s.Target, s.Reason))
	}
	if len(skipped) > maxListed {
		env.Log(fmt.Sprintf("portscan: and %d more %s", len(skipped)-maxListed, why))
	}
	env.Result(key, append([]scanner.Skipped{}, skipped[:min(len(skipped), maxListed)]...))
	env.Result(key+"_count", len(skipped))
}

// scan is one run: probe number i is port ports[i/hosts] of address
// At(i%hosts), so consecutive probes go to different hosts.
type scan struct {
	p          params
	pl         *scanner.Plan
	hosts      uint64
	total      uint64
	every      int64
	limiter    *rate.Limiter // nil without a global rate
	hostLimits *hostLimits   // nil without per-host limits

	next     atomic.Uint64
	done     atomic.Int64
	attempts atomic.Int64
	counts   [5]atomic.Int64 // by index in Statuses
	hostsUp  int             // set by the collector
}

// event is a probe result the collector must see: an open port, a port
// emit_closed asks for, or a progress mark.
type event struct {
	ap       netip.AddrPort
	status   Status
	svc      service
	done     int64 // probes finished when this one did
	emit     bool
	progress bool
}

func (s *scan) run(ctx context.Context, env scanfleet.ExecEnv, workers int) error {
	d, err := newDialer()
	if err != nil {
		return err
	}
	defer d.close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	events := make(chan event, 256)
	var wg sync.WaitGroup
	var failOnce sync.Once
	var failure error
	fail := func(err error) {
		failOnce.Do(func() { failure = err; cancel(err) })
	}
	for range workers {
		wg.Go(func() {
			if err := s.work(ctx, d.connector(), events); err != nil && ctx.Err() == nil {
				fail(err)
			}
		})
	}
	go func() {
		wg.Wait()
		close(events)
	}()
	if err := s.collect(ctx, env, events); err != nil {
		fail(err)
		for range events { // let the workers finish
		}
	}
	if failure != nil {
		return failure
	}
	return nil
}

// work runs probes until none is left.
func (s *scan) work(ctx context.Context, c connector, events chan<- event) error {
	for ctx.Err() == nil {
		i := s.next.Add(1) - 1
		if i >= s.total {
			return nil
		}
		ap := netip.AddrPortFrom(s.pl.At(i%s.hosts), s.p.ports[i/s.hosts])
		ev, err := s.probe(ctx, c, ap)
		if err != nil {
			return err
		}
		s.counts[slices.Index(Statuses, ev.status)].Add(1)
		ev.done = s.done.Add(1)
		ev.emit = ev.status == StatusOpen || s.p.emitClosed
		ev.progress = ev.done%s.every == 0 || uint64(ev.done) == s.total
		if ev.emit || ev.progress {
			select {
			case events <- ev:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return ctx.Err()
}

// probe connects to ap, trying again after a timeout as often as retries
// says, and grabs the banner of an open port.
func (s *scan) probe(ctx context.Context, c connector, ap netip.AddrPort) (event, error) {
	var host *hostState
	if s.hostLimits != nil {
		var err error
		if host, err = s.hostLimits.acquire(ctx, ap.Addr()); err != nil {
			return event{}, err
		}
		defer s.hostLimits.release(ap.Addr(), host)
	}
	local := 0
	for attempt := 0; ; {
		if host != nil {
			if err := s.hostLimits.pace(ctx, host); err != nil {
				return event{}, err
			}
		}
		if err := s.wait(ctx); err != nil {
			return event{}, err
		}
		s.attempts.Add(1)
		conn, err := c.connect(ctx, ap, s.p.timeout, s.p.banners)
		if ctx.Err() != nil {
			if conn != nil {
				conn.Close()
			}
			return event{}, ctx.Err()
		}
		if err == nil {
			ev := event{ap: ap, status: StatusOpen}
			if conn != nil {
				ev.svc = s.grab(ctx, c, ap, conn)
			}
			return ev, nil
		}
		if isLocal(err) {
			if local++; local > maxLocalRetries {
				return event{}, fmt.Errorf("connect %s: %w", ap, err)
			}
			if err := sleep(ctx, time.Duration(min(local, 10))*10*time.Millisecond); err != nil {
				return event{}, err
			}
			continue
		}
		st := StatusOf(err)
		if st == StatusTimeout && attempt < s.p.retries {
			attempt++
			continue
		}
		return event{ap: ap, status: st}, nil
	}
}

// wait takes a token of the global rate.
func (s *scan) wait(ctx context.Context) error {
	if s.limiter == nil {
		return ctx.Err()
	}
	r := s.limiter.Reserve()
	if err := sleep(ctx, r.Delay()); err != nil {
		r.Cancel()
		return err
	}
	return nil
}

func (s *scan) grab(ctx context.Context, c connector, ap netip.AddrPort, conn net.Conn) service {
	g := grabber{addr: ap, timeout: s.p.bannerTimeout, dial: func(ctx context.Context) (net.Conn, error) {
		if err := s.wait(ctx); err != nil {
			return nil, err
		}
		s.attempts.Add(1)
		return c.connect(ctx, ap, s.p.timeout, true)
	}}
	if names := s.pl.Names[ap.Addr()]; len(names) > 0 {
		g.host = names[0]
	}
	return g.grab(ctx, conn)
}

// collect emits the records of the events and reports progress.
func (s *scan) collect(ctx context.Context, env scanfleet.ExecEnv, events <-chan event) error {
	up := map[netip.Addr]bool{}
	var reported int64
	for ev := range events {
		if ev.progress && ev.done > reported {
			reported = ev.done
			env.Progress(ev.done, int64(s.total))
		}
		if !ev.emit {
			continue
		}
		ip := ev.ap.Addr().String()
		names := s.hostnames(ev.ap.Addr())
		if ev.status == StatusOpen && !up[ev.ap.Addr()] {
			up[ev.ap.Addr()] = true
			s.hostsUp = len(up)
			rec := map[string]any{"kind": "host", "ip": ip, "state": "up"}
			if names != nil {
				rec["hostnames"] = names
			}
			if err := env.Emit(ctx, rec); err != nil {
				return err
			}
		}
		rec := map[string]any{"kind": "service", "ip": ip, "port": int(ev.ap.Port()), "proto": "tcp", "state": string(ev.status)}
		if ev.status == StatusOpen && s.p.banners {
			rec["name"] = ev.svc.name
			rec["banner"] = ev.svc.banner
			rec["tls"] = ev.svc.tls
			if ev.svc.tlsCN != "" {
				rec["tls_cn"] = ev.svc.tlsCN
			}
		}
		if names != nil {
			rec["hostnames"] = names
		}
		if err := env.Emit(ctx, rec); err != nil {
			return err
		}
	}
	return nil
}

// hostnames are the names an address was resolved from, as a record
// field, or nil.
func (s *scan) hostnames(a netip.Addr) []any {
	names := s.pl.Names[a]
	if len(names) == 0 {
		return nil
	}
	out := make([]any, len(names))
	for i, n := range names {
		out[i] = n
	}
	return out
}

func (s *scan) results(env scanfleet.ExecEnv, elapsed time.Duration) {
	counts := make(map[string]int64, len(Statuses))
	for i, st := range Statuses {
		counts[string(st)] = s.counts[i].Load()
	}
	counts[string(StatusOutOfScope)] = int64(len(s.pl.OutOfScope))
	env.Result("counts", counts)
	env.Result("probes", s.done.Load())
	env.Result("attempts", s.attempts.Load())
	env.Result("hosts", s.hosts)
	env.Result("ports", len(s.p.ports))
	env.Result("hosts_up", s.hostsUp)
	env.Result("elapsed", elapsed.Round(time.Millisecond).String())
	env.Progress(s.done.Load(), int64(s.total))
}

// dialer makes the connectors of one scan.
type dialer interface {
	// connector returns a connector for one worker.
	connector() connector
	close()
}

// connector runs one connect at a time.
type connector interface {
	// connect connects to ap within timeout; a nil error means the port
	// is open. With keep it returns the connection, else it closes it
	// and returns nil.
	connect(ctx context.Context, ap netip.AddrPort, timeout time.Duration, keep bool) (net.Conn, error)
}
