package storetest

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
)

// testLease is the lease the suite's workers take.
const testLease = 30 * time.Second

// requestedTask returns an unsaved requested task of the pool, site and
// type.
func requestedTask(workspace string, pool scanfleet.Pool, site, typ string) *scanfleet.Task {
	task := newTask(workspace, scanfleet.TaskRequested, t0)
	task.Pool, task.Site, task.Type = pool, site, typ
	task.RequestedAt = ptr(t0)
	return task
}

// claimed returns task as it reads after worker claimed it at now.
func claimed(task *scanfleet.Task, worker string, now time.Time) *scanfleet.Task {
	c := *task
	c.Status = scanfleet.TaskStarted
	c.StartedAt = &now
	c.WorkerID = worker
	c.Attempts++
	c.LeaseExpiresAt = ptr(now.Add(testLease))
	c.CancelRequested = false
	c.Progress = scanfleet.Progress{}
	c.UpdatedAt = now
	return &c
}

// claim claims the requested task for worker at now.
func claim(t *testing.T, s scanfleet.Store, task *scanfleet.Task, worker string, now time.Time) *scanfleet.Task {
	t.Helper()
	got, err := s.ClaimTask(t.Context(), task.ID, worker, testLease, now)
	require.NoError(t, err)
	return got
}

// requireStored checks that the stored task is want.
func requireStored(t *testing.T, s scanfleet.Store, want *scanfleet.Task) {
	t.Helper()
	got, err := s.FindTask(t.Context(), want.ID)
	require.NoError(t, err)
	requireTask(t, want, got)
}

