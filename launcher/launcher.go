package launcher

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/internal/loop"
)

// PoolConfig says how workers of one pool are launched.
type PoolConfig struct {
	// Backend names the entry of Config.Backends that starts them.
	// Required.
	Backend string
	// Max is the most workers of the pool at once, counting every live
	// worker of the pool (launched or not) and launches still starting.
	// Required, at least 1.
	Max int
	// Site is the site launched workers join. Default "" (no site).
	Site string
	// IdleTimeout is how long a launched worker waits without a task
	// before it exits, which is how capacity shrinks. Default 5 minutes.
	IdleTimeout time.Duration
	// Transport is the launched workers' transport, "http" (long poll) or
	// "nats". Default "http", which needs nothing but the server's URL.
	Transport string
	// Concurrency is how many tasks each launched worker runs at once;
	// the launcher plans one worker per Concurrency waiting tasks.
	// Default 1.
	Concurrency int
}

// Config configures a Launcher.
type Config struct {
	// Pools says which pools get workers launched, and how. Required.
	Pools map[scanfleet.Pool]PoolConfig
	// Backends by name, as PoolConfig.Backend refers to them. Required.
	// The launcher does not own them: whoever made them stops them.
	Backends map[string]Backend
	// Backlog returns how many tasks of each pool wait for a worker. It
	// should count only tasks a launched worker can take: of no site or
	// of the pool's Site. Required.
	Backlog func(ctx context.Context) (map[scanfleet.Pool]int, error)
	// Workers returns the enrolled workers with their derived state.
	// Required.
	Workers func(ctx context.Context) ([]*scanfleet.Worker, error)
	// NewJoinToken returns a fresh one-time join token, pinned to the pool
	// and site, for one launched worker. Required. Its lifetime should
	// cover the slowest start (an EC2 boot and download), e.g. one hour.
	NewJoinToken func(ctx context.Context, pool scanfleet.Pool, site string) (secret string, err error)
	// ServerURL is the URL launched workers reach the server at. It must
	// work from where they run (not 127.0.0.1 for EC2). Required.
	ServerURL string
	// Interval is how often the launcher looks at the backlog when nothing
	// wakes it. Default 5 s.
	Interval time.Duration
	// StartGrace is how long a launched worker counts as starting before
	// it enrols, when its backend cannot say whether it still runs.
	// Default 10 minutes.
	StartGrace time.Duration
	// LaunchTimeout bounds one launch, join token and every fallback
	// included. Default 2 minutes.
	LaunchTimeout time.Duration
	// MaxBackoff caps the wait after failed launches of a pool; the wait
	// doubles from Interval with each failure. Default 5 minutes.
	MaxBackoff time.Duration
	// History is how many attempts Attempts keeps. Default 200.
	History int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Defaults of PoolConfig.
const (
	DefaultIdleTimeout = 5 * time.Minute
	DefaultTransport   = "http"
)

// WithDefaults returns the config with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	pools := make(map[scanfleet.Pool]PoolConfig, len(c.Pools))
	for p, pc := range c.Pools {
		pc.IdleTimeout = cmp.Or(pc.IdleTimeout, DefaultIdleTimeout)
		pc.Transport = cmp.Or(pc.Transport, DefaultTransport)
		pc.Concurrency = cmp.Or(pc.Concurrency, 1)
		pools[p] = pc
	}
	c.Pools = pools
	c.Interval = cmp.Or(c.Interval, 5*time.Second)
	c.StartGrace = cmp.Or(c.StartGrace, 10*time.Minute)
	c.LaunchTimeout = cmp.Or(c.LaunchTimeout, 2*time.Minute)
	c.MaxBackoff = cmp.Or(c.MaxBackoff, 5*time.Minute)
	c.History = cmp.Or(c.History, 200)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	if len(c.Pools) == 0 {
		return fmt.Errorf("Pools: is empty")
	}
	for p, pc := range c.Pools {
		if _, err := scanfleet.ParsePool(string(p)); err != nil {
			return fmt.Errorf("Pools: %q is not external, internal or baremetal", p)
		}
		if err := pc.validate(); err != nil {
			return fmt.Errorf("Pools[%s].%w", p, err)
		}
		if c.Backends[pc.Backend] == nil {
			return fmt.Errorf("Pools[%s].Backend: %q is not in Backends", p, pc.Backend)
		}
	}
	switch {
	case c.Backlog == nil:
		return fmt.Errorf("Backlog: is nil")
	case c.Workers == nil:
		return fmt.Errorf("Workers: is nil")
	case c.NewJoinToken == nil:
		return fmt.Errorf("NewJoinToken: is nil")
	case c.Interval <= 0:
		return fmt.Errorf("Interval: must be positive")
	case c.StartGrace <= 0:
		return fmt.Errorf("StartGrace: must be positive")
	case c.LaunchTimeout <= 0:
		return fmt.Errorf("LaunchTimeout: must be positive")
	case c.MaxBackoff < c.Interval:
		return fmt.Errorf("MaxBackoff: %s is shorter than Interval %s", c.MaxBackoff, c.Interval)
	case c.History < 1:
		return fmt.Errorf("History: must be at least 1")
	}
	u, err := url.Parse(c.ServerURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("ServerURL: %q is not an http(s) URL", c.ServerURL)
	}
	return nil
}

