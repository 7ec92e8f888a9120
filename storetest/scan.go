package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
)

// newScan returns an unsaved, enabled scan of the workspaces.
func newScan(name string, workspaces ...string) *scanfleet.Scan {
	return &scanfleet.Scan{
		Name:       name,
		Type:       "portscan",
		Args:       map[string]any{"ports": "22,80,443", "retries": int64(2), "tags": []string{"prod", "dmz"}, "fast": true},
		Workspaces: workspaces,
		Frequency:  scanfleet.Duration(24 * time.Hour),
		Timeout:    scanfleet.Duration(30 * time.Minute),
		Site:       "dc1",
		Enabled:    true,
		CreatedAt:  t0,
	}
}

func requireScan(t *testing.T, want, got *scanfleet.Scan) {
	t.Helper()
	require.Equal(t, want.ID, got.ID)
	require.Equal(t, want.Name, got.Name)
	require.Equal(t, want.Type, got.Type)
	requireJSONEqual(t, want.Args, got.Args, "args")
	require.Equal(t, want.Workspaces, got.Workspaces)
	require.Equal(t, want.Frequency, got.Frequency)
	require.Equal(t, want.Cron, got.Cron)
	require.Equal(t, want.Timeout, got.Timeout)
	require.Equal(t, want.Site, got.Site)
	require.Equal(t, want.SingleRun, got.SingleRun)
	require.Equal(t, want.Enabled, got.Enabled)
	require.Equal(t, want.ManualRunPending, got.ManualRunPending)
	requireTimePtr(t, want.LastRunAt, got.LastRunAt, "last_run_at")
	requireTime(t, want.CreatedAt, got.CreatedAt, "created_at")
}

