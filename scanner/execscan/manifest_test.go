package execscan

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
)

func writeExecutor(t *testing.T, root, name, manifest string) string {
	t.Helper()
	dir := filepath.Join(root, name)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	if manifest != "" {
		require.NoError(t, os.WriteFile(filepath.Join(dir, ManifestFile), []byte(manifest), 0o644))
	}
	return dir
}

func TestLoadDir(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dir := writeExecutor(t, root, "scan-web", `{
		"name": "scan-web", "title": "Web scan", "description": "Scans web servers.",
		"category": "Web", "website": "https://example.com", "image": null,
		"manifest_version": "1.0.0", "repo_executor": "run.py",
		"cmd": "python3 run.py --fast",
		"arguments": {
			"TARGET": {"mandatory": true, "type": "list", "base": "list"},
			"PORTS": {"type": "port-list", "default": "80,443"},
			"DEPTH": {"type": "integer", "min": 1, "max": 5, "description": "How deep."},
			"VERBOSE": true
		},
		"environment_variables": ["API_KEY"],
		"check_cmds": ["python3 --version", ["sh", "-c", "exit 0"]],
		"requirements": ["recon_data"],
		"timeout": "10m",
		"skip_invalid_lines": true,
		"max_line_bytes": 1048576
	}`)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "run.py"), []byte("print()\n"), 0o644))
	// Bad manifests, each with its problems.
	writeExecutor(t, root, "bad-fields", `{
		"name": "bad-fields", "cmd": [], "colour": "red",
		"arguments": {"1X": {"type": "string"}, "PORTS": {"type": "ports"}, "N": {"type": "integer", "typo": 1},
			"TARGET": {"type": "integer"}, "Q": {"type": "integer", "default": "many"}},
		"environment_variables": ["PATH", "EXECUTOR_CONFIG_X", "bad-name"],
		"check_cmds": [""],
		"requirements": ["gpu"],
		"timeout": "soon",
		"max_line_bytes": -1
	}`)
	writeExecutor(t, root, "misnamed", `{"name": "other", "cmd": ["true"]}`)
	writeExecutor(t, root, "missing-program", `{"name": "missing-program", "cmd": "./run.sh"}`)
	noexec := writeExecutor(t, root, "not-executable", `{"name": "not-executable", "cmd": "run.sh"}`)
	require.NoError(t, os.WriteFile(filepath.Join(noexec, "run.sh"), []byte("#!/bin/sh\n"), 0o644))
	writeExecutor(t, root, "broken-json", `{"name": "broken-json",`)
	writeExecutor(t, root, "no-manifest", "")
	writeExecutor(t, root, ".hidden", "")
	require.NoError(t, os.WriteFile(filepath.Join(root, "README.md"), []byte("# executors\n"), 0o644))

	ms, errs := LoadDir(root)
	require.Len(t, ms, 1)
	m := ms[0]
	require.Equal(t, "scan-web", m.Name)
	require.Equal(t, []string{"Web"}, m.Category)
	require.Equal(t, []string{"python3", "run.py", "--fast"}, m.Cmd)
	require.Equal(t, [][]string{{"python3", "--version"}, {"sh", "-c", "exit 0"}}, m.CheckCmds)
	require.Equal(t, Argument{Mandatory: true, Type: scanfleet.ParamString}, m.Arguments["VERBOSE"], "Faraday's shorthand")
	require.Equal(t, scanfleet.Duration(10*time.Minute), m.Timeout)
	require.Equal(t, 1<<20, m.MaxLineBytes)
	require.True(t, m.SkipInvalidLines)
	require.Equal(t, dir, m.Dir)

	byFile := map[string]string{}
	for _, err := range errs {
		var me *ManifestError
		require.ErrorAs(t, err, &me)
		byFile[filepath.Base(filepath.Dir(me.Path))] = err.Error()
		require.True(t, strings.HasPrefix(err.Error(), me.Path+": "), "the error names its file: %s", err)
	}
	require.Len(t, byFile, 6, "%v", byFile)
	for _, want := range []string{
		`colour: unknown field`,
		`cmd: is empty`,
		`arguments.1X: the name must be letters`,
		`arguments.PORTS: type: "ports" is not one of string, integer, boolean, list, ip, cidr, port-list, duration`,
		`arguments.N: unknown field "typo"`,
		`arguments.TARGET.type: "integer": a TARGET argument is filled with the task's targets`,
		`environment_variables[0]: "PATH" is set by the worker itself`,
		`environment_variables[1]: "EXECUTOR_CONFIG_X" is set by the worker itself`,
		`environment_variables[2]: "bad-name" is not a variable name`,
		`check_cmds[0]: is empty`,
		`requirements[0]: "gpu" is not one of`,
		`timeout: "soon" is not a duration`,
		`max_line_bytes: -1 is not a byte count`,
	} {
		require.Contains(t, byFile["bad-fields"], want)
	}
	require.Contains(t, byFile["misnamed"], `name: "other" does not match its directory "misnamed"`)
	require.Contains(t, byFile["missing-program"], `cmd: "./run.sh" does not exist in`)
	require.Contains(t, byFile["not-executable"], `cmd: "run.sh" is not executable`)
	require.Contains(t, byFile["broken-json"], "not a JSON object")
	require.Contains(t, byFile["no-manifest"], "no manifest.json in the executor's directory")

	// A default of the wrong type is caught once the rest is valid.
	writeExecutor(t, root, "bad-default", `{"name": "bad-default", "cmd": ["true"], "arguments": {"Q": {"type": "integer", "default": "many"}}}`)
	_, err := Load(filepath.Join(root, "bad-default", ManifestFile))
	require.ErrorContains(t, err, `arguments: param "Q": default: "many" is not an integer`)

	_, errs = LoadDir(filepath.Join(root, "nowhere"))
	require.Len(t, errs, 1)
	require.ErrorContains(t, errs[0], "read executors directory")
}

