package storetest

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
)

// requireTask checks every field of got against want.
func requireTask(t *testing.T, want, got *scanfleet.Task) {
	t.Helper()
	require.Equal(t, want.ID, got.ID)
	require.Equal(t, want.ScanID, got.ScanID)
	require.Equal(t, want.Type, got.Type)
	require.Equal(t, want.Workspace, got.Workspace)
	require.Equal(t, want.Pool, got.Pool)
	require.Equal(t, want.Site, got.Site)
	require.Equal(t, want.Status, got.Status)
	require.Equal(t, want.Attempts, got.Attempts)
	require.Equal(t, want.MaxAttempts, got.MaxAttempts)
	require.Equal(t, want.WorkerID, got.WorkerID)
	require.Equal(t, want.Timeout, got.Timeout)
	require.Equal(t, string(want.Input), string(got.Input))
	require.Equal(t, string(want.Output), string(got.Output))
	require.Equal(t, want.Error, got.Error)
	requireTime(t, want.CreatedAt, got.CreatedAt, "created_at")
	requireTimePtr(t, want.QueuedAt, got.QueuedAt, "queued_at")
	requireTimePtr(t, want.RequestedAt, got.RequestedAt, "requested_at")
	requireTimePtr(t, want.StartedAt, got.StartedAt, "started_at")
	requireTimePtr(t, want.FinishedAt, got.FinishedAt, "finished_at")
	requireTimePtr(t, want.FailedAt, got.FailedAt, "failed_at")
	requireTimePtr(t, want.CancelledAt, got.CancelledAt, "cancelled_at")
	requireTime(t, want.UpdatedAt, got.UpdatedAt, "updated_at")
	requireTimePtr(t, want.LeaseExpiresAt, got.LeaseExpiresAt, "lease_expires_at")
	require.Equal(t, want.CancelRequested, got.CancelRequested, "cancel_requested")
	require.Equal(t, want.Progress, got.Progress, "progress")
	require.Equal(t, want.Records, got.Records, "records")
	require.Equal(t, want.LogTruncated, got.LogTruncated, "log_truncated")
}

// statusTime returns the field of task that records when it entered s.
func statusTime(task *scanfleet.Task, s scanfleet.TaskStatus) **time.Time {
	switch s {
	case scanfleet.TaskQueued:
		return &task.QueuedAt
	case scanfleet.TaskRequested:
		return &task.RequestedAt
	case scanfleet.TaskStarted:
		return &task.StartedAt
	case scanfleet.TaskFinished:
		return &task.FinishedAt
	case scanfleet.TaskFailed:
		return &task.FailedAt
	case scanfleet.TaskCancelled:
		return &task.CancelledAt
	}
	return nil
}

func taskIDs(tasks []*scanfleet.Task) []string {
	ids := make([]string, len(tasks))
	for i, t := range tasks {
		ids[i] = t.ID
	}
	return ids
}

// newestFirst returns the ids of tasks in the order ListTasks gives.
func newestFirst(tasks []*scanfleet.Task) []string {
	ids := taskIDs(tasks)
	slices.Sort(ids)
	slices.Reverse(ids)
	return ids
}

// listAll follows the cursor through every page of f.
func listAll(t *testing.T, s scanfleet.Store, f scanfleet.TaskFilter) []*scanfleet.Task {
	t.Helper()
	var out []*scanfleet.Task
	for calls := 0; ; calls++ {
		require.Less(t, calls, 100, "too many pages")
		page, next, err := s.ListTasks(t.Context(), f)
		require.NoError(t, err)
		if f.Page.Limit > 0 {
			require.LessOrEqual(t, len(page), f.Page.Limit)
		}
		out = append(out, page...)
		if next == "" {
			return out
		}
		f.Page.Cursor = next
	}
}

