package scheduler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/internal/loop"
)

// Store is what the scheduler reads and writes.
type Store interface {
	scanfleet.WorkspaceStore
	scanfleet.ScanStore
	scanfleet.TaskStore
	scanfleet.ScheduleStore
	scanfleet.WebhookStore
}

// LeaseName names the store lease that makes a replica the scheduler.
const LeaseName = "scheduler"

// Config configures a Scheduler.
type Config struct {
	// Interval is the time between ticks. Default 5 s.
	Interval time.Duration
	// LeaseTTL is how long the scheduler lease holds without renewal: a
	// replica that dies hands over within it. Default 3 × Interval.
	LeaseTTL time.Duration
	// Holder names this replica in the lease. Default: a random id.
	Holder string
	// MaxActive bounds, per pool, the tasks created, requested or started
	// at once; more wait queued. A pool not listed is unbounded.
	MaxActive map[scanfleet.Pool]int
	// MaxActiveTotal bounds them over all pools; 0 is unbounded.
	MaxActiveTotal int
	// TasksCreated is called with the tasks a tick created (queued ones
	// among them) or released, to dispatch the requested ones at once
	// (router.Submit). Optional.
	TasksCreated func([]*scanfleet.Task)
	// HTTPClient sends webhook deliveries. Default: a client with a 10 s
	// timeout.
	HTTPClient *http.Client
	// ReloadTypes is called when a scan names a task type this server does
	// not know, to learn the types workers announced to other replicas,
	// before the scan is given up for this tick. Optional.
	ReloadTypes func(ctx context.Context) error
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// WithDefaults returns the config with every zero field set to its default.
func (c Config) WithDefaults() Config {
	c.Interval = cmp.Or(c.Interval, 5*time.Second)
	c.LeaseTTL = cmp.Or(c.LeaseTTL, 3*c.Interval)
	c.Holder = cmp.Or(c.Holder, scanfleet.NewID())
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	if c.Interval < 10*time.Millisecond {
		return fmt.Errorf("Interval: %s is shorter than 10ms", c.Interval)
	}
	if c.LeaseTTL <= c.Interval {
		return fmt.Errorf("LeaseTTL: %s must be longer than Interval (%s)", c.LeaseTTL, c.Interval)
	}
	for p, n := range c.MaxActive {
		if n < 0 {
			return fmt.Errorf("MaxActive[%s]: %d is negative", p, n)
		}
	}
	if c.MaxActiveTotal < 0 {
		return fmt.Errorf("MaxActiveTotal: %d is negative", c.MaxActiveTotal)
	}
	return nil
}

// Scheduler is the loop that starts scan runs. Only the replica holding
// the lease acts; the others wait to take over.
type Scheduler struct {
	store Store
	reg   *scanfleet.Registry
	cfg   Config
	log   *slog.Logger

	loop *loop.Loop

	mu      sync.Mutex // one tick or manual run at a time
	leading bool
}

// New returns a scheduler over store for the task types in reg.
func New(store Store, reg *scanfleet.Registry, cfg Config) (*Scheduler, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("scheduler config: %w", err)
	}
	s := &Scheduler{store: store, reg: reg, cfg: cfg, log: cfg.Logger.With(slog.String("component", "scheduler"))}
	s.loop = loop.New("scheduler tick", cfg.Interval, s.Tick, s.log)
	return s, nil
}

// Start runs the loop until Stop.
func (s *Scheduler) Start(ctx context.Context) error {
	return s.loop.Start(context.WithoutCancel(ctx))
}

// Stop ends the loop and gives the lease up, so that another replica takes
// over at once.
func (s *Scheduler) Stop() {
	if !s.loop.Stop() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leading {
		if err := s.store.ReleaseLease(ctx, LeaseName, s.cfg.Holder); err != nil {
			s.log.Warn("release scheduler lease", slog.Any("err", err))
		}
		s.leading = false
	}
}

// Wake asks for a tick now (a scan was created or a run requested).
func (s *Scheduler) Wake() { s.loop.Wake() }

// Leading reports whether this replica held the lease at its last tick.
func (s *Scheduler) Leading() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leading
}

// Tick does one pass: takes or renews the lease and, holding it, releases
// queued tasks, starts due runs and handles webhook events.
func (s *Scheduler) Tick(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	ok, err := s.store.AcquireLease(ctx, LeaseName, s.cfg.Holder, s.cfg.LeaseTTL, now)
	if err != nil {
		s.leading = false
		return err
	}
	if ok != s.leading {
		s.log.Info("scheduler lease", slog.Bool("held", ok), slog.String("holder", s.cfg.Holder))
	}
	s.leading = ok
	if !ok {
		return nil
	}
	// Events first: a run that just ended is seen ended before this tick
	// may start the scan's next run. One step's trouble does not hold the
	// others up.
	var errs []error
	if err := s.detectEvents(ctx, now); err != nil {
		errs = append(errs, fmt.Errorf("webhook events: %w", err))
	}
	released, err := s.release(ctx, now)
	s.submit(released)
	if err != nil {
		errs = append(errs, fmt.Errorf("release queued tasks: %w", err))
	} else if err := s.startDue(ctx, now); err != nil {
		errs = append(errs, err)
	}
	if err := s.deliver(ctx, now); err != nil {
		errs = append(errs, fmt.Errorf("webhook deliveries: %w", err))
	}
	return errors.Join(errs...)
}

