package scanfleet

import (
	"encoding/json"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func TestCanTransition(t *testing.T) {
	t.Parallel()

	// The lifecycle, written out independently of taskTransitions.
	legal := map[TaskStatus][]TaskStatus{
		TaskCreated:   {TaskQueued, TaskRequested, TaskCancelled, TaskFailed},
		TaskQueued:    {TaskCreated, TaskRequested, TaskCancelled, TaskFailed},
		TaskRequested: {TaskQueued, TaskStarted, TaskCancelled, TaskFailed},
		TaskStarted:   {TaskRequested, TaskFinished, TaskFailed, TaskCancelled},
	}
	all := append(slices.Clone(TaskStatuses), "", "bogus", "Started")
	for _, from := range all {
		for _, to := range all {
			want := slices.Contains(legal[from], to)
			t.Run(string(from)+"→"+string(to), func(t *testing.T) {
				t.Parallel()
				require.Equal(t, want, CanTransition(from, to))
			})
		}
	}
}

func TestTransitionSources(t *testing.T) {
	t.Parallel()
	tests := []struct {
		to   TaskStatus
		from []TaskStatus
	}{
		{TaskCreated, []TaskStatus{TaskQueued}},
		{TaskQueued, []TaskStatus{TaskCreated, TaskRequested}},
		{TaskRequested, []TaskStatus{TaskCreated, TaskQueued, TaskStarted}},
		{TaskStarted, []TaskStatus{TaskRequested}},
		{TaskFinished, []TaskStatus{TaskStarted}},
		{TaskFailed, []TaskStatus{TaskCreated, TaskQueued, TaskRequested, TaskStarted}},
		{TaskCancelled, []TaskStatus{TaskCreated, TaskQueued, TaskRequested, TaskStarted}},
		{"bogus", nil},
	}
	for _, tt := range tests {
		t.Run(string(tt.to), func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.from, TransitionSources(tt.to))
		})
	}
}

func TestTaskStatusTerminalAndValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status   TaskStatus
		valid    bool
		terminal bool
	}{
		{TaskCreated, true, false},
		{TaskQueued, true, false},
		{TaskRequested, true, false},
		{TaskStarted, true, false},
		{TaskFinished, true, true},
		{TaskFailed, true, true},
		{TaskCancelled, true, true},
		{"", false, false},
		{"done", false, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.status), func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.valid, tt.status.Valid())
			require.Equal(t, tt.terminal, tt.status.Terminal())
			if tt.valid {
				// Terminal means exactly: no transition leaves it.
				var leaves bool
				for _, to := range TaskStatuses {
					leaves = leaves || CanTransition(tt.status, to)
				}
				require.Equal(t, tt.terminal, !leaves)
			}
		})
	}
	require.Len(t, TaskStatuses, 7)
}

func TestParseTaskStatus(t *testing.T) {
	t.Parallel()
	for _, s := range TaskStatuses {
		got, err := ParseTaskStatus(string(s))
		require.NoError(t, err)
		require.Equal(t, s, got)
	}
	for _, s := range []string{"", "Created", " started", "done", "canceled"} {
		t.Run(s, func(t *testing.T) {
			t.Parallel()
			got, err := ParseTaskStatus(s)
			require.Empty(t, got)
			require.Equal(t, EINVALID, ErrorCode(err))
			require.Equal(t, `status: "`+s+`" is not one of created, queued, requested, started, finished, failed, cancelled`, ErrorMessage(err))
		})
	}
}

func TestNewTaskID(t *testing.T) {
	t.Parallel()
	ids := make([]string, 1000)
	seen := make(map[string]bool, len(ids))
	for i := range ids {
		ids[i] = NewTaskID()
		u, err := uuid.Parse(ids[i])
		require.NoError(t, err)
		require.Equal(t, uuid.Version(7), u.Version())
		require.Equal(t, uuid.RFC4122, u.Variant())
		require.False(t, seen[ids[i]], "duplicate id %s", ids[i])
		seen[ids[i]] = true
	}
	require.True(t, slices.IsSorted(ids), "ids made one after another sort in that order")
}