var leaseTests = map[string]func(*testing.T, scanfleet.Store){
	"Claim": func(t *testing.T, s scanfleet.Store) {
		createWorkspace(t, s, "a")
		// A retry: the earlier attempt left an error and some progress.
		task := requestedTask("a", scanfleet.PoolExternal, "", "noop")
		task.Attempts = 1
		task.Error = "lease lapsed on worker w0 (attempt 1 of 3)"
		task.Progress = scanfleet.Progress{Done: 5, Total: 10}
		createTasks(t, s, task)
		now := at(time.Hour)
		got := claim(t, s, task, "w1", now)
		want := claimed(task, "w1", now)
		requireTask(t, want, got)
		requireStored(t, s, want)
		require.Equal(t, 2, got.Attempts)
		require.Equal(t, task.Error, got.Error, "the reason for the retry stays until the task ends")
	},
	"ClaimConflicts": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		for _, status := range scanfleet.TaskStatuses {
			if status == scanfleet.TaskRequested {
				continue
			}
			task := createTasks(t, s, newTask("a", status, t0))[0]
			got, err := s.ClaimTask(ctx, task.ID, "w1", testLease, at(time.Minute))
			requireCode(t, err, scanfleet.ECONFLICT, fmt.Sprintf("task %s is %s; it cannot be claimed", task.ID, status))
			require.Nil(t, got)
			requireStored(t, s, task)
		}
		id := scanfleet.NewTaskID()
		_, err := s.ClaimTask(ctx, id, "w1", testLease, t0)
		requireCode(t, err, scanfleet.ENOTFOUND, fmt.Sprintf("task %q not found", id))

		task := createTasks(t, s, requestedTask("a", scanfleet.PoolExternal, "", "noop"))[0]
		for _, tc := range []struct {
			worker string
			lease  time.Duration
		}{{"", testLease}, {"w1", 0}, {"w1", -time.Second}} {
			_, err := s.ClaimTask(ctx, task.ID, tc.worker, tc.lease, t0)
			requireCode(t, err, scanfleet.EINVALID)
		}
		requireStored(t, s, task)
	},
	"ClaimRace": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		for round := range 10 {
			task := createTasks(t, s, requestedTask("a", scanfleet.PoolExternal, "", "noop"))[0]
			errs := make([]error, 4)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range errs {
				wg.Go(func() {
					<-start
					_, errs[i] = s.ClaimTask(ctx, task.ID, fmt.Sprintf("w%d", i), testLease, at(time.Minute))
				})
			}
			close(start)
			wg.Wait()
			winner := ""
			for i, err := range errs {
				if err == nil {
					require.Empty(t, winner, "round %d: two claims won", round)
					winner = fmt.Sprintf("w%d", i)
				} else {
					requireCode(t, err, scanfleet.ECONFLICT, fmt.Sprintf("task %s is started; it cannot be claimed", task.ID))
				}
			}
			require.NotEmpty(t, winner, "round %d: no claim won", round)
			requireStored(t, s, claimed(task, winner, at(time.Minute)))
		}
	},
	"ClaimNextFilters": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		const (
			ext   = scanfleet.PoolExternal
			inter = scanfleet.PoolInternal
			bare  = scanfleet.PoolBaremetal
		)
		// Created in this order, so A is the oldest.
		fixtures := []struct {
			name   string
			pool   scanfleet.Pool
			site   string
			typ    string
			status scanfleet.TaskStatus
		}{
			{"A", ext, "", "portscan", scanfleet.TaskRequested},
			{"B", ext, "dc1", "portscan", scanfleet.TaskRequested},
			{"C", ext, "dc2", "portscan", scanfleet.TaskRequested},
			{"D", ext, "", "dns", scanfleet.TaskRequested},
			{"E", inter, "", "portscan", scanfleet.TaskRequested},
			{"F", ext, "dc1", "dns", scanfleet.TaskRequested},
			{"G", bare, "dc1", "synscan", scanfleet.TaskRequested},
			{"H", ext, "", "portscan", scanfleet.TaskCreated},
			{"I", ext, "", "portscan", scanfleet.TaskQueued},
			{"J", ext, "dc1", "portscan", scanfleet.TaskStarted},
			{"K", ext, "", "portscan", scanfleet.TaskCancelled},
		}
		for i, tc := range []struct {
			name string
			f    scanfleet.ClaimFilter
			want []string
		}{
			{"no site takes siteless tasks only", scanfleet.ClaimFilter{Pool: ext, Types: []string{"portscan"}, Max: 10}, []string{"A"}},
			{"several types", scanfleet.ClaimFilter{Pool: ext, Types: []string{"portscan", "dns"}, Max: 10}, []string{"A", "D"}},
			{"a site takes its own and siteless tasks", scanfleet.ClaimFilter{Pool: ext, Site: "dc1", Types: []string{"portscan", "dns"}, Max: 10}, []string{"A", "B", "D", "F"}},
			{"another site", scanfleet.ClaimFilter{Pool: ext, Site: "dc2", Types: []string{"portscan"}, Max: 10}, []string{"A", "C"}},
			{"a site without tasks", scanfleet.ClaimFilter{Pool: ext, Site: "dc3", Types: []string{"portscan", "dns"}, Max: 10}, []string{"A", "D"}},
			{"another pool", scanfleet.ClaimFilter{Pool: inter, Types: []string{"portscan", "dns"}, Max: 10}, []string{"E"}},
			{"baremetal at its site", scanfleet.ClaimFilter{Pool: bare, Site: "dc1", Types: []string{"synscan"}, Max: 10}, []string{"G"}},
			{"baremetal without the site", scanfleet.ClaimFilter{Pool: bare, Types: []string{"synscan"}, Max: 10}, nil},
			{"no types", scanfleet.ClaimFilter{Pool: ext, Site: "dc1", Max: 10}, nil},
			{"an unknown type", scanfleet.ClaimFilter{Pool: ext, Site: "dc1", Types: []string{"traceroute"}, Max: 10}, nil},
			{"max 1 takes the oldest", scanfleet.ClaimFilter{Pool: ext, Site: "dc1", Types: []string{"dns", "portscan"}, Max: 1}, []string{"A"}},
			{"max 3", scanfleet.ClaimFilter{Pool: ext, Site: "dc1", Types: []string{"dns", "portscan"}, Max: 3}, []string{"A", "B", "D"}},
		} {
			// Types of their own keep the cases apart.
			prefix := fmt.Sprintf("case%d-", i)
			tasks := map[string]*scanfleet.Task{}
			for _, fx := range fixtures {
				task := requestedTask("a", fx.pool, fx.site, prefix+fx.typ)
				task.Status = fx.status
				createTasks(t, s, task)
				tasks[fx.name] = task
			}
			f := tc.f
			f.Types = nil
			for _, typ := range tc.f.Types {
				f.Types = append(f.Types, prefix+typ)
			}
			worker := fmt.Sprintf("w%d", i)
			now := at(time.Duration(i) * time.Minute)
			got, err := s.ClaimNext(ctx, f, worker, testLease, now)
			require.NoError(t, err, tc.name)
			require.NotNil(t, got, tc.name)
			var wantIDs []string
			for _, name := range tc.want {
				wantIDs = append(wantIDs, tasks[name].ID)
			}
			require.Equal(t, wantIDs, append([]string(nil), taskIDs(got)...), tc.name)
			for j, task := range got {
				requireTask(t, claimed(tasks[tc.want[j]], worker, now), task)
			}
			for name, task := range tasks {
				if slices.Contains(tc.want, name) {
					requireStored(t, s, claimed(task, worker, now))
				} else {
					requireStored(t, s, task)
				}
			}
		}
	},
	"ClaimNextErrors": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		task := createTasks(t, s, requestedTask("a", scanfleet.PoolExternal, "", "noop"))[0]
		ok := scanfleet.ClaimFilter{Pool: scanfleet.PoolExternal, Types: []string{"noop"}, Max: 1}
		for _, tc := range []struct {
			name   string
			f      func(*scanfleet.ClaimFilter)
			worker string
			lease  time.Duration
			msg    string
		}{
			{"no pool", func(f *scanfleet.ClaimFilter) { f.Pool = "" }, "w1", testLease, `pool: "" is not one of external, internal, baremetal`},
			{"unknown pool", func(f *scanfleet.ClaimFilter) { f.Pool = "gpu" }, "w1", testLease, `pool: "gpu" is not one of external, internal, baremetal`},
			{"max 0", func(f *scanfleet.ClaimFilter) { f.Max = 0 }, "w1", testLease, "max: 0 is less than 1"},
			{"max negative", func(f *scanfleet.ClaimFilter) { f.Max = -2 }, "w1", testLease, "max: -2 is less than 1"},
			{"no worker", func(*scanfleet.ClaimFilter) {}, "", testLease, "worker id: is empty"},
			{"no lease", func(*scanfleet.ClaimFilter) {}, "w1", 0, "lease: 0s is not positive"},
		} {
			f := ok
			tc.f(&f)
			got, err := s.ClaimNext(ctx, f, tc.worker, tc.lease, t0)
			requireCode(t, err, scanfleet.EINVALID, tc.msg)
			require.Nil(t, got, tc.name)
		}
		requireStored(t, s, task)
	},
	"ClaimNextRace": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		var tasks []*scanfleet.Task
		for range 200 {
			tasks = append(tasks, requestedTask("a", scanfleet.PoolExternal, "", "noop"))
		}
		createTasks(t, s, tasks...)
		f := scanfleet.ClaimFilter{Pool: scanfleet.PoolExternal, Types: []string{"noop"}, Max: 7}
		var (
			mu        sync.Mutex
			claimedBy = map[string]string{}
			wg        sync.WaitGroup
		)
		took := func(worker string, task *scanfleet.Task) {
			mu.Lock()
			defer mu.Unlock()
			if prev, ok := claimedBy[task.ID]; ok {
				t.Errorf("task %s claimed by %s and by %s", task.ID, prev, worker)
			}
			claimedBy[task.ID] = worker
		}
		start := make(chan struct{})
		// Four pollers, and a dispatcher claiming tasks one by one from
		// the newest, all at once.
		for w := range 4 {
			worker := fmt.Sprintf("poller%d", w)
			wg.Go(func() {
				<-start
				for {
					got, err := s.ClaimNext(ctx, f, worker, testLease, at(time.Minute))
					if err != nil {
						t.Errorf("%s: %v", worker, err)
						return
					}
					if len(got) == 0 {
						return
					}
					if len(got) > f.Max {
						t.Errorf("%s: claimed %d tasks, more than %d", worker, len(got), f.Max)
					}
					for _, task := range got {
						if task.WorkerID != worker || task.Attempts != 1 {
							t.Errorf("%s: claimed task %s of worker %q, attempt %d", worker, task.ID, task.WorkerID, task.Attempts)
						}
						took(worker, task)
					}
				}
			})
		}
		wg.Go(func() {
			<-start
			for _, task := range slices.Backward(tasks) {
				got, err := s.ClaimTask(ctx, task.ID, "dispatched", testLease, at(time.Minute))
				if err == nil {
					took("dispatched", got)
				} else if scanfleet.ErrorCode(err) != scanfleet.ECONFLICT {
					t.Errorf("dispatch: %v", err)
				}
			}
		})
		close(start)
		wg.Wait()
		require.Len(t, claimedBy, len(tasks), "every task claimed once")
		started := listAll(t, s, scanfleet.TaskFilter{Status: []scanfleet.TaskStatus{scanfleet.TaskStarted}})
		require.Len(t, started, len(tasks))
		for _, task := range started {
			require.Equal(t, 1, task.Attempts, "task %s", task.ID)
			require.Equal(t, claimedBy[task.ID], task.WorkerID, "task %s", task.ID)
		}
	},
	"Renew": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		task := createTasks(t, s, requestedTask("a", scanfleet.PoolExternal, "", "noop"))[0]
		want := claim(t, s, task, "w1", t0)

		renew := func(d time.Duration, lease time.Duration, p *scanfleet.Progress) {
			t.Helper()
			got, err := s.RenewLease(ctx, task.ID, "w1", lease, p, at(d))
			require.NoError(t, err)
			want.LeaseExpiresAt = ptr(at(d + lease))
			want.UpdatedAt = at(d)
			if p != nil {
				want.Progress = *p
			}
			requireTask(t, want, got)
			requireStored(t, s, want)
		}
		renew(10*time.Second, testLease, &scanfleet.Progress{Done: 3, Total: 10})
		renew(20*time.Second, time.Minute, nil) // progress stays
		renew(30*time.Second, testLease, &scanfleet.Progress{Done: 10, Total: 10})
		// Lapsed, but nobody expired it or took the task: the worker keeps it.
		renew(5*time.Minute, testLease, nil)

		_, err := s.RenewLease(ctx, task.ID, "w2", testLease, nil, at(5*time.Minute))
		requireCode(t, err, scanfleet.ECONFLICT, fmt.Sprintf("task %s is held by another worker; worker w2 lost its lease", task.ID))
		for _, tc := range []struct {
			lease time.Duration
			p     *scanfleet.Progress
		}{{0, nil}, {testLease, &scanfleet.Progress{Done: -1}}, {testLease, &scanfleet.Progress{Total: -1}}} {
			_, err := s.RenewLease(ctx, task.ID, "w1", tc.lease, tc.p, at(6*time.Minute))
			requireCode(t, err, scanfleet.EINVALID)
		}
		requireStored(t, s, want)

		// A cancel request reaches the worker with its next renewal.
		_, err = s.RequestCancel(ctx, task.ID, at(6*time.Minute))
		require.NoError(t, err)
		got, err := s.RenewLease(ctx, task.ID, "w1", testLease, nil, at(7*time.Minute))
		require.NoError(t, err)
		require.True(t, got.CancelRequested)
		require.Equal(t, scanfleet.TaskStarted, got.Status)

		_, err = s.FinishTask(ctx, task.ID, "w1", scanfleet.TaskChange{Status: scanfleet.TaskCancelled}, at(8*time.Minute))
		require.NoError(t, err)
		_, err = s.RenewLease(ctx, task.ID, "w1", testLease, nil, at(9*time.Minute))
		requireCode(t, err, scanfleet.ECONFLICT, fmt.Sprintf("task %s is cancelled; worker w1 no longer holds it", task.ID))

		id := scanfleet.NewTaskID()
		_, err = s.RenewLease(ctx, id, "w1", testLease, nil, t0)
		requireCode(t, err, scanfleet.ENOTFOUND, fmt.Sprintf("task %q not found", id))
	},
	"Finish": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		const earlier = "lease lapsed on worker w0 (attempt 1 of 3)"
		now := at(3 * time.Minute)
		for _, tc := range []struct {
			name            string
			change          scanfleet.TaskChange
			cancelRequested bool
			// want turns the started task into the finished one.
			want func(w *scanfleet.Task)
		}{
			{"finished", scanfleet.TaskChange{Status: scanfleet.TaskFinished, Output: json.RawMessage(`{"hosts":3}`)}, false,
				func(w *scanfleet.Task) {
					w.Status, w.FinishedAt, w.Output = scanfleet.TaskFinished, &now, json.RawMessage(`{"hosts":3}`)
					w.Error = "" // the retry succeeded
				}},
			{"finished with a warning", scanfleet.TaskChange{Status: scanfleet.TaskFinished, Error: ptr("2 targets out of scope")}, false,
				func(w *scanfleet.Task) {
					w.Status, w.FinishedAt, w.Error = scanfleet.TaskFinished, &now, "2 targets out of scope"
				}},
			{"failed", scanfleet.TaskChange{Status: scanfleet.TaskFailed, Error: ptr("exit status 2")}, false,
				func(w *scanfleet.Task) { w.Status, w.FailedAt, w.Error = scanfleet.TaskFailed, &now, "exit status 2" }},
			{"failed without a reason keeps the last one", scanfleet.TaskChange{Status: scanfleet.TaskFailed}, false,
				func(w *scanfleet.Task) { w.Status, w.FailedAt = scanfleet.TaskFailed, &now }},
			{"cancelled as asked", scanfleet.TaskChange{Status: scanfleet.TaskCancelled}, true,
				func(w *scanfleet.Task) { w.Status, w.CancelledAt = scanfleet.TaskCancelled, &now }},
			{"handed back", scanfleet.TaskChange{Status: scanfleet.TaskRequested}, false,
				func(w *scanfleet.Task) {
					// A hand-back does not use up an attempt: the claim's is undone.
					w.Status, w.RequestedAt, w.WorkerID, w.Attempts = scanfleet.TaskRequested, &now, "", 1
				}},
			{"handed back, saying why", scanfleet.TaskChange{Status: scanfleet.TaskRequested, Error: ptr("worker draining")}, false,
				func(w *scanfleet.Task) {
					w.Status, w.RequestedAt, w.WorkerID, w.Error, w.Attempts = scanfleet.TaskRequested, &now, "", "worker draining", 1
				}},
			{"a cancelled task handed back ends cancelled", scanfleet.TaskChange{Status: scanfleet.TaskRequested}, true,
				func(w *scanfleet.Task) { w.Status, w.CancelledAt = scanfleet.TaskCancelled, &now }},
		} {
			task := requestedTask("a", scanfleet.PoolExternal, "", "noop")
			task.Attempts, task.Error = 1, earlier
			createTasks(t, s, task)
			before := claim(t, s, task, "w1", at(time.Minute))
			if tc.cancelRequested {
				var err error
				before, err = s.RequestCancel(ctx, task.ID, at(2*time.Minute))
				require.NoError(t, err)
			}
			got, err := s.FinishTask(ctx, task.ID, "w1", tc.change, now)
			require.NoError(t, err, tc.name)
			want := *before
			want.LeaseExpiresAt = nil
			want.UpdatedAt = now
			tc.want(&want)
			requireTask(t, &want, got)
			requireStored(t, s, &want)
		}
	},
	"FinishErrors": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		finished := scanfleet.TaskChange{Status: scanfleet.TaskFinished}
		task := createTasks(t, s, requestedTask("a", scanfleet.PoolExternal, "", "noop"))[0]
		_, err := s.FinishTask(ctx, task.ID, "w1", finished, t0)
		requireCode(t, err, scanfleet.ECONFLICT, fmt.Sprintf("task %s is requested; worker w1 no longer holds it", task.ID))

		held := claim(t, s, task, "w1", t0)
		for _, tc := range []struct {
			name   string
			worker string
			status scanfleet.TaskStatus
			code   string
			msg    string
		}{
			{"another worker", "w2", scanfleet.TaskFinished, scanfleet.ECONFLICT,
				fmt.Sprintf("task %s is held by another worker; worker w2 lost its lease", task.ID)},
			{"no worker", "", scanfleet.TaskFinished, scanfleet.EINVALID, "worker id: is empty"},
			{"unknown status", "w1", "done", scanfleet.EINVALID, ""},
			{"to created", "w1", scanfleet.TaskCreated, scanfleet.EINVALID, "status: a started task cannot become created"},
			{"to queued", "w1", scanfleet.TaskQueued, scanfleet.EINVALID, "status: a started task cannot become queued"},
			{"to started", "w1", scanfleet.TaskStarted, scanfleet.EINVALID, "status: a started task cannot become started"},
		} {
			got, err := s.FinishTask(ctx, task.ID, tc.worker, scanfleet.TaskChange{Status: tc.status}, at(time.Minute))
			if tc.msg == "" {
				requireCode(t, err, tc.code)
			} else {
				requireCode(t, err, tc.code, tc.msg)
			}
			require.Nil(t, got, tc.name)
		}
		requireStored(t, s, held)

		_, err = s.FinishTask(ctx, task.ID, "w1", finished, at(time.Minute))
		require.NoError(t, err)
		_, err = s.FinishTask(ctx, task.ID, "w1", finished, at(2*time.Minute))
		requireCode(t, err, scanfleet.ECONFLICT, fmt.Sprintf("task %s is finished; worker w1 no longer holds it", task.ID))

		id := scanfleet.NewTaskID()
		_, err = s.FinishTask(ctx, id, "w1", finished, t0)
		requireCode(t, err, scanfleet.ENOTFOUND, fmt.Sprintf("task %q not found", id))
	},
	"FinishBatch": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		held, other := heldBatch(t, s)
		now := at(time.Minute)
		msg := "boom"
		outs := []scanfleet.Outcome{
			{TaskID: held[0].ID, Attempt: 1, Change: scanfleet.TaskChange{Status: scanfleet.TaskFinished, Output: []byte(`{"records":3}`)},
				Logs: []string{"one", "two"}, Progress: &scanfleet.Progress{Done: 7, Total: 7}},
			{TaskID: held[1].ID, Attempt: 2, Change: scanfleet.TaskChange{Status: scanfleet.TaskFinished}}, // stale attempt
			{TaskID: other.ID, Change: scanfleet.TaskChange{Status: scanfleet.TaskFinished}},               // not w1's
			{TaskID: held[2].ID, Change: scanfleet.TaskChange{Status: scanfleet.TaskFailed, Error: &msg}, Logs: []string{"failing"}},
			{TaskID: held[3].ID, Change: scanfleet.TaskChange{Status: "done"}},
		}
		tasks, errs, err := s.FinishTasks(ctx, "w1", outs, now)
		require.NoError(t, err)
		require.Len(t, tasks, 5)
		require.NoError(t, errs[0])
		require.Equal(t, scanfleet.TaskFinished, tasks[0].Status)
		require.Equal(t, scanfleet.PoolExternal, tasks[0].Pool)
		stored, err := s.FindTask(ctx, held[0].ID)
		require.NoError(t, err)
		require.Equal(t, scanfleet.Progress{Done: 7, Total: 7}, stored.Progress)
		require.JSONEq(t, `{"records":3}`, string(stored.Output))
		require.Nil(t, stored.LeaseExpiresAt)
		requireCode(t, errs[1], scanfleet.ECONFLICT, fmt.Sprintf("attempt 2 of task %s is over; the task is on attempt 1", held[1].ID))
		require.Nil(t, tasks[1])
		requireCode(t, errs[2], scanfleet.ECONFLICT, fmt.Sprintf("task %s is held by another worker; worker w1 lost its lease", other.ID))
		require.NoError(t, errs[3])
		require.Equal(t, scanfleet.TaskFailed, tasks[3].Status)
		stored, err = s.FindTask(ctx, held[2].ID)
		require.NoError(t, err)
		require.Equal(t, "boom", stored.Error)
		requireCode(t, errs[4], scanfleet.EINVALID)

		// The refused ones are untouched; the applied ones carry their logs.
		requireStored(t, s, held[1])
		requireStored(t, s, other)
		requireStored(t, s, held[3])
		logs, err := s.ListTaskLogs(ctx, held[0].ID, 0, 10)
		require.NoError(t, err)
		require.Len(t, logs, 2)
		require.Equal(t, "two", logs[1].Line)
		logs, err = s.ListTaskLogs(ctx, held[2].ID, 0, 10)
		require.NoError(t, err)
		require.Len(t, logs, 1)

		_, _, err = s.FinishTasks(ctx, "", outs, now)
		requireCode(t, err, scanfleet.EINVALID, "worker id: is empty")
	},
	"FinishBatchAlike": func(t *testing.T, s scanfleet.Store) {
		// Outcomes that change their rows alike are applied together; one
		// that the store refuses among them does not hold the others up,
		// and a second outcome for the same task is refused, not applied
		// twice.
		ctx := t.Context()
		held, other := heldBatch(t, s)
		done := func(id string) scanfleet.Outcome {
			return scanfleet.Outcome{TaskID: id, Attempt: 1, Change: scanfleet.TaskChange{Status: scanfleet.TaskFinished},
				Logs: []string{"done " + id}, Progress: &scanfleet.Progress{Done: 1, Total: 1}}
		}
		outs := []scanfleet.Outcome{done(held[2].ID), done(held[0].ID), done(other.ID), done(held[1].ID), done(held[0].ID), done(held[3].ID)}
		tasks, errs, err := s.FinishTasks(ctx, "w1", outs, at(time.Minute))
		require.NoError(t, err)
		for _, i := range []int{0, 1, 3, 5} {
			require.NoError(t, errs[i])
			require.Equal(t, outs[i].TaskID, tasks[i].ID)
			require.Equal(t, scanfleet.TaskFinished, tasks[i].Status)
			stored, err := s.FindTask(ctx, outs[i].TaskID)
			require.NoError(t, err)
			require.Equal(t, scanfleet.TaskFinished, stored.Status)
			require.Equal(t, scanfleet.Progress{Done: 1, Total: 1}, stored.Progress)
			logs, err := s.ListTaskLogs(ctx, outs[i].TaskID, 0, 10)
			require.NoError(t, err)
			require.Len(t, logs, 1)
			require.Equal(t, "done "+outs[i].TaskID, logs[0].Line)
		}
		requireCode(t, errs[2], scanfleet.ECONFLICT, fmt.Sprintf("task %s is held by another worker; worker w1 lost its lease", other.ID))
		requireStored(t, s, other)
		requireCode(t, errs[4], scanfleet.ECONFLICT, fmt.Sprintf("task %s: more than one outcome in one batch; the first was applied", held[0].ID))
		require.Nil(t, tasks[4])
	},
	"Expire": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		now := at(time.Hour)
		type outcome struct {
			status scanfleet.TaskStatus
			err    string // "" keeps the task's own
		}
		unchanged := outcome{}
		cases := []struct {
			name      string
			status    scanfleet.TaskStatus
			attempts  int
			max       int
			started   time.Duration // before now
			lease     *time.Duration
			timeout   time.Duration
			cancelled bool
			want      outcome
		}{
			{"lease held", scanfleet.TaskStarted, 1, 3, time.Minute, ptr(time.Second), 10 * time.Minute, false, unchanged},
			{"lease ends now", scanfleet.TaskStarted, 1, 3, time.Minute, ptr(time.Duration(0)), 10 * time.Minute, false, unchanged},
			{"lapsed, first attempt", scanfleet.TaskStarted, 1, 3, time.Minute, ptr(-time.Microsecond), 10 * time.Minute, false,
				outcome{scanfleet.TaskRequested, "lease lapsed on worker w1 (attempt 1 of 3)"}},
			{"lapsed, second attempt", scanfleet.TaskStarted, 2, 3, time.Minute, ptr(-time.Second), 10 * time.Minute, false,
				outcome{scanfleet.TaskRequested, "lease lapsed on worker w1 (attempt 2 of 3)"}},
			{"lapsed, last attempt", scanfleet.TaskStarted, 3, 3, time.Minute, ptr(-time.Second), 10 * time.Minute, false,
				outcome{scanfleet.TaskFailed, "lease lapsed on worker w1; gave up after 3 attempts"}},
			{"lapsed, no retries", scanfleet.TaskStarted, 1, 1, time.Minute, ptr(-time.Second), 10 * time.Minute, false,
				outcome{scanfleet.TaskFailed, "lease lapsed on worker w1; gave up after 1 attempt"}},
			{"lapsed, no max: one attempt", scanfleet.TaskStarted, 1, 0, time.Minute, ptr(-time.Second), 10 * time.Minute, false,
				outcome{scanfleet.TaskFailed, "lease lapsed on worker w1; gave up after 1 attempt"}},
			{"started without a lease", scanfleet.TaskStarted, 1, 3, time.Minute, nil, 10 * time.Minute, false,
				outcome{scanfleet.TaskRequested, "lease lapsed on worker w1 (attempt 1 of 3)"}},
			{"past its timeout", scanfleet.TaskStarted, 1, 3, 11 * time.Minute, ptr(time.Second), 10 * time.Minute, false,
				outcome{scanfleet.TaskFailed, "timeout: ran longer than 10m0s"}},
			{"at its timeout", scanfleet.TaskStarted, 1, 3, 10 * time.Minute, ptr(time.Second), 10 * time.Minute, false, unchanged},
			{"past its timeout and lapsed", scanfleet.TaskStarted, 1, 3, 11 * time.Minute, ptr(-time.Second), 10 * time.Minute, false,
				outcome{scanfleet.TaskFailed, "timeout: ran longer than 10m0s"}},
			{"no timeout", scanfleet.TaskStarted, 1, 3, 1000 * time.Hour, ptr(time.Second), 0, false, unchanged},
			{"lapsed after a cancel request", scanfleet.TaskStarted, 1, 3, time.Minute, ptr(-time.Second), 10 * time.Minute, true,
				outcome{scanfleet.TaskCancelled, ""}},
			{"past its timeout after a cancel request", scanfleet.TaskStarted, 1, 3, 11 * time.Minute, ptr(time.Second), 10 * time.Minute, true,
				outcome{scanfleet.TaskCancelled, ""}},
			{"requested", scanfleet.TaskRequested, 1, 3, time.Minute, ptr(-time.Second), 10 * time.Minute, false, unchanged},
			{"finished", scanfleet.TaskFinished, 1, 3, 11 * time.Minute, ptr(-time.Second), 10 * time.Minute, false, unchanged},
		}
		tasks := make([]*scanfleet.Task, len(cases))
		for i, tc := range cases {
			task := newTask("a", tc.status, t0)
			task.Attempts, task.MaxAttempts, task.Timeout = tc.attempts, tc.max, scanfleet.Duration(tc.timeout)
			task.WorkerID = "w1"
			task.Error = "earlier"
			task.StartedAt = ptr(now.Add(-tc.started))
			if tc.lease != nil {
				task.LeaseExpiresAt = ptr(now.Add(*tc.lease))
			}
			task.CancelRequested = tc.cancelled
			task.Progress = scanfleet.Progress{Done: 1, Total: 2}
			tasks[i] = task
		}
		createTasks(t, s, tasks...)

		requeued, err := s.ExpireLeases(ctx, now)
		require.NoError(t, err)
		var wantRequeued []string
		for i, tc := range cases {
			want := *tasks[i]
			if tc.want.status != "" {
				want.Status = tc.want.status
				want.UpdatedAt = now
				want.LeaseExpiresAt = nil
				*statusTime(&want, tc.want.status) = &now
				if tc.want.err != "" {
					want.Error = tc.want.err
				}
				if tc.want.status == scanfleet.TaskRequested {
					want.WorkerID = ""
					wantRequeued = append(wantRequeued, want.ID)
				}
			}
			got, err := s.FindTask(ctx, want.ID)
			require.NoError(t, err)
			require.Equal(t, want.Status, got.Status, tc.name)
			require.Equal(t, want.Error, got.Error, tc.name)
			requireTask(t, &want, got)
		}
		require.Equal(t, wantRequeued, taskIDs(requeued))
		for _, task := range requeued {
			requireStored(t, s, task)
		}

		requeued, err = s.ExpireLeases(ctx, now)
		require.NoError(t, err)
		require.Empty(t, requeued, "a second sweep finds nothing")
	},
	"ExpireUntilFailed": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		task := createTasks(t, s, requestedTask("a", scanfleet.PoolExternal, "", "noop"))[0]
		now := t0
		for attempt := 1; attempt <= scanfleet.DefaultMaxAttempts; attempt++ {
			worker := fmt.Sprintf("w%d", attempt)
			got := claim(t, s, task, worker, now)
			require.Equal(t, attempt, got.Attempts)
			_, err := s.RenewLease(ctx, task.ID, worker, testLease, &scanfleet.Progress{Done: 1, Total: 4}, now.Add(10*time.Second))
			require.NoError(t, err)
			// The worker dies; its lease lapses.
			now = now.Add(time.Minute)
			requeued, err := s.ExpireLeases(ctx, now)
			require.NoError(t, err)
			got, err = s.FindTask(ctx, task.ID)
			require.NoError(t, err)
			if attempt < scanfleet.DefaultMaxAttempts {
				require.Equal(t, []string{task.ID}, taskIDs(requeued))
				require.Equal(t, scanfleet.TaskRequested, got.Status)
				require.Equal(t, fmt.Sprintf("lease lapsed on worker %s (attempt %d of 3)", worker, attempt), got.Error)
				_, err = s.RenewLease(ctx, task.ID, worker, testLease, nil, now)
				requireCode(t, err, scanfleet.ECONFLICT, fmt.Sprintf("task %s is requested; worker %s no longer holds it", task.ID, worker))
			} else {
				require.Empty(t, requeued)
				require.Equal(t, scanfleet.TaskFailed, got.Status)
				require.Equal(t, fmt.Sprintf("lease lapsed on worker %s; gave up after 3 attempts", worker), got.Error)
				requireTimePtr(t, &now, got.FailedAt, "failed_at")
			}
		}
	},
	"ExpireRace": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		var tasks []*scanfleet.Task
		for range 50 {
			task := requestedTask("a", scanfleet.PoolExternal, "", "noop")
			tasks = append(tasks, task)
		}
		createTasks(t, s, tasks...)
		for _, task := range tasks {
			claim(t, s, task, "w1", t0)
		}
		// Three servers sweep at once; each task goes back once.
		results := make([][]*scanfleet.Task, 3)
		var wg sync.WaitGroup
		for i := range results {
			wg.Go(func() {
				var err error
				if results[i], err = s.ExpireLeases(ctx, at(time.Minute)); err != nil {
					t.Errorf("expire: %v", err)
				}
			})
		}
		wg.Wait()
		var ids []string
		for _, r := range results {
			ids = append(ids, taskIDs(r)...)
		}
		want := taskIDs(tasks)
		slices.Sort(want)
		slices.Sort(ids)
		require.Equal(t, want, ids)
		for _, task := range tasks {
			got, err := s.FindTask(ctx, task.ID)
			require.NoError(t, err)
			require.Equal(t, scanfleet.TaskRequested, got.Status)
			require.Equal(t, "lease lapsed on worker w1 (attempt 1 of 3)", got.Error)
		}
	},
	"FinishExpireRace": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		for round := range 10 {
			task := createTasks(t, s, requestedTask("a", scanfleet.PoolExternal, "", "noop"))[0]
			claim(t, s, task, "w1", t0)
			var (
				wg        sync.WaitGroup
				finishErr error
				requeued  []*scanfleet.Task
				expireErr error
			)
			start := make(chan struct{})
			wg.Go(func() {
				<-start
				_, finishErr = s.FinishTask(ctx, task.ID, "w1", scanfleet.TaskChange{Status: scanfleet.TaskFinished}, at(time.Minute))
			})
			wg.Go(func() {
				<-start
				requeued, expireErr = s.ExpireLeases(ctx, at(time.Minute))
			})
			close(start)
			wg.Wait()
			require.NoError(t, expireErr)
			got, err := s.FindTask(ctx, task.ID)
			require.NoError(t, err)
			if finishErr == nil {
				require.Empty(t, requeued, "round %d: finished, yet put back", round)
				require.Equal(t, scanfleet.TaskFinished, got.Status)
			} else {
				requireCode(t, finishErr, scanfleet.ECONFLICT, fmt.Sprintf("task %s is requested; worker w1 no longer holds it", task.ID))
				require.Equal(t, []string{task.ID}, taskIDs(requeued), "round %d", round)
				require.Equal(t, scanfleet.TaskRequested, got.Status)
			}
		}
	},
	"Cancel": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		now := at(time.Hour)
		for _, from := range scanfleet.TaskStatuses {
			before := newTask("a", from, t0)
			before.WorkerID = "w1"
			createTasks(t, s, before)
			got, err := s.RequestCancel(ctx, before.ID, now)
			want := *before
			want.UpdatedAt = now
			switch {
			case from.Terminal():
				requireCode(t, err, scanfleet.ECONFLICT, fmt.Sprintf("task %s is %s; it cannot be cancelled", before.ID, from))
				require.Nil(t, got)
				requireStored(t, s, before)
				continue
			case from == scanfleet.TaskStarted:
				want.CancelRequested = true // the worker stops it
			default:
				want.Status = scanfleet.TaskCancelled
				want.CancelledAt = &now
			}
			require.NoError(t, err, from)
			requireTask(t, &want, got)
			requireStored(t, s, &want)
		}

		// Asking twice is harmless; the worker then reports it cancelled.
		task := createTasks(t, s, requestedTask("a", scanfleet.PoolExternal, "", "noop"))[0]
		claim(t, s, task, "w1", t0)
		for range 2 {
			got, err := s.RequestCancel(ctx, task.ID, at(time.Second))
			require.NoError(t, err)
			require.True(t, got.CancelRequested)
			require.Equal(t, scanfleet.TaskStarted, got.Status)
		}
		got, err := s.FinishTask(ctx, task.ID, "w1", scanfleet.TaskChange{Status: scanfleet.TaskCancelled}, at(2*time.Second))
		require.NoError(t, err)
		require.Equal(t, scanfleet.TaskCancelled, got.Status)
		_, err = s.RequestCancel(ctx, task.ID, at(3*time.Second))
		requireCode(t, err, scanfleet.ECONFLICT, fmt.Sprintf("task %s is cancelled; it cannot be cancelled", task.ID))

		// A task cancelled before a worker took it cannot be claimed.
		task = createTasks(t, s, requestedTask("a", scanfleet.PoolExternal, "", "noop"))[0]
		_, err = s.RequestCancel(ctx, task.ID, t0)
		require.NoError(t, err)
		_, err = s.ClaimTask(ctx, task.ID, "w1", testLease, t0)
		requireCode(t, err, scanfleet.ECONFLICT, fmt.Sprintf("task %s is cancelled; it cannot be claimed", task.ID))

		id := scanfleet.NewTaskID()
		_, err = s.RequestCancel(ctx, id, t0)
		requireCode(t, err, scanfleet.ENOTFOUND, fmt.Sprintf("task %q not found", id))
	},
	"CancelClaimRace": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		for round := range 10 {
			task := createTasks(t, s, requestedTask("a", scanfleet.PoolExternal, "", "noop"))[0]
			var (
				wg                  sync.WaitGroup
				claimErr, cancelErr error
			)
			start := make(chan struct{})
			wg.Go(func() {
				<-start
				_, claimErr = s.ClaimTask(ctx, task.ID, "w1", testLease, at(time.Second))
			})
			wg.Go(func() {
				<-start
				_, cancelErr = s.RequestCancel(ctx, task.ID, at(time.Second))
			})
			close(start)
			wg.Wait()
			require.NoError(t, cancelErr, "round %d", round)
			got, err := s.FindTask(ctx, task.ID)
			require.NoError(t, err)
			if claimErr == nil {
				// Claimed first: the worker is told to stop.
				require.Equal(t, scanfleet.TaskStarted, got.Status, "round %d", round)
				require.True(t, got.CancelRequested, "round %d", round)
			} else {
				requireCode(t, claimErr, scanfleet.ECONFLICT)
				require.Equal(t, scanfleet.TaskCancelled, got.Status, "round %d", round)
			}
		}
	},
	"TransitionDropsLease": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		task := createTasks(t, s, requestedTask("a", scanfleet.PoolExternal, "", "noop"))[0]
		claim(t, s, task, "w1", t0)
		got, err := s.TransitionTask(ctx, task.ID, scanfleet.TaskChange{Status: scanfleet.TaskFailed, Error: ptr("scope changed")}, at(time.Second))
		require.NoError(t, err)
		require.Nil(t, got.LeaseExpiresAt, "a lease only holds a started task")
		requireStored(t, s, got)
	},
	"Records": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		task := createTasks(t, s, newTask("a", scanfleet.TaskStarted, t0))[0]
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 25 {
					if err := s.AddTaskRecords(ctx, task.ID, 10); err != nil {
						t.Errorf("add records: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		require.NoError(t, s.AddTaskRecords(ctx, task.ID, 0))
		task.Records = 1000
		requireStored(t, s, task) // updated_at unchanged
		requireCode(t, s.AddTaskRecords(ctx, task.ID, -1), scanfleet.EINVALID, "records: -1 is negative")
		id := scanfleet.NewTaskID()
		requireCode(t, s.AddTaskRecords(ctx, id, 1), scanfleet.ENOTFOUND, fmt.Sprintf("task %q not found", id))
	},
}

// heldBatch makes workspace "a" with four tasks claimed by w1 (held) and
// one by w2 (other), for the finish batch tests.
func heldBatch(t *testing.T, s scanfleet.Store) (held []*scanfleet.Task, other *scanfleet.Task) {
	t.Helper()
	createWorkspace(t, s, "a")
	for range 4 {
		task := createTasks(t, s, requestedTask("a", scanfleet.PoolExternal, "", "noop"))[0]
		held = append(held, claim(t, s, task, "w1", t0))
	}
	return held, claim(t, s, createTasks(t, s, requestedTask("a", scanfleet.PoolExternal, "", "noop"))[0], "w2", t0)
}
