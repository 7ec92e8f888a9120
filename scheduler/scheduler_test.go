package scheduler_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scheduler"
	"github.com/scanfleet/scanfleet/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type rig struct {
	t     *testing.T
	store scanfleet.Store
	reg   *scanfleet.Registry
	clock *clock
}

func newRig(t *testing.T) *rig {
	store, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "s.db")})
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	reg, err := scanfleet.NewRegistry(scanfleet.NoopTaskType())
	require.NoError(t, err)
	r := &rig{t: t, store: store, reg: reg, clock: &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}
	for _, ws := range []string{"acme", "beta"} {
		require.NoError(t, store.CreateWorkspace(context.Background(), &scanfleet.Workspace{Name: ws,
			Scope: scanfleet.Scope{Include: []string{"10.0.0.0/22"}, Exclude: []string{}}}))
	}
	return r
}

func (r *rig) scheduler(cfg scheduler.Config) *scheduler.Scheduler {
	r.t.Helper()
	cfg.Now = r.clock.Now
	cfg.Logger = slog.New(slog.DiscardHandler)
	s, err := scheduler.New(r.store, r.reg, cfg)
	require.NoError(r.t, err)
	return s
}

func (r *rig) scan(s *scanfleet.Scan) *scanfleet.Scan {
	r.t.Helper()
	s.Type = "noop"
	if s.Workspaces == nil {
		s.Workspaces = []string{"acme"}
	}
	s.Enabled = true
	require.NoError(r.t, s.Validate(r.reg))
	require.NoError(r.t, r.store.CreateScan(context.Background(), s))
	return s
}

func (r *rig) tasks(scanID string, st ...scanfleet.TaskStatus) []*scanfleet.Task {
	r.t.Helper()
	tasks, _, err := r.store.ListTasks(context.Background(), scanfleet.TaskFilter{ScanID: scanID, Status: st, Page: scanfleet.Page{Limit: 1000}})
	require.NoError(r.t, err)
	return tasks
}

// end moves tasks through their lifecycle to status, at the rig's clock.
func (r *rig) end(tasks []*scanfleet.Task, status scanfleet.TaskStatus) {
	r.t.Helper()
	ctx := context.Background()
	for _, t := range tasks {
		cur, err := r.store.FindTask(ctx, t.ID)
		require.NoError(r.t, err)
		for _, st := range []scanfleet.TaskStatus{scanfleet.TaskRequested, scanfleet.TaskStarted, status} {
			if scanfleet.CanTransition(cur.Status, st) {
				cur, err = r.store.TransitionTask(ctx, t.ID, scanfleet.TaskChange{Status: st}, r.clock.Now())
				require.NoError(r.t, err)
			}
		}
		require.Equal(r.t, status, cur.Status)
	}
}

func TestFrequency(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	s := r.scheduler(scheduler.Config{})
	ctx := context.Background()
	sc := r.scan(&scanfleet.Scan{Name: "hourly", Frequency: scanfleet.Duration(time.Hour), Workspaces: []string{"acme", "beta"}})
	manual := r.scan(&scanfleet.Scan{Name: "manual"})

	require.NoError(t, s.Tick(ctx))
	first := r.tasks(sc.ID)
	require.Len(t, first, 2, "one task per workspace")
	require.Empty(t, r.tasks(manual.ID), "a scan without frequency or cron runs only when asked")
	stored, err := r.store.FindScan(ctx, sc.ID)
	require.NoError(t, err)
	require.NotNil(t, stored.LastRunAt)

	// In flight: nothing new, however long it takes.
	r.clock.Add(3 * time.Hour)
	require.NoError(t, s.Tick(ctx))
	require.Len(t, r.tasks(sc.ID), 2)

	// Ended 30 minutes ago: not yet; an hour ago: again.
	r.end(first, scanfleet.TaskFinished)
	r.clock.Add(30 * time.Minute)
	require.NoError(t, s.Tick(ctx))
	require.Len(t, r.tasks(sc.ID), 2)
	r.clock.Add(31 * time.Minute)
	require.NoError(t, s.Tick(ctx))
	require.Len(t, r.tasks(sc.ID, scanfleet.TaskRequested), 2)
}