// room returns how many more tasks each pool may have active, and overall
// (-1: unbounded).
type room struct {
	pool  map[scanfleet.Pool]int
	total int
}

func (s *Scheduler) room(ctx context.Context) (*room, error) {
	active, err := s.store.ActiveTasks(ctx)
	if err != nil {
		return nil, err
	}
	r := &room{pool: map[scanfleet.Pool]int{}, total: -1}
	for p, limit := range s.cfg.MaxActive {
		r.pool[p] = max(0, limit-active[p])
	}
	if s.cfg.MaxActiveTotal > 0 {
		sum := 0
		for _, n := range active {
			sum += n
		}
		r.total = max(0, s.cfg.MaxActiveTotal-sum)
	}
	return r, nil
}

// take reserves one slot of pool, reporting whether there was one.
func (r *room) take(p scanfleet.Pool) bool {
	if n, bounded := r.pool[p]; bounded && n == 0 || r.total == 0 {
		return false
	}
	if _, bounded := r.pool[p]; bounded {
		r.pool[p]--
	}
	if r.total > 0 {
		r.total--
	}
	return true
}

// free says how many slots pool has (-1: unbounded).
func (r *room) free(p scanfleet.Pool) int {
	n, bounded := r.pool[p]
	switch {
	case !bounded:
		return r.total
	case r.total < 0:
		return n
	}
	return min(n, r.total)
}

// release moves queued tasks to requested while their pools have room,
// oldest first, and returns them.
func (s *Scheduler) release(ctx context.Context, now time.Time) ([]*scanfleet.Task, error) {
	r, err := s.room(ctx)
	if err != nil {
		return nil, err
	}
	var released []*scanfleet.Task
	for _, p := range []scanfleet.Pool{scanfleet.PoolBaremetal, scanfleet.PoolInternal, scanfleet.PoolExternal} {
		free := r.free(p)
		if free == 0 {
			continue
		}
		if free < 0 {
			free = 1000
		}
		tasks, err := s.store.ReleaseQueued(ctx, p, free, now)
		if err != nil {
			return released, err
		}
		for range tasks {
			r.take(p)
		}
		released = append(released, tasks...)
	}
	return released, nil
}

// submit hands the tasks a tick created or released to TasksCreated.
func (s *Scheduler) submit(tasks []*scanfleet.Task) {
	if s.cfg.TasksCreated != nil && len(tasks) > 0 {
		s.cfg.TasksCreated(tasks)
	}
}

