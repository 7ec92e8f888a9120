package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
)

// NewStoreFunc returns a fresh, empty, migrated store for one test and
// closes it when the test ends (t.Cleanup).
type NewStoreFunc func(t *testing.T) scanfleet.Store

// Run runs the whole store suite. Every leaf test asks newStore for a store
// of its own, so the tests run in parallel and never see each other's rows.
func Run(t *testing.T, newStore NewStoreFunc) {
	for _, group := range []struct {
		name  string
		tests map[string]func(*testing.T, scanfleet.Store)
	}{
		{"Workspace", workspaceTests},
		{"Scan", scanTests},
		{"Task", taskTests},
		{"TaskLog", taskLogTests},
		{"Record", recordTests},
		{"Token", tokenTests},
		{"Cloud", cloudTests},
		{"Route", routeTests},
		{"ClaimBatch", claimBatchTests},
		{"TaskFilter", taskFilterTests},
		{"Lease", leaseTests},
		{"Worker", workerTests},
		{"Artifact", artifactTests},
		{"Schedule", scheduleTests},
		{"Store", storeTests},
	} {
		t.Run(group.name, func(t *testing.T) {
			t.Parallel()
			for name, test := range group.tests {
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					test(t, newStore(t))
				})
			}
		})
	}
}

var storeTests = map[string]func(*testing.T, scanfleet.Store){
	"Ping": func(t *testing.T, s scanfleet.Store) {
		require.NoError(t, s.Ping(t.Context()))
	},
}

// t0 is the suite's reference time; it has microseconds, which the store
// keeps, and nothing finer.
var t0 = time.Date(2025, 3, 1, 12, 30, 45, 123456000, time.UTC)

// at returns t0 plus d.
func at(d time.Duration) time.Time { return t0.Add(d) }

// requireCode checks that err is an application error with the code and,
// when given, exactly the message.
func requireCode(t *testing.T, err error, code string, msg ...string) {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, code, scanfleet.ErrorCode(err), "error: %v", err)
	if len(msg) > 0 {
		require.Equal(t, msg[0], scanfleet.ErrorMessage(err))
	}
}

// requireTime checks that got is want, in UTC.
func requireTime(t *testing.T, want, got time.Time, field string) {
	t.Helper()
	require.Truef(t, want.Equal(got), "%s: want %s, got %s", field, want, got)
	require.Equalf(t, time.UTC, got.Location(), "%s: not in UTC", field)
}

// requireTimePtr checks an optional time.
func requireTimePtr(t *testing.T, want, got *time.Time, field string) {
	t.Helper()
	if want == nil {
		require.Nilf(t, got, "%s: want nil, got %v", field, got)
		return
	}
	require.NotNilf(t, got, "%s: want %s, got nil", field, want)
	requireTime(t, *want, *got, field)
}

// requireJSONEqual compares two values by their JSON encoding, since the
// store hands back numbers as json.Number.
func requireJSONEqual(t *testing.T, want, got any, field string) {
	t.Helper()
	w, err := json.Marshal(want)
	require.NoError(t, err)
	g, err := json.Marshal(got)
	require.NoError(t, err)
	require.JSONEqf(t, string(w), string(g), "%s", field)
}

func ptr[T any](v T) *T { return &v }

// createWorkspace stores a workspace with a small scope.
func createWorkspace(t *testing.T, s scanfleet.Store, name string) *scanfleet.Workspace {
	t.Helper()
	w := &scanfleet.Workspace{
		Name:        name,
		Description: "the " + name + " workspace",
		Scope:       scanfleet.Scope{Include: []string{"10.0.0.0/24", "*.example.com"}, Exclude: []string{"10.0.0.1"}},
		CreatedAt:   t0,
	}
	require.NoError(t, s.CreateWorkspace(t.Context(), w))
	return w
}

// newTask returns an unsaved task of the workspace in the given status.
func newTask(workspace string, status scanfleet.TaskStatus, created time.Time) *scanfleet.Task {
	return &scanfleet.Task{
		ID:          scanfleet.NewTaskID(),
		Type:        "noop",
		Workspace:   workspace,
		Pool:        scanfleet.PoolExternal,
		Status:      status,
		MaxAttempts: scanfleet.DefaultMaxAttempts,
		Timeout:     scanfleet.Duration(10 * time.Minute),
		Input:       json.RawMessage(`{"targets":["10.0.0.0/24"]}`),
		CreatedAt:   created,
		UpdatedAt:   created,
	}
}

// createTasks stores tasks and returns them.
func createTasks(t *testing.T, s scanfleet.Store, tasks ...*scanfleet.Task) []*scanfleet.Task {
	t.Helper()
	require.NoError(t, s.CreateTasks(t.Context(), tasks))
	return tasks
}
