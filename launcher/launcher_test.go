package launcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
)

// memBackend is an in-memory backend for the policy tests: it "runs" what
// it launched until the test stops it.
type memBackend struct {
	mu       sync.Mutex
	running  map[string]Instance
	errs     []error // returned by the next launches, in order
	launches []LaunchRequest
	seq      int
	listErr  error
}

func newMem() *memBackend { return &memBackend{running: map[string]Instance{}} }

func (b *memBackend) Launch(_ context.Context, req LaunchRequest) (Instance, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.launches = append(b.launches, req)
	if len(b.errs) > 0 {
		err := b.errs[0]
		b.errs = b.errs[1:]
		if err != nil {
			return Instance{}, err
		}
	}
	b.seq++
	in := Instance{ID: fmt.Sprintf("m-%d", b.seq), Backend: "mem", Pool: req.Pool}
	b.running[in.ID] = in
	return in, nil
}

func (b *memBackend) Running(context.Context) ([]Instance, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.listErr != nil {
		return nil, b.listErr
	}
	var out []Instance
	for _, in := range b.running {
		out = append(out, in)
	}
	return out, nil
}

func (b *memBackend) stop(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.running, id)
}

func (b *memBackend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.launches)
}

// world is what the launcher reads: backlog and workers, set by the test.
type world struct {
	mu      sync.Mutex
	backlog map[scanfleet.Pool]int
	workers []*scanfleet.Worker
	tokens  int
	now     time.Time
}

func (w *world) Now() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.now
}

func (w *world) advance(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.now = w.now.Add(d)
}

func (w *world) setBacklog(p scanfleet.Pool, n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.backlog[p] = n
}

// enrol adds a live idle worker named after a launched instance.
func (w *world) enrol(name string, pool scanfleet.Pool, running int) *scanfleet.Worker {
	w.mu.Lock()
	defer w.mu.Unlock()
	wk := &scanfleet.Worker{ID: "w-" + name, Name: name, Pool: pool, Concurrency: 1, Running: running, LastSeenAt: w.now, State: scanfleet.WorkerIdle}
	if running > 0 {
		wk.State = scanfleet.WorkerBusy
	}
	w.workers = append(w.workers, wk)
	return wk
}

