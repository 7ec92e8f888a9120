package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/scanfleet/scanfleet"
)

// maxLogLine bounds one log line; a longer line is cut with a marker that
// says so.
const maxLogLine = 16 << 10

// maxPendingLogLines bounds the log lines kept while the server cannot be
// reached.
const maxPendingLogLines = 10000

// execEnv is the ExecEnv a task's executor gets. Records are sent in
// chunks: Emit blocks while a full chunk is being delivered, so memory stays
// bounded whatever the executor emits. Log lines are sent every LogFlush.
type execEnv struct {
	w   *Worker
	run *taskRun
	t   *scanfleet.Task

	mu       sync.Mutex
	buf      bytes.Buffer // JSON Lines not yet sent
	pending  int
	sent     int64
	prog     scanfleet.Progress
	lines    []string
	results  map[string]any
	flushErr error

	sendMu   sync.Mutex // one records request at a time, in order
	logWake  chan struct{}
	logsDone chan struct{}
}

func newEnv(w *Worker, r *taskRun, t *scanfleet.Task) *execEnv {
	e := &execEnv{w: w, run: r, t: t, logWake: make(chan struct{}, 1), logsDone: make(chan struct{})}
	go e.shipLogs()
	return e
}

var _ scanfleet.ExecEnv = (*execEnv)(nil)

// Emit implements scanfleet.ExecEnv.
func (e *execEnv) Emit(ctx context.Context, record map[string]any) error {
	line, err := json.Marshal(record)
	if err != nil {
		return fmt.Errorf("emit: %w", err)
	}
	e.mu.Lock()
	e.buf.Write(line)
	e.buf.WriteByte('\n')
	e.pending++
	full := e.pending >= e.w.cfg.RecordChunk || e.buf.Len() >= e.w.cfg.MaxChunkBytes
	e.mu.Unlock()
	if full {
		return e.flushRecords(ctx)
	}
	return nil
}

