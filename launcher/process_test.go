package launcher

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/internal/servertest"
)

// binary is the scanfleet binary, built once.
func binary(t *testing.T) string { return servertest.Binary(t) }

// server is a real "scanfleet server" process and an API client for it.
type server struct {
	url, token string
	client     *http.Client
}

// startServer runs "scanfleet server" on port 0 without in-process
// workers, and reads the URL and admin token it prints.
func startServer(t *testing.T) *server {
	t.Helper()
	p := servertest.Start(t, workerEnv(), "", "--addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:-1",
		"--data-dir", t.TempDir(), "--local-workers=false")
	s := &server{url: p.URL, token: p.Token, client: &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}}
	t.Cleanup(s.client.CloseIdleConnections)
	return s
}

// do calls the API as admin and decodes the answer into out.
func (s *server) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.url+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

type page[T any] struct {
	Items []T `json:"items"`
}

// backlog counts tasks waiting for a worker, per pool, as the lead's
// wiring would: created, queued or requested.
func (s *server) backlog(ctx context.Context) (map[scanfleet.Pool]int, error) {
	var p page[*scanfleet.Task]
	if err := s.do(ctx, http.MethodGet, "/api/v1/tasks?status=created,queued,requested&limit=500", nil, &p); err != nil {
		return nil, err
	}
	out := map[scanfleet.Pool]int{}
	for _, t := range p.Items {
		out[t.Pool]++
	}
	return out, nil
}

func (s *server) workers(ctx context.Context) ([]*scanfleet.Worker, error) {
	var p page[*scanfleet.Worker]
	err := s.do(ctx, http.MethodGet, "/api/v1/workers?limit=500", nil, &p)
	return p.Items, err
}

func (s *server) joinToken(ctx context.Context, pool scanfleet.Pool, site string) (string, error) {
	var res struct {
		Token string `json:"token"`
	}
	err := s.do(ctx, http.MethodPost, "/api/v1/worker-tokens", map[string]any{"name": "launcher", "pool": pool, "site": site, "ttl": "10m"}, &res)
	return res.Token, err
}

func (s *server) tasks(ctx context.Context, t *testing.T, scanID string) []*scanfleet.Task {
	var p page[*scanfleet.Task]
	require.NoError(t, s.do(ctx, http.MethodGet, "/api/v1/tasks?limit=500&scan="+scanID, nil, &p))
	return p.Items
}

// runNoop creates workspaces and a noop scan over them and runs it: one
// task per workspace, each sleeping for sleep.
func (s *server) runNoop(ctx context.Context, t *testing.T, name string, workspaces int, sleep string) string {
	var names []string
	for i := range workspaces {
		ws := fmt.Sprintf("%s-%d", name, i)
		require.NoError(t, s.do(ctx, http.MethodPost, "/api/v1/workspaces", map[string]any{
			"name": ws, "scope": map[string]any{"include": []string{"10.0.0.0/24"}},
		}, nil))
		names = append(names, ws)
	}
	var scan scanfleet.Scan
	require.NoError(t, s.do(ctx, http.MethodPost, "/api/v1/scans", map[string]any{
		"name": name, "type": "noop", "args": map[string]any{"sleep": sleep, "records": 3}, "workspaces": names,
	}, &scan))
	var run struct {
		Tasks []*scanfleet.Task `json:"tasks"`
	}
	require.NoError(t, s.do(ctx, http.MethodPost, "/api/v1/scans/"+scan.ID+"/run", nil, &run))
	require.Len(t, run.Tasks, workspaces)
	return scan.ID
}