func newWorld() *world {
	return &world{backlog: map[scanfleet.Pool]int{}, now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (w *world) config(pools map[scanfleet.Pool]PoolConfig, backends map[string]Backend) Config {
	return Config{
		Pools: pools, Backends: backends, ServerURL: "http://10.0.0.1:8080", Interval: 5 * time.Second,
		Backlog: func(context.Context) (map[scanfleet.Pool]int, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			m := map[scanfleet.Pool]int{}
			for k, v := range w.backlog {
				m[k] = v
			}
			return m, nil
		},
		Workers: func(context.Context) ([]*scanfleet.Worker, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			out := make([]*scanfleet.Worker, len(w.workers))
			for i, wk := range w.workers {
				c := *wk
				out[i] = &c
			}
			return out, nil
		},
		NewJoinToken: func(_ context.Context, pool scanfleet.Pool, site string) (string, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.tokens++
			return fmt.Sprintf("sfj_%s_%s_%d", pool, site, w.tokens), nil
		},
		Logger: slog.New(slog.DiscardHandler),
		Now:    w.Now,
	}
}

func worker(name string, pool scanfleet.Pool, site string, state scanfleet.WorkerState, conc, running int) *scanfleet.Worker {
	return &scanfleet.Worker{ID: "w-" + name, Name: name, Pool: pool, Site: site, State: state, Concurrency: conc, Running: running}
}

// TestPlan checks how many workers one tick launches.
func TestPlan(t *testing.T) {
	t.Parallel()
	ext, bm := scanfleet.PoolExternal, scanfleet.PoolBaremetal
	cases := []struct {
		name    string
		pc      PoolConfig
		backlog int
		workers []*scanfleet.Worker
		running []Instance // already run by the backend, followed by nobody
		want    int
	}{
		{name: "no backlog", pc: PoolConfig{Max: 5}, backlog: 0, want: 0},
		{name: "one per task", pc: PoolConfig{Max: 5}, backlog: 3, want: 3},
		{name: "capped by max", pc: PoolConfig{Max: 2}, backlog: 10, want: 2},
		{name: "busy workers count toward max", pc: PoolConfig{Max: 3}, backlog: 10,
			workers: []*scanfleet.Worker{worker("a", ext, "", scanfleet.WorkerBusy, 1, 1), worker("b", ext, "", scanfleet.WorkerBusy, 1, 1)}, want: 1},
		{name: "full pool launches nothing", pc: PoolConfig{Max: 2}, backlog: 10,
			workers: []*scanfleet.Worker{worker("a", ext, "", scanfleet.WorkerBusy, 1, 1), worker("b", ext, "", scanfleet.WorkerOnline, 4, 1)}, want: 0},
		{name: "offline and draining workers do not count", pc: PoolConfig{Max: 2}, backlog: 2,
			workers: []*scanfleet.Worker{worker("a", ext, "", scanfleet.WorkerOffline, 1, 0), {Name: "b", Pool: ext, State: scanfleet.WorkerBusy, Concurrency: 1, Running: 1, Draining: true}}, want: 2},
		{name: "other pools do not count", pc: PoolConfig{Max: 2}, backlog: 2,
			workers: []*scanfleet.Worker{worker("a", bm, "", scanfleet.WorkerBusy, 1, 1), worker("b", bm, "", scanfleet.WorkerBusy, 1, 1)}, want: 2},
		{name: "free slots take the backlog", pc: PoolConfig{Max: 5}, backlog: 3,
			workers: []*scanfleet.Worker{worker("a", ext, "", scanfleet.WorkerOnline, 4, 1)}, want: 0},
		{name: "free slots take part of it", pc: PoolConfig{Max: 5}, backlog: 5,
			workers: []*scanfleet.Worker{worker("a", ext, "", scanfleet.WorkerIdle, 2, 0)}, want: 3},
		{name: "free slots of another site do not", pc: PoolConfig{Max: 5, Site: "lab"}, backlog: 2,
			workers: []*scanfleet.Worker{worker("a", ext, "", scanfleet.WorkerIdle, 4, 0)}, want: 2},
		{name: "concurrency packs tasks", pc: PoolConfig{Max: 10, Concurrency: 4}, backlog: 9, want: 3},
		{name: "unfollowed instances count as starting", pc: PoolConfig{Max: 3}, backlog: 5,
			running: []Instance{{ID: "i-1", Pool: ext}, {ID: "i-2", Pool: ext}, {ID: "i-3", Pool: bm}}, want: 1},
		{name: "unfollowed instances with a live worker count once", pc: PoolConfig{Max: 3}, backlog: 5,
			workers: []*scanfleet.Worker{worker("i-1", ext, "", scanfleet.WorkerBusy, 1, 1)},
			running: []Instance{{ID: "i-1", Pool: ext}}, want: 2},
		{name: "unfollowed instances also take backlog", pc: PoolConfig{Max: 10}, backlog: 3,
			running: []Instance{{ID: "i-1", Pool: ext}, {ID: "i-2", Pool: ext}}, want: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w, b := newWorld(), newMem()
			w.backlog[ext] = tc.backlog
			w.workers = tc.workers
			for _, in := range tc.running {
				b.running[in.ID] = in
			}
			tc.pc.Backend = "mem"
			l, err := New(w.config(map[scanfleet.Pool]PoolConfig{ext: tc.pc}, map[string]Backend{"mem": b}))
			require.NoError(t, err)
			require.NoError(t, l.Tick(t.Context()))
			require.Equal(t, tc.want, b.count())
			require.Len(t, l.Attempts(), tc.want)
			for _, req := range b.launches {
				require.Equal(t, ext, req.Pool)
				require.Equal(t, tc.pc.Site, req.Site)
				require.Equal(t, "http://10.0.0.1:8080", req.ServerURL)
				require.Equal(t, DefaultIdleTimeout, req.IdleTimeout)
				require.Equal(t, "http", req.Transport)
				require.Contains(t, req.JoinToken, "sfj_external_"+tc.pc.Site+"_")
			}
		})
	}
}

// TestLifecycle follows launched workers from start to exit: starting ones
// are not launched twice, enrolment links the attempt to the worker, and
// a worker whose process ended stops counting at once.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	w, b := newWorld(), newMem()
	ext := scanfleet.PoolExternal
	l, err := New(w.config(map[scanfleet.Pool]PoolConfig{ext: {Backend: "mem", Max: 2}}, map[string]Backend{"mem": b}))
	require.NoError(t, err)
	ctx := t.Context()

	w.setBacklog(ext, 5)
	require.NoError(t, l.Tick(ctx))
	require.Equal(t, 2, b.count())
	w.advance(5 * time.Second)
	require.NoError(t, l.Tick(ctx))
	require.Equal(t, 2, b.count(), "starting workers were launched again")
	require.Equal(t, []PoolState{{Pool: ext, Backend: "mem", Max: 2, Backlog: 5, Starting: 2, Time: w.Now()}}, l.Pools())

	w.enrol("m-1", ext, 1)
	w.enrol("m-2", ext, 1)
	w.advance(5 * time.Second)
	require.NoError(t, l.Tick(ctx))
	require.Equal(t, 2, b.count(), "live workers were not counted")
	at := l.Attempts()
	require.Len(t, at, 2)
	for _, a := range at {
		require.Equal(t, OutcomeLaunched, a.Outcome)
		require.Equal(t, "w-"+a.Instance, a.WorkerID)
		require.NotNil(t, a.EnrolledAt)
	}

	// m-1 exits at its idle timeout; its record still says idle, but the
	// backend no longer runs it, so a new worker may take its place.
	w.mu.Lock()
	w.workers[0].State, w.workers[0].Running = scanfleet.WorkerIdle, 0
	w.mu.Unlock()
	b.stop("m-1")
	w.advance(5 * time.Second)
	require.NoError(t, l.Tick(ctx))
	require.Equal(t, 3, b.count())
	require.Equal(t, "m-3", l.Attempts()[0].Instance)

	require.Equal(t, 1, l.Pools()[0].Live)

	// Backlog gone: nothing more, however long.
	w.setBacklog(ext, 0)
	for range 5 {
		w.advance(time.Minute)
		require.NoError(t, l.Tick(ctx))
	}
	require.Equal(t, 3, b.count())
	for _, id := range []string{"m-2", "m-3"} {
		b.stop(id)
	}
	w.advance(time.Minute)
	require.NoError(t, l.Tick(ctx)) // follows the last exits
	w.advance(time.Minute)
	require.NoError(t, l.Tick(ctx))
	require.Empty(t, l.Pools())
}

