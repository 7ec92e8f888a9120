package cli_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestServerLaunchesWorkers: a server with no workers of its own but
// --launch starts worker processes when tasks wait, they run the tasks,
// and the attempts are listed.
func TestServerLaunchesWorkers(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--data-dir", t.TempDir(), "--local-workers=false", "--schedule-interval", "200ms",
		"--launch", "external=process:2,idle=3s", "--launch-interval", "200ms")
	s.cli(t, "", "workspace", "create", "lab", "--include", "10.0.0.0/24")
	ids := runScan(t, s, "work", []string{"sleep=200ms", "records=3"}, "lab")
	done := s.waitTask(t, ids[0], 90*time.Second, status("finished"))
	require.NotEmpty(t, done["worker_id"])

	var launches struct {
		Items []map[string]any `json:"items"`
		Pools []map[string]any `json:"pools"`
	}
	require.NoError(t, json.Unmarshal([]byte(s.cli(t, "", "launches", "-o", "json")), &launches))
	require.NotEmpty(t, launches.Items)
	require.Equal(t, "launched", launches.Items[len(launches.Items)-1]["outcome"])
	var workers []map[string]any
	require.NoError(t, json.Unmarshal([]byte(s.cli(t, "", "workers", "-o", "json")), &workers))
	require.LessOrEqual(t, len(workers), 2, "never more than the pool's maximum: %v", workers)
}
