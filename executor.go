package scanfleet

import (
	"context"
	"io"
)

// Executor runs tasks of one type: the built-in scanners, and the adapter
// for external programs. A worker looks the executor up by task type, calls
// Run with the task's input, and streams what it emits to the server.
type Executor interface {
	// TaskType describes the tasks this executor runs.
	TaskType() *TaskType
	// Run does the work. A scan outcome (a closed port, a host that is
	// down) is data, not an error; an error fails the task. Run returns
	// soon after ctx is cancelled.
	Run(ctx context.Context, in *TaskInput, env ExecEnv) error
}

// ExecEnv is what an executor can do while it runs.
type ExecEnv interface {
	// Emit hands over one record, a flat JSON object with "kind"; it
	// blocks while the worker's buffer to the server is full, so memory
	// stays bounded however much a task finds.
	Emit(ctx context.Context, record map[string]any) error
	// Log appends a line to the task's log.
	Log(line string)
	// Progress reports how much of the task is done.
	Progress(done, total int64)
	// Result sets one field of the task's output, the summary stored with
	// the task when it ends (counts per status, what was skipped and why).
	// A later call with the same key replaces the value.
	Result(key string, value any)
	// Artifact stores a file the task produced (a packet capture), named
	// within the task, read from r until EOF; it can be downloaded from the
	// API when the call returns nil.
	Artifact(ctx context.Context, name, contentType string, r io.Reader) error
	// Data gives access to stored task data; it is nil unless the task
	// type requires task_data.
	Data() TaskData
}

// TaskData is the stored data an executor of the internal pool may read.
type TaskData interface {
	GetCloud(ctx context.Context, workspace string) (*CloudEnv, error)
}
