package worker_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/attacksurface"
	sfhttp "github.com/scanfleet/scanfleet/http"
	"github.com/scanfleet/scanfleet/natsbus"
	"github.com/scanfleet/scanfleet/router"
	"github.com/scanfleet/scanfleet/scanner/noop"
	"github.com/scanfleet/scanfleet/sqlite"
	"github.com/scanfleet/scanfleet/worker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// rawTask is a task type that needs raw sockets: only baremetal workers
// with the capability may get it.
func rawTask() *scanfleet.TaskType {
	return &scanfleet.TaskType{Name: "rawprobe", Requirements: []scanfleet.Requirement{scanfleet.RequireRawSockets}}
}

// rig is a real server (HTTP API, SQLite store, router) on loopback.
type rig struct {
	t         testing.TB
	transport string
	natsURL   string
	stream    string // the dispatch stream and subject prefix: per test on
	prefix    string // an external NATS server shared by tests
	store     scanfleet.Store
	srv       *sfhttp.Server
	router    *router.Router
	admin     string
	lease     time.Duration
	// slowFinish delays the workers' outcome reports by this much.
	slowFinish time.Duration
}

// delayFinish is an http.RoundTripper that holds outcome reports back.
type delayFinish struct {
	next  http.RoundTripper
	delay time.Duration
}

func (d delayFinish) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.URL.Path, "/worker/finish") {
		time.Sleep(d.delay)
	}
	return d.next.RoundTrip(req)
}

// transports are the ways tasks reach workers; the conformance tests run
// against each: the HTTP long poll, the embedded NATS server, and the
// external NATS server of TEST_NATS_URL when it is set.
var transports = func() []string {
	t := []string{"http", "nats"}
	if os.Getenv("TEST_NATS_URL") != "" {
		t = append(t, "nats-external")
	}
	return t
}()

// eachTransport runs test once per transport.
func eachTransport(t *testing.T, test func(t *testing.T, transport string)) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			test(t, tr)
		})
	}
}