func TestNewScanTasks(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	workspaces := []*Workspace{
		{Name: "acme", Scope: Scope{Include: []string{"10.0.0.0/24", "*.acme.example"}, Exclude: []string{"10.0.0.5"}}},
		{Name: "globex", Scope: Scope{Include: []string{"2001:db8::/64"}, Exclude: []string{}}},
		{Name: "initech", Scope: Scope{Include: []string{"initech.example"}}},
	}

	tests := []struct {
		name    string
		scan    Scan
		tt      TaskType
		pool    Pool
		timeout time.Duration
	}{
		{
			name:    "defaults to one hour",
			scan:    Scan{ID: "scan-1", Args: map[string]any{"ports": "22,80"}},
			tt:      TaskType{Name: "portscan"},
			pool:    PoolExternal,
			timeout: DefaultTaskTimeout,
		},
		{
			name:    "the task type's timeout",
			scan:    Scan{ID: "scan-2", Site: "dc-1"},
			tt:      TaskType{Name: "synscan", Requirements: []Requirement{RequireRawSockets, RequireReconData}, Timeout: 5 * time.Minute},
			pool:    PoolBaremetal,
			timeout: 5 * time.Minute,
		},
		{
			name:    "the scan's timeout wins",
			scan:    Scan{ID: "scan-3", Timeout: Duration(30 * time.Second)},
			tt:      TaskType{Name: "dns", Requirements: []Requirement{RequireReconData}, Timeout: 5 * time.Minute},
			pool:    PoolInternal,
			timeout: 30 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tasks, err := NewScanTasks(&tt.scan, &tt.tt, workspaces, now)
			require.NoError(t, err)
			require.Len(t, tasks, len(workspaces))

			var ids []string
			for i, task := range tasks {
				ws := workspaces[i]
				u, err := uuid.Parse(task.ID)
				require.NoError(t, err)
				require.Equal(t, uuid.Version(7), u.Version())
				require.NotContains(t, ids, task.ID)
				ids = append(ids, task.ID)

				require.Equal(t, tt.scan.ID, task.ScanID)
				require.Equal(t, tt.tt.Name, task.Type)
				require.Equal(t, ws.Name, task.Workspace)
				require.Equal(t, tt.pool, task.Pool)
				require.Equal(t, tt.scan.Site, task.Site)
				require.Equal(t, TaskRequested, task.Status)
				require.Equal(t, DefaultMaxAttempts, task.MaxAttempts)
				require.Zero(t, task.Attempts)
				require.Equal(t, Duration(tt.timeout), task.Timeout)
				require.Equal(t, now, task.CreatedAt)
				require.Equal(t, now, task.UpdatedAt)
				require.Nil(t, task.StartedAt)

				var in TaskInput
				require.NoError(t, json.Unmarshal(task.Input, &in))
				require.Equal(t, TaskInput{
					TaskID: task.ID, ScanID: tt.scan.ID, Type: tt.tt.Name, Workspace: ws.Name,
					Args: tt.scan.Args, Targets: ws.Scope.Include, Exclude: ws.Scope.Exclude,
					Scope: &ws.Scope, Chunk: Chunk{N: 1, Of: 1},
				}, in)

				// The wire names the executor reads.
				var raw map[string]json.RawMessage
				require.NoError(t, json.Unmarshal(task.Input, &raw))
				for _, k := range []string{"task_id", "scan_id", "type", "workspace", "args", "targets", "exclude", "scope", "chunk"} {
					require.Contains(t, raw, k)
				}
				require.JSONEq(t, `{"n":1,"of":1}`, string(raw["chunk"]))
			}
			require.True(t, slices.IsSorted(ids), "ids are time-ordered")
		})
	}

	t.Run("no workspaces", func(t *testing.T) {
		t.Parallel()
		tasks, err := NewScanTasks(&Scan{ID: "s"}, NoopTaskType(), nil, now)
		require.NoError(t, err)
		require.Empty(t, tasks)
	})

	t.Run("input names the task", func(t *testing.T) {
		t.Parallel()
		tasks, err := NewScanTasks(&Scan{ID: "s", Args: map[string]any{"sleep": "1s", "records": int64(3)}}, NoopTaskType(), workspaces[:1], now)
		require.NoError(t, err)
		require.JSONEq(t, `{
			"task_id": "`+tasks[0].ID+`", "scan_id": "s", "type": "noop", "workspace": "acme",
			"args": {"sleep": "1s", "records": 3},
			"targets": ["10.0.0.0/24", "*.acme.example"], "exclude": ["10.0.0.5"],
			"scope": {"include": ["10.0.0.0/24", "*.acme.example"], "exclude": ["10.0.0.5"]},
			"chunk": {"n": 1, "of": 1}
		}`, string(tasks[0].Input))
		require.Equal(t, Duration(10*time.Minute), tasks[0].Timeout)
	})
}

func TestCheckTargets(t *testing.T) {
	t.Parallel()
	m := Scope{Include: []string{"10.0.0.0/24", "*.acme.example"}, Exclude: []string{"10.0.0.5", "vpn.acme.example"}}.MustCompile()
	require.NoError(t, m.CheckTargets([]string{"10.0.0.1", "10.0.0.0/16", "www.acme.example", "https://app.acme.example:8443/x", "10.0.0.9:22", "other.example"}))
	for target, msg := range map[string]string{
		"10.0.0.5":          `targets[0]: 10.0.0.5 is excluded by "10.0.0.5"`,
		"192.168.1.1":       "targets[0]: 192.168.1.1 matches no include entry",
		"10.0.1.0/24":       "targets[0]: 10.0.1.0/24 matches no include entry",
		"vpn.acme.example":  `targets[0]: vpn.acme.example is excluded by "vpn.acme.example"`,
		"10.0.0.1:http":     `targets[0]: "10.0.0.1:http" is not a valid target: port "http" is not a number between 1 and 65535`,
		"bad_name!.example": `targets[0]: "bad_name!.example" is not a valid target`,
	} {
		err := m.CheckTargets([]string{target})
		require.Error(t, err, target)
		require.Equal(t, EINVALID, ErrorCode(err))
		require.Contains(t, ErrorMessage(err), msg, target)
	}
}

