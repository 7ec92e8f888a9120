// Package servertest runs the real scanfleet binary for the tests of other
// packages: it builds cmd/scanfleet once per test binary and starts
// "scanfleet server" processes, reading the URL and admin token they print.
package servertest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/scanfleet once for the test binary and returns its
// path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "scanfleet-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "scanfleet")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/scanfleet/scanfleet/cmd/scanfleet").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binPath
}

// CleanEnv is this process's environment without SCANFLEET_ variables,
// so that a child process reads only the flags it is given.
func CleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SCANFLEET_") {
			env = append(env, kv)
		}
	}
	return env
}

// LockedBuffer is a buffer a process writes while the test reads it.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Server is a running "scanfleet server" process.
type Server struct {
	Cmd    *exec.Cmd
	URL    string
	Token  string
	Stderr *LockedBuffer
	Done   chan error // receives the process's exit
}

// Start runs "scanfleet server" with args (which should name --addr and
// --nats-addr), env (nil: CleanEnv()), and waits for the URL it prints.
// With token "" it also waits for the admin token a first start prints;
// else the store has tokens already and token is the one to use. The
// process gets SIGTERM (and SIGKILL after 15 s) when the test ends.
func Start(t testing.TB, env []string, token string, args ...string) *Server {
	t.Helper()
	cmd := exec.Command(Binary(t), append([]string{"server"}, args...)...)
	cmd.Env = env
	if env == nil {
		cmd.Env = CleanEnv()
	}
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	s := &Server{Cmd: cmd, Token: token, Stderr: &LockedBuffer{}, Done: make(chan error, 1)}
	cmd.Stderr = s.Stderr
	require.NoError(t, cmd.Start())
	go func() { s.Done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.Done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	deadline := time.After(60 * time.Second)
	for s.URL == "" || s.Token == "" {
		select {
		case l, ok := <-lines:
			require.True(t, ok, "server exited before it printed its URL and token; stderr:\n%s", s.Stderr)
			if _, after, ok := strings.Cut(l, " listening on "); ok {
				s.URL = strings.Fields(after)[0]
			}
			if _, after, ok := strings.Cut(l, "Admin API token (shown once; store it now): "); ok {
				s.Token = strings.TrimSpace(after)
			}
		case <-deadline:
			t.Fatalf("server printed no URL and token within 60 s; stderr:\n%s", s.Stderr)
		}
	}
	go func() {
		for range lines { // until the server exits
		}
	}()
	return s
}

// RemoveBinary removes the binary Binary built, if any; call it from
// TestMain after the tests ran.
func RemoveBinary() {
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
}
