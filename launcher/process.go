package launcher

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ProcessConfig configures a Process backend.
type ProcessConfig struct {
	// Binary is the scanfleet executable to run. Default: this program
	// (os.Executable).
	Binary string
	// Dir holds one directory per launched worker, with its state file
	// (removed when it exits) and its log. Default
	// $TMPDIR/scanfleet-workers.
	Dir string
	// Args are extra arguments after "scanfleet worker …", e.g.
	// --log-level debug. Default none.
	Args []string
	// Env is added to the workers' environment, which is this process's
	// without its SCANFLEET_* variables. Default none.
	Env []string
	// StopGrace is how long Stop waits after SIGTERM before SIGKILL.
	// Default 10 s.
	StopGrace time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// WithDefaults returns the config with zero fields set to their defaults.
func (c ProcessConfig) WithDefaults() ProcessConfig {
	if c.Binary == "" {
		c.Binary, _ = os.Executable()
	}
	c.Dir = cmp.Or(c.Dir, filepath.Join(os.TempDir(), "scanfleet-workers"))
	c.StopGrace = cmp.Or(c.StopGrace, 10*time.Second)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c ProcessConfig) validate() error {
	if c.Binary == "" {
		return fmt.Errorf("Binary: is empty and this program's path is unknown")
	}
	if c.StopGrace <= 0 {
		return fmt.Errorf("StopGrace: must be positive")
	}
	return nil
}

// Process starts workers as "scanfleet worker" subprocesses of this one,
// each in its own process group, and reaps them when they exit.
type Process struct {
	cfg ProcessConfig

	mu       sync.Mutex
	children map[string]*child
	stopped  bool
	wg       sync.WaitGroup
	peak     int // most children alive at once, for tests
}

type child struct {
	inst Instance
	cmd  *exec.Cmd
	done chan struct{}
}

var _ Backend = (*Process)(nil)

// ProcessBackend is the name the process backend is usually registered
// under in Config.Backends.
const ProcessBackend = "process"

// NewProcess returns a process backend.
func NewProcess(cfg ProcessConfig) (*Process, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("process backend config: %w", err)
	}
	return &Process{cfg: cfg, children: map[string]*child{}}, nil
}

// Launch starts one worker process.
func (p *Process) Launch(ctx context.Context, req LaunchRequest) (Instance, error) {
	if err := ctx.Err(); err != nil {
		return Instance{}, err
	}
	id, err := processID(req)
	if err != nil {
		return Instance{}, err
	}
	dir := filepath.Join(p.cfg.Dir, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Instance{}, fmt.Errorf("create worker dir: %w", err)
	}
	logPath := filepath.Join(dir, "worker.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return Instance{}, fmt.Errorf("open worker log: %w", err)
	}
	stateFile := filepath.Join(dir, "worker.json")
	args := append([]string{"worker",
		"--server", req.ServerURL, "--pool", string(req.Pool), "--site", req.Site,
		"--idle-timeout", req.IdleTimeout.String(), "--transport", req.Transport,
		"--concurrency", strconv.Itoa(max(req.Concurrency, 1)), "--state-file", stateFile, "--name", id,
	}, p.cfg.Args...)
	// Not exec.CommandContext: the worker outlives the launch request.
	cmd := exec.Command(p.cfg.Binary, args...)
	cmd.Dir = dir
	// The join token goes in the environment, not on the command line
	// that every user of the machine can read.
	cmd.Env = append(append(workerEnv(), p.cfg.Env...), "SCANFLEET_JOIN_TOKEN="+req.JoinToken)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		_ = logFile.Close()
		return Instance{}, fmt.Errorf("start worker: the process backend is stopped")
	}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return Instance{}, fmt.Errorf("start worker: %w", err)
	}
	inst := Instance{ID: id, Backend: ProcessBackend, Pool: req.Pool, Detail: fmt.Sprintf("pid %d, log %s", cmd.Process.Pid, logPath)}
	c := &child{inst: inst, cmd: cmd, done: make(chan struct{})}
	p.children[id] = c
	p.peak = max(p.peak, len(p.children))
	p.wg.Add(1)
	go p.reap(c, logFile, stateFile)
	return inst, nil
}

// reap waits for a child, logs how it ended and forgets it. The state
// file goes: a launched worker never starts again with it.
func (p *Process) reap(c *child, logFile *os.File, stateFile string) {
	defer p.wg.Done()
	err := c.cmd.Wait()
	_ = logFile.Close()
	_ = os.Remove(stateFile)
	p.mu.Lock()
	delete(p.children, c.inst.ID)
	p.mu.Unlock()
	close(c.done)
	attrs := []any{slog.String("instance", c.inst.ID), slog.String("pool", string(c.inst.Pool)), slog.Int("pid", c.cmd.Process.Pid)}
	if err != nil {
		p.cfg.Logger.Warn("launched worker exited", append(attrs, slog.Any("err", err), slog.String("log", logFile.Name()))...)
	} else {
		p.cfg.Logger.Info("launched worker exited", attrs...)
	}
}

// Running lists the worker processes alive.
func (p *Process) Running(context.Context) ([]Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Instance, 0, len(p.children))
	for _, c := range p.children {
		out = append(out, c.inst)
	}
	return out, nil
}

// Stop ends every worker process: SIGTERM to its process group, which
// drains it, then SIGKILL after StopGrace. Later launches fail.
func (p *Process) Stop() {
	p.mu.Lock()
	p.stopped = true
	children := make([]*child, 0, len(p.children))
	for _, c := range p.children {
		children = append(children, c)
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range children {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pgid := c.cmd.Process.Pid
			if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
				p.cfg.Logger.Warn("stop launched worker", slog.String("instance", c.inst.ID), slog.Any("err", err))
			}
			t := time.NewTimer(p.cfg.StopGrace)
			defer t.Stop()
			select {
			case <-c.done:
			case <-t.C:
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
				<-c.done
			}
		}()
	}
	wg.Wait()
	p.wg.Wait()
}

// processID names a launched worker: pool, then random hex.
func processID(req LaunchRequest) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "launched-" + string(req.Pool) + "-" + hex.EncodeToString(b[:]), nil
}

// workerEnv is this process's environment without SCANFLEET_* settings,
// which would otherwise become the worker's flags.
func workerEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SCANFLEET_") {
			env = append(env, kv)
		}
	}
	return env
}
