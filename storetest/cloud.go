package storetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
)

var cloudTests = map[string]func(*testing.T, scanfleet.Store){
	"PutGetReplace": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "acme")
		_, err := s.GetCloud(ctx, "acme")
		requireCode(t, err, scanfleet.ENOTFOUND)

		env := &scanfleet.CloudEnv{Workspace: "acme", Data: []byte(`{"vms":[],"fw_rules":[]}`), UpdatedAt: at(0)}
		require.NoError(t, s.PutCloud(ctx, env))
		got, err := s.GetCloud(ctx, "acme")
		require.NoError(t, err)
		require.Equal(t, env, got)

		env2 := &scanfleet.CloudEnv{Workspace: "acme", Data: []byte(`{"vms":[{"vm_id":"a"}],"fw_rules":[]}`), VMCount: 1, UpdatedAt: at(time.Minute)}
		require.NoError(t, s.PutCloud(ctx, env2))
		got, err = s.GetCloud(ctx, "acme")
		require.NoError(t, err)
		require.Equal(t, env2, got)
	},
	"UnknownWorkspace": func(t *testing.T, s scanfleet.Store) {
		err := s.PutCloud(t.Context(), &scanfleet.CloudEnv{Workspace: "nope", Data: []byte(`{}`)})
		requireCode(t, err, scanfleet.ENOTFOUND, `workspace "nope" not found`)
		_, err = s.GetCloud(t.Context(), "nope")
		requireCode(t, err, scanfleet.ENOTFOUND, `workspace "nope" not found`)
	},
	"DeletedWithWorkspace": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		createWorkspace(t, s, "acme")
		require.NoError(t, s.PutCloud(ctx, &scanfleet.CloudEnv{Workspace: "acme", Data: []byte(`{}`)}))
		require.NoError(t, s.DeleteWorkspace(ctx, "acme"))
		createWorkspace(t, s, "acme")
		_, err := s.GetCloud(ctx, "acme")
		requireCode(t, err, scanfleet.ENOTFOUND)
	},
}
