package worker_test

import (
	"context"
	"encoding/json"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/worker"
)

// BenchmarkDispatch pushes b.N no-op tasks end to end on the embedded setup
// (SQLite, HTTP API, router, HTTP long-poll workers): created → routed →
// claimed → run → finished stored. It reports tasks/s and the p50/p99 of
// created-to-finished latency.
//
//	go test -run '^$' -bench Dispatch -benchtime 2000x ./worker/
func BenchmarkDispatch(b *testing.B) {
	r := newRig(b, scanfleet.DefaultLease, "http")
	for range 2 {
		r.start(worker.Config{Concurrency: 64})
	}
	ctx := context.Background()
	in, _ := json.Marshal(scanfleet.TaskInput{Type: "noop", Workspace: "acme", Args: map[string]any{}})
	tasks := make([]*scanfleet.Task, b.N)
	now := time.Now()
	for i := range tasks {
		tasks[i] = &scanfleet.Task{ID: scanfleet.NewTaskID(), Type: "noop", Workspace: "acme", Pool: scanfleet.PoolExternal,
			Status: scanfleet.TaskCreated, MaxAttempts: 3, Input: in, CreatedAt: now, UpdatedAt: now}
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < len(tasks); i += 500 {
		require.NoError(b, r.store.CreateTasks(ctx, tasks[i:min(i+500, len(tasks))]))
	}
	r.router.Wake()
	var lat []time.Duration
	for {
		counts, err := r.store.CountTasksByStatus(ctx)
		require.NoError(b, err)
		if counts[scanfleet.TaskFinished] == int64(b.N) {
			break
		}
		require.Less(b, time.Since(start), 5*time.Minute, "tasks did not finish: %v", counts)
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	var cursor string
	for {
		page, next, err := r.store.ListTasks(ctx, scanfleet.TaskFilter{Page: scanfleet.Page{Limit: scanfleet.MaxPageLimit, Cursor: cursor}})
		require.NoError(b, err)
		for _, t := range page {
			lat = append(lat, t.FinishedAt.Sub(start))
		}
		if next == "" {
			break
		}
		cursor = next
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Milliseconds()), "p99-ms")
}