func (pc PoolConfig) validate() error {
	switch {
	case pc.Backend == "":
		return fmt.Errorf("Backend: is empty")
	case pc.Max < 1:
		return fmt.Errorf("Max: %d is less than 1", pc.Max)
	case pc.IdleTimeout <= 0:
		return fmt.Errorf("IdleTimeout: must be positive, or launched workers never exit")
	case pc.Transport != "http" && pc.Transport != "nats":
		return fmt.Errorf("Transport: %q is not http or nats", pc.Transport)
	case pc.Concurrency < 1 || pc.Concurrency > 10000:
		return fmt.Errorf("Concurrency: %d is not between 1 and 10000", pc.Concurrency)
	}
	if pc.Site != "" {
		if err := scanfleet.ValidateSlug("site", pc.Site); err != nil {
			return fmt.Errorf("Site: %q must be lower-case letters, digits, '-' and '_'", pc.Site)
		}
	}
	return nil
}

// Launcher starts workers when pools have work; see the package
// documentation for the policy.
type Launcher struct {
	cfg  Config
	wake chan struct{}

	// tickMu makes ticks one at a time and guards what follows.
	tickMu   sync.Mutex
	launched map[string]*launch // by Instance.ID, until it stops running
	// gone holds instances seen to stop, until their worker's heartbeat
	// has surely lapsed: its worker record still looks live for a while.
	gone    map[string]time.Time
	backoff map[scanfleet.Pool]*backoff

	mu      sync.Mutex // guards the history and pools
	history []*Attempt // oldest first
	lastID  int64
	last    map[scanfleet.Pool]*Attempt
	pools   map[scanfleet.Pool]PoolState

	loop *loop.Loop
}

// launch is a worker the launcher started and still follows.
type launch struct {
	pool     scanfleet.Pool
	backend  string
	at       time.Time
	attempt  *Attempt
	enrolled bool
	late     bool // logged as not enrolled within StartGrace
}

type backoff struct {
	fails int
	next  time.Time
}

// New returns a launcher; Start runs it.
func New(cfg Config) (*Launcher, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("launcher config: %w", err)
	}
	l := &Launcher{
		cfg:      cfg,
		launched: map[string]*launch{}, gone: map[string]time.Time{}, backoff: map[scanfleet.Pool]*backoff{},
		last: map[scanfleet.Pool]*Attempt{}, pools: map[scanfleet.Pool]PoolState{},
	}
	l.loop = loop.New("launcher", cfg.Interval, l.Tick, cfg.Logger)
	return l, nil
}

