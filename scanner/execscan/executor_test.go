package execscan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
)

// TestRun covers the output contract, one rule per case.
func TestRun(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	cases := []struct {
		name     string
		manifest map[string]any // fields over the test manifest's
		cfg      Config
		args     map[string]any
		wantErr  []string // substrings of the error; nil: success
		records  int      // records that reached the env
		results  map[string]any
		logs     []string // substrings some log line holds
		check    func(t *testing.T, env *scanner.LocalEnv)
	}{{
		name:    "valid records are ingested",
		args:    map[string]any{"MODE": "valid", "COUNT": 5},
		records: 5,
		results: map[string]any{"lines": int64(5), "records": int64(5), "skipped": int64(0), "exit_code": 0, "out_of_scope": 0},
	}, {
		name:    "blank lines are skipped, not the end of output",
		args:    map[string]any{"MODE": "blank"},
		records: 3,
		results: map[string]any{"lines": int64(6), "records": int64(3), "skipped": int64(0)},
		check: func(t *testing.T, env *scanner.LocalEnv) {
			require.Equal(t, map[scanfleet.RecordKind]int{scanfleet.KindHost: 2, scanfleet.KindService: 1}, kinds(env.Records()))
		},
	}, {
		name:    "a line that is not JSON fails the task naming the line",
		args:    map[string]any{"MODE": "invalid"},
		wantErr: []string{"stdout line 2: malformed JSON"},
		records: 1, // the line before it was already ingested
	}, {
		name:     "skip_invalid_lines logs and counts the bad line",
		manifest: map[string]any{"skip_invalid_lines": true},
		args:     map[string]any{"MODE": "invalid"},
		records:  2,
		results:  map[string]any{"lines": int64(3), "records": int64(2), "skipped": int64(1)},
		logs:     []string{"skipped invalid stdout line 2: malformed JSON"},
	}, {
		name:    "a record the server would refuse fails the task naming line and field",
		args:    map[string]any{"MODE": "badrecord"},
		wantErr: []string{"stdout line 2", "service.port: 70000 is not a port"},
		records: 1,
	}, {
		name:    "many lines",
		args:    map[string]any{"MODE": "many", "COUNT": 100_000},
		records: 100_000,
		results: map[string]any{"lines": int64(100_000), "records": int64(100_000)},
	}, {
		name:     "a huge line under the limit is ingested whole",
		manifest: map[string]any{"max_line_bytes": 71 * mib},
		args:     map[string]any{"MODE": "huge", "SIZE": 70 * mib},
		records:  2,
		check: func(t *testing.T, env *scanner.LocalEnv) {
			require.Len(t, env.Records()[0].Data["padding"], 70*mib)
		},
	}, {
		name:    "a line over the default 64 MiB limit fails the task, never dropped",
		args:    map[string]any{"MODE": "huge", "SIZE": 70 * mib},
		wantErr: []string{"stdout line 1: longer than the 67108864-byte line limit"},
	}, {
		name:    "the worker's line limit applies without a manifest limit",
		cfg:     Config{MaxLineBytes: 1000},
		args:    map[string]any{"MODE": "huge", "SIZE": 2000},
		wantErr: []string{"stdout line 1: longer than the 1000-byte line limit"},
	}, {
		name:    "stderr is the task's log, each line bounded",
		cfg:     Config{MaxLogLineBytes: 100},
		args:    map[string]any{"MODE": "stderr", "SIZE": 10_000},
		records: 1,
		logs:    []string{"starting", "done", strings.Repeat("e", 100) + " … [9900 more bytes]"},
		check: func(t *testing.T, env *scanner.LocalEnv) {
			for _, l := range env.Logs() {
				require.NotEmpty(t, strings.TrimSpace(l), "a blank stderr line reached the log")
				require.LessOrEqual(t, len(l), 200)
			}
		},
	}, {
		name:    "a non-zero exit fails the task with the code and the last stderr lines",
		args:    map[string]any{"MODE": "exit1"},
		wantErr: []string{"exited with status 1", "working\nsomething broke"},
		records: 1, // streamed before the exit
		results: map[string]any{"exit_code": 1},
	}, {
		name:    "a Faraday bulk_create line becomes records",
		args:    map[string]any{"MODE": "bulk"},
		records: 5,
		check: func(t *testing.T, env *scanner.LocalEnv) {
			require.Equal(t, map[scanfleet.RecordKind]int{scanfleet.KindHost: 1, scanfleet.KindDomain: 1, scanfleet.KindService: 1, scanfleet.KindFinding: 2},
				kinds(env.Records()))
		},
	}, {
		name:     "a failing check command fails the task with its output, before the program runs",
		manifest: map[string]any{"check_cmds": [][]string{{testexecPath, "check-ok"}, {testexecPath, "check-fail"}}},
		args:     map[string]any{"MODE": "valid"},
		wantErr:  []string{"check_cmds[1]", "exit status 3", "testexec: the tool is not installed"},
		logs:     []string{"check-ok): ok testexec 1.0", "check-fail) failed: exit status 3", "check-fail): testexec: the tool is not installed"},
		check: func(t *testing.T, env *scanner.LocalEnv) {
			require.Equal(t, int64(0), env.Results()["lines"], "the program ran")
		},
	}, {
		name:     "check commands written as strings are split, without a shell",
		manifest: map[string]any{"check_cmds": []string{testexecPath + " check-ok"}},
		args:     map[string]any{"MODE": "valid"},
		records:  3,
		logs:     []string{"ok testexec 1.0"},
	}, {
		name:    "a missing mandatory argument fails before anything runs",
		args:    map[string]any{"COUNT": 1},
		wantErr: []string{"args.MODE: is mandatory"},
	}, {
		name:    "a process the program leaves behind is killed when it exits",
		args:    map[string]any{"MODE": "leave-child"},
		records: 1,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fields := map[string]any{}
			for k, v := range tc.manifest {
				fields[k] = replaceTestexec(t, v)
			}
			m := testManifest(t, fields)
			pidfile := filepath.Join(t.TempDir(), "pid")
			args := map[string]any{"PIDFILE": pidfile}
			for k, v := range tc.args {
				args[k] = v
			}
			env, err := run(t, context.Background(), m, tc.cfg, taskInput(args))
			if tc.wantErr == nil {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				for _, s := range tc.wantErr {
					require.Contains(t, err.Error(), s)
				}
			}
			require.Len(t, env.Records(), tc.records)
			got := env.Results()
			for k, v := range tc.results {
				require.Equal(t, v, got[k], "result %s", k)
			}
			for _, s := range tc.logs {
				require.True(t, hasLog(env, s), "no log line holds %q: %q", s, env.Logs())
			}
			if tc.check != nil {
				tc.check(t, env)
			}
			if tc.args["MODE"] == "leave-child" {
				requireDead(t, readPid(t, pidfile+".child"), "the child the program left")
			}
		})
	}
}