// startDue starts the runs that are due and submits their tasks.
func (s *Scheduler) startDue(ctx context.Context, now time.Time) error {
	enabled := true
	var scans []*scanfleet.Scan
	cursor := ""
	for {
		page, next, err := s.store.ListScans(ctx, scanfleet.ScanFilter{Enabled: &enabled, Page: scanfleet.Page{Limit: scanfleet.MaxPageLimit, Cursor: cursor}})
		if err != nil {
			return fmt.Errorf("list scans: %w", err)
		}
		scans = append(scans, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	var keys []scanfleet.RunKey
	for _, scan := range scans {
		for _, ws := range scan.Workspaces {
			keys = append(keys, scanfleet.RunKey{ScanID: scan.ID, Workspace: ws})
		}
	}
	states, err := s.store.RunStates(ctx, keys)
	if err != nil {
		return fmt.Errorf("run states: %w", err)
	}
	p := &pass{states: states}
	var errs []error
	for _, scan := range scans {
		tasks, _, err := s.launch(ctx, scan, now, false, p)
		s.submit(tasks)
		if err != nil {
			// One scan's trouble never blocks the others (Crossfeed #2596).
			errs = append(errs, fmt.Errorf("scan %s (%s): %w", scan.Name, scan.ID, err))
		}
	}
	return errors.Join(errs...)
}

// RunNow starts a run of the scan at once over its workspaces that have
// none in flight, and returns the tasks it created and those in flight. A
// run in flight is not duplicated (Crossfeed #753).
func (s *Scheduler) RunNow(ctx context.Context, scanID string) (created, inFlight []*scanfleet.Task, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	scan, err := s.store.FindScan(ctx, scanID)
	if err != nil {
		return nil, nil, err
	}
	created, inFlight, err = s.launch(ctx, scan, s.cfg.Now(), true, nil)
	s.submit(created)
	return created, inFlight, err
}

// pass is what one tick reads once for all scans: the state of every
// scan's runs, and the workspaces (loaded when a run is first due).
type pass struct {
	states     map[scanfleet.RunKey]scanfleet.RunState
	workspaces map[string]*scanfleet.Workspace
}

// workspace returns the named workspace, loading them all on first use.
func (p *pass) workspace(ctx context.Context, st Store, name string) (*scanfleet.Workspace, error) {
	if p.workspaces == nil {
		p.workspaces = map[string]*scanfleet.Workspace{}
		cursor := ""
		for {
			page, next, err := st.ListWorkspaces(ctx, scanfleet.Page{Limit: scanfleet.MaxPageLimit, Cursor: cursor})
			if err != nil {
				return nil, err
			}
			for _, ws := range page {
				p.workspaces[ws.Name] = ws
			}
			if next == "" {
				break
			}
			cursor = next
		}
	}
	if ws, ok := p.workspaces[name]; ok {
		return ws, nil
	}
	return st.FindWorkspace(ctx, name)
}

// launch starts the scan's run where it is due (or, with force, wherever
// none is in flight). A tick passes what it read for all scans (p); a
// manual run (nil) reads the store for this scan alone.
func (s *Scheduler) launch(ctx context.Context, scan *scanfleet.Scan, now time.Time, force bool, p *pass) (created, inFlight []*scanfleet.Task, err error) {
	tt, err := s.reg.Lookup(scan.Type)
	if err != nil && s.cfg.ReloadTypes != nil {
		if rerr := s.cfg.ReloadTypes(ctx); rerr != nil {
			s.log.Warn("reload announced task types", slog.Any("err", rerr))
		}
		tt, err = s.reg.Lookup(scan.Type)
	}
	if err != nil {
		return nil, nil, scanfleet.Errorf(scanfleet.ECONFLICT, "scan %s has task type %q, which this server does not know", scan.ID, scan.Type)
	}
	var due []*scanfleet.Workspace
	for _, name := range scan.Workspaces {
		var lastEnd *time.Time
		if p != nil {
			st := p.states[scanfleet.RunKey{ScanID: scan.ID, Workspace: name}]
			if st.InFlight {
				continue
			}
			lastEnd = st.LastEnd
		} else {
			var t *scanfleet.Task
			if t, lastEnd, err = s.store.ScanRunState(ctx, scan.ID, name); err != nil {
				return nil, nil, err
			} else if t != nil {
				inFlight = append(inFlight, t)
				continue
			}
		}
		if !force && !isDue(scan, lastEnd, now) {
			continue
		}
		var ws *scanfleet.Workspace
		if p != nil {
			ws, err = p.workspace(ctx, s.store, name)
		} else {
			ws, err = s.store.FindWorkspace(ctx, name)
		}
		if err != nil {
			return nil, inFlight, err
		}
		due = append(due, ws)
	}
	if len(due) == 0 {
		return nil, inFlight, nil
	}
	tasks, err := scanfleet.NewScanTasks(scan, tt, due, now)
	if err != nil {
		return nil, inFlight, err
	}
	r, err := s.room(ctx)
	if err != nil {
		return nil, inFlight, err
	}
	queued := 0
	for _, t := range tasks {
		if !r.take(t.Pool) {
			t.Status, t.QueuedAt, t.RequestedAt = scanfleet.TaskQueued, &now, nil
			queued++
		}
	}
	if err := s.store.CreateScanTasks(ctx, scan.ID, tasks, now); err != nil {
		return nil, inFlight, err
	}
	s.log.Info("scan run started", slog.String("scan", scan.Name), slog.Int("workspaces", len(due)),
		slog.Int("tasks", len(tasks)), slog.Int("queued", queued), slog.Bool("manual", force || scan.ManualRunPending))
	return tasks, inFlight, nil
}

// isDue decides whether a scan with no run in flight in a workspace starts
// one now: a manual run is pending; or it repeats and its last run ended
// long enough ago; or it never ran and is not manual-only.
func isDue(scan *scanfleet.Scan, lastEnd *time.Time, now time.Time) bool {
	if scan.ManualRunPending {
		return true
	}
	if scan.SingleRun && scan.LastRunAt != nil {
		return false // ran once: never again
	}
	if scan.Frequency == 0 && scan.Cron == "" {
		return false // runs only when asked
	}
	if lastEnd == nil {
		return true // never ran here
	}
	if scan.Cron != "" {
		sched, err := scanfleet.ParseCron(scan.Cron)
		if err != nil {
			return false
		}
		return !sched.Next(*lastEnd).After(now)
	}
	return now.Sub(*lastEnd) >= time.Duration(scan.Frequency)
}

// jitter spreads retries.
func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d)/2+1))
}
