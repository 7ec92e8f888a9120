package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
)

var routeTests = map[string]func(*testing.T, scanfleet.Store){
	"OldestFirstInBatches": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		var created []*scanfleet.Task
		for i := range 3 {
			created = append(created, newTask("a", scanfleet.TaskCreated, at(time.Duration(i)*time.Second)))
		}
		createTasks(t, s, created...)
		createTasks(t, s, newTask("a", scanfleet.TaskCancelled, at(0)))

		got, err := s.RouteTasks(ctx, 2, at(time.Hour))
		require.NoError(t, err)
		require.Len(t, got, 2)
		require.Equal(t, created[0].ID, got[0].ID)
		require.Equal(t, created[1].ID, got[1].ID)
		for _, task := range got {
			require.Equal(t, scanfleet.TaskRequested, task.Status)
			requireTime(t, at(time.Hour), *task.RequestedAt, "requested_at")
		}
		got, err = s.RouteTasks(ctx, 10, at(time.Hour))
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, created[2].ID, got[0].ID)
		got, err = s.RouteTasks(ctx, 10, at(time.Hour))
		require.NoError(t, err)
		require.Empty(t, got)
		_, err = s.RouteTasks(ctx, 0, at(time.Hour))
		requireCode(t, err, scanfleet.EINVALID)
	},
	"ConcurrentRoutersRouteOnce": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		var tasks []*scanfleet.Task
		for i := range 200 {
			tasks = append(tasks, newTask("a", scanfleet.TaskCreated, at(time.Duration(i)*time.Millisecond)))
		}
		createTasks(t, s, tasks...)
		var (
			mu   sync.Mutex
			seen = map[string]int{}
			wg   sync.WaitGroup
		)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					got, err := s.RouteTasks(ctx, 7, at(time.Hour))
					if err != nil {
						t.Error(err)
						return
					}
					if len(got) == 0 {
						return
					}
					mu.Lock()
					for _, task := range got {
						seen[task.ID]++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		require.Len(t, seen, 200)
		for id, n := range seen {
			require.Equal(t, 1, n, id)
		}
	},
}

var claimBatchTests = map[string]func(*testing.T, scanfleet.Store){
	"OnlyMatchingAndRequested": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		ok1 := requestedTask("a", scanfleet.PoolExternal, "", "noop")
		ok2 := requestedTask("a", scanfleet.PoolExternal, "dc1", "noop")
		otherSite := requestedTask("a", scanfleet.PoolExternal, "dc2", "noop")
		otherPool := requestedTask("a", scanfleet.PoolBaremetal, "", "noop")
		otherType := requestedTask("a", scanfleet.PoolExternal, "", "dns")
		taken := requestedTask("a", scanfleet.PoolExternal, "", "noop")
		createTasks(t, s, ok1, ok2, otherSite, otherPool, otherType, taken)
		claim(t, s, taken, "w0", at(time.Minute))

		f := scanfleet.ClaimFilter{Pool: scanfleet.PoolExternal, Site: "dc1", Types: []string{"noop"}}
		ids := []string{ok1.ID, ok2.ID, otherSite.ID, otherPool.ID, otherType.ID, taken.ID, "no-such-task"}
		got, err := s.ClaimTasks(ctx, ids, f, "w1", testLease, at(2*time.Minute))
		require.NoError(t, err)
		require.Len(t, got, 2)
		for _, task := range got {
			require.Contains(t, []string{ok1.ID, ok2.ID}, task.ID)
			require.Equal(t, scanfleet.TaskStarted, task.Status)
			require.Equal(t, "w1", task.WorkerID)
			require.Equal(t, 1, task.Attempts)
		}
		// Claimed once only.
		got, err = s.ClaimTasks(ctx, ids, f, "w2", testLease, at(3*time.Minute))
		require.NoError(t, err)
		require.Empty(t, got)
		_, err = s.ClaimTasks(ctx, ids, f, "", testLease, at(3*time.Minute))
		requireCode(t, err, scanfleet.EINVALID)
	},
}

var taskFilterTests = map[string]func(*testing.T, scanfleet.Store){
	"WorkerAndCancelRequested": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "a")
		a := requestedTask("a", scanfleet.PoolExternal, "", "noop")
		b := requestedTask("a", scanfleet.PoolExternal, "", "noop")
		c := requestedTask("a", scanfleet.PoolExternal, "", "noop")
		createTasks(t, s, a, b, c)
		claim(t, s, a, "w1", at(time.Minute))
		claim(t, s, b, "w1", at(time.Minute))
		claim(t, s, c, "w2", at(time.Minute))
		_, err := s.RequestCancel(ctx, a.ID, at(2*time.Minute))
		require.NoError(t, err)
		_, err = s.RequestCancel(ctx, c.ID, at(2*time.Minute))
		require.NoError(t, err)

		got, _, err := s.ListTasks(ctx, scanfleet.TaskFilter{WorkerID: "w1"})
		require.NoError(t, err)
		require.Len(t, got, 2)
		got, _, err = s.ListTasks(ctx, scanfleet.TaskFilter{WorkerID: "w1", CancelRequested: true})
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, a.ID, got[0].ID)
	},
}