// TestProcessEndToEnd drives the launcher with the process backend
// against a real server: it starts workers up to Max for a backlog, the
// tasks finish on them, the workers exit at their idle timeout, and no
// more than Max ever run. Then Stop ends a worker that is still busy.
func TestProcessEndToEnd(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	ctx := t.Context()
	dir := t.TempDir()
	var logs servertest.LockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	pb, err := NewProcess(ProcessConfig{Binary: binary(t), Dir: dir, Logger: logger, StopGrace: 10 * time.Second})
	require.NoError(t, err)
	defer pb.Stop()
	const maxWorkers = 2
	l, err := New(Config{
		Pools: map[scanfleet.Pool]PoolConfig{
			scanfleet.PoolExternal: {Backend: ProcessBackend, Max: maxWorkers, IdleTimeout: 2 * time.Second},
		},
		Backends:     map[string]Backend{ProcessBackend: pb},
		Backlog:      s.backlog,
		Workers:      s.workers,
		NewJoinToken: s.joinToken,
		ServerURL:    s.url,
		Interval:     200 * time.Millisecond,
		Logger:       logger,
	})
	require.NoError(t, err)

	scanID := s.runNoop(ctx, t, "burst", 5, "700ms")
	require.NoError(t, l.Start(ctx))
	defer l.Stop()

	// Sample the pool while it works: never more than Max processes or
	// live workers, until every task finished and every worker exited.
	deadline := time.Now().Add(90 * time.Second)
	var finished bool
	for {
		running, err := pb.Running(ctx)
		require.NoError(t, err)
		require.LessOrEqual(t, len(running), maxWorkers)
		ws, err := s.workers(ctx)
		require.NoError(t, err)
		live := 0
		for _, w := range ws {
			if w.State != scanfleet.WorkerOffline {
				live++
			}
		}
		require.LessOrEqual(t, live, maxWorkers)
		if !finished {
			finished = true
			for _, task := range s.tasks(ctx, t, scanID) {
				require.NotEqual(t, scanfleet.TaskFailed, task.Status, "task %s: %s", task.ID, task.Error)
				finished = finished && task.Status == scanfleet.TaskFinished
			}
		}
		if finished && len(running) == 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "tasks finished: %v, workers running: %v; launcher log:\n%s", finished, running, logs.String())
		time.Sleep(50 * time.Millisecond)
	}
	pb.mu.Lock()
	peak := pb.peak
	pb.mu.Unlock()
	require.Equal(t, maxWorkers, peak, "the pool did not grow to Max")

	// Both launches enrolled and ran the tasks; they exited by themselves.
	at := l.Attempts()
	require.Len(t, at, maxWorkers, "attempts: %+v", at)
	workerIDs := map[string]bool{}
	for _, a := range at {
		require.Equal(t, OutcomeLaunched, a.Outcome)
		require.Equal(t, ProcessBackend, a.Backend)
		require.NotEmpty(t, a.WorkerID, "attempt %+v never enrolled", a)
		workerIDs[a.WorkerID] = true
		require.NoFileExists(t, filepath.Join(dir, a.Instance, "worker.json"), "the credential outlived the worker")
		log, err := os.ReadFile(filepath.Join(dir, a.Instance, "worker.log"))
		require.NoError(t, err)
		require.Contains(t, string(log), "idle timeout: exiting")
	}
	for _, task := range s.tasks(ctx, t, scanID) {
		require.True(t, workerIDs[task.WorkerID], "task %s ran on %s, not a launched worker", task.ID, task.WorkerID)
	}
	require.Contains(t, logs.String(), "launched worker exited")

	// A worker still busy when the backend stops gets SIGTERM and drains.
	busy := s.runNoop(ctx, t, "long", 1, "60s")
	require.Eventually(t, func() bool {
		ts := s.tasks(ctx, t, busy)
		return len(ts) == 1 && ts[0].Status == scanfleet.TaskStarted
	}, 60*time.Second, 50*time.Millisecond)
	l.Stop()
	start := time.Now()
	pb.Stop()
	require.Less(t, time.Since(start), 10*time.Second, "Stop waited for SIGKILL: the worker ignored SIGTERM")
	running, err := pb.Running(ctx)
	require.NoError(t, err)
	require.Empty(t, running)
	ts := s.tasks(ctx, t, busy)
	require.Equal(t, scanfleet.TaskRequested, ts[0].Status, "the drained task was not handed back")
	_, err = pb.Launch(ctx, LaunchRequest{Pool: scanfleet.PoolExternal, ServerURL: s.url, Transport: "http"})
	require.ErrorContains(t, err, "stopped")
}

// TestProcessArgsAndKill runs a stand-in binary that records how it was
// started and ignores SIGTERM: the request becomes flags, the join token
// stays off the command line, and Stop kills the process group after
// StopGrace.
//
// Not parallel: it sets an environment variable.
func TestProcessArgsAndKill(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "fake-scanfleet")
	require.NoError(t, os.WriteFile(script, []byte(`#!/bin/sh
printf '%s\n' "$@" > args.txt
echo "$SCANFLEET_JOIN_TOKEN" > token.txt
env | grep -c '^SCANFLEET_' > count.txt
trap '' TERM
sleep 300 &
wait
`), 0o755))
	t.Setenv("SCANFLEET_DATA_DIR", "/nonexistent") // must not reach the worker
	pb, err := NewProcess(ProcessConfig{Binary: script, Dir: filepath.Join(dir, "workers"), Args: []string{"--log-level", "debug"},
		StopGrace: 300 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	inst, err := pb.Launch(t.Context(), LaunchRequest{Pool: scanfleet.PoolBaremetal, Site: "lab", ServerURL: "http://127.0.0.1:1",
		JoinToken: "sfj_secret", IdleTimeout: 90 * time.Second, Transport: "nats", Concurrency: 3})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(inst.ID, "launched-baremetal-"), inst.ID)
	require.Equal(t, scanfleet.PoolBaremetal, inst.Pool)
	wdir := filepath.Join(dir, "workers", inst.ID)
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(filepath.Join(wdir, "count.txt"))
		return len(b) > 0
	}, 10*time.Second, 10*time.Millisecond)
	args, err := os.ReadFile(filepath.Join(wdir, "args.txt"))
	require.NoError(t, err)
	require.Equal(t, []string{"worker", "--server", "http://127.0.0.1:1", "--pool", "baremetal", "--site", "lab",
		"--idle-timeout", "1m30s", "--transport", "nats", "--concurrency", "3",
		"--state-file", filepath.Join(wdir, "worker.json"), "--name", inst.ID, "--log-level", "debug"},
		strings.Split(strings.TrimSpace(string(args)), "\n"))
	require.NotContains(t, string(args), "sfj_secret")
	token, err := os.ReadFile(filepath.Join(wdir, "token.txt"))
	require.NoError(t, err)
	require.Equal(t, "sfj_secret\n", string(token))
	count, err := os.ReadFile(filepath.Join(wdir, "count.txt"))
	require.NoError(t, err)
	require.Equal(t, "1\n", string(count), "SCANFLEET_* of the server leaked into the worker")

	running, err := pb.Running(t.Context())
	require.NoError(t, err)
	require.Equal(t, []string{inst.ID}, ids(running))
	pb.Stop()
	running, err = pb.Running(t.Context())
	require.NoError(t, err)
	require.Empty(t, running)
}

func ids(in []Instance) []string {
	var out []string
	for _, i := range in {
		out = append(out, i.ID)
	}
	slices.Sort(out)
	return out
}
