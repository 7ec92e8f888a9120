// Package scanner holds what the built-in scanners share: the in-process
// environment that runs an executor without a server (scanfleet scan
// --local, and the scanners' own tests), and target planning.
package scanner

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"sync"

	"github.com/scanfleet/scanfleet"
)

// LocalEnv runs an executor in this process: records are validated as the
// server would validate them and handed to OnRecord, log lines to OnLog,
// artifacts written under Dir. The zero value keeps everything in memory.
type LocalEnv struct {
	// OnRecord receives each record once it passed validation; nil keeps
	// records in memory (Records).
	OnRecord func(scanfleet.Record) error
	// OnLog receives each log line; nil keeps them (Logs).
	OnLog func(string)
	// OnProgress receives progress reports; nil keeps the last (Progress).
	OnProgress func(done, total int64)
	// Dir is where artifacts are written; empty keeps them in memory.
	Dir string
	// TaskData answers Data(); nil for executors that need none.
	TaskData scanfleet.TaskData

	mu        sync.Mutex
	records   []scanfleet.Record
	logs      []string
	done      int64
	total     int64
	results   map[string]any
	artifacts map[string][]byte
}

var _ scanfleet.ExecEnv = (*LocalEnv)(nil)

// Emit validates the record like the server's ingest does: an executor
// whose record the server would refuse fails here too.
func (e *LocalEnv) Emit(ctx context.Context, data map[string]any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rec, err := scanfleet.NewRecord(maps.Clone(data))
	if err != nil {
		return fmt.Errorf("emit: invalid %v record: %w", data["kind"], err)
	}
	if e.OnRecord != nil {
		return e.OnRecord(rec)
	}
	e.mu.Lock()
	e.records = append(e.records, rec)
	e.mu.Unlock()
	return nil
}

// Log implements scanfleet.ExecEnv.
func (e *LocalEnv) Log(line string) {
	if e.OnLog != nil {
		e.OnLog(line)
		return
	}
	e.mu.Lock()
	e.logs = append(e.logs, line)
	e.mu.Unlock()
}

// Progress implements scanfleet.ExecEnv.
func (e *LocalEnv) Progress(done, total int64) {
	e.mu.Lock()
	e.done, e.total = done, total
	e.mu.Unlock()
	if e.OnProgress != nil {
		e.OnProgress(done, total)
	}
}

// Result implements scanfleet.ExecEnv.
func (e *LocalEnv) Result(key string, value any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.results == nil {
		e.results = map[string]any{}
	}
	e.results[key] = value
}

// Artifact implements scanfleet.ExecEnv.
func (e *LocalEnv) Artifact(ctx context.Context, name, _ string, r io.Reader) error {
	if err := scanfleet.ValidateArtifactName(name); err != nil {
		return err
	}
	if e.Dir != "" {
		f, err := os.Create(filepath.Join(e.Dir, name))
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, io.LimitReader(r, scanfleet.MaxArtifactSize)); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	b, err := io.ReadAll(io.LimitReader(r, scanfleet.MaxArtifactSize))
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.artifacts == nil {
		e.artifacts = map[string][]byte{}
	}
	e.artifacts[name] = b
	return nil
}

// Data implements scanfleet.ExecEnv.
func (e *LocalEnv) Data() scanfleet.TaskData { return e.TaskData }

// Records returns the records kept in memory.
func (e *LocalEnv) Records() []scanfleet.Record {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]scanfleet.Record(nil), e.records...)
}

// Logs returns the log lines kept in memory.
func (e *LocalEnv) Logs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.logs...)
}

// LastProgress returns the last progress reported.
func (e *LocalEnv) LastProgress() (done, total int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.done, e.total
}

// Results returns the task's output fields set so far.
func (e *LocalEnv) Results() map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.results)
}

// ArtifactBytes returns an artifact kept in memory.
func (e *LocalEnv) ArtifactBytes(name string) ([]byte, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	b, ok := e.artifacts[name]
	return b, ok
}