// testexecPath stands for the test executor's path in table fields, which
// are written before it is built.
const testexecPath = "@testexec@"

func replaceTestexec(t *testing.T, v any) any {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	b = []byte(strings.ReplaceAll(string(b), testexecPath, testexec(t)))
	var out any
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}

// TestEnvironment checks everything the program receives, and that
// nothing else of the worker's environment reaches it.
func TestEnvironment(t *testing.T) {
	t.Parallel()
	m := testManifest(t, map[string]any{
		"environment_variables": []string{"API_KEY"},
		"arguments": map[string]any{
			"MODE":   map[string]any{"mandatory": true, "type": "string"},
			"COUNT":  map[string]any{"type": "integer"},
			"PORTS":  map[string]any{"type": "port-list"},
			"DEEP":   map[string]any{"type": "boolean"},
			"QUICK":  map[string]any{"type": "boolean", "default": true},
			"WAIT":   map[string]any{"type": "duration"},
			"NAMES":  map[string]any{"type": "list"},
			"TARGET": map[string]any{"mandatory": true, "type": "list"},
		},
	})
	cfg := Config{
		Env:           map[string]string{"API_KEY": "s3cret", "UNRELATED": "not passed"},
		PluginOptions: map[string]string{"ignore_info": "true"},
	}
	in := taskInput(map[string]any{"MODE": "env", "COUNT": 7, "PORTS": "443,22,80-81", "DEEP": false, "WAIT": "90s", "NAMES": []any{"a b", `c"d`}})
	in.Targets = []string{"192.0.2.1", "198.51.100.0/30"}
	env, err := run(t, context.Background(), m, cfg, in)
	require.NoError(t, err)
	recs := env.Records()
	require.Len(t, recs, 1)
	got := map[string]string{}
	for k, v := range recs[0].Data["env"].(map[string]any) {
		got[k] = v.(string)
	}

	require.Equal(t, "env", got["EXECUTOR_CONFIG_MODE"])
	require.Equal(t, "7", got["EXECUTOR_CONFIG_COUNT"])
	require.Equal(t, "22,80-81,443", got["EXECUTOR_CONFIG_PORTS"], "canonical port list")
	require.Equal(t, "true", got["EXECUTOR_CONFIG_QUICK"], "the default applies")
	require.NotContains(t, got, "EXECUTOR_CONFIG_DEEP", "a false boolean is absent, as Faraday executors expect")
	require.Equal(t, "1m30s", got["EXECUTOR_CONFIG_WAIT"])
	require.JSONEq(t, `["a b","c\"d"]`, got["EXECUTOR_CONFIG_NAMES"])
	require.JSONEq(t, `["192.0.2.1","198.51.100.0/30"]`, got["EXECUTOR_CONFIG_TARGET"], "filled from the task's targets")
	require.Equal(t, "s3cret", got["API_KEY"])
	require.Equal(t, "true", got["AGENT_CONFIG_IGNORE_INFO"])
	require.Equal(t, m.Dir, got["SCANFLEET_EXECUTOR_DIR"])
	require.Equal(t, m.Dir, recs[0].Data["wd"], "the program runs in its directory")

	var task scanfleet.TaskInput
	require.NoError(t, json.Unmarshal([]byte(got["SCANFLEET_TASK"]), &task))
	require.Equal(t, in.TaskID, task.TaskID)
	require.Equal(t, []string{"192.0.2.1", "198.51.100.0/30"}, task.Targets)
	require.Equal(t, "22,80-81,443", task.Args["PORTS"])
	require.Equal(t, filepath.Join(got["TMPDIR"], "task.json"), got["SCANFLEET_TASK_FILE"])
	_, err = os.Stat(got["TMPDIR"])
	require.ErrorIs(t, err, os.ErrNotExist, "the run's temporary directory outlived it")

	// Nothing else: no variable of the worker's own environment leaks.
	allowed := map[string]bool{"PATH": true, "HOME": true, "LANG": true, "TMPDIR": true, "API_KEY": true,
		"SCANFLEET_TASK": true, "SCANFLEET_TASK_FILE": true, "SCANFLEET_EXECUTOR_DIR": true}
	var extra []string
	for k := range got {
		if !allowed[k] && !strings.HasPrefix(k, "EXECUTOR_CONFIG_") && !strings.HasPrefix(k, "AGENT_CONFIG_") {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	require.Empty(t, extra)
	require.NotContains(t, got, "UNRELATED")
}

// TestTargets checks that only in-scope targets reach the program.
func TestTargets(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		in         scanfleet.TaskInput
		target     any      // TARGET set by the scan; nil: not set
		want       []string // EXECUTOR_CONFIG_TARGET; nil: the program must not run
		outOfScope int
		logs       []string
	}{{
		name: "the task's targets fill TARGET",
		in:   scanfleet.TaskInput{Targets: []string{"192.0.2.7", "198.51.100.0/30", "www.example.com"}},
		want: []string{"192.0.2.7", "198.51.100.0/30", "www.example.com"},
	}, {
		name:       "a prefix is narrowed around an exclude, never passed whole",
		in:         scanfleet.TaskInput{Targets: []string{"192.0.2.0/29", "198.51.100.9"}, Exclude: []string{"192.0.2.1"}},
		want:       []string{"192.0.2.0", "192.0.2.2/31", "192.0.2.4/30", "198.51.100.9"},
		outOfScope: 1,
		logs:       []string{"out of scope, not passed to the program: 192.0.2.1: 192.0.2.1 is excluded by \"192.0.2.1\""},
	}, {
		name:       "a wholly excluded target is dropped",
		in:         scanfleet.TaskInput{Targets: []string{"192.0.2.0/24", "198.51.100.0/28"}, Exclude: []string{"198.51.100.0/24"}},
		want:       []string{"192.0.2.0/24"},
		outOfScope: 1,
		logs:       []string{"198.51.100.0/28: 198.51.100.0/28 is excluded by \"198.51.100.0/24\""},
	}, {
		name: "a TARGET the scan set is checked against the workspace's scope",
		in: scanfleet.TaskInput{Targets: []string{"192.0.2.0/24"},
			Scope: &scanfleet.Scope{Include: []string{"192.0.2.0/24"}, Exclude: []string{"192.0.2.66"}}},
		target:     []any{"192.0.2.5", "203.0.113.9", "192.0.2.66", "evil.example"},
		want:       []string{"192.0.2.5"},
		outOfScope: 3,
		logs:       []string{"203.0.113.9: 203.0.113.9 matches no include entry", "192.0.2.66 is excluded", "evil.example matches no include entry"},
	}, {
		name: "nothing in scope: the program is not run",
		in: scanfleet.TaskInput{Targets: []string{"192.0.2.0/24"},
			Scope: &scanfleet.Scope{Include: []string{"192.0.2.0/24"}}},
		target:     []any{"203.0.113.9"},
		outOfScope: 1,
		logs:       []string{"no target is in scope: the program was not run"},
	}, {
		name: "no targets at all and TARGET mandatory: the program is not run",
		in:   scanfleet.TaskInput{Targets: []string{}},
		logs: []string{"no target is in scope"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := testManifest(t, nil)
			in := tc.in
			in.TaskID = scanfleet.NewTaskID()
			in.Args = map[string]any{"MODE": "env"}
			if tc.target != nil {
				in.Args["TARGET"] = tc.target
			}
			env, err := run(t, context.Background(), m, Config{}, &in)
			require.NoError(t, err)
			require.Equal(t, tc.outOfScope, env.Results()["out_of_scope"])
			for _, s := range tc.logs {
				require.True(t, hasLog(env, s), "no log line holds %q: %q", s, env.Logs())
			}
			if tc.want == nil {
				require.Empty(t, env.Records())
				require.Equal(t, int64(0), env.Results()["lines"])
				return
			}
			require.Len(t, env.Records(), 1)
			var got []string
			penv := env.Records()[0].Data["env"].(map[string]any)
			require.NoError(t, json.Unmarshal([]byte(penv["EXECUTOR_CONFIG_TARGET"].(string)), &got))
			require.Equal(t, tc.want, got)
			var task scanfleet.TaskInput
			require.NoError(t, json.Unmarshal([]byte(penv["SCANFLEET_TASK"].(string)), &task))
			for _, target := range task.Targets {
				require.NotContains(t, []string{"203.0.113.9", "evil.example"}, target)
			}
		})
	}
}

// TestStop checks that a cancel or timeout kills the program's whole
// process group, a child included, even one that ignores SIGTERM.
func TestStop(t *testing.T) {
	t.Parallel()
	errTimeout := errors.New("timeout: ran longer than its limit")
	for _, mode := range []string{"hang", "hang-noterm"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			m := testManifest(t, nil)
			pidfile := filepath.Join(t.TempDir(), "pid")
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			ex, err := New(m, Config{KillGrace: 200e6})
			require.NoError(t, err)
			env := &scanner.LocalEnv{}
			done := make(chan error, 1)
			go func() {
				done <- ex.Run(ctx, taskInput(map[string]any{"MODE": mode, "PIDFILE": pidfile}), env)
			}()
			parent := readPid(t, pidfile)
			child := readPid(t, pidfile+".child")
			require.True(t, alive(parent) && alive(child))
			// Output is ingested as it arrives, not when the program ends.
			require.Eventually(t, func() bool { return len(env.Records()) == 1 }, time.Minute, 10*time.Millisecond)
			// The worker cancels with a cause: errTimeout for a timeout,
			// its own for a cancel request.
			cancel(errTimeout)
			err = <-done
			require.ErrorIs(t, err, errTimeout)
			requireDead(t, parent, "the program")
			requireDead(t, child, "the program's child")
		})
	}
}

