package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/scanfleet/scanfleet"
)

// BenchLifecycle measures the store's share of a task's life, as the
// dispatch benchmark (worker.BenchmarkDispatch) drives it: n requested
// no-op tasks created 500 at a time, claimed 64 at a time (by id, as NATS
// workers claim their dispatches, or with next the oldest requested, as
// the HTTP long poll does), and finished with two log lines each 64 at a
// time. It reports the
// microseconds each step costs a task (create-us, claim-us, finish-us).
// On SQLite these are the one writer's time per task, which bounds the
// whole system's tasks/s.
func BenchLifecycle(b *testing.B, s scanfleet.Store, n int, next bool) {
	ctx := context.Background()
	ws := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	if err := s.CreateWorkspace(ctx, &scanfleet.Workspace{Name: ws}); err != nil {
		b.Fatal(err)
	}
	in, err := json.Marshal(scanfleet.TaskInput{Type: "noop", Workspace: ws, Args: map[string]any{}})
	if err != nil {
		b.Fatal(err)
	}
	var create, claim, finish time.Duration
	b.ResetTimer()
	for range b.N {
		tasks := make([]*scanfleet.Task, n)
		now := time.Now()
		for i := range tasks {
			tasks[i] = &scanfleet.Task{ID: scanfleet.NewTaskID(), Type: "noop", Workspace: ws, Pool: scanfleet.PoolExternal,
				Status: scanfleet.TaskRequested, MaxAttempts: 3, Input: in, CreatedAt: now, RequestedAt: &now, UpdatedAt: now}
		}
		t0 := time.Now()
		for part := range slices.Chunk(tasks, 500) {
			if err := s.CreateTasks(ctx, part); err != nil {
				b.Fatal(err)
			}
		}
		t1 := time.Now()
		f := scanfleet.ClaimFilter{Pool: scanfleet.PoolExternal, Types: []string{"noop"}, Max: 64}
		for part := range slices.Chunk(tasks, 64) {
			var got []*scanfleet.Task
			if next {
				got, err = s.ClaimNext(ctx, f, "bench", time.Minute, time.Now())
			} else {
				ids := make([]string, len(part))
				for i, t := range part {
					ids[i] = t.ID
				}
				got, err = s.ClaimTasks(ctx, ids, f, "bench", time.Minute, time.Now())
			}
			if err != nil {
				b.Fatal(err)
			} else if len(got) != len(part) {
				b.Fatalf("claimed %d of %d tasks", len(got), len(part))
			}
		}
		t2 := time.Now()
		for part := range slices.Chunk(tasks, 64) {
			outs := make([]scanfleet.Outcome, len(part))
			for i, t := range part {
				outs[i] = scanfleet.Outcome{TaskID: t.ID, Attempt: 1, Change: scanfleet.TaskChange{Status: scanfleet.TaskFinished},
					Logs: []string{"noop: sleeping 0s", "noop: done"}, Progress: &scanfleet.Progress{}}
			}
			_, errs, err := s.FinishTasks(ctx, "bench", outs, time.Now())
			if err != nil {
				b.Fatal(err)
			}
			for _, err := range errs {
				if err != nil {
					b.Fatal(err)
				}
			}
		}
		t3 := time.Now()
		create, claim, finish = create+t1.Sub(t0), claim+t2.Sub(t1), finish+t3.Sub(t2)
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(b.N*n) }
	b.ReportMetric(per(create), "create-us")
	b.ReportMetric(per(claim), "claim-us")
	b.ReportMetric(per(finish), "finish-us")
}
