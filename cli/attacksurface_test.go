package cli_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const smallEnv = `{"vms":[{"vm_id":"web-1","tags":["web"]},{"vm_id":"app-1","tags":["app","monitored"]},{"vm_id":"db-1","tags":["db"]},{"vm_id":"jump-1","tags":["vpn"]}],
"fw_rules":[{"fw_id":"r1","source_tag":"web","dest_tag":"app"},{"fw_id":"r2","source_tag":"app","dest_tag":"db"},{"fw_id":"r3","source_tag":"vpn","dest_tag":"monitored"}]}`

// TestAttackSurfaceServe runs "attack-surface gen" and "attack-surface
// serve" as real processes and queries the standalone API.
func TestAttackSurfaceServe(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	gen := exec.Command(binary(t), "attack-surface", "gen", "--vms", "2000", "--tags", "50", "--rules", "200", "--seed", "7", "-o", filepath.Join(dir, "gen.json"))
	out, err := gen.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "small.json"), []byte(smallEnv), 0o600))

	cmd := exec.Command(binary(t), "attack-surface", "serve", "--data", dir, "--addr", "127.0.0.1:0")
	cmd.Env = cleanEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	require.True(t, sc.Scan(), "stderr: %s", &stderr)
	line := sc.Text()
	require.Contains(t, line, "(2004 VMs)")
	_, after, _ := strings.Cut(line, "listening on ")
	base := strings.Fields(after)[0]

	get := func(path string) (int, []byte) {
		resp, err := http.Get(base + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		return resp.StatusCode, buf.Bytes()
	}
	code, body := get("/api/v1/attack?vm_id=db-1")
	require.Equal(t, 200, code)
	require.JSONEq(t, `["app-1","jump-1","web-1"]`, string(body))
	code, body = get("/attack?vm_id=jump-1")
	require.Equal(t, 200, code)
	require.JSONEq(t, `[]`, string(body))
	code, _ = get("/api/v1/attack?vm_id=nope")
	require.Equal(t, 404, code)
	code, _ = get("/api/v1/attack")
	require.Equal(t, 400, code)
	code, body = get("/api/v1/stats")
	require.Equal(t, 200, code)
	var stats map[string]any
	require.NoError(t, json.Unmarshal(body, &stats))
	require.Equal(t, float64(2004), stats["vm_count"])
	require.Equal(t, float64(4), stats["request_count"])

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "stderr: %s", &stderr)
	case <-time.After(15 * time.Second):
		t.Fatal("attack-surface serve did not stop on SIGTERM")
	}
}

// TestAttackSurfaceWorkspace uploads an environment to a workspace of a
// running server and queries it through the CLI.
func TestAttackSurfaceWorkspace(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--data-dir", t.TempDir())
	s.cli(t, "", "workspace", "create", "acme", "--include", "10.0.0.0/24")
	file := filepath.Join(t.TempDir(), "env.json")
	require.NoError(t, os.WriteFile(file, []byte(smallEnv), 0o600))
	out := s.cli(t, "", "attack-surface", "upload", "acme", file, "-o", "json")
	require.Contains(t, out, `"vm_count": 4`)
	out = s.cli(t, "", "attack-surface", "query", "acme", "db-1", "-o", "json")
	var ids []string
	require.NoError(t, json.Unmarshal([]byte(out), &ids))
	require.Equal(t, []string{"app-1", "jump-1", "web-1"}, ids)
	out = s.cli(t, "", "attack-surface", "query", "acme", "db-1", "--mode", "direct")
	require.Equal(t, "ATTACKER\napp-1\n", out)
	_, errOut, code := s.run(t, "", "attack-surface", "query", "acme", "nope")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, `"nope" not found`)
}
