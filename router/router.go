package router

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/internal/loop"
)

// Store is what the router needs of the store.
type Store interface {
	scanfleet.TaskStore
	scanfleet.LeaseStore
}

// Dispatcher sends requested tasks to their pool's queue (NATS JetStream).
type Dispatcher interface {
	Dispatch(ctx context.Context, tasks []*scanfleet.Task) error
}

// Config configures a Router.
type Config struct {
	// Interval is how often the router looks for work when nothing wakes
	// it. Default 500 ms.
	Interval time.Duration
	// Batch is how many tasks it routes per store round trip. Default 500.
	Batch int
	// RedispatchAfter is how long a requested task may wait unclaimed
	// before it is dispatched again, in case its dispatch was lost.
	// Default 2 minutes.
	RedispatchAfter time.Duration
	// Dispatcher sends tasks to the queue; nil when workers only poll the
	// store over HTTP.
	Dispatcher Dispatcher
	// Notify is called with each pool that got requested tasks, to wake
	// long-polling workers. Optional.
	Notify func(scanfleet.Pool)
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// WithDefaults returns the config with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.Interval = cmp.Or(c.Interval, 500*time.Millisecond)
	c.Batch = cmp.Or(c.Batch, 500)
	c.RedispatchAfter = cmp.Or(c.RedispatchAfter, 2*time.Minute)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	if c.Interval <= 0 {
		return fmt.Errorf("Interval: must be positive")
	}
	if c.Batch < 1 || c.Batch > scanfleet.MaxPageLimit {
		return fmt.Errorf("Batch: %d is not between 1 and %d", c.Batch, scanfleet.MaxPageLimit)
	}
	return nil
}

// Router routes and dispatches tasks; see the package documentation.
type Router struct {
	cfg   Config
	store Store
	loop  *loop.Loop
	// The requested tasks are looked at a page per tick, newest first,
	// round and round: cursor is where the next page starts. sent
	// remembers when each requested task was last dispatched (or seen
	// dispatched), so a backlog without workers is not dispatched over
	// and over; it holds what the last full round saw, and seen what this
	// round has seen so far.
	cursor string
	sent   map[string]time.Time
	seen   map[string]time.Time
	// swept is set once a round has looked at every requested task: the
	// first round after a start dispatches them all, in one tick, in case
	// the process stopped between storing tasks and dispatching them.
	swept bool

	mu        sync.Mutex
	submitted []*scanfleet.Task // requested tasks to dispatch at the next tick
	// A round (expire leases, route, redispatch) runs once an interval,
	// or when Wake asks for one (round); a wake from Submit only
	// dispatches. lastRound is when the last one began.
	round     bool
	lastRound time.Time
}

// New returns a router over store.
func New(store Store, cfg Config) (*Router, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("router config: %w", err)
	}
	r := &Router{cfg: cfg, store: store, sent: map[string]time.Time{}, seen: map[string]time.Time{}}
	r.loop = loop.New("router", cfg.Interval, r.tick, cfg.Logger)
	return r, nil
}

// Wake makes the router do a whole round at once, e.g. after tasks were
// created without being routed.
func (r *Router) Wake() {
	r.mu.Lock()
	r.round = true
	r.mu.Unlock()
	r.loop.Wake()
}

// Submit hands the router tasks just stored as requested (NewTask routes
// at creation, so that no separate routing write is needed): it
// dispatches them and wakes their pools' workers at once. A submission
// lost with the process is found again: the first tick after a start
// dispatches every requested task, and later ticks those that waited past
// RedispatchAfter. Tasks of other statuses (queued ones) are left out.
func (r *Router) Submit(tasks []*scanfleet.Task) {
	n := 0
	r.mu.Lock()
	for _, t := range tasks {
		if t.Status == scanfleet.TaskRequested {
			r.submitted = append(r.submitted, t)
			n++
		}
	}
	r.mu.Unlock()
	if n > 0 {
		r.loop.Wake()
	}
}

// Start runs the router in the background until Stop.
func (r *Router) Start(ctx context.Context) error { return r.loop.Start(ctx) }

// Stop stops the router and waits for its loop to end.
func (r *Router) Stop() { r.loop.Stop() }

// tick is the loop's turn. Submitted tasks are dispatched at every turn;
// the rest of a round only once an interval, or when Wake asked: Submit
// wakes the router for every batch of new tasks, and a whole round each
// time would open a write transaction and list a page of requested tasks
// for each batch.
func (r *Router) tick(ctx context.Context) error {
	r.mu.Lock()
	// Half an interval: the loop's ticker, not this clock, says when an
	// interval is over.
	round := r.round || time.Since(r.lastRound) >= r.cfg.Interval/2
	r.mu.Unlock()
	if !round {
		r.dispatchSubmitted(ctx)
		return nil
	}
	return r.Tick(ctx)
}