func newRig(t testing.TB, lease time.Duration, transport string) *rig {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "s.db")})
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	reg, err := scanfleet.NewRegistry(scanfleet.NoopTaskType(), rawTask(), attacksurface.TaskType(), artifactExecutor{}.TaskType(), scopeExecutor{}.TaskType())
	require.NoError(t, err)
	r := &rig{t: t, store: store, lease: lease, transport: transport}
	hcfg := sfhttp.Config{Addr: "127.0.0.1:0", Lease: lease, TasksCreated: func(tasks []*scanfleet.Task) { r.router.Submit(tasks) }}
	rcfg := router.Config{Interval: 50 * time.Millisecond}
	var nc *nats.Conn
	switch transport {
	case "nats":
		ns, err := natsbus.StartServer(ctx, natsbus.ServerConfig{Addr: "127.0.0.1:-1", Authenticate: natsbus.Authenticator(store),
			Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		t.Cleanup(ns.Shutdown)
		nc, err = ns.InternalConn()
		require.NoError(t, err)
		r.natsURL = ns.ClientURL()
		hcfg.OnRevoke = func(_ context.Context, w *scanfleet.Worker) error {
			_, err := ns.Disconnect(w.ID)
			return err
		}
	case "nats-external":
		r.natsURL = os.Getenv("TEST_NATS_URL")
		nc, err = natsbus.Connect(r.natsURL, "", "", slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		// A stream and subjects of this test's own on the shared server.
		suffix := strings.ReplaceAll(scanfleet.NewID()[24:], "-", "")
		r.stream, r.prefix = "T_"+suffix, "t"+suffix
		t.Cleanup(func() {
			if js, err := jetstream.New(nc); err == nil {
				_ = js.DeleteStream(context.Background(), r.stream)
			}
		})
	}
	if nc != nil {
		t.Cleanup(nc.Close)
		// Tests keep the stream in memory; benchmarks measure it on disk,
		// as the server runs it (and as their raw JetStream peer is).
		_, bench := t.(*testing.B)
		bus, err := natsbus.NewBus(ctx, nc, natsbus.BusConfig{AckWait: lease, MemoryStorage: !bench, Stream: r.stream,
			SubjectPrefix: r.prefix, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		q := natsbus.Queue{Bus: bus}
		hcfg.Commands, hcfg.OnEnrol, hcfg.WorkerNATSURL = q, q.OnEnrol, r.natsURL
		rcfg.Dispatcher = q
	}
	r.srv, err = sfhttp.NewServer(store, reg, hcfg)
	require.NoError(t, err)
	rcfg.Notify = r.srv.NotifyPool
	r.router, err = router.New(store, rcfg)
	require.NoError(t, err)
	require.NoError(t, r.srv.Start(ctx))
	require.NoError(t, r.router.Start(ctx))
	t.Cleanup(func() {
		r.router.Stop()
		require.NoError(t, r.srv.Stop(context.Background()))
	})
	tok, secret, err := scanfleet.NewToken("admin", scanfleet.RoleAdmin, time.Now())
	require.NoError(t, err)
	require.NoError(t, store.CreateToken(ctx, tok))
	r.admin = secret
	require.NoError(t, store.CreateWorkspace(ctx, &scanfleet.Workspace{Name: "acme", Scope: scanfleet.Scope{Include: []string{"10.0.0.0/8"}, Exclude: []string{}}}))
	return r
}

// api calls the public API with the admin token.
func (r *rig) api(method, path string, body any, out any) int {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, r.srv.URL()+path, rd)
	require.NoError(r.t, err)
	req.Header.Set("Authorization", "Bearer "+r.admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(r.t, err)
	defer resp.Body.Close()
	if out != nil {
		require.NoError(r.t, json.NewDecoder(resp.Body).Decode(out))
	}
	return resp.StatusCode
}

// run creates a noop scan with args and runs it once; it returns the task.
func (r *rig) run(args map[string]any, timeout string) *scanfleet.Task {
	r.t.Helper()
	var scan scanfleet.Scan
	name := fmt.Sprintf("s-%d", time.Now().UnixNano())
	code := r.api("POST", "/api/v1/scans", map[string]any{"name": name, "type": "noop", "args": args, "workspaces": []string{"acme"}, "timeout": timeout}, &scan)
	require.Equal(r.t, http.StatusCreated, code)
	var res struct{ Tasks []*scanfleet.Task }
	require.Equal(r.t, http.StatusCreated, r.api("POST", "/api/v1/scans/"+scan.ID+"/run", nil, &res))
	require.Len(r.t, res.Tasks, 1)
	return res.Tasks[0]
}

// ident is an enrolled worker.
type ident struct {
	*worker.Client
	id   string
	pool scanfleet.Pool
}

// enrolTransport is the transport a worker of the rig enrols with.
func (r *rig) enrolTransport() string {
	if r.transport == "http" {
		return "http"
	}
	return "nats"
}

// source connects the worker to the rig's transport.
func (r *rig) source(w ident) worker.Source {
	r.t.Helper()
	if r.transport == "http" {
		return worker.HTTPSource{Client: w.Client}
	}
	ctx, cancel := context.WithCancel(context.Background())
	src, closeSrc, err := worker.DialNATS(ctx, r.natsURL, w.Credential, natsbus.ConsumerConfig{
		WorkerID: w.id, Pool: string(w.pool), Stream: r.stream, SubjectPrefix: r.prefix}, slog.New(slog.DiscardHandler))
	require.NoError(r.t, err)
	r.t.Cleanup(func() { cancel(); closeSrc() })
	return src
}

// lease takes up to n tasks as a worker would, claiming dispatched ones,
// and returns their ids.
func (r *rig) take(w ident, n int, wait time.Duration) []string {
	r.t.Helper()
	src := r.source(w)
	as, _, err := src.Next(context.Background(), n, wait, scanfleet.Heartbeat{})
	require.NoError(r.t, err)
	var ids []string
	for _, a := range as {
		if a.Task == nil {
			_, err := w.Claim(context.Background(), a.TaskID)
			require.NoError(r.t, err)
		}
		ids = append(ids, a.TaskID)
	}
	return ids
}

// enrol makes a worker identity of pool with the given capabilities.
func (r *rig) enrol(pool scanfleet.Pool, caps ...scanfleet.Requirement) ident {
	r.t.Helper()
	ctx := context.Background()
	_, join, err := r.srv.NewJoinToken(ctx, "t", "", "", 0)
	require.NoError(r.t, err)
	if caps == nil {
		caps = []scanfleet.Requirement{}
	}
	execs := map[scanfleet.Pool][]string{scanfleet.PoolExternal: {"noop", "artifact", "scopecheck"}, scanfleet.PoolBaremetal: {"rawprobe"},
		scanfleet.PoolInternal: {"attack-surface"}}[pool]
	resp, err := r.srv.Enrol(ctx, sfhttp.EnrolRequest{JoinToken: join, Name: "w", Pool: pool, Capabilities: caps,
		Executors: execs, Transport: r.enrolTransport(), Concurrency: 4})
	require.NoError(r.t, err)
	return ident{Client: worker.NewClient(r.srv.URL(), resp.Credential), id: resp.WorkerID, pool: pool}
}

// start runs a noop worker until the test ends or stop is called.
func (r *rig) start(cfg worker.Config) (stop func()) {
	r.t.Helper()
	w := r.enrol(scanfleet.PoolExternal)
	if r.slowFinish > 0 {
		w.Client.HTTP.Transport = delayFinish{next: w.Client.HTTP.Transport, delay: r.slowFinish}
	}
	cfg.Client, cfg.WorkerID = w.Client, w.id
	cfg.Source = r.source(w)
	if cfg.Executors == nil {
		cfg.Executors = []scanfleet.Executor{noop.Executor{}}
	}
	cfg.Lease = r.lease
	cfg.PollWait = 2 * time.Second
	cfg.LogFlush = 20 * time.Millisecond
	cfg.HeartbeatInterval = 200 * time.Millisecond
	if !testing.Verbose() {
		// Keep the worker's log, and show it only when the test fails.
		buf := &syncBuffer{}
		cfg.Logger = slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		r.t.Cleanup(func() {
			if r.t.Failed() {
				r.t.Logf("worker log:\n%s", buf.String())
			}
		})
	}
	wk, err := worker.New(cfg)
	require.NoError(r.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- wk.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			require.NoError(r.t, <-done)
		})
	}
	r.t.Cleanup(stop)
	return stop
}

// wait polls the task until cond holds or the timeout passes.
func (r *rig) wait(id string, timeout time.Duration, cond func(*scanfleet.Task) bool) *scanfleet.Task {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		t, err := r.store.FindTask(context.Background(), id)
		require.NoError(r.t, err)
		if cond(t) {
			return t
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("task %s: condition not met within %s; it is %s (attempts %d, error %q)", id, timeout, t.Status, t.Attempts, t.Error)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// running waits until the worker runs the task (its executor logged), not
// only until the store says it is leased: a poll answer still on its way
// belongs to nobody yet; if the worker stops then, the task comes back when
// its lease lapses (at-least-once), which is not what these tests are about.
func (r *rig) running(id string) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		logs, err := r.store.ListTaskLogs(context.Background(), id, 0, 10)
		require.NoError(r.t, err)
		if len(logs) > 0 {
			return
		}
		require.True(r.t, time.Now().Before(deadline), "the worker did not start task %s", id)
		time.Sleep(10 * time.Millisecond)
	}
}

func is(st scanfleet.TaskStatus) func(*scanfleet.Task) bool {
	return func(t *scanfleet.Task) bool { return t.Status == st }
}

func TestRunsTasksWithRecordsAndLogs(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(t *testing.T, tr string) {
		r := newRig(t, 3*time.Second, tr)
		r.start(worker.Config{})
		task := r.run(map[string]any{"records": 2500}, "")
		done := r.wait(task.ID, 20*time.Second, is(scanfleet.TaskFinished))
		require.Equal(t, 1, done.Attempts)
		require.EqualValues(t, 2500, done.Records)
		require.Equal(t, scanfleet.Progress{Done: 2500, Total: 2500}, done.Progress)
		counts, err := r.store.CountRecords(context.Background(), "acme")
		require.NoError(t, err)
		require.EqualValues(t, 2500, counts[scanfleet.KindHost])
		logs, err := r.store.ListTaskLogs(context.Background(), task.ID, 0, 100)
		require.NoError(t, err)
		require.GreaterOrEqual(t, len(logs), 2)
		require.Contains(t, logs[len(logs)-1].Line, "emitted 2500 records")
	})
}

func TestCancelStopsARunningTask(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(t *testing.T, tr string) {
		r := newRig(t, 3*time.Second, tr)
		r.start(worker.Config{})
		task := r.run(map[string]any{"sleep": "1m"}, "")
		r.wait(task.ID, 10*time.Second, is(scanfleet.TaskStarted))
		r.running(task.ID)
		start := time.Now()
		require.Equal(t, http.StatusAccepted, r.api("POST", "/api/v1/tasks/"+task.ID+"/cancel", nil, nil))
		done := r.wait(task.ID, 5*time.Second, is(scanfleet.TaskCancelled))
		require.Less(t, time.Since(start), 2*time.Second, "cancel took %s", time.Since(start))
		require.NotNil(t, done.CancelledAt)
	})
}

