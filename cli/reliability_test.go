package cli_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet/postgres/pgtest"
)

// workerProc is a "scanfleet worker" process.
type workerProc struct {
	cmd    *exec.Cmd
	id     string
	state  string // its state file
	stderr *bytes.Buffer
}

// startWorker enrols and runs a worker process against s.
func startWorker(t *testing.T, s *server, args ...string) *workerProc {
	t.Helper()
	join := strings.TrimSpace(s.cli(t, "", "worker-token", "create", "--pool", "external"))
	state := filepath.Join(t.TempDir(), "worker.json")
	cmd := exec.Command(binary(t), append([]string{"worker", "--server", s.url, "--join-token", join, "--pool", "external",
		"--transport", "http", "--state-file", state, "--task-lease", "2s", "--log-level", "debug"}, args...)...)
	cmd.Env = cleanEnv()
	w := &workerProc{cmd: cmd, state: state, stderr: &bytes.Buffer{}}
	cmd.Stderr = w.stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(state); err == nil {
			var st struct {
				WorkerID string `json:"worker_id"`
			}
			require.NoError(t, json.Unmarshal(b, &st))
			w.id = st.WorkerID
			return w
		}
		require.True(t, time.Now().Before(deadline), "worker did not enrol; stderr:\n%s", w.stderr)
		time.Sleep(50 * time.Millisecond)
	}
}

// task reads a task through the CLI.
func (s *server) task(t *testing.T, id string) map[string]any {
	t.Helper()
	var task map[string]any
	require.NoError(t, json.Unmarshal([]byte(s.cli(t, "", "task", "get", id, "-o", "json")), &task))
	return task
}

// waitTask polls a task until cond holds.
func (s *server) waitTask(t *testing.T, id string, timeout time.Duration, cond func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		task := s.task(t, id)
		if cond(task) {
			return task
		}
		require.True(t, time.Now().Before(deadline), "task %s: condition not met within %s: %v", id, timeout, task)
		time.Sleep(100 * time.Millisecond)
	}
}

func status(st string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["status"] == st }
}

// runScan creates a noop scan over the workspaces and runs it once.
func runScan(t *testing.T, s *server, name string, args []string, workspaces ...string) []string {
	t.Helper()
	create := []string{"scan", "create", "--name", name, "--type", "noop"}
	for _, a := range args {
		create = append(create, "--arg", a)
	}
	for _, w := range workspaces {
		create = append(create, "--workspace", w)
	}
	s.cli(t, "", create...)
	var tasks []map[string]any
	require.NoError(t, json.Unmarshal([]byte(s.cli(t, "", "scan", "run", name, "-o", "json")), &tasks))
	ids := make([]string, len(tasks))
	for i, task := range tasks {
		ids[i] = task["id"].(string)
	}
	return ids
}

func hostCount(t *testing.T, s *server, ws string) int {
	t.Helper()
	out := strings.TrimSpace(s.cli(t, "", "records", "list", ws, "--kind", "host", "--all", "-o", "jsonl"))
	if out == "" {
		return 0
	}
	return len(strings.Split(out, "\n"))
}