// TestNeverOverMax drives the launcher through many ticks of changing
// backlog, enrolments and exits and checks the pool never exceeds Max.
func TestNeverOverMax(t *testing.T) {
	t.Parallel()
	w, b := newWorld(), newMem()
	ext := scanfleet.PoolExternal
	const maxWorkers = 3
	l, err := New(w.config(map[scanfleet.Pool]PoolConfig{ext: {Backend: "mem", Max: maxWorkers}}, map[string]Backend{"mem": b}))
	require.NoError(t, err)
	for i := range 60 {
		w.setBacklog(ext, (i*7)%11)
		require.NoError(t, l.Tick(t.Context()))
		running, _ := b.Running(t.Context())
		require.LessOrEqual(t, len(running), maxWorkers, "tick %d", i)
		for _, in := range running {
			switch (i + len(in.ID)) % 4 {
			case 0: // enrols
				w.mu.Lock()
				known := false
				for _, wk := range w.workers {
					known = known || wk.Name == in.ID
				}
				w.mu.Unlock()
				if !known {
					w.enrol(in.ID, ext, 1)
				}
			case 3: // exits; its record goes offline later
				b.stop(in.ID)
				w.mu.Lock()
				for _, wk := range w.workers {
					if wk.Name == in.ID {
						wk.State = scanfleet.WorkerOffline
					}
				}
				w.mu.Unlock()
			}
		}
		w.advance(5 * time.Second)
	}
	require.Greater(t, b.count(), maxWorkers, "the test never replaced a worker")
}

// TestBackoff checks that failed launches are recorded, retried at the
// next tick, then after waits that double, and that an identical failure
// folds into the previous attempt.
func TestBackoff(t *testing.T) {
	t.Parallel()
	w, b := newWorld(), newMem()
	ext := scanfleet.PoolExternal
	boom := errors.New("boom")
	b.errs = []error{boom, boom, boom, nil}
	l, err := New(w.config(map[scanfleet.Pool]PoolConfig{ext: {Backend: "mem", Max: 1}}, map[string]Backend{"mem": b}))
	require.NoError(t, err)
	w.setBacklog(ext, 1)

	// Ticks every 5 s; expected launch calls after each.
	want := []int{
		1, // fails: wait 2.5 s
		2, // fails: wait 7.5 s
		2,
		3, // fails: wait 17.5 s
		3, 3, 3,
		4, // works
		4,
	}
	for i, n := range want {
		require.NoError(t, l.Tick(t.Context()))
		require.Equal(t, n, b.count(), "tick %d", i)
		if i == 4 {
			ps := l.Pools()[0]
			require.Equal(t, 3, ps.Failures)
			require.Equal(t, w.Now().Add(12500*time.Millisecond), *ps.BackoffUntil)
		}
		w.advance(5 * time.Second)
	}
	at := l.Attempts()
	require.Len(t, at, 2)
	require.Equal(t, OutcomeLaunched, at[0].Outcome)
	require.Equal(t, OutcomeFailed, at[1].Outcome)
	require.Equal(t, "boom", at[1].Error)
	require.Equal(t, 2, at[1].Repeats)
}

