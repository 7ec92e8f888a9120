package scanfleet

import (
	"context"
	"time"
	"unicode/utf8"

	"github.com/robfig/cron/v3"
)

// Scan is a scheduled scan definition (Crossfeed's Scan): one task type with
// its arguments, run over one or more workspaces every Frequency, on a Cron
// schedule, or only when asked.
type Scan struct {
	ID         string         `json:"id"`
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Args       map[string]any `json:"args"`
	Workspaces []string       `json:"workspaces"`
	// Frequency runs the scan this long after its last run; Cron runs it on
	// a cron schedule ("0 3 * * *", "@daily"). At most one is set; with
	// neither the scan runs only when asked.
	Frequency Duration `json:"frequency"`
	Cron      string   `json:"cron"`
	// Timeout bounds each task of the scan; zero takes the task type's.
	Timeout Duration `json:"timeout"`
	// ChunkSize splits each workspace's prefixes into chunks of at most
	// this many addresses (256: a /16 becomes 256 tasks of a /24), each
	// its own task, so work spreads over workers and a failure retries one
	// chunk. Zero runs one task per workspace.
	ChunkSize int64 `json:"chunk_size"`
	// Site pins the scan's tasks to workers of one network location.
	Site             string     `json:"site"`
	SingleRun        bool       `json:"single_run"`
	Enabled          bool       `json:"enabled"`
	ManualRunPending bool       `json:"manual_run_pending"`
	LastRunAt        *time.Time `json:"last_run_at"`
	CreatedAt        time.Time  `json:"created_at"`
	UpdatedAt        time.Time  `json:"updated_at"`
}

// MinScanFrequency is the shortest frequency a scan may have.
const MinScanFrequency = time.Minute

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseCron parses a five-field cron expression or a descriptor such as
// "@daily".
func ParseCron(expr string) (cron.Schedule, error) {
	return cronParser.Parse(expr)
}

// Validate checks the scan against the registry and canonicalizes its
// arguments. It does not check that the workspaces exist; the store does.
func (s *Scan) Validate(reg *Registry) error {
	if s.Name == "" {
		return Errorf(EINVALID, "name: is empty")
	} else if utf8.RuneCountInString(s.Name) > 128 || !utf8.ValidString(s.Name) {
		return Errorf(EINVALID, "name: must be valid text of at most 128 characters")
	}
	if s.Type == "" {
		return Errorf(EINVALID, "type: is empty")
	}
	tt, err := reg.Lookup(s.Type)
	if err != nil {
		return Errorf(EINVALID, "type: unknown task type %q", s.Type)
	}
	if s.Args == nil {
		s.Args = map[string]any{}
	}
	if s.Args, err = tt.ValidateArgs(s.Args); err != nil {
		return err
	}
	if len(s.Workspaces) == 0 {
		return Errorf(EINVALID, "workspaces: name at least one workspace")
	}
	seen := map[string]bool{}
	ws := s.Workspaces[:0:0]
	for i, w := range s.Workspaces {
		if err := ValidateSlug("workspaces["+itoa(i)+"]", w); err != nil {
			return err
		}
		if !seen[w] {
			seen[w] = true
			ws = append(ws, w)
		}
	}
	s.Workspaces = ws
	if s.Frequency != 0 && s.Cron != "" {
		return Errorf(EINVALID, "frequency and cron: set one or the other, not both")
	}
	if s.Frequency < 0 || (s.Frequency > 0 && time.Duration(s.Frequency) < MinScanFrequency) {
		return Errorf(EINVALID, "frequency: must be at least %s", MinScanFrequency)
	}
	if s.Cron != "" {
		if _, err := ParseCron(s.Cron); err != nil {
			return Errorf(EINVALID, "cron: %q: %v", s.Cron, err)
		}
	}
	if s.Timeout < 0 {
		return Errorf(EINVALID, "timeout: must not be negative")
	}
	if s.ChunkSize < 0 {
		return Errorf(EINVALID, "chunk_size: must not be negative")
	}
	if s.Site != "" {
		if err := ValidateSlug("site", s.Site); err != nil {
			return err
		}
	}
	return nil
}

// ScanUpdate holds the fields of a scan to change; nil means keep.
type ScanUpdate struct {
	Name             *string         `json:"name"`
	Args             *map[string]any `json:"args"`
	Workspaces       *[]string       `json:"workspaces"`
	Frequency        *Duration       `json:"frequency"`
	Cron             *string         `json:"cron"`
	Timeout          *Duration       `json:"timeout"`
	Site             *string         `json:"site"`
	ChunkSize        *int64          `json:"chunk_size"`
	SingleRun        *bool           `json:"single_run"`
	Enabled          *bool           `json:"enabled"`
	ManualRunPending *bool           `json:"manual_run_pending"`
}

// Apply copies the set fields onto s.
func (u ScanUpdate) Apply(s *Scan) {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&s.Name, u.Name)
	set(&s.Cron, u.Cron)
	set(&s.Site, u.Site)
	if u.Args != nil {
		s.Args = *u.Args
	}
	if u.Workspaces != nil {
		s.Workspaces = *u.Workspaces
	}
	if u.Frequency != nil {
		s.Frequency = *u.Frequency
	}
	if u.Timeout != nil {
		s.Timeout = *u.Timeout
	}
	if u.ChunkSize != nil {
		s.ChunkSize = *u.ChunkSize
	}
	for _, b := range []struct {
		dst *bool
		src *bool
	}{{&s.SingleRun, u.SingleRun}, {&s.Enabled, u.Enabled}, {&s.ManualRunPending, u.ManualRunPending}} {
		if b.src != nil {
			*b.dst = *b.src
		}
	}
}

// ScanFilter selects scans; zero fields match all.
type ScanFilter struct {
	Workspace string
	Type      string
	Enabled   *bool
	Page      Page
}

// ScanStore stores scans.
type ScanStore interface {
	// CreateScan stores a validated scan; an unknown workspace is EINVALID
	// and a taken name ECONFLICT.
	CreateScan(ctx context.Context, s *Scan) error
	FindScan(ctx context.Context, id string) (*Scan, error)
	ListScans(ctx context.Context, f ScanFilter) ([]*Scan, string, error)
	// UpdateScan replaces the scan's definition with s (already validated).
	UpdateScan(ctx context.Context, s *Scan) error
	// DeleteScan deletes the scan and cancels its tasks that are not done:
	// at once before they start; started ones are flagged for their
	// workers to stop, and returned. Other scans are not touched.
	DeleteScan(ctx context.Context, id string, now time.Time) (started []*Task, err error)
	// CreateScanTasks stores the tasks of one run of the scan and marks
	// the run on the scan (last_run_at, manual_run_pending cleared; a
	// single-run scan is disabled), in one transaction.
	CreateScanTasks(ctx context.Context, scanID string, tasks []*Task, now time.Time) error
}
