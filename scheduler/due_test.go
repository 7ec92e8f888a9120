package scheduler

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
)

// TestIsDue is the scheduling rule as a table: when a scan with no run in
// flight in a workspace starts one.
func TestIsDue(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 12, 30, 0, 0, time.UTC)
	ago := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	ran := ago(48 * time.Hour)
	hour := scanfleet.Duration(time.Hour)
	tests := []struct {
		name    string
		scan    scanfleet.Scan
		lastEnd *time.Time
		want    bool
	}{
		{"manual pending", scanfleet.Scan{ManualRunPending: true}, ago(time.Minute), true},
		{"manual only, never asked", scanfleet.Scan{}, nil, false},
		{"frequency, never ran here", scanfleet.Scan{Frequency: hour}, nil, true},
		{"frequency, ended 30m ago", scanfleet.Scan{Frequency: hour}, ago(30 * time.Minute), false},
		{"frequency, ended 1h ago", scanfleet.Scan{Frequency: hour}, ago(time.Hour), true},
		{"single run that ran", scanfleet.Scan{SingleRun: true, Frequency: hour, LastRunAt: ran}, nil, false},
		{"single run that ran, asked again", scanfleet.Scan{SingleRun: true, LastRunAt: ran, ManualRunPending: true}, ago(time.Hour), true},
		{"single run never ran", scanfleet.Scan{SingleRun: true, Frequency: hour}, nil, true},
		{"cron, never ran", scanfleet.Scan{Cron: "0 * * * *"}, nil, true},
		{"cron, next time not reached", scanfleet.Scan{Cron: "0 * * * *"}, ago(10 * time.Minute), false},
		{"cron, next time passed", scanfleet.Scan{Cron: "0 * * * *"}, ago(40 * time.Minute), true},
		{"cron daily, ran this morning", scanfleet.Scan{Cron: "@daily"}, ago(3 * time.Hour), false},
		{"bad cron never runs", scanfleet.Scan{Cron: "not a cron"}, ago(48 * time.Hour), false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, isDue(&tt.scan, tt.lastEnd, now), tt.name)
	}
}
