package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/internal/servertest"
	"github.com/scanfleet/scanfleet/postgres/pgtest"
	"github.com/scanfleet/scanfleet/worker"
)

// binary is the scanfleet binary, built once.
func binary(t *testing.T) string { return servertest.Binary(t) }

// server is a scanfleet server running as a real process.
type server struct {
	cmd    *exec.Cmd
	url    string
	token  string
	stderr *servertest.LockedBuffer
	done   chan error
}

func (s *server) stderrString() string { return s.stderr.String() }

// startServer runs "scanfleet server" on port 0 and reads the URL and the
// admin token it prints.
func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	return launchServer(t, "127.0.0.1:0", "", args...)
}

// launchServer runs "scanfleet server" on addr. With token "" it waits for
// the admin token a first start prints; else the store has tokens already
// and token is the one to use.
func launchServer(t *testing.T, addr, token string, args ...string) *server {
	t.Helper()
	p := servertest.Start(t, nil, token, append([]string{"--addr", addr, "--nats-addr", "127.0.0.1:-1"}, args...)...)
	return &server{cmd: p.Cmd, url: p.URL, token: p.Token, stderr: p.Stderr, done: p.Done}
}

func cleanEnv() []string { return servertest.CleanEnv() }

// cli runs a client command against s and returns its stdout.
func (s *server) cli(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, errOut, code := s.run(t, stdin, args...)
	require.Equal(t, 0, code, "scanfleet %s\nstderr: %s", strings.Join(args, " "), errOut)
	return out
}

func (s *server) run(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Env = append(cleanEnv(), "SCANFLEET_SERVER="+s.url, "SCANFLEET_TOKEN="+s.token)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return stdout.String(), stderr.String(), code
}

const bulkCreate = `{"hosts":[{"ip":"10.0.0.7","hostnames":["web.acme.example"],"services":[{"name":"https","port":443,"protocol":"tcp","status":"open","vulnerabilities":[{"name":"Weak TLS","severity":"medium","desc":"TLS 1.0 enabled"}]}]}]}`

func TestEndToEndSQLite(t *testing.T) {
	t.Parallel()
	endToEnd(t, "--data-dir", t.TempDir())
}

func TestEndToEndPostgres(t *testing.T) {
	t.Parallel()
	endToEnd(t, "--database-url", pgtest.URL(t), "--data-dir", t.TempDir())
}