// Wake makes the launcher look at the backlog at once, e.g. after tasks
// were created.
func (l *Launcher) Wake() { l.loop.Wake() }

// Start runs the launcher in the background until Stop.
func (l *Launcher) Start(ctx context.Context) error { return l.loop.Start(ctx) }

// Stop stops the loop and waits for it. Launched workers keep running and
// exit at their idle timeout; stopping them is their backend's business.
func (l *Launcher) Stop() { l.loop.Stop() }

// Tick does one pass: it reads the backlog, the workers and what the
// backends run, and launches what the policy allows. Tests call it
// directly.
func (l *Launcher) Tick(ctx context.Context) error {
	l.tickMu.Lock()
	defer l.tickMu.Unlock()
	backlog, err := l.cfg.Backlog(ctx)
	if err != nil {
		return fmt.Errorf("read backlog: %w", err)
	}
	busy := len(l.launched) > 0
	for p := range l.cfg.Pools {
		busy = busy || backlog[p] > 0
	}
	if !busy {
		l.mu.Lock()
		clear(l.pools)
		l.mu.Unlock()
		return nil // nothing to launch or follow: spare the backends' APIs
	}
	workers, err := l.cfg.Workers(ctx)
	if err != nil {
		return fmt.Errorf("list workers: %w", err)
	}
	running := l.running(ctx)
	now := l.cfg.Now()
	byName := map[string]*scanfleet.Worker{}
	for _, w := range workers {
		if prev := byName[w.Name]; prev == nil || w.LastSeenAt.After(prev.LastSeenAt) {
			byName[w.Name] = w
		}
	}
	l.follow(now, byName, running)
	pools := make([]scanfleet.Pool, 0, len(l.cfg.Pools))
	for p := range l.cfg.Pools {
		pools = append(pools, p)
	}
	slices.Sort(pools)
	for _, p := range pools {
		l.plan(ctx, now, p, backlog[p], workers, running)
	}
	return nil
}

// running asks each backend in use what it runs; a backend that cannot
// answer maps to nil, and its launches are then followed by StartGrace.
func (l *Launcher) running(ctx context.Context) map[string]map[string]Instance {
	out := map[string]map[string]Instance{}
	for _, pc := range l.cfg.Pools {
		if _, done := out[pc.Backend]; done {
			continue
		}
		list, err := l.cfg.Backends[pc.Backend].Running(ctx)
		if err != nil {
			l.cfg.Logger.Warn("launcher: list running workers", slog.String("backend", pc.Backend), slog.Any("err", err))
			out[pc.Backend] = nil
			continue
		}
		m := make(map[string]Instance, len(list))
		for _, in := range list {
			m[in.ID] = in
		}
		out[pc.Backend] = m
	}
	return out
}

// follow updates what became of launched workers: enrolled, stopped, or
// never heard of.
func (l *Launcher) follow(now time.Time, byName map[string]*scanfleet.Worker, running map[string]map[string]Instance) {
	for id, la := range l.launched {
		if w := byName[id]; w != nil && !la.enrolled {
			la.enrolled = true
			l.update(la.attempt, func(a *Attempt) { a.WorkerID, a.EnrolledAt = w.ID, &now })
			delete(l.backoff, la.pool) // a launch fully worked
		}
		run := running[la.backend]
		switch _, alive := run[id]; {
		case run != nil && !alive:
			delete(l.launched, id)
			l.gone[id] = now
			if !la.enrolled {
				l.cfg.Logger.Warn("launcher: worker stopped before it enrolled", slog.String("pool", string(la.pool)), slog.String("instance", id))
				l.update(la.attempt, func(a *Attempt) { a.Outcome, a.Error = OutcomeFailed, "the worker stopped before it enrolled" })
				l.failed(la.pool, now)
			}
		case run == nil && la.enrolled:
			delete(l.launched, id) // its worker record tells the rest
		case !la.enrolled && now.Sub(la.at) > l.cfg.StartGrace:
			if run == nil {
				delete(l.launched, id)
			}
			if !la.late {
				la.late = true
				l.cfg.Logger.Warn("launcher: worker did not enrol in time", slog.String("pool", string(la.pool)),
					slog.String("instance", id), slog.Duration("grace", l.cfg.StartGrace))
				l.update(la.attempt, func(a *Attempt) { a.Error = "not enrolled after " + l.cfg.StartGrace.String() })
				l.failed(la.pool, now)
			}
		}
	}
	for id, at := range l.gone {
		if now.Sub(at) > 2*scanfleet.OfflineAfter {
			delete(l.gone, id)
		}
	}
}