func TestManualRunNeverDuplicates(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	s := r.scheduler(scheduler.Config{})
	ctx := context.Background()
	sc := r.scan(&scanfleet.Scan{Name: "manual"})
	created, inFlight, err := s.RunNow(ctx, sc.ID)
	require.NoError(t, err)
	require.Len(t, created, 1)
	require.Empty(t, inFlight)

	// Asked again while it runs: answered with the running task.
	created, inFlight, err = s.RunNow(ctx, sc.ID)
	require.NoError(t, err)
	require.Empty(t, created)
	require.Len(t, inFlight, 1)
	require.Equal(t, r.tasks(sc.ID)[0].ID, inFlight[0].ID)

	// A pending manual run waits for the run in flight, then starts once.
	pending := true
	stored, err := r.store.FindScan(ctx, sc.ID)
	require.NoError(t, err)
	scanfleet.ScanUpdate{ManualRunPending: &pending}.Apply(stored)
	require.NoError(t, r.store.UpdateScan(ctx, stored))
	require.NoError(t, s.Tick(ctx))
	require.Len(t, r.tasks(sc.ID), 1)
	r.end(r.tasks(sc.ID), scanfleet.TaskFailed)
	require.NoError(t, s.Tick(ctx))
	require.Len(t, r.tasks(sc.ID), 2)
	require.NoError(t, s.Tick(ctx))
	require.Len(t, r.tasks(sc.ID), 2)
	stored, err = r.store.FindScan(ctx, sc.ID)
	require.NoError(t, err)
	require.False(t, stored.ManualRunPending, "cleared by the run it caused")
}

func TestSingleRunAndCron(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	s := r.scheduler(scheduler.Config{})
	ctx := context.Background()
	once := r.scan(&scanfleet.Scan{Name: "once", SingleRun: true, Frequency: scanfleet.Duration(time.Hour)})
	cron := r.scan(&scanfleet.Scan{Name: "cron", Cron: "0 * * * *"}) // on the hour
	require.NoError(t, s.Tick(ctx))
	require.Len(t, r.tasks(once.ID), 1)
	require.Len(t, r.tasks(cron.ID), 1, "a cron scan that never ran runs")
	r.end(r.tasks(once.ID), scanfleet.TaskFinished)
	r.clock.Add(10 * time.Minute)
	r.end(r.tasks(cron.ID), scanfleet.TaskFinished) // ended at 00:10
	r.clock.Add(40 * time.Minute)                   // 00:50
	require.NoError(t, s.Tick(ctx))
	require.Len(t, r.tasks(cron.ID), 1, "next cron time 01:00 not reached")
	r.clock.Add(11 * time.Minute) // 01:01
	require.NoError(t, s.Tick(ctx))
	require.Len(t, r.tasks(cron.ID), 2)
	r.clock.Add(5 * time.Hour)
	require.NoError(t, s.Tick(ctx))
	require.Len(t, r.tasks(once.ID), 1, "a single-run scan that ran never runs again")
}

func TestChunksAndCapacity(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	s := r.scheduler(scheduler.Config{MaxActive: map[scanfleet.Pool]int{scanfleet.PoolExternal: 2}})
	ctx := context.Background()
	sc := r.scan(&scanfleet.Scan{Name: "chunked", ChunkSize: 256}) // 10.0.0.0/22: four /24s
	created, _, err := s.RunNow(ctx, sc.ID)
	require.NoError(t, err)
	require.Len(t, created, 4)
	active := r.tasks(sc.ID, scanfleet.TaskRequested)
	queued := r.tasks(sc.ID, scanfleet.TaskQueued)
	require.Len(t, active, 2)
	require.Len(t, queued, 2)
	var in scanfleet.TaskInput
	require.NoError(t, json.Unmarshal(queued[0].Input, &in), "a queued task keeps its whole input")
	require.Len(t, in.Targets, 1)

	// Nothing is released while the pool is full; finishing one releases
	// the oldest queued.
	require.NoError(t, s.Tick(ctx))
	require.Len(t, r.tasks(sc.ID, scanfleet.TaskQueued), 2)
	r.end(active[:1], scanfleet.TaskFinished)
	require.NoError(t, s.Tick(ctx))
	left := r.tasks(sc.ID, scanfleet.TaskQueued)
	require.Len(t, left, 1)
	require.Equal(t, queued[0].ID, left[0].ID, "ListTasks is newest first: the older one was released")
	released, err := r.store.FindTask(ctx, queued[1].ID)
	require.NoError(t, err)
	require.Equal(t, scanfleet.TaskRequested, released.Status, "released straight to its pool")
	require.NotNil(t, released.RequestedAt)
}

