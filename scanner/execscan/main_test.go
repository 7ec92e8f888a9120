package execscan

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
)

// binDir holds the test executor, built once for the whole package.
var binDir string

func TestMain(m *testing.M) {
	var err error
	binDir, err = os.MkdirTemp("", "execscan-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(binDir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildErr  error
)

// testexec returns the path of the test executor, built from
// testdata/testexec on first use.
func testexec(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(binDir, "testexec")
	buildOnce.Do(func() {
		out, err := exec.Command("go", "build", "-o", bin, "./testdata/testexec").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build testexec: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return bin
}

// testManifest writes a manifest for the test executor into a fresh
// directory, with fields overriding the defaults, and loads it.
func testManifest(t *testing.T, fields map[string]any) *Manifest {
	t.Helper()
	m := map[string]any{
		"name":  "testexec",
		"title": "Test executor",
		"cmd":   []string{testexec(t)},
		"arguments": map[string]any{
			"MODE":    map[string]any{"mandatory": true, "type": "string"},
			"COUNT":   map[string]any{"type": "integer"},
			"SIZE":    map[string]any{"type": "integer"},
			"TAG":     map[string]any{"type": "integer"},
			"PIDFILE": map[string]any{"type": "string"},
			"TARGET":  map[string]any{"mandatory": true, "type": "list"},
		},
	}
	for k, v := range fields {
		m[k] = v
	}
	dir := filepath.Join(t.TempDir(), "testexec")
	require.NoError(t, os.Mkdir(dir, 0o755))
	writeJSON(t, filepath.Join(dir, ManifestFile), m)
	man, err := Load(filepath.Join(dir, ManifestFile))
	require.NoError(t, err)
	return man
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b, 0o644))
}

// taskInput is a task on the documentation range 192.0.2.0/24.
func taskInput(args map[string]any) *scanfleet.TaskInput {
	return &scanfleet.TaskInput{
		TaskID: scanfleet.NewTaskID(), Type: "testexec", Workspace: "acme", Args: args,
		Targets: []string{"192.0.2.0/24"}, Chunk: scanfleet.Chunk{N: 1, Of: 1},
	}
}

// run runs one task of m with a fresh LocalEnv.
func run(t *testing.T, ctx context.Context, m *Manifest, cfg Config, in *scanfleet.TaskInput) (*scanner.LocalEnv, error) {
	t.Helper()
	ex, err := New(m, cfg)
	require.NoError(t, err)
	env := &scanner.LocalEnv{}
	return env, ex.Run(ctx, in, env)
}

func kinds(recs []scanfleet.Record) map[scanfleet.RecordKind]int {
	out := map[scanfleet.RecordKind]int{}
	for _, r := range recs {
		out[r.Kind]++
	}
	return out
}

func hasLog(env *scanner.LocalEnv, sub string) bool {
	for _, l := range env.Logs() {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

// readPid waits for a pid file the test executor writes.
func readPid(t *testing.T, path string) int {
	t.Helper()
	var pid int
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(string(b))
		return err == nil
	}, time.Minute, 10*time.Millisecond, "%s was not written", path)
	return pid
}

// alive reports whether pid is a live process; a zombie is dead, as its
// reaper may be slow or absent in a container.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

// requireDead fails unless pid is gone; the kill is asynchronous, so it
// waits a while, not asserting how long the death took.
func requireDead(t *testing.T, pid int, what string) {
	t.Helper()
	require.Eventually(t, func() bool { return !alive(pid) }, time.Minute, 10*time.Millisecond,
		"%s (pid %d) outlived the task", what, pid)
}