// plan launches workers for one pool as the policy allows.
func (l *Launcher) plan(ctx context.Context, now time.Time, pool scanfleet.Pool, backlog int, workers []*scanfleet.Worker, running map[string]map[string]Instance) {
	pc := l.cfg.Pools[pool]
	c := l.count(pool, pc, workers, running[pc.Backend])
	need := ceilDiv(max(0, backlog-c.free), pc.Concurrency) - c.starting
	n := min(need, pc.Max-c.live-c.starting)
	st := PoolState{Pool: pool, Backend: pc.Backend, Max: pc.Max, Backlog: backlog, Live: c.live, Starting: c.starting, Time: now}
	bo := l.backoff[pool]
	if bo != nil && now.Before(bo.next) {
		next := bo.next
		st.Failures, st.BackoffUntil = bo.fails, &next
	}
	l.mu.Lock()
	l.pools[pool] = st
	l.mu.Unlock()
	if n <= 0 {
		return
	}
	if st.BackoffUntil != nil {
		l.cfg.Logger.Debug("launcher: backing off", slog.String("pool", string(pool)), slog.Time("until", bo.next))
		return
	}
	l.cfg.Logger.Info("launcher: launching workers", slog.String("pool", string(pool)), slog.Int("count", n),
		slog.Int("backlog", backlog), slog.Int("live", c.live), slog.Int("starting", c.starting), slog.Int("max", pc.Max))
	for range n {
		if !l.launchOne(ctx, now, pool, pc) {
			return
		}
	}
}

type counts struct {
	live     int // live workers of the pool
	starting int // launched, not yet enrolled
	free     int // free task slots of live workers of the pool's site
}

func (l *Launcher) count(pool scanfleet.Pool, pc PoolConfig, workers []*scanfleet.Worker, run map[string]Instance) counts {
	var c counts
	live := map[string]bool{}
	for _, w := range workers {
		if w.Pool != pool || w.State == scanfleet.WorkerOffline || w.Draining {
			continue
		}
		if _, gone := l.gone[w.Name]; gone {
			continue // its process or instance ended; the record lags
		}
		c.live++
		live[w.Name] = true
		if w.Site == pc.Site {
			c.free += max(0, w.Concurrency-w.Running)
		}
	}
	for _, la := range l.launched {
		if la.pool == pool && !la.enrolled {
			c.starting++
		}
	}
	// Instances the backend runs that this launcher does not follow (it
	// restarted, or another replica launched them) count until their
	// worker is live.
	for id, in := range run {
		if in.Pool == pool && l.launched[id] == nil && !live[id] {
			c.starting++
		}
	}
	return c
}

