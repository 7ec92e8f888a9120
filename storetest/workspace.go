package storetest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
)

var workspaceTests = map[string]func(*testing.T, scanfleet.Store){
	"CreateFind": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		w := createWorkspace(t, s, "acme")
		require.NotEmpty(t, w.ID)
		got, err := s.FindWorkspace(ctx, "acme")
		require.NoError(t, err)
		require.Equal(t, w.ID, got.ID)
		require.Equal(t, "acme", got.Name)
		require.Equal(t, w.Description, got.Description)
		require.Equal(t, w.Scope, got.Scope)
		requireTime(t, t0, got.CreatedAt, "created_at")
		requireTime(t, t0, got.UpdatedAt, "updated_at")
	},
	"CreateSetsTimes": func(t *testing.T, s scanfleet.Store) {
		before := time.Now().Add(-time.Second)
		w := &scanfleet.Workspace{Name: "fresh"}
		require.NoError(t, s.CreateWorkspace(t.Context(), w))
		require.NotEmpty(t, w.ID)
		require.True(t, w.CreatedAt.After(before), "created_at %s", w.CreatedAt)
		got, err := s.FindWorkspace(t.Context(), "fresh")
		require.NoError(t, err)
		requireTime(t, w.CreatedAt, got.CreatedAt, "created_at")
		requireTime(t, w.CreatedAt, got.UpdatedAt, "updated_at")
	},
	"DuplicateName": func(t *testing.T, s scanfleet.Store) {
		createWorkspace(t, s, "acme")
		err := s.CreateWorkspace(t.Context(), &scanfleet.Workspace{Name: "acme"})
		requireCode(t, err, scanfleet.ECONFLICT, `workspace "acme" already exists`)
	},
	"InvalidName": func(t *testing.T, s scanfleet.Store) {
		for _, name := range []string{"", "Acme", "-x", "a b"} {
			err := s.CreateWorkspace(t.Context(), &scanfleet.Workspace{Name: name})
			requireCode(t, err, scanfleet.EINVALID)
		}
	},
	"NotFound": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		const msg = `workspace "nope" not found`
		_, err := s.FindWorkspace(ctx, "nope")
		requireCode(t, err, scanfleet.ENOTFOUND, msg)
		_, err = s.UpdateWorkspace(ctx, "nope", scanfleet.WorkspaceUpdate{Description: ptr("x")})
		requireCode(t, err, scanfleet.ENOTFOUND, msg)
		requireCode(t, s.DeleteWorkspace(ctx, "nope"), scanfleet.ENOTFOUND, msg)
	},
	"Update": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		w := createWorkspace(t, s, "acme")
		got, err := s.UpdateWorkspace(ctx, "acme", scanfleet.WorkspaceUpdate{Description: ptr("new words")})
		require.NoError(t, err)
		require.Equal(t, "new words", got.Description)
		require.Equal(t, w.Scope, got.Scope, "scope kept")
		require.True(t, got.UpdatedAt.After(w.UpdatedAt))
		requireTime(t, t0, got.CreatedAt, "created_at")

		scope := scanfleet.Scope{Include: []string{"192.168.1.0/24"}, Exclude: []string{}}
		got, err = s.UpdateWorkspace(ctx, "acme", scanfleet.WorkspaceUpdate{Scope: &scope})
		require.NoError(t, err)
		require.Equal(t, "new words", got.Description, "description kept")
		require.Equal(t, scope, got.Scope)

		found, err := s.FindWorkspace(ctx, "acme")
		require.NoError(t, err)
		require.Equal(t, got.Description, found.Description)
		require.Equal(t, got.Scope, found.Scope)
		requireTime(t, got.UpdatedAt, found.UpdatedAt, "updated_at")
	},
	"ListPages": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		var names []string
		for i := range 11 {
			names = append(names, fmt.Sprintf("ws-%02d", i))
		}
		shuffled := slices.Clone(names)
		rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		for _, n := range shuffled {
			createWorkspace(t, s, n)
		}
		var got []string
		page := scanfleet.Page{Limit: 4}
		for calls := 0; ; calls++ {
			require.Less(t, calls, 5, "too many pages")
			ws, next, err := s.ListWorkspaces(ctx, page)
			require.NoError(t, err)
			require.LessOrEqual(t, len(ws), 4)
			for _, w := range ws {
				got = append(got, w.Name)
			}
			if next == "" {
				break
			}
			page.Cursor = next
		}
		require.Equal(t, names, got, "every workspace once, by name")

		all, next, err := s.ListWorkspaces(ctx, scanfleet.Page{})
		require.NoError(t, err)
		require.Len(t, all, 11)
		require.Empty(t, next)
	},
	"ListBadPage": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		_, _, err := s.ListWorkspaces(ctx, scanfleet.Page{Cursor: "not a cursor!"})
		requireCode(t, err, scanfleet.EINVALID)
		_, _, err = s.ListWorkspaces(ctx, scanfleet.Page{Limit: scanfleet.MaxPageLimit + 1})
		requireCode(t, err, scanfleet.EINVALID)
		_, _, err = s.ListWorkspaces(ctx, scanfleet.Page{Limit: -1})
		requireCode(t, err, scanfleet.EINVALID)
	},
	"DeleteCascades": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "doomed")
		createWorkspace(t, s, "kept")
		scan := &scanfleet.Scan{Name: "both", Type: "noop", Workspaces: []string{"doomed", "kept"}, Enabled: true}
		require.NoError(t, s.CreateScan(ctx, scan))
		doomedTask := createTasks(t, s, newTask("doomed", scanfleet.TaskCreated, t0))[0]
		keptTask := createTasks(t, s, newTask("kept", scanfleet.TaskCreated, t0))[0]
		require.NoError(t, s.AppendTaskLogs(ctx, doomedTask.ID, []string{"a", "b"}, t0))
		recs := []scanfleet.Record{hostRecord(t, "10.0.0.1"), hostRecord(t, "10.0.0.2")}
		_, err := s.UpsertRecords(ctx, "doomed", doomedTask.ID, recs, t0)
		require.NoError(t, err)
		_, err = s.UpsertRecords(ctx, "kept", keptTask.ID, recs, t0)
		require.NoError(t, err)

		require.NoError(t, s.DeleteWorkspace(ctx, "doomed"))

		_, err = s.FindWorkspace(ctx, "doomed")
		requireCode(t, err, scanfleet.ENOTFOUND)
		_, err = s.FindTask(ctx, doomedTask.ID)
		requireCode(t, err, scanfleet.ENOTFOUND)
		_, err = s.ListTaskLogs(ctx, doomedTask.ID, 0, 0)
		requireCode(t, err, scanfleet.ENOTFOUND)
		counts, err := s.CountRecords(ctx, "")
		require.NoError(t, err)
		require.Equal(t, int64(2), counts[scanfleet.KindHost], "only the kept workspace's records are left")
		_, err = s.FindTask(ctx, keptTask.ID)
		require.NoError(t, err)
		got, err := s.FindScan(ctx, scan.ID)
		require.NoError(t, err, "the scan stays")
		require.Equal(t, []string{"kept"}, got.Workspaces)

		// The name is free again, and the new workspace starts empty.
		createWorkspace(t, s, "doomed")
		counts, err = s.CountRecords(ctx, "doomed")
		require.NoError(t, err)
		require.Zero(t, counts[scanfleet.KindHost])
		requireCode(t, s.DeleteWorkspace(ctx, "gone"), scanfleet.ENOTFOUND)
	},
}