func TestCancelBeforeStart(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3*time.Second, "http")
	task := r.run(map[string]any{}, "")
	var got scanfleet.Task
	require.Equal(t, http.StatusAccepted, r.api("POST", "/api/v1/tasks/"+task.ID+"/cancel", nil, &got))
	require.Equal(t, scanfleet.TaskCancelled, got.Status)
	require.Equal(t, http.StatusConflict, r.api("POST", "/api/v1/tasks/"+task.ID+"/cancel", nil, nil))
}

func TestTimeoutFailsTheTask(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(t *testing.T, tr string) {
		r := newRig(t, 3*time.Second, tr)
		r.start(worker.Config{})
		task := r.run(map[string]any{"sleep": "1m"}, "1s")
		done := r.wait(task.ID, 10*time.Second, is(scanfleet.TaskFailed))
		require.Contains(t, done.Error, "timeout")
	})
}

// TestLapsedLeaseIsRetried leases a task to a worker that then vanishes:
// the lease lapses, the task goes back, and another worker finishes it,
// without duplicating its records.
func TestLapsedLeaseIsRetried(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(t *testing.T, tr string) {
		r := newRig(t, time.Second, tr)
		task := r.run(map[string]any{"records": 10}, "")
		r.wait(task.ID, 5*time.Second, is(scanfleet.TaskRequested))
		require.Equal(t, []string{task.ID}, r.take(r.enrol(scanfleet.PoolExternal), 1, 2*time.Second))
		// The ghost never renews. Another worker takes the task after the lapse.
		r.start(worker.Config{})
		done := r.wait(task.ID, 15*time.Second, is(scanfleet.TaskFinished))
		require.Equal(t, 2, done.Attempts)
		counts, err := r.store.CountRecords(context.Background(), "acme")
		require.NoError(t, err)
		require.EqualValues(t, 10, counts[scanfleet.KindHost])
	})
}

