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