func TestOneLeader(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	a := r.scheduler(scheduler.Config{Interval: time.Second, Holder: "a"})
	b := r.scheduler(scheduler.Config{Interval: time.Second, Holder: "b"})
	sc := r.scan(&scanfleet.Scan{Name: "hourly", Frequency: scanfleet.Duration(time.Hour)})
	require.NoError(t, a.Tick(ctx))
	require.NoError(t, b.Tick(ctx))
	require.True(t, a.Leading())
	require.False(t, b.Leading())
	require.Len(t, r.tasks(sc.ID), 1)

	// a dies without a word: b takes over once a's lease (3 s) lapses.
	r.clock.Add(2 * time.Second)
	require.NoError(t, b.Tick(ctx))
	require.False(t, b.Leading())
	r.clock.Add(2 * time.Second)
	require.NoError(t, b.Tick(ctx))
	require.True(t, b.Leading())
	require.NoError(t, a.Tick(ctx))
	require.False(t, a.Leading(), "a came back: b keeps the lease")
}

// TestLoop runs the real loop: ticks come from the interval and from
// Wake. (testing/synctest cannot hold the SQLite driver, whose busy waits
// never block durably; the decisions themselves are tested with a fake
// clock above.)
func TestLoop(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	created := make(chan struct{}, 10)
	s, err := scheduler.New(r.store, r.reg, scheduler.Config{Interval: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
		TasksCreated: func([]*scanfleet.Task) { created <- struct{}{} }})
	require.NoError(t, err)
	sc := r.scan(&scanfleet.Scan{Name: "manual"})
	require.NoError(t, s.Start(context.Background()))
	defer s.Stop()
	pending := true
	stored, err := r.store.FindScan(context.Background(), sc.ID)
	require.NoError(t, err)
	scanfleet.ScanUpdate{ManualRunPending: &pending}.Apply(stored)
	require.NoError(t, r.store.UpdateScan(context.Background(), stored))
	s.Wake()
	select {
	case <-created:
	case <-time.After(10 * time.Second):
		t.Fatal("the loop did not start the pending run")
	}
	require.Len(t, r.tasks(sc.ID), 1)
}

func TestWebhooks(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	type hit struct {
		event, sig string
		body       []byte
	}
	var (
		mu   sync.Mutex
		hits []hit
		fail = 1 // the first delivery is answered 500
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		mu.Lock()
		defer mu.Unlock()
		if fail > 0 {
			fail--
			http.Error(w, "try later", http.StatusInternalServerError)
			return
		}
		hits = append(hits, hit{req.Header.Get("X-Scanfleet-Event"), req.Header.Get("X-Scanfleet-Signature"), b})
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	require.NoError(t, r.store.PutWebhook(ctx, &scanfleet.Webhook{Workspace: "acme", URL: srv.URL, Secret: "k"}))
	s := r.scheduler(scheduler.Config{})
	sc := r.scan(&scanfleet.Scan{Name: "manual"})
	require.NoError(t, s.Tick(ctx)) // sets the events mark
	r.clock.Add(time.Second)
	created, _, err := s.RunNow(ctx, sc.ID)
	require.NoError(t, err)
	r.clock.Add(time.Second)
	r.end(created, scanfleet.TaskFailed)
	r.clock.Add(time.Second)
	require.NoError(t, s.Tick(ctx)) // detects both events; the first send fails
	r.clock.Add(2 * time.Hour)
	require.NoError(t, s.Tick(ctx)) // retried and sent
	require.NoError(t, s.Tick(ctx)) // nothing twice

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, hits, 2)
	events := map[string]hit{}
	for _, h := range hits {
		events[h.event] = h
		mac := hmac.New(sha256.New, []byte("k"))
		mac.Write(h.body)
		require.Equal(t, "sha256="+hex.EncodeToString(mac.Sum(nil)), h.sig)
	}
	var failed map[string]any
	require.NoError(t, json.Unmarshal(events[scanfleet.EventTaskFailed].body, &failed))
	require.Equal(t, created[0].ID, failed["task"].(map[string]any)["id"])
	var finished map[string]any
	require.NoError(t, json.Unmarshal(events[scanfleet.EventScanFinished].body, &finished))
	require.Equal(t, "manual", finished["scan"].(map[string]any)["name"])

	log, err := r.store.ListDeliveries(ctx, "acme", 10)
	require.NoError(t, err)
	require.Len(t, log, 2)
	attempts := 0
	for _, d := range log {
		require.Equal(t, scanfleet.DeliveryDelivered, d.Status)
		attempts += d.Attempts
	}
	require.Equal(t, 3, attempts, "one delivery took two attempts")
}