// TestDrainHandsBack stops a worker in the middle of a task: the task is
// handed back at once and another worker finishes it.
func TestDrainHandsBack(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(t *testing.T, tr string) {
		r := newRig(t, 3*time.Second, tr)
		stop := r.start(worker.Config{})
		task := r.run(map[string]any{"sleep": "1500ms"}, "")
		started := r.wait(task.ID, 10*time.Second, is(scanfleet.TaskStarted))
		first := started.WorkerID
		r.running(task.ID)
		stopped := time.Now()
		stop()
		require.Less(t, time.Since(stopped), 2*time.Second)
		back := r.wait(task.ID, 5*time.Second, is(scanfleet.TaskRequested))
		require.Equal(t, 0, back.Attempts, "a hand-back does not use up an attempt")
		r.start(worker.Config{})
		done := r.wait(task.ID, 10*time.Second, is(scanfleet.TaskFinished))
		require.NotEqual(t, first, done.WorkerID)
		require.Equal(t, 1, done.Attempts)
	})
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(t *testing.T, tr string) {
		r := newRig(t, 3*time.Second, tr)
		c := r.enrol(scanfleet.PoolExternal)
		w, err := worker.New(worker.Config{Client: c.Client, Source: r.source(c), Executors: []scanfleet.Executor{noop.Executor{}},
			IdleTimeout: 300 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		start := time.Now()
		require.NoError(t, w.Run(context.Background()))
		require.Less(t, time.Since(start), 5*time.Second)
	})
}

// TestCapabilities: a worker without raw sockets cannot join baremetal and
// never receives a baremetal task.
func TestCapabilities(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(t *testing.T, tr string) {
		r := newRig(t, 3*time.Second, tr)
		ctx := context.Background()
		_, join, err := r.srv.NewJoinToken(ctx, "t", "", "", 0)
		require.NoError(t, err)
		_, err = r.srv.Enrol(ctx, sfhttp.EnrolRequest{JoinToken: join, Name: "w", Pool: scanfleet.PoolBaremetal, Transport: r.enrolTransport(), Concurrency: 1})
		require.Equal(t, scanfleet.EFORBIDDEN, scanfleet.ErrorCode(err))

		var scan scanfleet.Scan
		require.Equal(t, http.StatusCreated, r.api("POST", "/api/v1/scans", map[string]any{"name": "raw", "type": "rawprobe", "workspaces": []string{"acme"}}, &scan))
		var res struct{ Tasks []*scanfleet.Task }
		require.Equal(t, http.StatusCreated, r.api("POST", "/api/v1/scans/"+scan.ID+"/run", nil, &res))
		task := r.wait(res.Tasks[0].ID, 5*time.Second, is(scanfleet.TaskRequested))
		require.Equal(t, scanfleet.PoolBaremetal, task.Pool)
		ext := r.enrol(scanfleet.PoolExternal)
		require.Empty(t, r.take(ext, 10, 300*time.Millisecond))
		// Nor can it claim the task by id.
		_, err = ext.Claim(ctx, task.ID)
		require.Equal(t, scanfleet.EFORBIDDEN, scanfleet.ErrorCode(err))
		// A baremetal worker with the capability gets it.
		bm := r.enrol(scanfleet.PoolBaremetal, scanfleet.RequireRawSockets)
		require.Equal(t, []string{task.ID}, r.take(bm, 10, 2*time.Second))
	})
}

// TestWorkerCredentialIsLimited: a worker credential cannot use the rest of
// the API, and cannot touch a task it does not hold.
func TestWorkerCredentialIsLimited(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3*time.Second, "http")
	c := r.enrol(scanfleet.PoolExternal)
	req, _ := http.NewRequest("GET", r.srv.URL()+"/api/v1/workspaces", nil)
	req.Header.Set("Authorization", "Bearer "+c.Credential)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	task := r.run(map[string]any{}, "")
	r.wait(task.ID, 5*time.Second, is(scanfleet.TaskRequested))
	require.Len(t, r.take(r.enrol(scanfleet.PoolExternal), 1, time.Second), 1)
	// Another worker can neither renew, log to, nor finish it.
	_, err = c.Renew(context.Background(), task.ID)
	require.Equal(t, scanfleet.ECONFLICT, scanfleet.ErrorCode(err))
	err = c.Finish(context.Background(), task.ID, scanfleet.TaskFinished)
	require.Equal(t, scanfleet.ECONFLICT, scanfleet.ErrorCode(err))
	// An API token is refused on worker routes.
	admin := worker.NewClient(r.srv.URL(), r.admin)
	_, err = admin.Claim(context.Background(), task.ID)
	require.Equal(t, scanfleet.EUNAUTHORIZED, scanfleet.ErrorCode(err))
}