var taskTests = map[string]func(*testing.T, scanfleet.Store){
	"CreateFind": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		queued := at(time.Second)
		task := newTask("a", scanfleet.TaskQueued, t0)
		task.ScanID = scanfleet.NewID()
		task.Site = "dc1"
		task.Pool = scanfleet.PoolBaremetal
		task.Attempts = 1
		task.WorkerID = "worker-1"
		task.Output = json.RawMessage(`{"hosts":3}`)
		task.Error = "earlier try: timeout"
		task.QueuedAt = &queued
		task.UpdatedAt = queued
		task.LeaseExpiresAt = ptr(at(time.Minute))
		task.CancelRequested = true
		task.Progress = scanfleet.Progress{Done: 7, Total: 1 << 40}
		task.Records = 1234567
		task.LogTruncated = true
		createTasks(t, s, task)
		got, err := s.FindTask(ctx, task.ID)
		require.NoError(t, err)
		requireTask(t, task, got)
	},
	"CreateDefaults": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		task := &scanfleet.Task{Type: "noop", Workspace: "a"}
		require.NoError(t, s.CreateTasks(ctx, []*scanfleet.Task{task}))
		require.NotEmpty(t, task.ID)
		require.Equal(t, scanfleet.TaskCreated, task.Status)
		require.False(t, task.CreatedAt.IsZero())
		got, err := s.FindTask(ctx, task.ID)
		require.NoError(t, err)
		requireTask(t, task, got)
		require.Nil(t, got.Input)
		require.Nil(t, got.Output)
	},
	"CreateErrors": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		task := createTasks(t, s, newTask("a", scanfleet.TaskCreated, t0))[0]
		again := newTask("a", scanfleet.TaskCreated, t0)
		again.ID = task.ID
		fresh := newTask("a", scanfleet.TaskCreated, t0)
		err := s.CreateTasks(ctx, []*scanfleet.Task{fresh, again})
		requireCode(t, err, scanfleet.ECONFLICT, fmt.Sprintf("task %s already exists", task.ID))
		_, err = s.FindTask(ctx, fresh.ID)
		requireCode(t, err, scanfleet.ENOTFOUND) // one transaction: nothing written

		err = s.CreateTasks(ctx, []*scanfleet.Task{newTask("a", scanfleet.TaskCreated, t0), newTask("ghost", scanfleet.TaskCreated, t0)})
		requireCode(t, err, scanfleet.EINVALID, `task workspace: workspace "ghost" does not exist`)
		err = s.CreateTasks(ctx, []*scanfleet.Task{newTask("a", "bogus", t0)})
		requireCode(t, err, scanfleet.EINVALID)
		tasks, _, err := s.ListTasks(ctx, scanfleet.TaskFilter{})
		require.NoError(t, err)
		require.Len(t, tasks, 1)
	},
	"FindNotFound": func(t *testing.T, s scanfleet.Store) {
		_, err := s.FindTask(t.Context(), "0190e0a4-0000-7000-8000-000000000000")
		requireCode(t, err, scanfleet.ENOTFOUND, `task "0190e0a4-0000-7000-8000-000000000000" not found`)
	},
	"ListFilters": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		createWorkspace(t, s, "b")
		scanA, scanB := scanfleet.NewID(), scanfleet.NewID()
		var all []*scanfleet.Task
		for i := range 28 {
			ws := []string{"a", "b"}[i%2]
			task := newTask(ws, scanfleet.TaskStatuses[i%len(scanfleet.TaskStatuses)], at(time.Duration(i)*time.Minute))
			task.ScanID = []string{scanA, scanB, ""}[i%3]
			all = append(all, task)
		}
		createTasks(t, s, all...)
		since, until := at(5*time.Minute), at(20*time.Minute)

		for _, tc := range []struct {
			name   string
			filter scanfleet.TaskFilter
			match  func(*scanfleet.Task) bool
		}{
			{"all", scanfleet.TaskFilter{}, func(*scanfleet.Task) bool { return true }},
			{"status", scanfleet.TaskFilter{Status: []scanfleet.TaskStatus{scanfleet.TaskStarted}},
				func(t *scanfleet.Task) bool { return t.Status == scanfleet.TaskStarted }},
			{"statuses", scanfleet.TaskFilter{Status: []scanfleet.TaskStatus{scanfleet.TaskFailed, scanfleet.TaskCreated}},
				func(t *scanfleet.Task) bool {
					return t.Status == scanfleet.TaskFailed || t.Status == scanfleet.TaskCreated
				}},
			{"scan", scanfleet.TaskFilter{ScanID: scanB}, func(t *scanfleet.Task) bool { return t.ScanID == scanB }},
			{"workspace", scanfleet.TaskFilter{Workspace: "b"}, func(t *scanfleet.Task) bool { return t.Workspace == "b" }},
			{"since", scanfleet.TaskFilter{Since: since}, func(t *scanfleet.Task) bool { return !t.CreatedAt.Before(since) }},
			{"until", scanfleet.TaskFilter{Until: until}, func(t *scanfleet.Task) bool { return t.CreatedAt.Before(until) }},
			{"combined", scanfleet.TaskFilter{Workspace: "a", ScanID: scanA, Since: since, Until: until},
				func(t *scanfleet.Task) bool {
					return t.Workspace == "a" && t.ScanID == scanA && !t.CreatedAt.Before(since) && t.CreatedAt.Before(until)
				}},
			{"none", scanfleet.TaskFilter{Workspace: "nope"}, func(*scanfleet.Task) bool { return false }},
		} {
			var want []*scanfleet.Task
			for _, task := range all {
				if tc.match(task) {
					want = append(want, task)
				}
			}
			for _, limit := range []int{0, 1, 3} {
				f := tc.filter
				f.Page.Limit = limit
				got := listAll(t, s, f)
				require.Equal(t, newestFirst(want), taskIDs(got), "%s, limit %d", tc.name, limit)
			}
		}
		got := listAll(t, s, scanfleet.TaskFilter{})
		for i, task := range got {
			requireTask(t, all[len(all)-1-i], task)
		}

		_, _, err := s.ListTasks(ctx, scanfleet.TaskFilter{Status: []scanfleet.TaskStatus{"bogus"}})
		requireCode(t, err, scanfleet.EINVALID)
		_, _, err = s.ListTasks(ctx, scanfleet.TaskFilter{Page: scanfleet.Page{Cursor: "%%%"}})
		requireCode(t, err, scanfleet.EINVALID)
	},
	"ListPagesWhileWriting": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		var tasks []*scanfleet.Task
		for range 25 {
			tasks = append(tasks, newTask("a", scanfleet.TaskCreated, t0))
		}
		createTasks(t, s, tasks...)
		f := scanfleet.TaskFilter{Page: scanfleet.Page{Limit: 7}}
		var got []string
		for page := 0; ; page++ {
			list, next, err := s.ListTasks(ctx, f)
			require.NoError(t, err)
			got = append(got, taskIDs(list)...)
			if next == "" {
				require.Equal(t, 3, page, "pages of 7, 7, 7 and 4")
				require.Len(t, list, 4)
				break
			}
			require.Len(t, list, 7)
			// Newer tasks arriving between pages come before the cursor:
			// they neither repeat nor push rows out of later pages.
			createTasks(t, s, newTask("a", scanfleet.TaskCreated, t0))
			f.Page.Cursor = next
		}
		require.Equal(t, newestFirst(tasks), got, "no duplicate, no gap")
	},
	"TransitionTable": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		now := at(time.Hour)
		for _, from := range scanfleet.TaskStatuses {
			for _, to := range scanfleet.TaskStatuses {
				before := newTask("a", from, t0)
				if f := statusTime(before, from); f != nil {
					entered := at(time.Minute)
					*f = &entered
				}
				createTasks(t, s, before)
				got, err := s.TransitionTask(ctx, before.ID, scanfleet.TaskChange{Status: to}, now)
				name := fmt.Sprintf("%s→%s", from, to)
				if scanfleet.CanTransition(from, to) {
					require.NoError(t, err, name)
					want := *before
					want.Status = to
					want.UpdatedAt = now
					if f := statusTime(&want, to); f != nil {
						*f = &now // created has no time of its own
					}
					requireTask(t, &want, got)
				} else {
					requireCode(t, err, scanfleet.ECONFLICT, fmt.Sprintf("task %s is %s; it cannot become %s", before.ID, from, to))
					require.Nil(t, got, name)
				}
				stored, err := s.FindTask(ctx, before.ID)
				require.NoError(t, err)
				if scanfleet.CanTransition(from, to) {
					require.Equal(t, to, stored.Status, name)
				} else {
					requireTask(t, before, stored) // unchanged
				}
			}
		}
	},
	"TransitionFields": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		task := createTasks(t, s, newTask("a", scanfleet.TaskCreated, t0))[0]
		step := func(i int, c scanfleet.TaskChange) *scanfleet.Task {
			t.Helper()
			got, err := s.TransitionTask(ctx, task.ID, c, at(time.Duration(i)*time.Minute))
			require.NoError(t, err, "step %d", i)
			found, err := s.FindTask(ctx, task.ID)
			require.NoError(t, err)
			requireTask(t, got, found)
			return got
		}
		step(1, scanfleet.TaskChange{Status: scanfleet.TaskRequested})
		got := step(2, scanfleet.TaskChange{Status: scanfleet.TaskStarted, AddAttempt: true, WorkerID: ptr("w1")})
		require.Equal(t, 1, got.Attempts)
		require.Equal(t, "w1", got.WorkerID)
		requireTimePtr(t, ptr(at(2*time.Minute)), got.StartedAt, "started_at")

		// The lease lapsed: back to requested, the worker kept until a new
		// one takes it.
		got = step(3, scanfleet.TaskChange{Status: scanfleet.TaskRequested, Error: ptr("lease lost")})
		require.Equal(t, "w1", got.WorkerID)
		require.Equal(t, "lease lost", got.Error)
		requireTimePtr(t, ptr(at(3*time.Minute)), got.RequestedAt, "requested_at is the latest")
		got = step(4, scanfleet.TaskChange{Status: scanfleet.TaskStarted, AddAttempt: true, WorkerID: ptr("w2"), Error: ptr("")})
		require.Equal(t, 2, got.Attempts)
		require.Equal(t, "w2", got.WorkerID)
		require.Empty(t, got.Error)
		got = step(5, scanfleet.TaskChange{Status: scanfleet.TaskFinished, Output: json.RawMessage(`{"records":12}`)})
		require.Equal(t, `{"records":12}`, string(got.Output))
		require.Equal(t, 2, got.Attempts, "attempts change only when asked")
		requireTimePtr(t, ptr(at(5*time.Minute)), got.FinishedAt, "finished_at")
		requireTimePtr(t, ptr(at(4*time.Minute)), got.StartedAt, "started_at")
		requireTimePtr(t, nil, got.FailedAt, "failed_at")

		failed := createTasks(t, s, newTask("a", scanfleet.TaskCreated, t0))[0]
		got, err := s.TransitionTask(ctx, failed.ID, scanfleet.TaskChange{Status: scanfleet.TaskFailed, Error: ptr("no worker has raw sockets")}, at(time.Minute))
		require.NoError(t, err)
		require.Equal(t, "no worker has raw sockets", got.Error)
		requireTimePtr(t, ptr(at(time.Minute)), got.FailedAt, "failed_at")
	},
	"TransitionErrors": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		id := scanfleet.NewTaskID()
		_, err := s.TransitionTask(ctx, id, scanfleet.TaskChange{Status: scanfleet.TaskQueued}, t0)
		requireCode(t, err, scanfleet.ENOTFOUND, fmt.Sprintf("task %q not found", id))
		// Nothing may move to created, but a missing task is still missing.
		_, err = s.TransitionTask(ctx, id, scanfleet.TaskChange{Status: scanfleet.TaskCreated}, t0)
		requireCode(t, err, scanfleet.ENOTFOUND, fmt.Sprintf("task %q not found", id))
		task := createTasks(t, s, newTask("a", scanfleet.TaskCreated, t0))[0]
		_, err = s.TransitionTask(ctx, task.ID, scanfleet.TaskChange{Status: "bogus"}, t0)
		requireCode(t, err, scanfleet.EINVALID)
	},
	"TransitionRace": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		for round := range 10 {
			task := createTasks(t, s, newTask("a", scanfleet.TaskStarted, t0))[0]
			targets := []scanfleet.TaskStatus{scanfleet.TaskFinished, scanfleet.TaskCancelled}
			errs := make([]error, len(targets))
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i, to := range targets {
				wg.Go(func() {
					<-start
					_, errs[i] = s.TransitionTask(ctx, task.ID, scanfleet.TaskChange{Status: to}, at(time.Minute))
				})
			}
			close(start)
			wg.Wait()
			winners := 0
			var won scanfleet.TaskStatus
			for i, err := range errs {
				if err == nil {
					winners++
					won = targets[i]
				} else {
					requireCode(t, err, scanfleet.ECONFLICT)
					require.True(t, strings.HasPrefix(scanfleet.ErrorMessage(err), "task "+task.ID+" is "), scanfleet.ErrorMessage(err))
				}
			}
			require.Equal(t, 1, winners, "round %d: exactly one transition wins", round)
			got, err := s.FindTask(ctx, task.ID)
			require.NoError(t, err)
			require.Equal(t, won, got.Status)
		}
	},
	"CountByStatus": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		counts, err := s.CountTasksByStatus(ctx)
		require.NoError(t, err)
		for _, st := range scanfleet.TaskStatuses {
			require.Zero(t, counts[st])
		}
		createWorkspace(t, s, "a")
		for i, n := range []int{3, 0, 2, 1, 0, 4, 0} {
			for range n {
				createTasks(t, s, newTask("a", scanfleet.TaskStatuses[i], t0))
			}
		}
		counts, err = s.CountTasksByStatus(ctx)
		require.NoError(t, err)
		require.Equal(t, map[scanfleet.TaskStatus]int64{
			scanfleet.TaskCreated: 3, scanfleet.TaskQueued: 0, scanfleet.TaskRequested: 2, scanfleet.TaskStarted: 1,
			scanfleet.TaskFinished: 0, scanfleet.TaskFailed: 4, scanfleet.TaskCancelled: 0,
		}, counts)
	},
}