// TestConcurrentRuns runs several tasks of one executor at once; each
// task's records land in its own env.
func TestConcurrentRuns(t *testing.T) {
	t.Parallel()
	m := testManifest(t, nil)
	ex, err := New(m, Config{})
	require.NoError(t, err)
	const n, per = 8, 200
	envs := make([]*scanner.LocalEnv, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		envs[i] = &scanner.LocalEnv{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = ex.Run(context.Background(), taskInput(map[string]any{"MODE": "valid", "COUNT": per, "TAG": i + 1}), envs[i])
		}()
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		recs := envs[i].Records()
		require.Len(t, recs, per)
		for _, r := range recs {
			require.True(t, strings.HasPrefix(r.Data["ip"].(string), fmt.Sprintf("10.%d.", i+1)), "task %d got %s", i, r.Data["ip"])
		}
		require.Equal(t, int64(per), envs[i].Results()["records"])
	}
}

func TestNewRequiresDeclaredVariables(t *testing.T) {
	t.Parallel()
	m := testManifest(t, map[string]any{"environment_variables": []string{"API_KEY", "API_URL"}})
	_, err := New(m, Config{Env: map[string]string{"API_URL": "https://api.example"}})
	require.ErrorContains(t, err, "environment variable API_KEY is declared by "+m.Path+" but not configured")
	_, err = New(m, Config{Env: map[string]string{"API_KEY": "", "API_URL": "x"}})
	require.NoError(t, err, "an empty value is a value")
	_, err = New(m, Config{Env: map[string]string{"API_KEY": "k", "API_URL": "x"}, PluginOptions: map[string]string{"BAD-NAME": "1"}})
	require.ErrorContains(t, err, `PluginOptions: "BAD-NAME" is not a variable name`)
}