// endToEnd drives a real server process through the CLI: a workspace, a
// scan and its run, a bulk_create document and native JSON lines, and the
// records read back.
func endToEnd(t *testing.T, storeArgs ...string) {
	s := startServer(t, storeArgs...)

	out := s.cli(t, "", "workspace", "create", "acme", "--include", "10.0.0.0/24,*.acme.example", "--exclude", "10.0.0.5")
	require.Contains(t, out, "acme")
	out = s.cli(t, "", "workspace", "check", "acme", "10.0.0.5", "-o", "json")
	require.Contains(t, out, `"in_scope": false`)

	// The scan runs on the server's in-process worker, end to end, in a
	// workspace of its own (noop's synthetic hosts stay out of acme).
	s.cli(t, "", "workspace", "create", "lab", "--include", "10.0.0.0/24")
	out = s.cli(t, "", "scan", "create", "--name", "nightly", "--type", "noop", "--arg", "sleep=1s", "--arg", "records=10",
		"--workspace", "lab", "--frequency", "24h", "-o", "json")
	var scan map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &scan))
	require.Equal(t, "24h0m0s", scan["frequency"])

	out = s.cli(t, "", "scan", "run", "nightly", "-o", "json")
	var tasks []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &tasks))
	require.Len(t, tasks, 1)
	id := tasks[0]["id"].(string)
	deadline := time.Now().Add(30 * time.Second)
	var task map[string]any
	for {
		require.NoError(t, json.Unmarshal([]byte(s.cli(t, "", "task", "get", id, "-o", "json")), &task))
		if task["status"] == "finished" || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.Equal(t, "finished", task["status"], "task: %v", task)
	require.EqualValues(t, 10, task["records"])
	require.Contains(t, s.cli(t, "", "task", "logs", id), "emitted 10 records")
	require.Contains(t, s.cli(t, "", "task", "list", "--status", "finished"), id)
	out = s.cli(t, "", "records", "list", "lab", "--kind", "host", "-o", "jsonl")
	require.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 10)
	require.Contains(t, s.cli(t, "", "workers"), "local-external")

	dir := t.TempDir()
	bulk := filepath.Join(dir, "faraday.json")
	require.NoError(t, os.WriteFile(bulk, []byte(bulkCreate), 0o600))
	out = s.cli(t, "", "records", "ingest", "acme", bulk, "-o", "json")
	require.Contains(t, out, `"new": 4`)

	jsonl := `{"kind":"service","ip":"10.0.0.8","port":22,"name":"ssh","banner":"OpenSSH_9.6"}
{"kind":"http","url":"HTTPS://web.acme.example:443","status_code":200,"title":"Acme"}
`
	out = s.cli(t, jsonl, "records", "ingest", "acme", "-", "-o", "json")
	require.Contains(t, out, `"new": 2`)

	// A bad line is refused with its number and nothing is stored.
	_, errOut, code := s.run(t, `{"kind":"host","ip":"10.0.0.9"}`+"\n"+`{"kind":"service","ip":"10.0.0.9","port":0}`, "records", "ingest", "acme", "-")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "line 2: service.port")

	out = s.cli(t, "", "records", "list", "acme", "-o", "jsonl")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 6)
	keys := map[string]bool{}
	for _, l := range lines {
		var r map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &r))
		keys[r["kind"].(string)+" "+r["key"].(string)] = true
	}
	require.True(t, keys["host 10.0.0.7"])
	require.True(t, keys["domain web.acme.example"])
	require.True(t, keys["service 10.0.0.7:443/tcp"])
	require.True(t, keys["service 10.0.0.8:22/tcp"])
	require.True(t, keys["http https://web.acme.example/"])

	out = s.cli(t, "", "records", "list", "acme", "--kind", "service", "-o", "csv")
	require.True(t, strings.HasPrefix(out, "KIND,KEY,DETAILS,FIRST SEEN,LAST SEEN\n"), out)
	require.Equal(t, 3, strings.Count(out, "\n"))
	out = s.cli(t, "", "records", "list", "acme", "--kind", "finding")
	require.Contains(t, out, "Weak TLS")

	// A viewer token made directly in the store reads but cannot write.
	if storeArgs[0] == "--data-dir" {
		viewer := exec.Command(binary(t), "token", "create", "--role", "viewer", "--name", "ro", storeArgs[0], storeArgs[1])
		viewer.Env = cleanEnv()
		secret, err := viewer.Output()
		require.NoError(t, err)
		ro := &server{url: s.url, token: strings.TrimSpace(string(secret))}
		require.Contains(t, ro.cli(t, "", "workspace", "list"), "acme")
		_, errOut, code = ro.run(t, "", "workspace", "create", "other", "--include", "10.1.0.0/24")
		require.Equal(t, 1, code)
		require.Contains(t, errOut, "operator role")
	}

	// SIGTERM stops the server cleanly.
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-s.done:
		require.NoError(t, err, "stderr:\n%s", s.stderr)
	case <-time.After(15 * time.Second):
		t.Fatal("server did not stop within 15 s of SIGTERM")
	}
}

// TestFirstStartOnly checks that the admin token is printed on the first
// start only.
func TestFirstStartOnly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, "--data-dir", dir)
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	<-s.done

	cmd := exec.Command(binary(t), "server", "--addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:-1")
	cmd.Env = append(cleanEnv(), "SCANFLEET_DATA_DIR="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	sc := bufio.NewScanner(stdout)
	require.True(t, sc.Scan())
	require.Contains(t, sc.Text(), "listening on http://127.0.0.1:")
	require.Contains(t, sc.Text(), dir, "SCANFLEET_DATA_DIR was not used")
	// The in-process workers kept their identity: no second set of them.
	_, after, _ := strings.Cut(sc.Text(), " listening on ")
	again := &server{url: strings.Fields(after)[0], token: s.token}
	var workers []map[string]any
	require.NoError(t, json.Unmarshal([]byte(again.cli(t, "", "workers", "-o", "json")), &workers))
	// One per pool: external and internal, and baremetal where this
	// process can open raw sockets.
	want := 2
	if slices.Contains(worker.DetectCapabilities(), scanfleet.RequireRawSockets) {
		want = 3
	}
	require.Len(t, workers, want, "workers: %v", workers)
	names := map[string]bool{}
	for _, w := range workers {
		require.False(t, names[w["name"].(string)], "a second %s worker: %v", w["name"], workers)
		names[w["name"].(string)] = true
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	rest, _ := io.ReadAll(stdout)
	require.NoError(t, cmd.Wait(), "stderr:\n%s", &stderr)
	require.NotContains(t, string(rest), "Admin API token")
}