var taskLogTests = map[string]func(*testing.T, scanfleet.Store){
	"AppendList": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		task := createTasks(t, s, newTask("a", scanfleet.TaskStarted, t0))[0]
		logs, err := s.ListTaskLogs(ctx, task.ID, 0, 0)
		require.NoError(t, err)
		require.Empty(t, logs)

		require.NoError(t, s.AppendTaskLogs(ctx, task.ID, []string{"one", "two", "three"}, at(time.Second)))
		require.NoError(t, s.AppendTaskLogs(ctx, task.ID, nil, at(2*time.Second)))
		require.NoError(t, s.AppendTaskLogs(ctx, task.ID, []string{"four", "", "six ✓"}, at(3*time.Second)))
		logs, err = s.ListTaskLogs(ctx, task.ID, 0, 0)
		require.NoError(t, err)
		require.Len(t, logs, 6)
		for i, l := range logs {
			require.Equal(t, int64(i+1), l.Seq)
		}
		require.Equal(t, []string{"one", "two", "three", "four", "", "six ✓"}, logLines(logs))
		requireTime(t, at(time.Second), logs[0].Time, "time")
		requireTime(t, at(3*time.Second), logs[5].Time, "time")

		logs, err = s.ListTaskLogs(ctx, task.ID, 3, 0)
		require.NoError(t, err)
		require.Equal(t, []string{"four", "", "six ✓"}, logLines(logs))
		logs, err = s.ListTaskLogs(ctx, task.ID, 1, 2)
		require.NoError(t, err)
		require.Equal(t, []string{"two", "three"}, logLines(logs))
		logs, err = s.ListTaskLogs(ctx, task.ID, 6, 10)
		require.NoError(t, err)
		require.Empty(t, logs)
		_, err = s.ListTaskLogs(ctx, task.ID, 0, -1)
		requireCode(t, err, scanfleet.EINVALID)
	},
	"UnknownTask": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		id := scanfleet.NewTaskID()
		msg := fmt.Sprintf("task %q not found", id)
		requireCode(t, s.AppendTaskLogs(ctx, id, []string{"x"}, t0), scanfleet.ENOTFOUND, msg)
		_, err := s.ListTaskLogs(ctx, id, 0, 0)
		requireCode(t, err, scanfleet.ENOTFOUND, msg)
	},
	"ManyLines": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		task := createTasks(t, s, newTask("a", scanfleet.TaskStarted, t0))[0]
		lines := make([]string, 1234)
		for i := range lines {
			lines[i] = fmt.Sprintf("line %d", i+1)
		}
		require.NoError(t, s.AppendTaskLogs(ctx, task.ID, lines, t0))
		logs, err := s.ListTaskLogs(ctx, task.ID, 0, 5000)
		require.NoError(t, err)
		require.Equal(t, lines, logLines(logs))
		require.Equal(t, int64(1234), logs[len(logs)-1].Seq)
	},
	"ConcurrentAppends": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		task := createTasks(t, s, newTask("a", scanfleet.TaskStarted, t0))[0]
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := range 5 {
					lines := []string{fmt.Sprintf("w%d-%d-a", w, i), fmt.Sprintf("w%d-%d-b", w, i)}
					if err := s.AppendTaskLogs(ctx, task.ID, lines, t0); err != nil {
						t.Errorf("append: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		logs, err := s.ListTaskLogs(ctx, task.ID, 0, 0)
		require.NoError(t, err)
		require.Len(t, logs, 40)
		for i, l := range logs {
			require.Equal(t, int64(i+1), l.Seq)
			// One append's lines stay together.
			if strings.HasSuffix(l.Line, "-a") {
				require.Equal(t, strings.TrimSuffix(l.Line, "-a")+"-b", logs[i+1].Line)
			}
		}
	},
	"Cap": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		for _, tc := range []struct {
			name      string
			appends   []int // lines per append
			stored    int   // lines stored, the marker included
			truncated bool
		}{
			{"under", []int{9999}, 9999, false},
			{"exactly", []int{scanfleet.MaxTaskLogLines}, scanfleet.MaxTaskLogLines, false},
			{"one over", []int{scanfleet.MaxTaskLogLines + 1}, scanfleet.MaxTaskLogLines + 1, true},
			{"across appends", []int{9998, 5}, scanfleet.MaxTaskLogLines + 1, true},
			{"full, then more", []int{scanfleet.MaxTaskLogLines, 1, 3}, scanfleet.MaxTaskLogLines + 1, true},
			{"after the marker", []int{scanfleet.MaxTaskLogLines + 2, 1, 0, 2}, scanfleet.MaxTaskLogLines + 1, true},
		} {
			task := createTasks(t, s, newTask("a", scanfleet.TaskStarted, t0))[0]
			var written []string
			for i, n := range tc.appends {
				lines := make([]string, n)
				for j := range lines {
					lines[j] = fmt.Sprintf("line %d", len(written)+j+1)
				}
				written = append(written, lines...)
				require.NoError(t, s.AppendTaskLogs(ctx, task.ID, lines, at(time.Duration(i)*time.Second)), tc.name)
			}
			logs := allLogs(t, s, task.ID)
			require.Len(t, logs, tc.stored, tc.name)
			for i, l := range logs {
				require.Equal(t, int64(i+1), l.Seq, tc.name)
				if i < scanfleet.MaxTaskLogLines {
					require.Equal(t, written[i], l.Line, tc.name)
				}
			}
			if tc.truncated {
				require.Equal(t, truncationMarker, logs[len(logs)-1].Line, tc.name)
			}
			got, err := s.FindTask(ctx, task.ID)
			require.NoError(t, err)
			require.Equal(t, tc.truncated, got.LogTruncated, tc.name)
		}
	},
	"CapConcurrent": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		task := createTasks(t, s, newTask("a", scanfleet.TaskStarted, t0))[0]
		lines := make([]string, scanfleet.MaxTaskLogLines-10)
		for i := range lines {
			lines[i] = "early"
		}
		require.NoError(t, s.AppendTaskLogs(ctx, task.ID, lines, t0))
		// 8 appends of 5 lines race for the last 10 places: two of them
		// fit, one is cut by the marker, the rest are dropped.
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				batch := []string{}
				for i := range 5 {
					batch = append(batch, fmt.Sprintf("w%d-%d", w, i))
				}
				if err := s.AppendTaskLogs(ctx, task.ID, batch, t0); err != nil {
					t.Errorf("append: %v", err)
				}
			})
		}
		wg.Wait()
		logs := allLogs(t, s, task.ID)
		require.Len(t, logs, scanfleet.MaxTaskLogLines+1)
		markers := 0
		for i, l := range logs {
			require.Equal(t, int64(i+1), l.Seq)
			if l.Line == truncationMarker {
				markers++
			}
		}
		require.Equal(t, 1, markers)
		require.Equal(t, truncationMarker, logs[len(logs)-1].Line)
		got, err := s.FindTask(ctx, task.ID)
		require.NoError(t, err)
		require.True(t, got.LogTruncated)
	},
}

// truncationMarker is the log line that replaces the first line past the
// cap. Its wording is part of what users see, so the suite pins it.
var truncationMarker = fmt.Sprintf("[scanfleet] log truncated: this task wrote more than %d lines; later lines are not stored",
	scanfleet.MaxTaskLogLines)

// allLogs reads every stored log line of the task, page by page.
func allLogs(t *testing.T, s scanfleet.Store, id string) []scanfleet.TaskLog {
	t.Helper()
	var out []scanfleet.TaskLog
	for {
		var after int64
		if len(out) > 0 {
			after = out[len(out)-1].Seq
		}
		page, err := s.ListTaskLogs(t.Context(), id, after, 10000)
		require.NoError(t, err)
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
	}
}

func logLines(logs []scanfleet.TaskLog) []string {
	out := make([]string, len(logs))
	for i, l := range logs {
		out[i] = l.Line
	}
	return out
}