var scanTests = map[string]func(*testing.T, scanfleet.Store){
	"CreateFind": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		createWorkspace(t, s, "b")
		sc := newScan("nightly", "b", "a")
		sc.Cron, sc.Frequency = "0 3 * * *", 0
		sc.ManualRunPending = true
		require.NoError(t, s.CreateScan(ctx, sc))
		require.NotEmpty(t, sc.ID)
		got, err := s.FindScan(ctx, sc.ID)
		require.NoError(t, err)
		requireScan(t, sc, got)
		require.Equal(t, []string{"b", "a"}, got.Workspaces, "the scan's order is kept")
		requireTime(t, t0, got.UpdatedAt, "updated_at")
	},
	"UnknownWorkspace": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		err := s.CreateScan(ctx, newScan("nightly", "a", "ghost"))
		requireCode(t, err, scanfleet.EINVALID, `workspaces[1]: workspace "ghost" does not exist`)
		scans, _, err := s.ListScans(ctx, scanfleet.ScanFilter{})
		require.NoError(t, err)
		require.Empty(t, scans, "nothing written")
	},
	"NameConflict": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		require.NoError(t, s.CreateScan(ctx, newScan("nightly", "a")))
		err := s.CreateScan(ctx, newScan("nightly", "a"))
		requireCode(t, err, scanfleet.ECONFLICT, `scan "nightly" already exists`)
	},
	"NotFound": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		id := scanfleet.NewID()
		msg := fmt.Sprintf("scan %q not found", id)
		_, err := s.FindScan(ctx, id)
		requireCode(t, err, scanfleet.ENOTFOUND, msg)
		sc := newScan("x", "a")
		sc.ID = id
		requireCode(t, s.UpdateScan(ctx, sc), scanfleet.ENOTFOUND, msg)
		_, err = s.DeleteScan(ctx, id, t0)
		requireCode(t, err, scanfleet.ENOTFOUND, msg)
		requireCode(t, s.CreateScanTasks(ctx, id, []*scanfleet.Task{newTask("a", scanfleet.TaskCreated, t0)}, t0), scanfleet.ENOTFOUND, msg)
		tasks, _, err := s.ListTasks(ctx, scanfleet.TaskFilter{})
		require.NoError(t, err)
		require.Empty(t, tasks, "no task of a missing scan is stored")
	},
	"Update": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		for _, n := range []string{"a", "b", "c"} {
			createWorkspace(t, s, n)
		}
		sc := newScan("nightly", "a", "b")
		require.NoError(t, s.CreateScan(ctx, sc))
		other := newScan("weekly", "a")
		require.NoError(t, s.CreateScan(ctx, other))
		run := at(time.Hour)
		require.NoError(t, s.CreateScanTasks(ctx, sc.ID, nil, run))

		// The caller's copy is stale: it has no last_run_at. The update
		// must not undo the run.
		upd := *sc
		upd.Name = "renamed"
		upd.Args = map[string]any{"ports": "8080"}
		upd.Workspaces = []string{"c", "a"}
		upd.Enabled = false
		upd.Frequency = 0
		upd.Cron = "@daily"
		upd.SingleRun = true
		require.NoError(t, s.UpdateScan(ctx, &upd))
		require.True(t, upd.UpdatedAt.After(t0))
		got, err := s.FindScan(ctx, sc.ID)
		require.NoError(t, err)
		upd.LastRunAt = &run
		requireScan(t, &upd, got)

		bad := *got
		bad.Name = "weekly"
		requireCode(t, s.UpdateScan(ctx, &bad), scanfleet.ECONFLICT, `scan "weekly" already exists`)
		bad = *got
		bad.Workspaces = []string{"ghost"}
		requireCode(t, s.UpdateScan(ctx, &bad), scanfleet.EINVALID, `workspaces[0]: workspace "ghost" does not exist`)
		after, err := s.FindScan(ctx, sc.ID)
		require.NoError(t, err)
		requireScan(t, got, after)
	},
	"List": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		createWorkspace(t, s, "b")
		var want []*scanfleet.Scan
		for i := range 9 {
			ws := []string{"a"}
			if i%3 == 0 {
				ws = []string{"b"}
			}
			sc := newScan(fmt.Sprintf("scan %d", i), ws...)
			sc.CreatedAt = at(time.Duration(i/2) * time.Minute) // pairs share a time: the id breaks the tie
			sc.Enabled = i%2 == 0
			if i%4 == 0 {
				sc.Type = "dns"
			}
			require.NoError(t, s.CreateScan(ctx, sc))
			want = append(want, sc)
		}
		// Ties in created_at are ordered by id; ids are time-ordered.
		var got []*scanfleet.Scan
		f := scanfleet.ScanFilter{Page: scanfleet.Page{Limit: 2}}
		for calls := 0; ; calls++ {
			require.Less(t, calls, 6)
			page, next, err := s.ListScans(ctx, f)
			require.NoError(t, err)
			got = append(got, page...)
			if next == "" {
				break
			}
			f.Page.Cursor = next
		}
		require.Len(t, got, len(want))
		for i := range want {
			requireScan(t, want[i], got[i])
		}

		names := func(f scanfleet.ScanFilter) []string {
			scans, _, err := s.ListScans(ctx, f)
			require.NoError(t, err)
			var out []string
			for _, sc := range scans {
				out = append(out, sc.Name)
			}
			return out
		}
		require.Equal(t, []string{"scan 0", "scan 3", "scan 6"}, names(scanfleet.ScanFilter{Workspace: "b"}))
		require.Equal(t, []string{"scan 0", "scan 4", "scan 8"}, names(scanfleet.ScanFilter{Type: "dns"}))
		require.Equal(t, []string{"scan 1", "scan 3", "scan 5", "scan 7"}, names(scanfleet.ScanFilter{Enabled: ptr(false)}))
		require.Equal(t, []string{"scan 0", "scan 6"}, names(scanfleet.ScanFilter{Workspace: "b", Enabled: ptr(true)}))
		require.Empty(t, names(scanfleet.ScanFilter{Workspace: "nope"}))

		_, _, err := s.ListScans(ctx, scanfleet.ScanFilter{Page: scanfleet.Page{Cursor: "bm9wZQ"}})
		requireCode(t, err, scanfleet.EINVALID)
	},
	"DeleteCancelsPendingKeepsDone": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		sc := newScan("nightly", "a")
		require.NoError(t, s.CreateScan(ctx, sc))
		other := newScan("other", "a")
		require.NoError(t, s.CreateScan(ctx, other))
		var tasks []*scanfleet.Task
		for _, st := range []scanfleet.TaskStatus{scanfleet.TaskFinished, scanfleet.TaskCreated, scanfleet.TaskQueued, scanfleet.TaskRequested} {
			task := newTask("a", st, t0)
			task.ScanID = sc.ID
			tasks = append(tasks, task)
		}
		require.NoError(t, s.CreateScanTasks(ctx, sc.ID, tasks, t0))
		started := claim(t, s, createTasks(t, s, func() *scanfleet.Task {
			task := requestedTask("a", scanfleet.PoolExternal, "", "noop")
			task.ScanID = sc.ID
			return task
		}())[0], "w1", t0)
		theirs := newTask("a", scanfleet.TaskCreated, t0)
		theirs.ScanID = other.ID
		require.NoError(t, s.CreateScanTasks(ctx, other.ID, []*scanfleet.Task{theirs}, t0))

		flagged, err := s.DeleteScan(ctx, sc.ID, at(time.Minute))
		require.NoError(t, err)
		require.Len(t, flagged, 1)
		require.Equal(t, started.ID, flagged[0].ID)
		require.True(t, flagged[0].CancelRequested)
		_, err = s.FindScan(ctx, sc.ID)
		requireCode(t, err, scanfleet.ENOTFOUND)
		got, err := s.FindTask(ctx, tasks[0].ID)
		require.NoError(t, err)
		require.Equal(t, sc.ID, got.ScanID, "the task still says which scan made it")
		require.Equal(t, scanfleet.TaskFinished, got.Status, "a done task stays as it was")
		for _, task := range tasks[1:] {
			got, err := s.FindTask(ctx, task.ID)
			require.NoError(t, err)
			require.Equal(t, scanfleet.TaskCancelled, got.Status, "was %s", task.Status)
			require.Contains(t, got.Error, "scan was deleted")
		}
		got, err = s.FindTask(ctx, theirs.ID)
		require.NoError(t, err)
		require.Equal(t, scanfleet.TaskCreated, got.Status, "another scan's task is not touched")
		_, err = s.FindWorkspace(ctx, "a")
		require.NoError(t, err)
		// The name is free again.
		require.NoError(t, s.CreateScan(ctx, newScan("nightly", "a")))
	},
	"CreateScanTasks": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		createWorkspace(t, s, "b")
		repeat := newScan("repeat", "a", "b")
		repeat.ManualRunPending = true
		once := newScan("once", "a")
		once.SingleRun = true
		once.ManualRunPending = true
		require.NoError(t, s.CreateScan(ctx, repeat))
		require.NoError(t, s.CreateScan(ctx, once))

		run := at(time.Hour)
		var tasks []*scanfleet.Task
		for _, ws := range repeat.Workspaces {
			task := newTask(ws, scanfleet.TaskCreated, run)
			task.ScanID = repeat.ID
			tasks = append(tasks, task)
		}
		require.NoError(t, s.CreateScanTasks(ctx, repeat.ID, tasks, run))
		got, err := s.FindScan(ctx, repeat.ID)
		require.NoError(t, err)
		requireTimePtr(t, &run, got.LastRunAt, "last_run_at")
		require.False(t, got.ManualRunPending)
		require.True(t, got.Enabled, "a repeating scan stays enabled")
		stored, _, err := s.ListTasks(ctx, scanfleet.TaskFilter{ScanID: repeat.ID})
		require.NoError(t, err)
		require.Len(t, stored, 2)

		task := newTask("a", scanfleet.TaskCreated, run)
		task.ScanID = once.ID
		require.NoError(t, s.CreateScanTasks(ctx, once.ID, []*scanfleet.Task{task}, run))
		got, err = s.FindScan(ctx, once.ID)
		require.NoError(t, err)
		require.False(t, got.Enabled, "a single-run scan is disabled by its run")
		require.False(t, got.ManualRunPending)
		requireTimePtr(t, &run, got.LastRunAt, "last_run_at")

		// One transaction: a bad task leaves the scan as it was.
		third := newScan("third", "a")
		require.NoError(t, s.CreateScan(ctx, third))
		later := at(2 * time.Hour)
		bad := []*scanfleet.Task{newTask("a", scanfleet.TaskCreated, later), newTask("ghost", scanfleet.TaskCreated, later)}
		err = s.CreateScanTasks(ctx, third.ID, bad, later)
		requireCode(t, err, scanfleet.EINVALID, `task workspace: workspace "ghost" does not exist`)
		got, err = s.FindScan(ctx, third.ID)
		require.NoError(t, err)
		require.Nil(t, got.LastRunAt)
		_, err = s.FindTask(ctx, bad[0].ID)
		requireCode(t, err, scanfleet.ENOTFOUND)
	},
}
