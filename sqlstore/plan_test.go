package sqlstore

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"
)

// TestRunStateQueriesUseIndexes checks, on a real SQLite database with the
// migrations applied, that the scheduler's questions about a scan's runs
// are seeks in the partial indexes of migration 00007: were one of them to
// scan the tasks table, every scheduler pass would read the whole history.
// SQLite uses a partial index only when the query states its condition, so
// the query and the migration must not drift apart.
func TestRunStateQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "plan.db"))
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, Migrate(t.Context(), db, Dialect{Name: "sqlite", Goose: goose.DialectSQLite3, Placeholder: PlaceholderQuestion}))
	for _, tc := range []struct {
		query string
		uses  []string
	}{
		{runStateQuery, []string{"tasks_scan_active", "tasks_scan_finished", "tasks_scan_failed"}},
		{"SELECT " + lastEnds, []string{"tasks_scan_finished", "tasks_scan_failed"}},
		{"SELECT " + taskColumns + " " + inFlightTask, []string{"tasks_scan_active"}},
		{"SELECT id " + inFlightTask, []string{"tasks_scan_active"}},
	} {
		args := make([]any, strings.Count(tc.query, "?"))
		for i := range args {
			args[i] = "x"
		}
		rows, err := db.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+tc.query, args...)
		require.NoError(t, err)
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
			plan = append(plan, detail)
		}
		require.NoError(t, rows.Err())
		require.NoError(t, rows.Close())
		all := strings.Join(plan, "\n")
		require.NotContains(t, all, "SCAN tasks", "%s\n%s", tc.query, all)
		require.NotContains(t, all, "TEMP B-TREE", "%s\n%s", tc.query, all)
		for _, index := range tc.uses {
			require.Contains(t, all, "INDEX "+index+" ", "%s\n%s", tc.query, all)
		}
	}
}
