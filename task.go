package scanfleet

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// TaskStatus is where a task is in its lifecycle (Crossfeed's ScanTask
// statuses, plus cancelled).
type TaskStatus string

// The task statuses.
const (
	TaskCreated   TaskStatus = "created"   // stored, not yet routed (NewTask routes at once: its tasks start requested)
	TaskQueued    TaskStatus = "queued"    // waiting for capacity
	TaskRequested TaskStatus = "requested" // handed to a pool, waiting for a worker
	TaskStarted   TaskStatus = "started"   // a worker holds it and runs it
	TaskFinished  TaskStatus = "finished"  // ran to completion
	TaskFailed    TaskStatus = "failed"    // gave up; Error says why
	TaskCancelled TaskStatus = "cancelled" // stopped on request
)

// TaskStatuses lists every status in lifecycle order.
var TaskStatuses = []TaskStatus{TaskCreated, TaskQueued, TaskRequested, TaskStarted, TaskFinished, TaskFailed, TaskCancelled}

// taskTransitions lists, for each status, the statuses a task may move to.
// A started task goes back to requested when its lease lapses and it is
// retried; a requested task goes back to queued when its pool is full; a
// queued task is released to requested when its pool has room.
var taskTransitions = map[TaskStatus][]TaskStatus{
	TaskCreated:   {TaskQueued, TaskRequested, TaskCancelled, TaskFailed},
	TaskQueued:    {TaskCreated, TaskRequested, TaskCancelled, TaskFailed},
	TaskRequested: {TaskQueued, TaskStarted, TaskCancelled, TaskFailed},
	TaskStarted:   {TaskRequested, TaskFinished, TaskFailed, TaskCancelled},
	TaskFinished:  nil,
	TaskFailed:    nil,
	TaskCancelled: nil,
}

// Valid reports whether s is a known status.
func (s TaskStatus) Valid() bool {
	_, ok := taskTransitions[s]
	return ok
}

// Terminal reports whether no transition leaves s.
func (s TaskStatus) Terminal() bool {
	return s == TaskFinished || s == TaskFailed || s == TaskCancelled
}