func TestChunkTargets(t *testing.T) {
	t.Parallel()
	got, err := ChunkTargets([]string{"10.0.0.0/22", "10.9.0.1", "10.9.0.2", "a.example", "10.8.0.0/25", "10.7.0.0/25", "10.6.0.0/25", "*.b.example"}, 256)
	require.NoError(t, err)
	require.Equal(t, [][]string{
		{"10.0.0.0/24"}, {"10.0.1.0/24"}, {"10.0.2.0/24"}, {"10.0.3.0/24"},
		{"10.9.0.1", "10.9.0.2", "10.8.0.0/25"}, {"10.7.0.0/25", "10.6.0.0/25"},
		{"a.example", "*.b.example"},
	}, got)
	// A chunk size that is not a power of two rounds down: /24s of 256.
	got, err = ChunkTargets([]string{"10.0.0.0/23"}, 300)
	require.NoError(t, err)
	require.Equal(t, [][]string{{"10.0.0.0/24"}, {"10.0.1.0/24"}}, got)
	// An IPv6 /64 in chunks of 256 would be 2^56 tasks.
	_, err = ChunkTargets([]string{"2001:db8::/64"}, 256)
	require.ErrorContains(t, err, "more than 65536 tasks")
	got, err = ChunkTargets(nil, 256)
	require.NoError(t, err)
	require.Equal(t, [][]string{nil}, got)

	// A scan with chunk_size makes one task per chunk, numbered.
	ws := &Workspace{Name: "acme", Scope: Scope{Include: []string{"10.0.0.0/23", "www.acme.example"}}}
	tasks, err := NewScanTasks(&Scan{ID: "s", ChunkSize: 256}, NoopTaskType(), []*Workspace{ws}, time.Now())
	require.NoError(t, err)
	require.Len(t, tasks, 3)
	var in TaskInput
	require.NoError(t, json.Unmarshal(tasks[1].Input, &in))
	require.Equal(t, []string{"10.0.1.0/24"}, in.Targets)
	require.Equal(t, Chunk{N: 2, Of: 3}, in.Chunk)
	require.Equal(t, ws.Scope.Include, in.Scope.Include)
}

// FuzzChunkTargets checks that chunks cover the targets' addresses
// exactly, none larger than the chunk size, and that the names all come
// back.
func FuzzChunkTargets(f *testing.F) {
	f.Add("10.0.0.0/22,10.9.0.1,a.example", int64(256))
	f.Add("10.0.0.0/24", int64(1))
	f.Add("2001:db8::/120,10.0.0.0/30", int64(3))
	f.Fuzz(func(t *testing.T, list string, size int64) {
		if size <= 0 || size > 1<<20 {
			return
		}
		targets := strings.Split(list, ",")
		chunks, err := ChunkTargets(targets, size)
		if err != nil {
			return
		}
		want, got := 0.0, 0.0
		names := 0
		for _, target := range targets {
			if p, err := netip.ParsePrefix(target); err == nil {
				want += math.Pow(2, float64(p.Addr().BitLen()-p.Bits()))
			} else if a, err := netip.ParseAddr(target); err == nil {
				_ = a
				want++
			} else {
				names++
			}
		}
		gotNames := 0
		for _, c := range chunks {
			n := 0.0
			for _, target := range c {
				if p, err := netip.ParsePrefix(target); err == nil {
					n += math.Pow(2, float64(p.Addr().BitLen()-p.Bits()))
				} else if _, err := netip.ParseAddr(target); err == nil {
					n++
				} else {
					gotNames++
				}
			}
			if n > float64(size) && len(c) > 1 {
				t.Fatalf("chunk %v holds %v addresses, more than %d", c, n, size)
			}
			got += n
		}
		if got != want || gotNames != names {
			t.Fatalf("chunks %v cover %v addresses and %d names; the targets %v have %v and %d", chunks, got, gotNames, targets, want, names)
		}
	})
}

// FuzzCheckTargets: whatever a user submits, the check answers without
// panicking, and what it accepts as an address is in scope.
func FuzzCheckTargets(f *testing.F) {
	f.Add("10.0.0.1")
	f.Add("10.0.0.0/16")
	f.Add("https://www.acme.example:8443/x")
	f.Add("[::1]:80")
	m := Scope{Include: []string{"10.0.0.0/24", "*.acme.example"}, Exclude: []string{"10.0.0.5"}}.MustCompile()
	f.Fuzz(func(t *testing.T, target string) {
		if err := m.CheckTargets([]string{target}); err != nil {
			if ErrorCode(err) != EINVALID {
				t.Fatalf("%q: %v is not EINVALID", target, err)
			}
			return
		}
		host, err := TargetHost(target)
		if err != nil {
			t.Fatalf("%q accepted but has no host: %v", target, err)
		}
		if a, err := netip.ParseAddr(host); err == nil && !m.Contains(a.String()) {
			t.Fatalf("%q accepted but %s is out of scope", target, a)
		}
	})
}