// TestFollowLogs streams a running task's log as server-sent events until
// the task ends.
func TestFollowLogs(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3*time.Second, "http")
	r.start(worker.Config{})
	task := r.run(map[string]any{"sleep": "500ms", "records": 3}, "")
	req, _ := http.NewRequest("GET", r.srv.URL()+"/api/v1/tasks/"+task.ID+"/logs?follow=1", nil)
	req.Header.Set("Authorization", "Bearer "+r.admin)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	var events []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "event: ") {
			events = append(events, strings.TrimPrefix(sc.Text(), "event: "))
		}
	}
	require.GreaterOrEqual(t, len(events), 3)
	require.Equal(t, "end", events[len(events)-1])
	require.Equal(t, "log", events[0])
}

// TestMillionRecordsBoundedMemory runs a task that emits 1,000,000 records
// through the HTTP API into SQLite, with server and worker in this process,
// and checks that the heap stays bounded: records travel in chunks, never
// all at once.
func TestMillionRecordsBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000,000 records take a while; skipped with -short")
	}
	t.Parallel()
	r := newRig(t, 10*time.Second, "http")
	r.start(worker.Config{})
	const n = 1_000_000
	task := r.run(map[string]any{"records": n}, "")
	var peak uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	done := r.wait(task.ID, 10*time.Minute, is(scanfleet.TaskFinished))
	close(stop)
	<-sampled
	require.EqualValues(t, n, done.Records)
	counts, err := r.store.CountRecords(context.Background(), "acme")
	require.NoError(t, err)
	require.EqualValues(t, n, counts[scanfleet.KindHost])
	t.Logf("1,000,000 records in %s; peak heap in use %d MiB", done.FinishedAt.Sub(*done.StartedAt), peak>>20)
	require.Less(t, peak, uint64(256<<20), "peak heap %d MiB", peak>>20)
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestRemoteInternalWorkerReadsTaskData runs the attack-surface task on an
// internal worker without a store of its own: it reads the workspace's
// cloud environment through the worker API, and only while it holds the
// task.
func TestRemoteInternalWorkerReadsTaskData(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3*time.Second, "http")
	env := `{"vms":[{"vm_id":"edge-1","tags":["internet"]},{"vm_id":"app-1","tags":["app"]}],"fw_rules":[{"source_tag":"internet","dest_tag":"app"}]}`
	req, _ := http.NewRequest("PUT", r.srv.URL()+"/api/v1/workspaces/acme/cloud", strings.NewReader(env))
	req.Header.Set("Authorization", "Bearer "+r.admin)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	w := r.enrol(scanfleet.PoolInternal)
	wk, err := worker.New(worker.Config{Client: w.Client, WorkerID: w.id, Source: r.source(w),
		Executors: []scanfleet.Executor{attacksurface.Executor{}}, Lease: r.lease, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- wk.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	var scan scanfleet.Scan
	require.Equal(t, http.StatusCreated, r.api("POST", "/api/v1/scans", map[string]any{"name": "as", "type": "attack-surface", "workspaces": []string{"acme"}}, &scan))
	var res struct{ Tasks []*scanfleet.Task }
	require.Equal(t, http.StatusCreated, r.api("POST", "/api/v1/scans/"+scan.ID+"/run", nil, &res))
	task := r.wait(res.Tasks[0].ID, 20*time.Second, is(scanfleet.TaskFinished))
	require.EqualValues(t, 1, task.Records)
	recs, _, err := r.store.ListRecords(context.Background(), scanfleet.RecordFilter{Workspace: "acme", Kind: scanfleet.KindFinding})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Equal(t, "app-1", recs[0].Data["vm_id"])

	// Without holding a task, or from the external pool, there is no access.
	req, _ = http.NewRequest("GET", r.srv.URL()+"/api/v1/worker/tasks/"+task.ID+"/cloud", nil)
	req.Header.Set("Authorization", "Bearer "+w.Credential)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusConflict, resp.StatusCode)
	ext := r.enrol(scanfleet.PoolExternal)
	req.Header.Set("Authorization", "Bearer "+ext.Credential)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
}

