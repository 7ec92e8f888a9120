package attacksurface_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/attacksurface"
	"github.com/scanfleet/scanfleet/scanner"
	"github.com/scanfleet/scanfleet/sqlite"
)

// TestExecutor runs the attack-surface executor over an environment stored
// in a real SQLite store and checks that its findings are valid records.
func TestExecutor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "s.db")})
	require.NoError(t, err)
	defer store.Close()
	require.NoError(t, store.CreateWorkspace(ctx, &scanfleet.Workspace{Name: "acme"}))
	env := `{"vms":[{"vm_id":"edge-1","tags":["internet"]},{"vm_id":"app-1","tags":["app"]},{"vm_id":"db-1","tags":["db"]}],
		"fw_rules":[{"source_tag":"internet","dest_tag":"app"},{"source_tag":"app","dest_tag":"db"}]}`
	require.NoError(t, store.PutCloud(ctx, &scanfleet.CloudEnv{Workspace: "acme", Data: []byte(env), VMCount: 3, RuleCount: 2}))

	ex := attacksurface.Executor{}
	require.Equal(t, scanfleet.PoolInternal, ex.TaskType().Pool())
	args, err := ex.TaskType().ValidateArgs(map[string]any{})
	require.NoError(t, err)
	s := &scanner.LocalEnv{TaskData: store} // validates each record as ingest does
	require.NoError(t, ex.Run(ctx, &scanfleet.TaskInput{Workspace: "acme", Args: args}, s))
	recs := s.Records()
	require.Len(t, recs, 2)
	done, _ := s.LastProgress()
	require.EqualValues(t, 2, done)
	for _, rec := range recs {
		require.Equal(t, scanfleet.KindFinding, rec.Kind)
	}
	res, err := store.UpsertRecords(ctx, "acme", "", recs, time.Now())
	require.NoError(t, err)
	require.Equal(t, 2, res.New)

	// Without task data access the executor refuses clearly.
	err = ex.Run(ctx, &scanfleet.TaskInput{Workspace: "acme", Args: args}, &scanner.LocalEnv{})
	require.ErrorContains(t, err, "task data")
	// A workspace without an environment is an error that says so.
	require.NoError(t, store.CreateWorkspace(ctx, &scanfleet.Workspace{Name: "bare"}))
	err = ex.Run(ctx, &scanfleet.TaskInput{Workspace: "bare", Args: args}, &scanner.LocalEnv{TaskData: store})
	require.True(t, strings.Contains(err.Error(), "no cloud environment"), err.Error())
}