// CanTransition reports whether a task may move from one status to another.
func CanTransition(from, to TaskStatus) bool {
	for _, s := range taskTransitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// TransitionSources returns the statuses from which a task may move to to.
func TransitionSources(to TaskStatus) []TaskStatus {
	var out []TaskStatus
	for _, from := range TaskStatuses {
		if CanTransition(from, to) {
			out = append(out, from)
		}
	}
	return out
}

// ParseTaskStatus returns the status named s or an EINVALID error listing
// the valid ones.
func ParseTaskStatus(s string) (TaskStatus, error) {
	st := TaskStatus(s)
	if !st.Valid() {
		return "", Errorf(EINVALID, "status: %q is not one of created, queued, requested, started, finished, failed, cancelled", s)
	}
	return st, nil
}

// Task is one run of one task type on one chunk of one workspace's targets
// (Crossfeed's ScanTask).
type Task struct {
	ID          string          `json:"id"` // UUIDv7, made at creation
	ScanID      string          `json:"scan_id"`
	Type        string          `json:"type"`
	Workspace   string          `json:"workspace"`
	Pool        Pool            `json:"pool"`
	Site        string          `json:"site"`
	Status      TaskStatus      `json:"status"`
	Attempts    int             `json:"attempts"`
	MaxAttempts int             `json:"max_attempts"`
	WorkerID    string          `json:"worker_id"`
	Timeout     Duration        `json:"timeout"`
	Input       json.RawMessage `json:"input"`
	Output      json.RawMessage `json:"output"`
	Error       string          `json:"error"`
	CreatedAt   time.Time       `json:"created_at"`
	QueuedAt    *time.Time      `json:"queued_at"`
	RequestedAt *time.Time      `json:"requested_at"`
	StartedAt   *time.Time      `json:"started_at"`
	FinishedAt  *time.Time      `json:"finished_at"`
	FailedAt    *time.Time      `json:"failed_at"`
	CancelledAt *time.Time      `json:"cancelled_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
	// LeaseExpiresAt is when the worker running the task loses it unless
	// it renews the lease; nil unless started.
	LeaseExpiresAt *time.Time `json:"lease_expires_at"`
	// CancelRequested is set on a started task that a user cancelled; its
	// worker stops it and reports it cancelled.
	CancelRequested bool     `json:"cancel_requested"`
	Progress        Progress `json:"progress"`
	// Records counts the records the task has delivered.
	Records int64 `json:"records"`
	// LogTruncated is set once the task's log reached its cap; later lines
	// were counted, not stored.
	LogTruncated bool `json:"log_truncated"`
}

// Progress is how much of a task is done, in units the executor chooses.
type Progress struct {
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
}

// DefaultMaxAttempts is how often a task is tried before it fails.
const DefaultMaxAttempts = 3

// TaskInput is what an executor receives (Crossfeed's
// CROSSFEED_COMMAND_OPTIONS): the task's identity, its arguments and its
// targets.
type TaskInput struct {
	TaskID    string         `json:"task_id"`
	ScanID    string         `json:"scan_id"`
	Type      string         `json:"type"`
	Workspace string         `json:"workspace"`
	Args      map[string]any `json:"args"`
	// Targets are what to scan: the workspace's scope, a chunk of it, or
	// the targets a user named. Exclude are never touched.
	Targets []string `json:"targets"`
	Exclude []string `json:"exclude"`
	// Scope is the workspace's whole scope; a target outside it is never
	// touched. Empty in tasks stored before it existed, where Targets and
	// Exclude are the scope.
	Scope *Scope `json:"scope,omitempty"`
	Chunk Chunk  `json:"chunk"`
}

// Matcher compiles the scope the task's targets are checked against before
// any packet leaves: the workspace's scope with the task's own excludes.
func (in *TaskInput) Matcher() (*ScopeMatcher, error) {
	s := Scope{Include: in.Targets, Exclude: in.Exclude, AllowBroad: true}
	if in.Scope != nil {
		s = *in.Scope
		s.Exclude = append(slices.Clone(s.Exclude), in.Exclude...)
		s.AllowBroad = true // the server checked breadth when the scope was set
	}
	m, err := s.Compile()
	if err != nil {
		return nil, fmt.Errorf("task scope: %w", err)
	}
	return m, nil
}

// Chunk says which part of a split scan a task covers: N of Of, from 1.
type Chunk struct {
	N  int `json:"n"`
	Of int `json:"of"`
}

// NewTaskID returns a new UUIDv7: time-ordered, so ids sort by creation.
func NewTaskID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// NewID returns a new UUIDv7 for any stored object.
func NewID() string { return NewTaskID() }

// NewScanTasks builds the tasks of one run of scan over the given
// workspaces: one task per workspace, its targets the workspace's scope.
func NewScanTasks(scan *Scan, tt *TaskType, workspaces []*Workspace, now time.Time) ([]*Task, error) {
	tasks := make([]*Task, 0, len(workspaces))
	for _, ws := range workspaces {
		chunks := [][]string{nil} // nil targets: the whole scope
		if scan.ChunkSize > 0 {
			var err error
			if chunks, err = ChunkTargets(ws.Scope.Include, scan.ChunkSize); err != nil {
				return nil, fmt.Errorf("workspace %s: %w", ws.Name, err)
			}
		}
		for i, targets := range chunks {
			t, err := NewTask(TaskSpec{Type: tt, Workspace: ws, ScanID: scan.ID, Args: scan.Args, Targets: targets,
				Timeout: scan.Timeout, Site: scan.Site, Chunk: Chunk{N: i + 1, Of: len(chunks)}}, now)
			if err != nil {
				return nil, err
			}
			tasks = append(tasks, t)
		}
	}
	return tasks, nil
}

// MaxChunks bounds the tasks one workspace's run splits into.
const MaxChunks = 65536

// ChunkTargets splits targets into chunks of at most size addresses each:
// a prefix larger than size becomes prefixes of size (rounded down to a
// power of two), and small ones are packed together in order. Names, which
// have no size until resolved, go together in a chunk of their own. The
// error says when the split would make more than MaxChunks chunks.
func ChunkTargets(targets []string, size int64) ([][]string, error) {
	if size <= 0 {
		return [][]string{targets}, nil
	}
	bitsFor := func(p netip.Prefix) int { // host bits of a chunk
		b := 0
		for b < 62 && int64(1)<<(b+1) <= size {
			b++
		}
		return min(b, p.Addr().BitLen()-p.Bits())
	}
	var chunks [][]string
	var cur []string
	var curSize int64
	flush := func() {
		if len(cur) > 0 {
			chunks = append(chunks, cur)
			cur, curSize = nil, 0
		}
	}
	var names []string
	for _, target := range targets {
		p, err := netip.ParsePrefix(target)
		if err != nil {
			a, aerr := netip.ParseAddr(target)
			if aerr != nil {
				names = append(names, target)
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		p = p.Masked()
		host := p.Addr().BitLen() - p.Bits()
		if host <= 62 && int64(1)<<host <= size {
			n := int64(1) << host
			if curSize+n > size {
				flush()
			}
			cur = append(cur, target)
			curSize += n
			continue
		}
		flush()
		cb := bitsFor(p)
		count := host - cb // log2 of the number of sub-prefixes
		if count > 16 || len(chunks)+(1<<count) > MaxChunks {
			return nil, Errorf(EINVALID, "chunk_size: %d splits %s into more than %d tasks; use a larger chunk_size", size, target, MaxChunks)
		}
		sub := netip.PrefixFrom(p.Addr(), p.Addr().BitLen()-cb)
		for range 1 << count {
			chunks = append(chunks, []string{sub.String()})
			sub = netip.PrefixFrom(lastAddr(sub).Next(), sub.Bits())
		}
	}
	flush()
	if len(names) > 0 {
		chunks = append(chunks, names)
	}
	if len(chunks) > MaxChunks {
		return nil, Errorf(EINVALID, "chunk_size: %d makes %d tasks, more than %d; use a larger chunk_size", size, len(chunks), MaxChunks)
	}
	if len(chunks) == 0 {
		chunks = [][]string{nil}
	}
	return chunks, nil
}

// TaskSpec is what a task is made from.
type TaskSpec struct {
	Type      *TaskType
	Workspace *Workspace
	ScanID    string         // "" for a task submitted on its own
	Args      map[string]any // validated against Type
	// Targets narrow the task to part of the workspace's scope; empty
	// targets the whole scope.
	Targets []string
	Timeout Duration // zero takes the type's
	Site    string
	Chunk   Chunk // zero is 1 of 1
}

// NewTask builds a task from spec, routed at once: it is requested in its
// type's pool from the start, so that it costs the store no separate
// routing write. A caller that stores it over capacity makes it queued.
func NewTask(spec TaskSpec, now time.Time) (*Task, error) {
	tt, ws := spec.Type, spec.Workspace
	t := &Task{
		ID:          NewTaskID(),
		ScanID:      spec.ScanID,
		Type:        tt.Name,
		Workspace:   ws.Name,
		Pool:        tt.Pool(),
		Site:        spec.Site,
		Status:      TaskRequested,
		MaxAttempts: DefaultMaxAttempts,
		Timeout:     spec.Timeout,
		CreatedAt:   now,
		RequestedAt: &now,
		UpdatedAt:   now,
	}
	if t.Timeout == 0 {
		t.Timeout = Duration(tt.Timeout)
		if t.Timeout == 0 {
			t.Timeout = Duration(DefaultTaskTimeout)
		}
	}
	targets := spec.Targets
	if len(targets) == 0 {
		targets = ws.Scope.Include
	}
	chunk := spec.Chunk
	if chunk == (Chunk{}) {
		chunk = Chunk{N: 1, Of: 1}
	}
	scope := ws.Scope
	in, err := json.Marshal(TaskInput{
		TaskID: t.ID, ScanID: spec.ScanID, Type: tt.Name, Workspace: ws.Name,
		Args: spec.Args, Targets: targets, Exclude: ws.Scope.Exclude, Scope: &scope, Chunk: chunk,
	})
	if err != nil {
		return nil, err
	}
	t.Input = in
	return t, nil
}

// CheckTargets checks targets a user named against the scope: each must
// be a valid target with some part in scope. The error names the first
// that is not and why. Names are checked by name only (an excluded name is
// refused); the addresses they resolve to are checked by the worker before
// anything is sent.
func (m *ScopeMatcher) CheckTargets(targets []string) error {
	for i, target := range targets {
		host, err := TargetHost(target)
		if err != nil {
			return Errorf(EINVALID, "targets[%d]: %q is not a valid target: %v", i, target, err)
		}
		if p, err := netip.ParsePrefix(host); err == nil {
			if len(m.clipN(p, 1)) == 0 { // some part in scope is enough
				return Errorf(EINVALID, "targets[%d]: %s", i, m.Check(host).Reason)
			}
			continue
		}
		if d := m.Check(host); !d.In {
			if _, err := netip.ParseAddr(host); err == nil || d.Rule != "" {
				return Errorf(EINVALID, "targets[%d]: %s", i, d.Reason)
			} else if _, err := normalizeName(host); err != nil {
				return Errorf(EINVALID, "targets[%d]: %q is not a valid target: %v", i, target, err)
			}
		}
	}
	return nil
}

// TaskChange moves a task to a new status and sets the given fields.
type TaskChange struct {
	Status   TaskStatus
	WorkerID *string
	Output   json.RawMessage
	Error    *string
	// AddAttempt counts one more attempt (set when a worker starts it).
	AddAttempt bool
}

// TaskFilter selects tasks; zero fields match all.
type TaskFilter struct {
	Status    []TaskStatus
	ScanID    string
	Workspace string
	Since     time.Time // created at or after
	Until     time.Time // created before
	// WorkerID selects the tasks a worker holds or held.
	WorkerID string
	// CancelRequested selects started tasks whose cancel was requested.
	CancelRequested bool
	Page            Page
}

// TaskLog is one line a task wrote to its log.
type TaskLog struct {
	Seq  int64     `json:"seq"`
	Time time.Time `json:"time"`
	Line string    `json:"line"`
}

// TaskStore stores tasks and their logs.
type TaskStore interface {
	CreateTasks(ctx context.Context, tasks []*Task) error
	FindTask(ctx context.Context, id string) (*Task, error)
	// ListTasks returns tasks newest first.
	ListTasks(ctx context.Context, f TaskFilter) ([]*Task, string, error)
	// TransitionTask applies the change if the task's current status may
	// move to c.Status, and returns the task after it; otherwise it
	// returns ECONFLICT naming both statuses and changes nothing.
	TransitionTask(ctx context.Context, id string, c TaskChange, now time.Time) (*Task, error)
	AppendTaskLogs(ctx context.Context, id string, lines []string, now time.Time) error
	// ListTaskLogs returns up to limit lines with Seq > after.
	ListTaskLogs(ctx context.Context, id string, after int64, limit int) ([]TaskLog, error)
	CountTasksByStatus(ctx context.Context) (map[TaskStatus]int64, error)
}

func itoa(i int) string { return strconv.Itoa(i) }