// TestStaleAttemptRefused: a worker that ran attempt 1 of a task cannot
// change the task once it is on another attempt, even as its holder.
func TestStaleAttemptRefused(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3*time.Second, "http")
	task := r.run(map[string]any{}, "")
	r.wait(task.ID, 5*time.Second, is(scanfleet.TaskRequested))
	w := r.enrol(scanfleet.PoolExternal)
	require.Len(t, r.take(w, 1, time.Second), 1)
	post := func(path, body string) int {
		req, _ := http.NewRequest("POST", r.srv.URL()+"/api/v1/worker/tasks/"+task.ID+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+w.Credential)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusConflict, post("/renew", `{"attempt":2}`))
	require.Equal(t, http.StatusConflict, post("/logs?attempt=2", `{"lines":["stale"]}`))
	require.Equal(t, http.StatusConflict, post("/finish", `{"status":"finished","attempt":2}`))
	require.Equal(t, http.StatusOK, post("/renew", `{"attempt":1}`))
	require.Equal(t, http.StatusOK, post("/finish", `{"status":"finished","attempt":1}`))
}

// TestCancelFromAnotherReplica cancels a task in the store directly, as
// another server replica would, without this server's command push: the
// long-polling worker still stops it within seconds.
func TestCancelFromAnotherReplica(t *testing.T) {
	t.Parallel()
	r := newRig(t, 30*time.Second, "http")
	r.start(worker.Config{})
	task := r.run(map[string]any{"sleep": "1m"}, "")
	r.wait(task.ID, 10*time.Second, is(scanfleet.TaskStarted))
	r.running(task.ID)
	start := time.Now()
	_, err := r.store.RequestCancel(context.Background(), task.ID, time.Now())
	require.NoError(t, err)
	r.wait(task.ID, 5*time.Second, is(scanfleet.TaskCancelled))
	require.Less(t, time.Since(start), 3*time.Second, "cancel took %s", time.Since(start))
}

// artifactExecutor stores a file of args.size bytes as an artifact and
// sets an output field.
type artifactExecutor struct{}

func (artifactExecutor) TaskType() *scanfleet.TaskType {
	return &scanfleet.TaskType{Name: "artifact", Params: []scanfleet.Param{{Name: "size", Type: scanfleet.ParamInteger}}}
}

func (artifactExecutor) Run(ctx context.Context, in *scanfleet.TaskInput, env scanfleet.ExecEnv) error {
	n := int64(in.Args["size"].(float64))
	env.Result("bytes", n)
	return env.Artifact(ctx, "capture.pcap", "application/vnd.tcpdump.pcap", io.LimitReader(&patterned{}, n))
}

// patterned reads as an endless run of the bytes 0..250, 0..250, ….
type patterned struct{ off int }

func (r *patterned) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte((r.off + i) % 251)
	}
	r.off += len(p)
	return len(p), nil
}

func TestArtifactsAndOutput(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3*time.Second, "http")
	r.start(worker.Config{Executors: []scanfleet.Executor{artifactExecutor{}}})
	var scan scanfleet.Scan
	const size = 5<<20 + 17
	require.Equal(t, http.StatusCreated, r.api("POST", "/api/v1/scans", map[string]any{"name": "art", "type": "artifact", "args": map[string]any{"size": size}, "workspaces": []string{"acme"}}, &scan))
	var res struct{ Tasks []*scanfleet.Task }
	require.Equal(t, http.StatusCreated, r.api("POST", "/api/v1/scans/"+scan.ID+"/run", nil, &res))
	task := r.wait(res.Tasks[0].ID, 20*time.Second, is(scanfleet.TaskFinished))
	var out map[string]any
	require.NoError(t, json.Unmarshal(task.Output, &out))
	require.EqualValues(t, size, out["bytes"])
	require.Contains(t, out, "duration_ms")

	var list struct{ Items []scanfleet.Artifact }
	require.Equal(t, http.StatusOK, r.api("GET", "/api/v1/tasks/"+task.ID+"/artifacts", nil, &list))
	require.Len(t, list.Items, 1)
	require.Equal(t, "capture.pcap", list.Items[0].Name)
	require.EqualValues(t, size, list.Items[0].Size)

	req, _ := http.NewRequest("GET", r.srv.URL()+"/api/v1/tasks/"+task.ID+"/artifacts/capture.pcap", nil)
	req.Header.Set("Authorization", "Bearer "+r.admin)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/vnd.tcpdump.pcap", resp.Header.Get("Content-Type"))
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	want, _ := io.ReadAll(io.LimitReader(&patterned{}, size))
	require.True(t, bytes.Equal(want, got), "downloaded %d bytes, want %d", len(got), len(want))

	// Without a token, nothing; a worker may not store for a task it does
	// not hold.
	resp2, err := http.Get(r.srv.URL() + "/api/v1/tasks/" + task.ID + "/artifacts/capture.pcap")
	require.NoError(t, err)
	resp2.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp2.StatusCode)
	w := r.enrol(scanfleet.PoolExternal)
	req, _ = http.NewRequest("PUT", r.srv.URL()+"/api/v1/worker/tasks/"+task.ID+"/artifacts/x", strings.NewReader("evil"))
	req.Header.Set("Authorization", "Bearer "+w.Credential)
	resp3, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp3.Body.Close()
	require.Equal(t, http.StatusConflict, resp3.StatusCode)
}