// TestKillWorkerMidTask kills a worker process with SIGKILL in the middle
// of a task: the task completes on another worker, its records are not
// duplicated.
func TestKillWorkerMidTask(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--data-dir", t.TempDir(), "--local-workers=false", "--task-lease", "2s")
	s.cli(t, "", "workspace", "create", "lab", "--include", "10.0.0.0/24")
	a := startWorker(t, s)
	ids := runScan(t, s, "slow", []string{"sleep=4s", "records=50"}, "lab")
	s.waitTask(t, ids[0], 30*time.Second, func(m map[string]any) bool { return m["status"] == "started" && m["worker_id"] == a.id })
	require.NoError(t, a.cmd.Process.Kill())

	b := startWorker(t, s)
	done := s.waitTask(t, ids[0], 60*time.Second, status("finished"))
	require.Equal(t, b.id, done["worker_id"], "worker b stderr:\n%s", b.stderr)
	require.EqualValues(t, 2, done["attempts"])
	require.Equal(t, 50, hostCount(t, s, "lab"))
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func TestServerRestartSQLite(t *testing.T) {
	t.Parallel()
	serverRestart(t, "--data-dir", t.TempDir())
}

func TestServerRestartPostgres(t *testing.T) {
	t.Parallel()
	serverRestart(t, "--database-url", pgtest.URL(t), "--data-dir", t.TempDir())
}

// serverRestart kills the server in the middle of a run and starts it
// again: no task is lost and none is left started.
func serverRestart(t *testing.T, storeArgs ...string) {
	addr := freeAddr(t)
	args := append([]string{"--local-workers=false", "--task-lease", "2s"}, storeArgs...)
	s := launchServer(t, addr, "", args...)
	var workspaces []string
	for i := range 3 {
		ws := fmt.Sprintf("lab%d", i)
		s.cli(t, "", "workspace", "create", ws, "--include", "10.0.0.0/24")
		workspaces = append(workspaces, ws)
	}
	startWorker(t, s, "--concurrency", "2")
	ids := runScan(t, s, "restart", []string{"sleep=2s", "records=20"}, workspaces...)
	require.Len(t, ids, 3)
	s.waitTask(t, ids[0], 30*time.Second, func(m map[string]any) bool { return m["status"] == "started" })

	require.NoError(t, s.cmd.Process.Kill())
	<-s.done
	time.Sleep(500 * time.Millisecond)
	s2 := launchServer(t, addr, s.token, args...)
	for _, id := range ids {
		task := s2.waitTask(t, id, 90*time.Second, func(m map[string]any) bool {
			st := m["status"].(string)
			return st == "finished" || st == "failed" || st == "cancelled"
		})
		require.Equal(t, "finished", task["status"], "task %s: %v", id, task)
	}
	for _, ws := range workspaces {
		require.Equal(t, 20, hostCount(t, s2, ws))
	}
	open := s2.cli(t, "", "task", "list", "--status", "created,queued,requested,started")
	for _, id := range ids {
		require.NotContains(t, open, id)
	}
}

// natsServerBin finds the nats-server binary, or skips the test.
func natsServerBin(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p
	}
	t.Skip("nats-server is not installed (apt-get install nats-server); the external NATS restart test needs it")
	return ""
}

// startNATSServer runs our own external nats-server with JetStream on addr,
// storing in dir.
func startNATSServer(t *testing.T, bin, addr, dir string) *exec.Cmd {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	cmd := exec.Command(bin, "-a", host, "-p", port, "-js", "-sd", dir)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return cmd
		}
		require.True(t, time.Now().Before(deadline), "nats-server did not listen on %s", addr)
		time.Sleep(50 * time.Millisecond)
	}
}

// TestExternalNATSRestart restarts an external NATS server while a server
// and a NATS worker are connected: both reconnect and work continues.
func TestExternalNATSRestart(t *testing.T) {
	t.Parallel()
	bin := natsServerBin(t)
	natsAddr, dir := freeAddr(t), t.TempDir()
	nats := startNATSServer(t, bin, natsAddr, dir)
	s := startServer(t, "--data-dir", t.TempDir(), "--local-workers=false", "--task-lease", "3s", "--nats-url", "nats://"+natsAddr)
	s.cli(t, "", "workspace", "create", "lab", "--include", "10.0.0.0/24")
	w := startWorker(t, s, "--transport", "nats")
	first := runScan(t, s, "before", []string{"records=5"}, "lab")
	s.waitTask(t, first[0], 30*time.Second, status("finished"))

	require.NoError(t, nats.Process.Kill())
	_ = nats.Wait()
	time.Sleep(time.Second)
	startNATSServer(t, bin, natsAddr, dir)

	second := runScan(t, s, "after", []string{"records=5"}, "lab")
	done := s.waitTask(t, second[0], 60*time.Second, status("finished"))
	require.Equal(t, w.id, done["worker_id"], "worker stderr:\n%s\nserver stderr:\n%s", w.stderr, s.stderr)
}
