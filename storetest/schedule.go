package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
)

var scheduleTests = map[string]func(*testing.T, scanfleet.Store){
	"ActiveAndRelease": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		mk := func(st scanfleet.TaskStatus, pool scanfleet.Pool, created time.Time) *scanfleet.Task {
			task := newTask("a", st, created)
			task.Pool = pool
			return createTasks(t, s, task)[0]
		}
		mk(scanfleet.TaskCreated, scanfleet.PoolExternal, t0)
		mk(scanfleet.TaskRequested, scanfleet.PoolExternal, t0)
		mk(scanfleet.TaskFinished, scanfleet.PoolExternal, t0)
		mk(scanfleet.TaskRequested, scanfleet.PoolBaremetal, t0)
		q1 := mk(scanfleet.TaskQueued, scanfleet.PoolExternal, at(time.Second))
		q2 := mk(scanfleet.TaskQueued, scanfleet.PoolExternal, at(2*time.Second))
		mk(scanfleet.TaskQueued, scanfleet.PoolBaremetal, at(3*time.Second))
		active, err := s.ActiveTasks(ctx)
		require.NoError(t, err)
		require.Equal(t, map[scanfleet.Pool]int{scanfleet.PoolExternal: 2, scanfleet.PoolBaremetal: 1}, active)

		got, err := s.ReleaseQueued(ctx, scanfleet.PoolExternal, 1, at(time.Minute))
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, q1.ID, got[0].ID, "oldest first")
		require.Equal(t, scanfleet.TaskRequested, got[0].Status, "released straight to its pool")
		require.Equal(t, at(time.Minute), *got[0].RequestedAt)
		stored, err := s.FindTask(ctx, q2.ID)
		require.NoError(t, err)
		require.Equal(t, scanfleet.TaskQueued, stored.Status)
		got, err = s.ReleaseQueued(ctx, scanfleet.PoolExternal, 5, at(time.Minute))
		require.NoError(t, err)
		require.Len(t, got, 1)
		got, err = s.ReleaseQueued(ctx, scanfleet.PoolExternal, 5, at(time.Minute))
		require.NoError(t, err)
		require.Empty(t, got)
	},
	"ScanRunState": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		createWorkspace(t, s, "b")
		sc := newScan("nightly", "a", "b")
		require.NoError(t, s.CreateScan(ctx, sc))
		inFlight, end, err := s.ScanRunState(ctx, sc.ID, "a")
		require.NoError(t, err)
		require.Nil(t, inFlight)
		require.Nil(t, end)

		done := newTask("a", scanfleet.TaskFinished, t0)
		done.ScanID, done.FinishedAt = sc.ID, ptr(at(time.Hour))
		failed := newTask("a", scanfleet.TaskFailed, t0)
		failed.ScanID, failed.FailedAt = sc.ID, ptr(at(2*time.Hour))
		running := newTask("b", scanfleet.TaskQueued, t0)
		running.ScanID = sc.ID
		require.NoError(t, s.CreateScanTasks(ctx, sc.ID, []*scanfleet.Task{done, failed, running}, t0))
		inFlight, end, err = s.ScanRunState(ctx, sc.ID, "a")
		require.NoError(t, err)
		require.Nil(t, inFlight)
		requireTime(t, at(2*time.Hour), *end, "last end")
		inFlight, _, err = s.ScanRunState(ctx, sc.ID, "b")
		require.NoError(t, err)
		require.Equal(t, running.ID, inFlight.ID)
		never := scanfleet.RunKey{ScanID: sc.ID, Workspace: "c"}
		states, err := s.RunStates(ctx, []scanfleet.RunKey{{ScanID: sc.ID, Workspace: "a"}, {ScanID: sc.ID, Workspace: "b"}, never})
		require.NoError(t, err)
		require.Len(t, states, 3)
		require.Equal(t, scanfleet.RunState{}, states[never], "a workspace the scan never ran in")
		a := states[scanfleet.RunKey{ScanID: sc.ID, Workspace: "a"}]
		require.False(t, a.InFlight)
		requireTime(t, at(2*time.Hour), *a.LastEnd, "last end")
		b := states[scanfleet.RunKey{ScanID: sc.ID, Workspace: "b"}]
		require.True(t, b.InFlight)
		require.Nil(t, b.LastEnd)

		// A second run where one is in flight is refused whole; where none
		// is, it goes ahead.
		again := newTask("b", scanfleet.TaskCreated, t0)
		again.ScanID = sc.ID
		fresh := newTask("a", scanfleet.TaskCreated, t0)
		fresh.ScanID = sc.ID
		err = s.CreateScanTasks(ctx, sc.ID, []*scanfleet.Task{fresh, again}, at(3*time.Hour))
		requireCode(t, err, scanfleet.ECONFLICT)
		_, err = s.FindTask(ctx, fresh.ID)
		requireCode(t, err, scanfleet.ENOTFOUND)
		require.NoError(t, s.CreateScanTasks(ctx, sc.ID, []*scanfleet.Task{fresh}, at(3*time.Hour)))
	},
	"Lease": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		ok, err := s.AcquireLease(ctx, "scheduler", "r1", 10*time.Second, t0)
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = s.AcquireLease(ctx, "scheduler", "r2", 10*time.Second, at(5*time.Second))
		require.NoError(t, err)
		require.False(t, ok, "held by r1")
		ok, err = s.AcquireLease(ctx, "scheduler", "r1", 10*time.Second, at(8*time.Second))
		require.NoError(t, err)
		require.True(t, ok, "r1 renews")
		ok, err = s.AcquireLease(ctx, "scheduler", "r2", 10*time.Second, at(15*time.Second))
		require.NoError(t, err)
		require.False(t, ok, "renewed until 18s")
		ok, err = s.AcquireLease(ctx, "scheduler", "r2", 10*time.Second, at(19*time.Second))
		require.NoError(t, err)
		require.True(t, ok, "r1's lease lapsed")
		require.NoError(t, s.ReleaseLease(ctx, "scheduler", "r1"), "not r1's: nothing happens")
		ok, err = s.AcquireLease(ctx, "scheduler", "r1", 10*time.Second, at(20*time.Second))
		require.NoError(t, err)
		require.False(t, ok)
		require.NoError(t, s.ReleaseLease(ctx, "scheduler", "r2"))
		ok, err = s.AcquireLease(ctx, "scheduler", "r1", 10*time.Second, at(20*time.Second))
		require.NoError(t, err)
		require.True(t, ok, "released")
	},
	"EndedSinceAndMarks": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		mark, err := s.GetMark(ctx, "events")
		require.NoError(t, err)
		require.True(t, mark.IsZero())
		a := newTask("a", scanfleet.TaskFinished, t0)
		a.UpdatedAt = at(time.Minute)
		b := newTask("a", scanfleet.TaskFailed, t0)
		b.UpdatedAt = at(2 * time.Minute)
		c := newTask("a", scanfleet.TaskStarted, t0)
		c.UpdatedAt = at(3 * time.Minute)
		createTasks(t, s, a, b, c)
		got, err := s.TasksEndedSince(ctx, t0, "", 10)
		require.NoError(t, err)
		require.Equal(t, []string{a.ID, b.ID}, taskIDs(got))
		got, err = s.TasksEndedSince(ctx, at(time.Minute), a.ID, 10)
		require.NoError(t, err)
		require.Equal(t, []string{b.ID}, taskIDs(got))
		// Tasks that ended at the same time are paged by id, none lost.
		same := []*scanfleet.Task{newTask("a", scanfleet.TaskFailed, t0), newTask("a", scanfleet.TaskFailed, t0), newTask("a", scanfleet.TaskFailed, t0)}
		for _, task := range same {
			task.UpdatedAt = at(5 * time.Minute)
		}
		createTasks(t, s, same...)
		page1, err := s.TasksEndedSince(ctx, at(4*time.Minute), "", 2)
		require.NoError(t, err)
		require.Len(t, page1, 2)
		page2, err := s.TasksEndedSince(ctx, page1[1].UpdatedAt, page1[1].ID, 2)
		require.NoError(t, err)
		require.Len(t, page2, 1)
		require.ElementsMatch(t, taskIDs(same), append(taskIDs(page1), page2[0].ID))
		require.NoError(t, s.SetMark(ctx, "events", at(time.Minute)))
		require.NoError(t, s.SetMark(ctx, "events", at(2*time.Minute)))
		mark, err = s.GetMark(ctx, "events")
		require.NoError(t, err)
		requireTime(t, at(2*time.Minute), mark, "mark")
	},
	"Webhooks": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		createWorkspace(t, s, "b")
		_, err := s.GetWebhook(ctx, "a")
		requireCode(t, err, scanfleet.ENOTFOUND, `workspace "a" has no webhook`)
		requireCode(t, s.PutWebhook(ctx, &scanfleet.Webhook{Workspace: "a", URL: "ftp://x"}), scanfleet.EINVALID)
		requireCode(t, s.PutWebhook(ctx, &scanfleet.Webhook{Workspace: "a", URL: "https://hooks.example/x", Events: []string{"task.exploded"}}), scanfleet.EINVALID)
		requireCode(t, s.PutWebhook(ctx, &scanfleet.Webhook{Workspace: "nope", URL: "https://hooks.example/x"}), scanfleet.ENOTFOUND)
		h := &scanfleet.Webhook{Workspace: "a", URL: "https://hooks.example/x", Secret: "s3cret", Events: []string{scanfleet.EventTaskFailed}, UpdatedAt: t0}
		require.NoError(t, s.PutWebhook(ctx, h))
		got, err := s.GetWebhook(ctx, "a")
		require.NoError(t, err)
		require.Equal(t, h, got)

		payload := json.RawMessage(`{"event":"task.failed"}`)
		require.NoError(t, s.EnqueueDeliveries(ctx, []*scanfleet.Delivery{
			{Workspace: "a", Event: scanfleet.EventTaskFailed, Payload: payload, CreatedAt: t0},
			{Workspace: "a", Event: scanfleet.EventScanFinished, Payload: payload, CreatedAt: t0}, // not subscribed
			{Workspace: "b", Event: scanfleet.EventTaskFailed, Payload: payload, CreatedAt: t0},   // no webhook
		}))
		due, err := s.DueDeliveries(ctx, at(time.Second), 10)
		require.NoError(t, err)
		require.Len(t, due, 1)
		d := due[0]
		require.Equal(t, "a", d.Workspace)
		require.Equal(t, scanfleet.DeliveryPending, d.Status)
		require.JSONEq(t, string(payload), string(d.Payload))

		d.Attempts, d.LastCode, d.LastError, d.NextAt, d.UpdatedAt = 1, 500, "server error", at(time.Hour), at(time.Second)
		require.NoError(t, s.UpdateDelivery(ctx, d))
		due, err = s.DueDeliveries(ctx, at(time.Minute), 10)
		require.NoError(t, err)
		require.Empty(t, due, "not due until its retry time")
		due, err = s.DueDeliveries(ctx, at(2*time.Hour), 10)
		require.NoError(t, err)
		require.Len(t, due, 1)
		d.Status, d.Attempts, d.LastCode, d.LastError = scanfleet.DeliveryDelivered, 2, 204, ""
		require.NoError(t, s.UpdateDelivery(ctx, d))
		log, err := s.ListDeliveries(ctx, "a", 10)
		require.NoError(t, err)
		require.Len(t, log, 1)
		require.Equal(t, scanfleet.DeliveryDelivered, log[0].Status)
		require.Equal(t, 2, log[0].Attempts)

		require.NoError(t, s.DeleteWebhook(ctx, "a"))
		requireCode(t, s.DeleteWebhook(ctx, "a"), scanfleet.ENOTFOUND)
	},
}