// flushRecords sends the buffered records; it retries transient failures
// and gives up when the task's context ends or the lease is lost.
func (e *execEnv) flushRecords(ctx context.Context) error {
	e.sendMu.Lock()
	defer e.sendMu.Unlock()
	e.mu.Lock()
	if e.pending == 0 {
		e.mu.Unlock()
		return nil
	}
	chunk := bytes.Clone(e.buf.Bytes())
	n := e.pending
	e.buf.Reset()
	e.pending = 0
	e.mu.Unlock()
	backoff := 100 * time.Millisecond
	for {
		err := e.w.cfg.Client.records(ctx, e.t.ID, e.t.Attempts, chunk)
		if err == nil {
			e.mu.Lock()
			e.sent += int64(n)
			e.mu.Unlock()
			return nil
		}
		switch scanfleet.ErrorCode(err) {
		case scanfleet.ECONFLICT:
			e.run.cancel(errLeaseLost)
			return fmt.Errorf("deliver records: %w", err)
		case scanfleet.EINVALID, scanfleet.ETOOLARGE:
			return fmt.Errorf("deliver records: the server refused a chunk: %w", err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("deliver records: %w", err)
		}
		e.w.log.Warn("deliver records; retrying", "task", e.t.ID, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return fmt.Errorf("deliver records: %w", ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// Log implements scanfleet.ExecEnv.
func (e *execEnv) Log(line string) {
	if len(line) > maxLogLine {
		cut := maxLogLine
		for cut > 0 && !utf8.RuneStart(line[cut]) {
			cut--
		}
		line = line[:cut] + fmt.Sprintf(" …[line cut: %d more bytes]", len(line)-cut)
	}
	e.mu.Lock()
	e.lines = append(e.lines, line)
	n := len(e.lines)
	e.mu.Unlock()
	if n >= 500 {
		select {
		case e.logWake <- struct{}{}:
		default:
		}
	}
}

// Progress implements scanfleet.ExecEnv.
func (e *execEnv) Progress(done, total int64) {
	e.mu.Lock()
	e.prog = scanfleet.Progress{Done: done, Total: total}
	e.mu.Unlock()
}

// Result implements scanfleet.ExecEnv.
func (e *execEnv) Result(key string, value any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.results == nil {
		e.results = map[string]any{}
	}
	e.results[key] = value
}

// output returns the task's output: the executor's results with the
// worker's own counts.
func (e *execEnv) output(took time.Duration) map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]any, len(e.results)+2)
	for k, v := range e.results {
		out[k] = v
	}
	out["records"] = e.sent
	out["duration_ms"] = took.Milliseconds()
	return out
}

// Artifact implements scanfleet.ExecEnv: the file is streamed to the
// server, which stores it with the task.
func (e *execEnv) Artifact(ctx context.Context, name, contentType string, r io.Reader) error {
	if err := scanfleet.ValidateArtifactName(name); err != nil {
		return err
	}
	if err := e.w.cfg.Client.artifact(ctx, e.t.ID, e.t.Attempts, name, contentType, r); err != nil {
		if scanfleet.ErrorCode(err) == scanfleet.ECONFLICT {
			e.run.cancel(errLeaseLost)
		}
		return fmt.Errorf("store artifact %s: %w", name, err)
	}
	return nil
}

// Data implements scanfleet.ExecEnv: the worker's own store access when it
// has one, else the worker API for types that require task data.
func (e *execEnv) Data() scanfleet.TaskData {
	if e.w.cfg.Data != nil {
		return e.w.cfg.Data
	}
	if ex, ok := e.w.executors[e.t.Type]; ok && slices.Contains(ex.TaskType().Requirements, scanfleet.RequireTaskData) {
		return taskData{c: e.w.cfg.Client, task: e.t}
	}
	return nil
}

func (e *execEnv) progress() scanfleet.Progress {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.prog
}

func (e *execEnv) records() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sent
}

// shipLogs sends buffered log lines every LogFlush until the task's run
// context ends.
func (e *execEnv) shipLogs() {
	defer close(e.logsDone)
	t := time.NewTicker(e.w.cfg.LogFlush)
	defer t.Stop()
	for {
		select {
		case <-e.run.ctx.Done():
			return
		case <-t.C:
		case <-e.logWake:
		}
		e.flushLogs(context.WithoutCancel(e.run.ctx))
	}
}

func (e *execEnv) flushLogs(ctx context.Context) {
	e.mu.Lock()
	lines := e.lines
	e.lines = nil
	e.mu.Unlock()
	if len(lines) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, e.w.cfg.Lease)
	defer cancel()
	err := e.w.cfg.Client.logs(ctx, e.t.ID, e.t.Attempts, lines)
	if err == nil {
		return
	}
	e.w.log.Warn("send log lines", "task", e.t.ID, "lines", len(lines), "err", err)
	if scanfleet.ErrorCode(err) != scanfleet.EINTERNAL {
		return // refused (lease lost, bad request): retrying cannot help
	}
	// A transient failure: keep the lines for the next flush, within a
	// bound, and say what was dropped.
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lines = append(lines, e.lines...)
	if over := len(e.lines) - maxPendingLogLines; over > 0 {
		e.lines = append([]string{fmt.Sprintf("[scanfleet] %d log lines dropped: the server could not be reached", over)}, e.lines[over+1:]...)
	}
}

// close delivers the last records; the last log lines go with the
// outcome (takeLogs).
func (e *execEnv) close(ctx context.Context) error {
	<-e.logsDone
	ctx, cancel := context.WithTimeout(ctx, e.w.cfg.Lease)
	defer cancel()
	return e.flushRecords(ctx)
}

// takeLogs returns and clears the log lines not sent yet.
func (e *execEnv) takeLogs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	lines := e.lines
	e.lines = nil
	return lines
}