// TestRevokedWorker: an admin revokes a worker that runs a task. The worker
// stops with an error, its NATS connections are closed, and the task runs
// to the end on another worker.
func TestRevokedWorker(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(t *testing.T, tr string) {
		r := newRig(t, 3*time.Second, tr)
		w := r.enrol(scanfleet.PoolExternal)
		wk, err := worker.New(worker.Config{Client: w.Client, WorkerID: w.id, Source: r.source(w), Executors: []scanfleet.Executor{noop.Executor{}},
			Lease: r.lease, PollWait: time.Second, HeartbeatInterval: 200 * time.Millisecond, LogFlush: 20 * time.Millisecond,
			Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- wk.Run(context.Background()) }()
		task := r.run(map[string]any{"sleep": "1h", "records": 1}, "")
		r.running(task.ID)

		require.Equal(t, http.StatusNoContent, r.api("DELETE", "/api/v1/workers/"+w.id, nil, nil))
		select {
		case err := <-done:
			require.ErrorContains(t, err, "revoked")
		case <-time.After(15 * time.Second):
			buf := make([]byte, 1<<20)
			t.Fatalf("the revoked worker did not stop:\n%s", buf[:runtime.Stack(buf, true)])
		}
		_, err = w.Client.Renew(context.Background(), task.ID)
		require.Equal(t, scanfleet.EUNAUTHORIZED, scanfleet.ErrorCode(err))
		require.Equal(t, http.StatusNotFound, r.api("DELETE", "/api/v1/workers/"+w.id, nil, nil))

		r.start(worker.Config{})
		// The task is put back and, sleeping an hour, is running on the
		// new worker: cancel it there to end the test.
		// The revoked run does not count as an attempt.
		again := r.wait(task.ID, 20*time.Second, func(t *scanfleet.Task) bool { return t.Status == scanfleet.TaskStarted && t.Attempts == 1 })
		require.NotEqual(t, w.id, again.WorkerID)
		require.Equal(t, http.StatusAccepted, r.api("POST", "/api/v1/tasks/"+task.ID+"/cancel", nil, nil))
		r.wait(task.ID, 10*time.Second, is(scanfleet.TaskCancelled))
	})
}

// scopeExecutor reports whether its task's scope holds 10.0.0.5.
type scopeExecutor struct{}

func (scopeExecutor) TaskType() *scanfleet.TaskType { return &scanfleet.TaskType{Name: "scopecheck"} }

func (scopeExecutor) Run(_ context.Context, in *scanfleet.TaskInput, env scanfleet.ExecEnv) error {
	m, err := in.Matcher()
	if err != nil {
		return err
	}
	env.Result("in_scope", m.Contains("10.0.0.5"))
	return nil
}

// TestScopeAtStart: a task binds its workspace's scope as it is when the
// task starts, not when it was created.
func TestScopeAtStart(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(t *testing.T, tr string) {
		r := newRig(t, 3*time.Second, tr)
		var scan scanfleet.Scan
		require.Equal(t, http.StatusCreated, r.api("POST", "/api/v1/scans", map[string]any{"name": "sc", "type": "scopecheck", "workspaces": []string{"acme"}}, &scan))
		var res struct{ Tasks []*scanfleet.Task }
		require.Equal(t, http.StatusCreated, r.api("POST", "/api/v1/scans/"+scan.ID+"/run", nil, &res))
		// Narrowed while the task waits for a worker.
		require.Equal(t, http.StatusOK, r.api("PATCH", "/api/v1/workspaces/acme", map[string]any{"scope": map[string]any{"include": []string{"10.0.0.0/8"}, "exclude": []string{"10.0.0.5"}}}, nil))
		r.start(worker.Config{Executors: []scanfleet.Executor{scopeExecutor{}}})
		done := r.wait(res.Tasks[0].ID, 20*time.Second, is(scanfleet.TaskFinished))
		var out map[string]any
		require.NoError(t, json.Unmarshal(done.Output, &out))
		require.Equal(t, false, out["in_scope"], "the exclude added after the task was created binds it")
	})
}