// TestOutcomes checks how each launch error is recorded and whether the
// pool backs off.
func TestOutcomes(t *testing.T) {
	t.Parallel()
	noCap := &LaunchError{Tries: []Try{{InstanceType: "c7g.medium", Subnet: "subnet-a", Error: "InsufficientInstanceCapacity: none"}}, Err: ErrNoCapacity}
	cases := []struct {
		name      string
		err       error
		outcome   Outcome
		tries     int
		backsOff  bool
		errPrefix string
	}{
		{"at max", fmt.Errorf("%w: 5 of 5", ErrAtMax), OutcomeAtMax, 0, false, "at the backend's maximum"},
		{"no capacity", noCap, OutcomeNoCapacity, 1, true, "no capacity after 1 tries: c7g.medium in subnet-a"},
		{"other", &LaunchError{Tries: noCap.Tries, Err: errors.New("run instances: denied")}, OutcomeFailed, 1, true, "run instances: denied"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w, b := newWorld(), newMem()
			b.errs = []error{tc.err}
			l, err := New(w.config(map[scanfleet.Pool]PoolConfig{scanfleet.PoolBaremetal: {Backend: "mem", Max: 3}}, map[string]Backend{"mem": b}))
			require.NoError(t, err)
			w.setBacklog(scanfleet.PoolBaremetal, 3)
			require.NoError(t, l.Tick(t.Context()))
			require.Equal(t, 1, b.count(), "launches went on after an error")
			a := l.Attempts()[0]
			require.Equal(t, tc.outcome, a.Outcome)
			require.Len(t, a.Tries, tc.tries)
			require.Contains(t, a.Error, tc.errPrefix)
			w.advance(time.Second) // before the next tick
			require.NoError(t, l.Tick(t.Context()))
			if tc.backsOff {
				require.Equal(t, 1, b.count())
			} else {
				require.Equal(t, 4, b.count())
			}
		})
	}
}

// TestStoppedBeforeEnrolling checks that a worker that dies before it
// enrols turns its attempt into a failure and backs the pool off.
func TestStoppedBeforeEnrolling(t *testing.T) {
	t.Parallel()
	w, b := newWorld(), newMem()
	ext := scanfleet.PoolExternal
	l, err := New(w.config(map[scanfleet.Pool]PoolConfig{ext: {Backend: "mem", Max: 1}}, map[string]Backend{"mem": b}))
	require.NoError(t, err)
	w.setBacklog(ext, 1)
	require.NoError(t, l.Tick(t.Context()))
	b.stop("m-1")
	w.advance(time.Second)
	require.NoError(t, l.Tick(t.Context()))
	require.Equal(t, 1, b.count(), "relaunched without backing off")
	a := l.Attempts()[0]
	require.Equal(t, OutcomeFailed, a.Outcome)
	require.Equal(t, "m-1", a.Instance)
	require.Contains(t, a.Error, "stopped before it enrolled")
	w.advance(5 * time.Second)
	require.NoError(t, l.Tick(t.Context()))
	require.Equal(t, 2, b.count())
}

// TestStartGrace checks a backend that cannot list what it runs: a launch
// counts as starting for StartGrace, then no longer.
func TestStartGrace(t *testing.T) {
	t.Parallel()
	w, b := newWorld(), newMem()
	b.listErr = errors.New("describe: throttled")
	ext := scanfleet.PoolExternal
	cfg := w.config(map[scanfleet.Pool]PoolConfig{ext: {Backend: "mem", Max: 1}}, map[string]Backend{"mem": b})
	cfg.StartGrace = time.Minute
	l, err := New(cfg)
	require.NoError(t, err)
	w.setBacklog(ext, 1)
	require.NoError(t, l.Tick(t.Context()))
	w.advance(50 * time.Second)
	require.NoError(t, l.Tick(t.Context()))
	require.Equal(t, 1, b.count())
	w.advance(20 * time.Second)
	require.NoError(t, l.Tick(t.Context())) // gives up on m-1, backs off
	require.Equal(t, 1, b.count())
	require.Contains(t, l.Attempts()[0].Error, "not enrolled after 1m0s")
	w.advance(5 * time.Second)
	require.NoError(t, l.Tick(t.Context()))
	require.Equal(t, 2, b.count())
}

