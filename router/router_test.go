package router_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/router"
	"github.com/scanfleet/scanfleet/sqlite"
)

// recorder is a Dispatcher that remembers what it was given.
type recorder struct {
	mu  sync.Mutex
	ids []string
}

func (d *recorder) Dispatch(_ context.Context, tasks []*scanfleet.Task) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, t := range tasks {
		d.ids = append(d.ids, t.ID)
	}
	return nil
}

func (d *recorder) take() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	ids := d.ids
	d.ids = nil
	slices.Sort(ids)
	return ids
}

func newTasks(t *testing.T, store scanfleet.Store, n int) ([]*scanfleet.Task, []string) {
	t.Helper()
	ws := &scanfleet.Workspace{Name: "acme", Scope: scanfleet.Scope{Include: []string{"10.0.0.0/24"}, Exclude: []string{}}}
	if _, err := store.FindWorkspace(t.Context(), "acme"); err != nil {
		require.NoError(t, store.CreateWorkspace(t.Context(), ws))
	}
	var tasks []*scanfleet.Task
	var ids []string
	for range n {
		tk, err := scanfleet.NewTask(scanfleet.TaskSpec{Type: scanfleet.NoopTaskType(), Workspace: ws}, time.Now())
		require.NoError(t, err)
		tasks = append(tasks, tk)
		ids = append(ids, tk.ID)
	}
	require.NoError(t, store.CreateTasks(t.Context(), tasks))
	slices.Sort(ids)
	return tasks, ids
}

// Tasks are stored requested (NewTask routes them) and submitted: the next
// tick dispatches them and wakes their pool, and no routing write is made.
// Tasks stored but never submitted (the process stopped in between) are
// dispatched by the first tick of the next router; later ticks leave them
// alone until RedispatchAfter.
func TestSubmitAndRecover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "s.db")})
	require.NoError(t, err)
	defer store.Close()
	var woken []scanfleet.Pool
	d := &recorder{}
	now := time.Now()
	// Pages of 4: the first round after a start must see past the first
	// page, and later rounds go round a page per tick.
	cfg := router.Config{Dispatcher: d, Logger: slog.New(slog.DiscardHandler), Batch: 4,
		Notify: func(p scanfleet.Pool) { woken = append(woken, p) }, Now: func() time.Time { return now }}
	r, err := router.New(store, cfg)
	require.NoError(t, err)

	tasks, ids := newTasks(t, store, 10)
	require.Equal(t, scanfleet.TaskRequested, tasks[0].Status)
	require.NotNil(t, tasks[0].RequestedAt)
	require.NoError(t, r.Tick(ctx)) // first tick: the sweep finds them (nothing was submitted)
	require.Equal(t, ids, d.take())
	require.NoError(t, r.Tick(ctx))
	require.Empty(t, d.take(), "dispatched once, not at every tick")

	tasks, ids = newTasks(t, store, 2)
	woken = nil
	queued := *tasks[0]
	queued.ID, queued.Status = "not-requested", scanfleet.TaskQueued
	r.Submit(append(tasks, &queued)) // a queued task is left out
	require.NoError(t, r.Tick(ctx))
	require.Equal(t, ids, d.take())
	require.Equal(t, []scanfleet.Pool{scanfleet.PoolExternal}, woken)
	for _, id := range ids {
		got, err := store.FindTask(ctx, id)
		require.NoError(t, err)
		require.Equal(t, scanfleet.TaskRequested, got.Status)
	}

	// A restart: the new router's first tick dispatches every requested
	// task again, including any whose submission was lost.
	_, lostIDs := newTasks(t, store, 1)
	r2, err := router.New(store, cfg)
	require.NoError(t, err)
	require.NoError(t, r2.Tick(ctx))
	got := d.take()
	require.Contains(t, got, lostIDs[0])
	require.Len(t, got, 13)
	require.NoError(t, r2.Tick(ctx))
	require.Empty(t, d.take())

	// Nobody took them: after RedispatchAfter each is dispatched again,
	// a page per tick, once.
	now = now.Add(3 * time.Minute)
	var again []string
	for range 5 {
		require.NoError(t, r2.Tick(ctx))
		again = append(again, d.take()...)
	}
	slices.Sort(again)
	require.Len(t, again, 13)
	require.Equal(t, slices.Compact(slices.Clone(again)), again, "each once")
}

// rounds counts the router's rounds on a real store: each sweeps leases
// and lists requested tasks.
type rounds struct {
	router.Store
	expires, lists atomic.Int32
}

func (s *rounds) ExpireLeases(ctx context.Context, now time.Time) ([]*scanfleet.Task, error) {
	s.expires.Add(1)
	return s.Store.ExpireLeases(ctx, now)
}

func (s *rounds) ListTasks(ctx context.Context, f scanfleet.TaskFilter) ([]*scanfleet.Task, string, error) {
	s.lists.Add(1)
	return s.Store.ListTasks(ctx, f)
}

// Submitted tasks are dispatched at once, each batch, without a round:
// the leases are swept and the requested tasks listed once an interval,
// or when Wake asks, not for every batch the scheduler or API submits.
func TestSubmitDispatchesWithoutARound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "s.db")})
	require.NoError(t, err)
	defer db.Close()
	store := &rounds{Store: db}
	d := &recorder{}
	r, err := router.New(store, router.Config{Dispatcher: d, Logger: slog.New(slog.DiscardHandler), Interval: time.Hour})
	require.NoError(t, err)
	require.NoError(t, r.Start(ctx))
	defer r.Stop()
	require.Eventually(t, func() bool { return store.lists.Load() == 1 }, 5*time.Second, time.Millisecond, "the first round at start")

	for range 5 {
		tasks, ids := newTasks(t, db, 3)
		r.Submit(tasks)
		var got []string
		require.Eventually(t, func() bool { got = append(got, d.take()...); return len(got) == len(ids) }, 5*time.Second, time.Millisecond)
		slices.Sort(got)
		require.Equal(t, ids, got)
	}
	require.Equal(t, int32(1), store.expires.Load(), "no lease sweep per submitted batch")
	require.Equal(t, int32(1), store.lists.Load(), "no page of requested tasks per submitted batch")

	r.Wake()
	require.Eventually(t, func() bool { return store.expires.Load() == 2 && store.lists.Load() == 2 }, 5*time.Second, time.Millisecond, "Wake asks for a round")
}
