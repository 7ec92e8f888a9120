package cli_test

import (
	"encoding/json"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet/postgres/pgtest"
)

// TestTwoReplicasOneScheduler runs two servers on one PostgreSQL database.
// Manual runs asked of both at once start one run; the scheduler runs on
// one of them; when that one dies, the other takes over within seconds.
func TestTwoReplicasOneScheduler(t *testing.T) {
	t.Parallel()
	db := pgtest.URL(t)
	args := []string{"--database-url", db, "--local-workers=false", "--schedule-interval", "200ms"}
	a := startServer(t, append(args, "--data-dir", t.TempDir())...)
	b := launchServer(t, "127.0.0.1:0", a.token, append(args, "--data-dir", t.TempDir())...)
	a.cli(t, "", "workspace", "create", "lab", "--include", "10.0.0.0/24")
	a.cli(t, "", "scan", "create", "--name", "manual", "--type", "noop", "--workspace", "lab")

	// 20 concurrent "run now" on both replicas: one run, no duplicate.
	var wg sync.WaitGroup
	for i := range 20 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errOut, code := s.run(t, "", "scan", "run", "manual", "-o", "json")
			if code != 0 {
				// A race lost inside the store is a conflict, not a duplicate.
				require.Contains(t, errOut, "in flight", "unexpected failure: %s", errOut)
			}
		}()
	}
	wg.Wait()
	var tasks []map[string]any
	require.NoError(t, json.Unmarshal([]byte(a.cli(t, "", "task", "list", "-o", "json")), &tasks))
	require.Len(t, tasks, 1, "one run, however many asked: %v", tasks)

	// The scheduler: a scan due now gets one task in all, from one replica.
	a.cli(t, "", "scan", "create", "--name", "hourly", "--type", "noop", "--workspace", "lab", "--frequency", "1h")
	deadline := time.Now().Add(20 * time.Second)
	for countTasks(t, a, "hourly") == 0 {
		require.True(t, time.Now().Before(deadline), "no replica scheduled the scan")
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // several ticks of both
	require.Equal(t, 1, countTasks(t, a, "hourly"))

	// Kill the one that holds the lease (without a word): the other takes
	// over once the lease (3 × 200 ms) lapses.
	leader, other := a, b
	if !strings.Contains(leaderLog(a), "held=true") {
		leader, other = b, a
	}
	require.NoError(t, leader.cmd.Process.Signal(syscall.SIGKILL))
	<-leader.done
	other.cli(t, "", "scan", "create", "--name", "after", "--type", "noop", "--workspace", "lab", "--frequency", "1h")
	deadline = time.Now().Add(10 * time.Second)
	for countTasks(t, other, "after") == 0 {
		require.True(t, time.Now().Before(deadline), "the surviving replica did not take over; its log:\n%s", leaderLog(other))
		time.Sleep(100 * time.Millisecond)
	}
}

func countTasks(t *testing.T, s *server, scanName string) int {
	t.Helper()
	var scan map[string]any
	require.NoError(t, json.Unmarshal([]byte(s.cli(t, "", "scan", "get", scanName, "-o", "json")), &scan))
	var tasks []map[string]any
	require.NoError(t, json.Unmarshal([]byte(s.cli(t, "", "task", "list", "--scan", scan["id"].(string), "-o", "json")), &tasks))
	return len(tasks)
}

// leaderLog returns what the server logged of the scheduler lease.
func leaderLog(s *server) string {
	var lines []string
	for _, l := range strings.Split(s.stderrString(), "\n") {
		if strings.Contains(l, "scheduler lease") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}
