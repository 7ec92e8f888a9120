package execscan

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/scanfleet/scanfleet"
)

// run starts the program in its own process group and ingests its output
// until it exits. A cancel or timeout sends SIGTERM to the whole group and
// SIGKILL after KillGrace; when the program exits, whatever it left
// running in its group is killed too.
func (e *Executor) run(ctx context.Context, in *scanfleet.TaskInput, environ []string, o *output, env scanfleet.ExecEnv) error {
	path, err := e.program(e.m.Cmd[0])
	if err != nil {
		return fmt.Errorf("start %s: %w", e.m.Name, err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start %s: %w", e.m.Name, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return fmt.Errorf("start %s: %w", e.m.Name, err)
	}
	cmd := &exec.Cmd{
		Path: path, Args: e.m.Cmd, Env: environ, Dir: e.m.Dir, Stdout: outW, Stderr: errW,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return fmt.Errorf("start %s: %w", e.m.Name, err)
	}
	pid := cmd.Process.Pid
	log := e.cfg.Logger.With(slog.String("executor", e.m.Name), slog.String("task", in.TaskID), slog.Int("pid", pid))
	log.Debug("program started")

	exited := make(chan struct{})
	go func() {
		defer close(exited)
		waitExited(pid)
	}()
	var outErr error
	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		outErr = o.read(ctx, outR)
	}()
	stderrTail := &tail{max: 10}
	errDone := make(chan struct{})
	go func() {
		defer close(errDone)
		e.logStderr(errR, env, stderrTail)
	}()

	aborted := make(chan struct{})
	var once sync.Once
	stop := func(why string) {
		once.Do(func() {
			close(aborted)
			log.Info("stopping program", slog.String("why", why))
			e.terminate(pid, exited)
		})
	}
	select {
	case <-exited:
	case <-ctx.Done():
		stop(context.Cause(ctx).Error())
	case <-outDone:
		if outErr != nil {
			stop(outErr.Error())
			break
		}
		select {
		case <-exited:
		case <-ctx.Done():
			stop(context.Cause(ctx).Error())
		}
	}
	<-exited
	// The leader is a zombie until Wait, so its group id cannot have been
	// reused: this reaches only what the program left behind.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	drain := func(done <-chan struct{}, f *os.File) {
		select {
		case <-done:
			return
		case <-ctx.Done():
		case <-aborted:
		}
		// A process outside the group (it called setsid) may still hold
		// the pipe; give it the grace period, then stop reading.
		t := time.NewTimer(e.cfg.KillGrace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			f.Close()
			<-done
		}
	}
	drain(outDone, outR)
	drain(errDone, errR)
	waitErr := cmd.Wait()
	outR.Close()
	errR.Close()

	code := cmd.ProcessState.ExitCode()
	if code >= 0 {
		env.Result("exit_code", code)
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%s: stopped: %w", e.m.Name, context.Cause(ctx))
	case outErr != nil:
		return outErr
	case waitErr != nil:
		var how string
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			how = "was killed by signal " + ws.Signal().String()
		} else {
			how = fmt.Sprintf("exited with status %d", code)
		}
		if s := stderrTail.String(); s != "" {
			return fmt.Errorf("%s %s; last lines of stderr:\n%s", e.m.Name, how, s)
		}
		return fmt.Errorf("%s %s (no stderr output)", e.m.Name, how)
	}
	return nil
}

// terminate sends SIGTERM to the process group, then SIGKILL when the
// leader has not exited within the grace period, and waits for it.
func (e *Executor) terminate(pid int, exited <-chan struct{}) {
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	t := time.NewTimer(e.cfg.KillGrace)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	<-exited
}

// waitExited blocks until the process exits without reaping it
// (WNOWAIT), so that its pid, which is also its group's id, stays
// reserved until cmd.Wait.
func waitExited(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// logStderr copies the program's stderr to the task's log, a line at a
// time, each cut at MaxLogLineBytes; blank lines are dropped.
func (e *Executor) logStderr(r io.Reader, env scanfleet.ExecEnv, t *tail) {
	br := bufio.NewReaderSize(r, 16<<10)
	var buf []byte
	for {
		line, cut, err := readLogLine(br, buf[:0], e.cfg.MaxLogLineBytes)
		if len(strings.TrimSpace(string(line))) > 0 || cut > 0 {
			s := logText(line, cut)
			env.Log(s)
			t.add(s)
		}
		if err != nil {
			return
		}
		buf = line
	}
}