// TestReplacedPollEnds: when a worker polls again while its older poll is
// still open (its connection came back), the older poll answers at once
// instead of waking the newer one in turn.
func TestReplacedPollEnds(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3*time.Second, "http")
	w := r.enrol(scanfleet.PoolExternal)
	poll := func(wait string) int {
		var out struct{ Tasks []any }
		b, _ := json.Marshal(map[string]any{"max": 1, "wait": wait, "session": "s"})
		req, _ := http.NewRequest("POST", r.srv.URL()+"/api/v1/worker/poll", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+w.Credential)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		return len(out.Tasks)
	}
	older := make(chan int, 1)
	go func() { older <- poll("25s") }()
	time.Sleep(300 * time.Millisecond) // the older poll is waiting
	newer := make(chan int, 1)
	go func() { newer <- poll("3s") }()
	select {
	case n := <-older:
		require.Zero(t, n)
	case <-newer:
		t.Fatal("the newer poll ended first: the older one kept waking it")
	}
	require.Zero(t, <-newer)
}

// A run's slot frees when its executor ends, not when the server has
// stored its outcome: with one slot and outcome reports held back a
// second, the second task starts before the first is stored finished.
func TestSlotFreesBeforeReport(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(t *testing.T, tr string) {
		r := newRig(t, 10*time.Second, tr)
		r.slowFinish = time.Second
		r.start(worker.Config{Concurrency: 1})
		first := r.run(map[string]any{}, "")
		second := r.run(map[string]any{}, "")
		a := r.wait(first.ID, 20*time.Second, is(scanfleet.TaskFinished))
		b := r.wait(second.ID, 20*time.Second, is(scanfleet.TaskFinished))
		if b.StartedAt.Before(*a.StartedAt) {
			a, b = b, a // the worker may have taken them in either order
		}
		require.True(t, b.StartedAt.Before(*a.FinishedAt),
			"the second task started at %s, after the first was stored finished at %s", b.StartedAt, a.FinishedAt)
	})
}

// TestMoreSlotsThanOneClaim runs a worker of more slots than one claim
// takes: it must ask in several claims, not in one the server refuses (the
// HTTP poll refused a max over 1000 at every poll, and the worker never
// ran a task).
func TestMoreSlotsThanOneClaim(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(t *testing.T, tr string) {
		r := newRig(t, scanfleet.DefaultLease, tr)
		r.start(worker.Config{Concurrency: 1200})
		ctx := context.Background()
		in, err := json.Marshal(scanfleet.TaskInput{Type: "noop", Workspace: "acme", Args: map[string]any{}})
		require.NoError(t, err)
		tasks := make([]*scanfleet.Task, 1200)
		now := time.Now()
		for i := range tasks {
			tasks[i] = &scanfleet.Task{ID: scanfleet.NewTaskID(), Type: "noop", Workspace: "acme", Pool: scanfleet.PoolExternal,
				Status: scanfleet.TaskRequested, MaxAttempts: 3, Input: in, CreatedAt: now, RequestedAt: &now, UpdatedAt: now}
		}
		require.NoError(t, r.store.CreateTasks(ctx, tasks))
		r.router.Submit(tasks)
		require.Eventually(t, func() bool {
			counts, err := r.store.CountTasksByStatus(ctx)
			require.NoError(t, err)
			return counts[scanfleet.TaskFinished] == int64(len(tasks))
		}, 60*time.Second, 100*time.Millisecond)
	})
}

// Stopping the server does not wait for what would keep it waiting: an
// open long poll answers at once with no tasks, a followed log ends, and
// a connection that never sent a request (a client's spare one) is
// closed, where http.Server.Shutdown would wait for the poll to end (up to
// 30 s), for the followed task to end, and five seconds for the spare
// connection. Stop returns well within its deadline.
func TestServerStopEndsLongPolls(t *testing.T) {
	t.Parallel()
	r := newRig(t, scanfleet.DefaultLease, "http")
	w := r.enrol(scanfleet.PoolInternal) // not the followed task's pool
	type polled struct {
		as  []worker.Assignment
		err error
	}
	got := make(chan polled, 1)
	go func() {
		as, _, err := worker.HTTPSource{Client: w.Client}.Next(context.Background(), 1, 25*time.Second, scanfleet.Heartbeat{})
		got <- polled{as, err}
	}()
	spare, err := net.Dial("tcp", r.srv.Addr().String())
	require.NoError(t, err)
	defer spare.Close()
	// A task nobody runs, its log followed.
	task := r.run(map[string]any{}, "")
	req, err := http.NewRequest("GET", r.srv.URL()+"/api/v1/tasks/"+task.ID+"/logs?follow=1", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+r.admin)
	follow, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer follow.Body.Close()
	require.Equal(t, http.StatusOK, follow.StatusCode)
	time.Sleep(300 * time.Millisecond) // the poll is waiting on the server

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	require.NoError(t, r.srv.Stop(ctx), "stop waited for the poll or the spare connection")
	p := <-got
	require.NoError(t, p.err)
	require.Empty(t, p.as)
	require.NoError(t, spare.SetReadDeadline(time.Now().Add(time.Second)))
	_, err = spare.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the spare connection is closed")
	_, err = io.Copy(io.Discard, follow.Body)
	require.NoError(t, err, "the followed log ended")
}