// TestHistoryBounded checks that Attempts keeps the newest History.
func TestHistoryBounded(t *testing.T) {
	t.Parallel()
	w, b := newWorld(), newMem()
	ext := scanfleet.PoolExternal
	cfg := w.config(map[scanfleet.Pool]PoolConfig{ext: {Backend: "mem", Max: 100}}, map[string]Backend{"mem": b})
	cfg.History = 4
	l, err := New(cfg)
	require.NoError(t, err)
	w.setBacklog(ext, 10)
	require.NoError(t, l.Tick(t.Context()))
	at := l.Attempts()
	require.Len(t, at, 4)
	require.Equal(t, int64(10), at[0].ID)
	require.Equal(t, int64(7), at[3].ID)
}

// TestLoop runs the real loop in a synctest bubble: it ticks every
// Interval and at once on Wake, and Stop ends it.
func TestLoop(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		w, b := newWorld(), newMem()
		ext := scanfleet.PoolExternal
		cfg := w.config(map[scanfleet.Pool]PoolConfig{ext: {Backend: "mem", Max: 10}}, map[string]Backend{"mem": b})
		cfg.Now = nil // the bubble's clock
		l, err := New(cfg)
		require.NoError(t, err)
		require.NoError(t, l.Start(t.Context()))
		require.Error(t, l.Start(t.Context()))
		synctest.Wait()
		require.Equal(t, 0, b.count())

		w.setBacklog(ext, 1)
		l.Wake()
		synctest.Wait()
		require.Equal(t, 1, b.count(), "Wake did not tick")

		w.setBacklog(ext, 3)
		time.Sleep(4 * time.Second)
		synctest.Wait()
		require.Equal(t, 1, b.count(), "ticked before Interval")
		time.Sleep(time.Second)
		synctest.Wait()
		require.Equal(t, 3, b.count())
		l.Stop()
		l.Stop()
	})
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	w, b := newWorld(), newMem()
	ok := func() Config {
		return w.config(map[scanfleet.Pool]PoolConfig{scanfleet.PoolExternal: {Backend: "mem", Max: 1}}, map[string]Backend{"mem": b})
	}
	cases := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no pools", func(c *Config) { c.Pools = nil }, "Pools: is empty"},
		{"bad pool", func(c *Config) { c.Pools = map[scanfleet.Pool]PoolConfig{"gpu": {Backend: "mem", Max: 1}} }, `Pools: "gpu"`},
		{"no backend", func(c *Config) { c.Pools[scanfleet.PoolExternal] = PoolConfig{Max: 1} }, "Pools[external].Backend: is empty"},
		{"unknown backend", func(c *Config) { c.Pools[scanfleet.PoolExternal] = PoolConfig{Backend: "k8s", Max: 1} }, `Pools[external].Backend: "k8s" is not in Backends`},
		{"max", func(c *Config) { c.Pools[scanfleet.PoolExternal] = PoolConfig{Backend: "mem"} }, "Pools[external].Max: 0"},
		{"idle", func(c *Config) { c.Pools[scanfleet.PoolExternal] = PoolConfig{Backend: "mem", Max: 1, IdleTimeout: -1} }, "Pools[external].IdleTimeout"},
		{"transport", func(c *Config) {
			c.Pools[scanfleet.PoolExternal] = PoolConfig{Backend: "mem", Max: 1, Transport: "smtp"}
		}, "Pools[external].Transport"},
		{"site", func(c *Config) { c.Pools[scanfleet.PoolExternal] = PoolConfig{Backend: "mem", Max: 1, Site: "Lab!"} }, "Pools[external].Site"},
		{"backlog", func(c *Config) { c.Backlog = nil }, "Backlog: is nil"},
		{"workers", func(c *Config) { c.Workers = nil }, "Workers: is nil"},
		{"token", func(c *Config) { c.NewJoinToken = nil }, "NewJoinToken: is nil"},
		{"url", func(c *Config) { c.ServerURL = "10.0.0.1:8080" }, "ServerURL"},
		{"backoff", func(c *Config) { c.MaxBackoff = time.Second }, "MaxBackoff"},
		{"interval", func(c *Config) { c.Interval = -time.Second }, "Interval"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := ok()
			tc.edit(&cfg)
			_, err := New(cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}
	_, err := New(ok())
	require.NoError(t, err)
}