// An ip or cidr argument other than the targets must be wholly in scope:
// the program is not run otherwise.
func TestAddressArgumentsInScope(t *testing.T) {
	t.Parallel()
	m := testManifest(t, map[string]any{"arguments": map[string]any{
		"MODE":    map[string]any{"mandatory": true, "type": "string"},
		"TARGET":  map[string]any{"mandatory": true, "type": "list"},
		"GATEWAY": map[string]any{"type": "ip"},
		"NET":     map[string]any{"type": "cidr"},
	}})
	in := func(args map[string]any) *scanfleet.TaskInput {
		a := map[string]any{"MODE": "env"}
		for k, v := range args {
			a[k] = v
		}
		return &scanfleet.TaskInput{TaskID: scanfleet.NewTaskID(), Targets: []string{"192.0.2.0/24"}, Args: a,
			Scope: &scanfleet.Scope{Include: []string{"192.0.2.0/24"}, Exclude: []string{"192.0.2.128/25"}}}
	}
	_, err := run(t, context.Background(), m, Config{}, in(map[string]any{"GATEWAY": "203.0.113.9"}))
	require.ErrorContains(t, err, "args.GATEWAY: 203.0.113.9 matches no include entry")
	_, err = run(t, context.Background(), m, Config{}, in(map[string]any{"NET": "192.0.2.0/24"}))
	require.ErrorContains(t, err, "args.NET: 192.0.2.0/24 is excluded")
	env, err := run(t, context.Background(), m, Config{}, in(map[string]any{"GATEWAY": "192.0.2.1", "NET": "192.0.2.0/26"}))
	require.NoError(t, err)
	require.Len(t, env.Records(), 1)
}