// TestEventsNotLost: 600 tasks that fail at the same moment (one batch of
// outcomes) make 600 task.failed events, and a scan of an unknown type
// holds nothing up.
func TestEventsNotLost(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	require.NoError(t, r.store.PutWebhook(ctx, &scanfleet.Webhook{Workspace: "acme", URL: "http://127.0.0.1:1/never", Secret: "k"}))
	s := r.scheduler(scheduler.Config{})
	require.NoError(t, s.Tick(ctx)) // sets the mark
	ghost := r.scan(&scanfleet.Scan{Name: "ghost", Frequency: scanfleet.Duration(time.Hour)})
	ghost.Type = "gone"
	require.NoError(t, r.store.UpdateScan(ctx, ghost))
	r.clock.Add(time.Second)
	tasks := make([]*scanfleet.Task, 600)
	for i := range tasks {
		tasks[i] = &scanfleet.Task{ID: scanfleet.NewTaskID(), Type: "noop", Workspace: "acme", Pool: scanfleet.PoolExternal,
			Status: scanfleet.TaskFailed, Error: "boom", MaxAttempts: 3, Input: []byte(`{}`), CreatedAt: r.clock.Now(), UpdatedAt: r.clock.Now()}
	}
	require.NoError(t, r.store.CreateTasks(ctx, tasks))
	r.clock.Add(time.Second)
	require.Error(t, s.Tick(ctx), "the ghost scan's type is unknown")
	log, err := r.store.ListDeliveries(ctx, "acme", 1000)
	require.NoError(t, err)
	require.Len(t, log, 600)
	require.Error(t, s.Tick(ctx))
	log, err = r.store.ListDeliveries(ctx, "acme", 1000)
	require.NoError(t, err)
	require.Len(t, log, 600, "seen again in the overlap, stored once")
}

// TestFinishedBeforeNextRun: a run that ended is reported finished even
// when the same tick starts the scan's next run.
func TestFinishedBeforeNextRun(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	require.NoError(t, r.store.PutWebhook(ctx, &scanfleet.Webhook{Workspace: "acme", URL: "http://127.0.0.1:1/never",
		Events: []string{scanfleet.EventScanFinished}}))
	s := r.scheduler(scheduler.Config{})
	sc := r.scan(&scanfleet.Scan{Name: "hourly", Frequency: scanfleet.Duration(time.Hour)})
	require.NoError(t, s.Tick(ctx)) // the mark, and the first run
	r.clock.Add(time.Minute)
	r.end(r.tasks(sc.ID), scanfleet.TaskFinished)
	r.clock.Add(time.Hour)
	require.NoError(t, s.Tick(ctx)) // sees the end, then starts the next run
	require.Len(t, r.tasks(sc.ID), 2)
	log, err := r.store.ListDeliveries(ctx, "acme", 10)
	require.NoError(t, err)
	require.Len(t, log, 1)
	require.Equal(t, scanfleet.EventScanFinished, log[0].Event)
}