// launchOne makes a join token and launches one worker; it reports
// whether to go on.
func (l *Launcher) launchOne(ctx context.Context, now time.Time, pool scanfleet.Pool, pc PoolConfig) bool {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.LaunchTimeout)
	defer cancel()
	var inst Instance
	secret, err := l.cfg.NewJoinToken(ctx, pool, pc.Site)
	if err != nil {
		err = fmt.Errorf("create join token: %w", err)
	} else {
		inst, err = l.cfg.Backends[pc.Backend].Launch(ctx, LaunchRequest{
			Pool: pool, Site: pc.Site, ServerURL: l.cfg.ServerURL, JoinToken: secret,
			IdleTimeout: pc.IdleTimeout, Transport: pc.Transport, Concurrency: pc.Concurrency,
		})
	}
	a := &Attempt{Time: now, Pool: pool, Site: pc.Site, Backend: pc.Backend, Outcome: OutcomeOf(err)}
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) && a.Outcome == OutcomeFailed {
			err = fmt.Errorf("launch cut short: %w", err)
		}
		a.Error = err.Error()
		var le *LaunchError
		if errors.As(err, &le) {
			a.Tries = le.Tries
		}
		l.record(a)
		if a.Outcome == OutcomeAtMax {
			l.cfg.Logger.Info("launcher: backend at its maximum", slog.String("pool", string(pool)), slog.String("backend", pc.Backend))
		} else {
			l.cfg.Logger.Error("launcher: launch failed", slog.String("pool", string(pool)), slog.String("backend", pc.Backend),
				slog.String("outcome", string(a.Outcome)), slog.Any("err", err))
			l.failed(pool, now)
		}
		return false
	}
	a.Instance, a.Detail, a.Tries = inst.ID, inst.Detail, inst.Tries
	l.record(a)
	l.launched[inst.ID] = &launch{pool: pool, backend: pc.Backend, at: now, attempt: a}
	l.cfg.Logger.Info("launcher: launched a worker", slog.String("pool", string(pool)), slog.String("backend", pc.Backend),
		slog.String("instance", inst.ID), slog.String("detail", inst.Detail))
	return true
}

// failed notes a failure of pool and sets when it may launch again: at
// the next tick after a first failure, then after waits that double.
func (l *Launcher) failed(pool scanfleet.Pool, now time.Time) {
	bo := l.backoff[pool]
	if bo == nil {
		bo = &backoff{}
		l.backoff[pool] = bo
	}
	bo.fails++
	d := l.cfg.MaxBackoff
	if bo.fails < 20 {
		d = min(d, l.cfg.Interval<<(bo.fails-1)-l.cfg.Interval/2)
	}
	bo.next = now.Add(d)
}

// record adds a to the history, or folds it into the pool's previous
// attempt when that failed the same way.
func (l *Launcher) record(a *Attempt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := l.last[a.Pool]; p != nil && a.Outcome != OutcomeLaunched && p.Outcome == a.Outcome &&
		p.Backend == a.Backend && p.Error == a.Error && p.Instance == "" {
		p.Repeats++
		p.Time = a.Time
		return
	}
	l.lastID++
	a.ID = l.lastID
	if len(l.history) == l.cfg.History {
		l.history = slices.Delete(l.history, 0, 1)
	}
	l.history = append(l.history, a)
	l.last[a.Pool] = a
}

func (l *Launcher) update(a *Attempt, f func(*Attempt)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f(a)
}

// PoolState is what the launcher last saw of one pool.
type PoolState struct {
	Pool     scanfleet.Pool `json:"pool"`
	Backend  string         `json:"backend"`
	Max      int            `json:"max"`
	Backlog  int            `json:"backlog"`
	Live     int            `json:"live"`
	Starting int            `json:"starting"`
	// Failures and BackoffUntil are set while failed launches hold the
	// pool back.
	Failures     int        `json:"failures,omitempty"`
	BackoffUntil *time.Time `json:"backoff_until,omitempty"`
	Time         time.Time  `json:"time"` // of the pass that saw this
}

// Pools returns what the last pass saw of each pool with backlog or
// launches to follow, by pool name.
func (l *Launcher) Pools() []PoolState {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]PoolState, 0, len(l.pools))
	for _, st := range l.pools {
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b PoolState) int { return cmp.Compare(a.Pool, b.Pool) })
	return out
}

// Attempts returns the recorded launch attempts, newest first.
func (l *Launcher) Attempts() []Attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Attempt, len(l.history))
	for i, a := range l.history {
		c := *a
		c.Tries = slices.Clone(a.Tries)
		out[len(out)-1-i] = c
	}
	return out
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
