package scanner

import (
	"context"
	"sync"

	"github.com/scanfleet/scanfleet"
)

// MaxFailureLogs is how many per-target failures a task logs; later ones
// are only counted.
const MaxFailureLogs = 50

// Tracker is what a scanner keeps while a task runs, the same for all of
// them: progress, a bounded log of per-target failures, and the first
// error handing a record over, which stops the task. Embed it in a run.
type Tracker struct {
	Env    scanfleet.ExecEnv
	Cancel context.CancelCauseFunc // stops the task when Emit fails
	Name   string                  // the scanner's name, for log lines

	mu      sync.Mutex
	done    int64
	total   int64
	logged  int
	emitErr error
}

// Emit hands a record over; a failure that is not the task's cancel
// stops the task with that error (EmitErr).
func (t *Tracker) Emit(ctx context.Context, rec map[string]any) bool {
	err := t.Env.Emit(ctx, rec)
	if err == nil {
		return true
	}
	if ctx.Err() == nil {
		t.mu.Lock()
		if t.emitErr == nil {
			t.emitErr = err
		}
		t.mu.Unlock()
		t.Cancel(err)
	}
	return false
}

// EmitErr returns the error that stopped Emit, or nil.
func (t *Tracker) EmitErr() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.emitErr
}

// Finish ends a run once its work has returned: the error that stopped
// Emit, else the cause of the task's cancel, else nil after a last
// progress report.
func (t *Tracker) Finish(ctx context.Context) error {
	if err := t.EmitErr(); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	t.Progress(true)
	return nil
}

// Fail logs one target's failure, the first MaxFailureLogs only.
func (t *Tracker) Fail(line string) {
	t.mu.Lock()
	t.logged++
	n := t.logged
	t.mu.Unlock()
	switch {
	case n <= MaxFailureLogs:
		t.Env.Log(line)
	case n == MaxFailureLogs+1:
		t.Env.Log(t.Name + ": further failures are counted, not logged")
	}
}

// SetTotal sets how much work the task has.
func (t *Tracker) SetTotal(n int64) {
	t.mu.Lock()
	t.total = n
	t.mu.Unlock()
}

// AddTotal adds work found while the task runs.
func (t *Tracker) AddTotal(n int64) {
	t.mu.Lock()
	t.total += n
	t.mu.Unlock()
	t.Progress(false)
}

// Total returns how much work the task has.
func (t *Tracker) Total() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

// Step counts one piece of work done.
func (t *Tracker) Step() {
	t.mu.Lock()
	t.done++
	t.mu.Unlock()
	t.Progress(false)
}

// Progress reports progress every 50 steps, and when forced.
func (t *Tracker) Progress(force bool) {
	t.mu.Lock()
	done, total := t.done, t.total
	t.mu.Unlock()
	if force || done%50 == 0 {
		t.Env.Progress(done, max(done, total))
	}
}