// TestTaskType checks that a scan is validated against the manifest
// through the task type, as the server validates every scan.
func TestTaskType(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	writeExecutor(t, root, "portscan-ext", `{
		"name": "portscan-ext", "description": "Scans ports.", "cmd": ["true"],
		"arguments": {
			"TARGET": {"mandatory": true, "type": "list"},
			"PORTS": {"mandatory": true, "type": "port-list"},
			"RATE": {"type": "integer", "min": 1, "max": 1000, "default": 100},
			"SOURCE": {"type": "ip"},
			"NET": {"type": "cidr"},
			"WAIT": {"type": "duration"},
			"FAST": {"type": "boolean"}
		},
		"requirements": ["raw_sockets"],
		"timeout": "10m"
	}`)
	ms, errs := LoadDir(root)
	require.Empty(t, errs)
	tt := ms[0].TaskType()
	require.NoError(t, tt.Validate())
	require.Equal(t, "portscan-ext", tt.Name)
	require.Equal(t, scanfleet.PoolBaremetal, tt.Pool())
	require.Equal(t, 10*time.Minute, tt.Timeout)
	names := []string{}
	for _, p := range tt.Params {
		names = append(names, p.Name)
		if p.Name == "TARGET" {
			require.False(t, p.Mandatory, "the executor fills TARGET with the task's targets")
		}
	}
	require.Equal(t, []string{"FAST", "NET", "PORTS", "RATE", "SOURCE", "TARGET", "WAIT"}, names)

	cases := []struct {
		args    string
		wantErr string
		want    map[string]any
	}{
		{args: `{"PORTS": "443,22,80-81"}`, want: map[string]any{"PORTS": "22,80-81,443", "RATE": int64(100)}},
		{args: `{"PORTS": [22, "8000-8001"], "TARGET": ["192.0.2.1"], "SOURCE": "::ffff:192.0.2.9", "NET": "192.0.2.7/24", "WAIT": "90s", "FAST": true}`,
			want: map[string]any{"PORTS": "22,8000-8001", "RATE": int64(100), "TARGET": []string{"192.0.2.1"}, "SOURCE": "192.0.2.9", "NET": "192.0.2.0/24", "WAIT": "1m30s", "FAST": true}},
		{args: `{}`, wantErr: "args.PORTS: is mandatory for task type portscan-ext"},
		{args: `{"PORTS": "22", "SPEED": 3}`, wantErr: "args.SPEED: unknown argument for task type portscan-ext"},
		{args: `{"PORTS": "22", "RATE": 5000}`, wantErr: "args.RATE: 5000 is more than the maximum 1000"},
		{args: `{"PORTS": "0-10"}`, wantErr: `args.PORTS: "0" is not a port`},
		{args: `{"PORTS": "22", "SOURCE": "host"}`, wantErr: `args.SOURCE: "host" is not an IP address`},
		{args: `{"PORTS": "22", "TARGET": "192.0.2.1"}`, wantErr: `args.TARGET: "192.0.2.1" is not a list of strings`},
	}
	for _, tc := range cases {
		var args map[string]any
		require.NoError(t, json.Unmarshal([]byte(tc.args), &args))
		got, err := tt.ValidateArgs(args)
		if tc.wantErr != "" {
			require.Error(t, err, tc.args)
			require.Equal(t, scanfleet.EINVALID, scanfleet.ErrorCode(err))
			require.Contains(t, scanfleet.ErrorMessage(err), tc.wantErr)
			continue
		}
		require.NoError(t, err, tc.args)
		require.Equal(t, tc.want, got)
	}
}

// TestManifestJSON checks that a loaded manifest marshals to the shape it
// was read from, for a worker to announce.
func TestManifestJSON(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	writeExecutor(t, root, "x", `{"name": "x", "cmd": "true", "check_cmds": ["true --version"], "arguments": {"TARGET": true}, "timeout": 90}`)
	ms, errs := LoadDir(root)
	require.Empty(t, errs)
	b, err := json.Marshal(ms[0])
	require.NoError(t, err)
	require.JSONEq(t, `{"name":"x","cmd":["true"],"check_cmds":[["true","--version"]],
		"arguments":{"TARGET":{"mandatory":true,"type":"string"}},"timeout":"1m30s"}`, string(b))
}

// FuzzParseManifest: a manifest either loads into a valid task type or is
// refused with problems that each name a field; it never panics.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"name":"x","cmd":"true","arguments":{"TARGET":true,"N":{"type":"integer","min":1,"max":3,"default":2}},"timeout":"1m"}`))
	f.Add([]byte(`{"name":"x","cmd":["sh","-c","true"],"check_cmds":["a b",["c"]],"requirements":["raw_sockets"],"max_line_bytes":10}`))
	f.Add([]byte(`{"name":"X","cmd":[],"arguments":{"t":{"type":"list"},"T":{}},"environment_variables":["PATH"]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := filepath.Join(t.TempDir(), "x")
		m, problems := parseManifest(data, dir)
		if len(problems) > 0 {
			require.Nil(t, m)
			for _, p := range problems {
				require.NotEmpty(t, p)
			}
			return
		}
		require.Equal(t, "x", m.Name)
		require.NotEmpty(t, m.Cmd)
		require.NoError(t, m.TaskType().Validate())
		_, err := json.Marshal(m)
		require.NoError(t, err)
	})
}
