package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestExternalExecutor runs an external executor on a worker process: the
// worker announces it, the server validates scans of it against its
// manifest, and what it prints lands in the inventory.
func TestExternalExecutor(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "echohost"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "echohost", "manifest.json"), []byte(`{
		"name": "echohost", "title": "Echo host", "description": "prints a host per target",
		"cmd": "./run.sh",
		"arguments": {"TARGET": {"mandatory": true, "type": "list"}, "OS": {"mandatory": true, "type": "string"}},
		"timeout": "1m"}`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "echohost", "run.sh"), []byte(`#!/bin/sh
# A Faraday-style executor: arguments in EXECUTOR_CONFIG_*, a bulk_create line out.
echo "scanning $EXECUTOR_CONFIG_TARGET" >&2
echo '{"hosts":[{"ip":"10.0.0.9","os":"'"$EXECUTOR_CONFIG_OS"'","services":[{"name":"ssh","port":22,"protocol":"tcp","status":"open"}]}]}'
`), 0o755))

	s := startServer(t, "--data-dir", t.TempDir(), "--local-workers=false")
	s.cli(t, "", "workspace", "create", "lab", "--include", "10.0.0.0/24")
	w := startWorker(t, s, "--executors-dir", dir)
	_ = w

	// Until the worker has announced it, the type is unknown; then a scan
	// is checked against the manifest.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, errOut, code := s.run(t, "", "scan", "create", "--name", "bad", "--type", "echohost", "--workspace", "lab", "--arg", "OS=x", "--arg", "COLOR=red")
		require.NotEqual(t, 0, code)
		if !strings.Contains(errOut, "unknown task type") {
			require.Contains(t, errOut, "COLOR", "an unknown argument is named")
			break
		}
		require.True(t, time.Now().Before(deadline), "the server never learned the executor's type: %s", errOut)
		time.Sleep(100 * time.Millisecond)
	}
	_, errOut, code := s.run(t, "", "scan", "create", "--name", "bad", "--type", "echohost", "--workspace", "lab")
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "OS", "a missing mandatory argument is named")

	s.cli(t, "", "scan", "create", "--name", "echo", "--type", "echohost", "--workspace", "lab", "--arg", "OS=plan9")
	var tasks []map[string]any
	require.NoError(t, json.Unmarshal([]byte(s.cli(t, "", "scan", "run", "echo", "-o", "json")), &tasks))
	require.Len(t, tasks, 1)
	done := s.waitTask(t, tasks[0]["id"].(string), 60*time.Second, func(m map[string]any) bool {
		return m["status"] != "created" && m["status"] != "requested" && m["status"] != "started"
	})
	require.Equal(t, "finished", done["status"], "task: %v\nworker stderr:\n%s", done, w.stderr)
	out := s.cli(t, "", "records", "list", "lab", "--kind", "service", "-o", "jsonl")
	require.Contains(t, out, `"port":22`)
	hosts := s.cli(t, "", "records", "list", "lab", "--kind", "host", "-o", "jsonl")
	require.Contains(t, hosts, "plan9")
	logs := s.cli(t, "", "task", "logs", tasks[0]["id"].(string))
	require.Contains(t, logs, "scanning")
}