// Tick does one round: dispatch submitted tasks, expire lapsed leases,
// route created tasks, and dispatch again requested tasks nobody took.
// Tests call it directly.
func (r *Router) Tick(ctx context.Context) error {
	r.mu.Lock()
	r.round, r.lastRound = false, time.Now()
	r.mu.Unlock()
	r.dispatchSubmitted(ctx)
	now := r.cfg.Now()
	requeued, err := r.store.ExpireLeases(ctx, now)
	if err != nil {
		return fmt.Errorf("expire leases: %w", err)
	}
	for _, t := range requeued {
		r.cfg.Logger.Warn("task lease lapsed; retrying", slog.String("task", t.ID), slog.Int("attempts", t.Attempts), slog.String("reason", t.Error))
	}
	if err := r.dispatch(ctx, requeued); err != nil {
		return err
	}
	for {
		n, err := r.routeCreated(ctx)
		if err != nil {
			return err
		}
		if n < r.cfg.Batch {
			break
		}
	}
	return r.redispatch(ctx, now)
}

// dispatchSubmitted dispatches the tasks Submit handed over since the
// last turn. Those it cannot dispatch stay requested: they are tried
// again at the next turn and, past maxPending, left to redispatch.
func (r *Router) dispatchSubmitted(ctx context.Context) {
	r.mu.Lock()
	submitted := r.submitted
	r.submitted = nil
	r.mu.Unlock()
	if err := r.dispatch(ctx, submitted); err != nil {
		r.cfg.Logger.Warn("dispatch submitted tasks", slog.Int("tasks", len(submitted)), slog.Any("err", err))
		r.mu.Lock()
		if len(r.submitted)+len(submitted) <= maxPending {
			r.submitted = append(submitted, r.submitted...)
		}
		r.mu.Unlock()
	}
}

// routeCreated moves one batch of created tasks to requested and
// dispatches them.
func (r *Router) routeCreated(ctx context.Context) (int, error) {
	routed, err := r.store.RouteTasks(ctx, r.cfg.Batch, r.cfg.Now())
	if err != nil {
		return 0, fmt.Errorf("route tasks: %w", err)
	}
	return len(routed), r.dispatch(ctx, routed)
}

// maxPending bounds the submitted tasks kept for the next tick when their
// dispatch failed; past it they are left to redispatch.
const maxPending = 100_000

// redispatch sends again requested tasks that waited too long: their
// dispatch may have been lost between the store and the queue. It looks
// at one page of them per tick, and at all of them in the first round.
func (r *Router) redispatch(ctx context.Context, now time.Time) error {
	if r.cfg.Dispatcher == nil {
		return nil
	}
	for {
		tasks, next, err := r.store.ListTasks(ctx, scanfleet.TaskFilter{
			Status: []scanfleet.TaskStatus{scanfleet.TaskRequested}, Page: scanfleet.Page{Limit: r.cfg.Batch, Cursor: r.cursor},
		})
		if err != nil {
			return fmt.Errorf("list requested tasks: %w", err)
		}
		var stale []*scanfleet.Task
		for _, t := range tasks {
			last := r.sent[t.ID]
			if s := r.seen[t.ID]; s.After(last) {
				last = s
			}
			if t.RequestedAt != nil && t.RequestedAt.After(last) {
				last = *t.RequestedAt
			}
			if !r.swept || now.Sub(last) > r.cfg.RedispatchAfter {
				stale = append(stale, t)
				last = now
			}
			r.seen[t.ID] = last
		}
		if err := r.dispatch(ctx, stale); err != nil {
			return err
		}
		r.cursor = next
		if next == "" {
			// A round is over: forget tasks that are no longer requested.
			r.sent, r.seen = r.seen, map[string]time.Time{}
			r.swept = true
			return nil
		}
		if r.swept {
			return nil
		}
	}
}

func (r *Router) dispatch(ctx context.Context, tasks []*scanfleet.Task) error {
	if len(tasks) == 0 {
		return nil
	}
	if r.cfg.Dispatcher != nil {
		if err := r.cfg.Dispatcher.Dispatch(ctx, tasks); err != nil {
			// The tasks stay requested and are dispatched again later.
			return fmt.Errorf("dispatch %d tasks: %w", len(tasks), err)
		}
	}
	if r.cfg.Notify != nil {
		seen := map[scanfleet.Pool]bool{}
		for _, t := range tasks {
			if !seen[t.Pool] {
				seen[t.Pool] = true
				r.cfg.Notify(t.Pool)
			}
		}
	}
	return nil
}
