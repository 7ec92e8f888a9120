package html

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/launcher"
)

// TestLaunchAttempts renders the launcher's history, which the server
// cannot produce yet without a launcher of its own.
func TestLaunchAttempts(t *testing.T) {
	t.Parallel()
	pages, err := parseTemplates()
	require.NoError(t, err)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d := pageData{Title: "Workers", Page: "workers", User: &scanfleet.Token{Name: "v", Role: scanfleet.RoleViewer}, Body: workersData{
		Launches: []launcher.Attempt{
			{Time: now, Pool: scanfleet.PoolBaremetal, Backend: "ec2", Outcome: launcher.OutcomeLaunched, Instance: "i-0abc", WorkerID: "w-1"},
			{Time: now, Pool: scanfleet.PoolExternal, Site: "lab", Backend: "process", Outcome: launcher.OutcomeNoCapacity, Error: "no <capacity>", Repeats: 3},
		},
	}}
	var buf bytes.Buffer
	require.NoError(t, pages["workers"].ExecuteTemplate(&buf, "layout", d))
	for _, want := range []string{"<code>i-0abc</code>", "outcome-no-capacity", "no &lt;capacity&gt;", "(and 3 alike before)", "2026-01-02 03:04:05", "<td>lab</td>"} {
		require.Contains(t, buf.String(), want)
	}
}
