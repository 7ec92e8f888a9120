package attacksurface

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const sampleEnv = `{
  "vms": [
    {"vm_id": "vm-a211de", "name": "jira_server", "tags": ["ci", "dev"]},
    {"vm_id": "vm-c7bac01a07", "name": "bastion", "tags": ["ssh", "dev"]}
  ],
  "fw_rules": [
    {"fw_id": "fw-82af742", "source_tag": "ssh", "dest_tag": "dev"}
  ]
}`

func TestParse(t *testing.T) {
	t.Parallel()
	env, err := Parse(strings.NewReader(sampleEnv))
	require.NoError(t, err)
	require.Equal(t, &Env{
		VMs: []VM{
			{ID: "vm-a211de", Name: "jira_server", Tags: []string{"ci", "dev"}},
			{ID: "vm-c7bac01a07", Name: "bastion", Tags: []string{"ssh", "dev"}},
		},
		Rules: []Rule{{ID: "fw-82af742", SourceTag: "ssh", DestTag: "dev"}},
	}, env)
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want string
		line int
		col  int
	}{
		{name: "syntax", in: "{\"vms\": [\n  {\"vm_id\": \"a\"},\n  {\"vm_id\" \"b\"}\n]}", want: "line 3, column 12: invalid character", line: 3, col: 12},
		{name: "truncated", in: "{\"vms\": [", want: "unexpected end of JSON input", line: 1, col: 9},
		{name: "wrong type", in: "{\"vms\": [{\"vm_id\": 42}]}", want: "cannot unmarshal number", line: 1, col: 21},
		{name: "trailing data", in: "{} x", want: "line 1, column 4: invalid character 'x' after top-level value", line: 1, col: 4},
		{name: "not an object", in: "[1]", want: "cannot unmarshal array", line: 1, col: 1},
		{name: "empty", in: "", want: "unexpected end of JSON input", line: 1, col: 1},
		{name: "missing id", in: `{"vms":[{"vm_id":"a"},{"name":"x","tags":[]}]}`, want: "vms[1]: missing vm_id"},
		{name: "empty id", in: `{"vms":[{"vm_id":""}]}`, want: "vms[0]: missing vm_id"},
		{name: "duplicate", in: `{"vms":[{"vm_id":"a"},{"vm_id":"b"},{"vm_id":"a"}]}`, want: `duplicate vm_id "a" at vms[0] and vms[2]`},
		{name: "rule tag", in: `{"fw_rules":[{"fw_id":"fw-1","source_tag":"a"}]}`, want: `fw_rules[0] ("fw-1"): missing dest_tag`},
		{name: "long id", in: `{"vms":[{"vm_id":"` + strings.Repeat("x", MaxIDBytes+1) + `"}]}`, want: "vm_id is 1025 bytes, limit 1024"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse(strings.NewReader(tt.in))
			require.ErrorIs(t, err, ErrInvalidEnv)
			require.ErrorContains(t, err, tt.want)
			var pe *ParseError
			if tt.line == 0 {
				require.False(t, errors.As(err, &pe), "validation errors carry no position")
				return
			}
			require.ErrorAs(t, err, &pe)
			require.Equal(t, tt.line, pe.Line, "line")
			require.Equal(t, tt.col, pe.Column, "column")
		})
	}
}

func TestParseAccepts(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"empty object":       `{}`,
		"null lists":         `{"vms":null,"fw_rules":null}`,
		"unknown fields":     `{"vms":[{"vm_id":"a","zone":"eu","tags":null}],"extra":1}`,
		"tag nobody carries": `{"vms":[{"vm_id":"a","tags":["x"]}],"fw_rules":[{"source_tag":"ghost","dest_tag":"x"}]}`,
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env, err := Parse(strings.NewReader(in))
			require.NoError(t, err)
			_, err = Build(env)
			require.NoError(t, err)
		})
	}
}

type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

func TestParseSizeLimit(t *testing.T) {
	t.Parallel()
	_, err := parseLimit(endless{}, "", 4096)
	require.ErrorIs(t, err, ErrInvalidEnv)
	require.ErrorContains(t, err, "input exceeds the 4096 byte limit")
	_, err = parseLimit(endless{}, "", 1<<20)
	require.ErrorContains(t, err, "input exceeds the 1 MiB limit")
	_, err = parseLimit(strings.NewReader(sampleEnv), "", int64(len(sampleEnv)))
	require.NoError(t, err, "a document of exactly the limit is accepted")

	// LoadFile rejects an oversized file from its size, without reading it.
	path := filepath.Join(t.TempDir(), "huge.json")
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(MaxInputBytes+1)) // sparse: no disk used
	require.NoError(t, f.Close())
	_, err = LoadFile(path)
	require.ErrorIs(t, err, ErrInvalidEnv)
	require.ErrorContains(t, err, "input exceeds the 256 MiB limit")
	require.ErrorContains(t, err, path)
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func TestLoadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env, err := LoadFile(writeFile(t, dir, "ok.json", sampleEnv))
	require.NoError(t, err)
	require.Len(t, env.VMs, 2)

	bad := writeFile(t, dir, "bad.json", "{\n\"vms\": [}\n")
	_, err = LoadFile(bad)
	require.ErrorIs(t, err, ErrInvalidEnv)
	require.EqualError(t, err, bad+":2:9: invalid character '}' looking for beginning of value")

	dup := writeFile(t, dir, "dup.json", `{"vms":[{"vm_id":"x"},{"vm_id":"x"}]}`)
	_, err = LoadFile(dup)
	require.ErrorContains(t, err, dup)
	require.ErrorContains(t, err, `duplicate vm_id "x"`)

	_, err = LoadFile(filepath.Join(dir, "missing.json"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestLoadDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "a.json", `{"vms":[{"vm_id":"web-1","tags":["web"]},{"vm_id":"db-1","tags":["db"]}]}`)
	writeFile(t, dir, "b.json", `{"vms":[{"vm_id":"app-1","tags":["app"]}],"fw_rules":[{"fw_id":"f1","source_tag":"app","dest_tag":"db"}]}`)
	writeFile(t, dir, "rules.json", `{"fw_rules":[{"fw_id":"f2","source_tag":"web","dest_tag":"app"}]}`)
	writeFile(t, dir, "notes.txt", `not json`)
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub.json"), 0o700))

	env, err := LoadDir(dir)
	require.NoError(t, err)
	require.Len(t, env.VMs, 3)
	require.Len(t, env.Rules, 2)
	g, err := Build(env)
	require.NoError(t, err)
	got, err := g.Attackers("db-1", ModeTransitive)
	require.NoError(t, err)
	require.Equal(t, []string{"app-1", "web-1"}, got, "rules of one file apply to VMs of another")

	writeFile(t, dir, "c.json", `{"vms":[{"vm_id":"other"},{"vm_id":"app-1"}]}`)
	_, err = LoadDir(dir)
	require.ErrorIs(t, err, ErrInvalidEnv)
	require.ErrorContains(t, err, `duplicate vm_id "app-1" in `+filepath.Join(dir, "b.json")+` (vms[0]) and `+filepath.Join(dir, "c.json")+` (vms[1])`)

	writeFile(t, dir, "c.json", `{"vms":[}`)
	_, err = LoadDir(dir)
	require.ErrorContains(t, err, filepath.Join(dir, "c.json")+":1:9:")

	env, err = LoadDir(t.TempDir())
	require.NoError(t, err)
	require.Empty(t, env.VMs)

	_, err = LoadDir(filepath.Join(dir, "nope"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestMerge(t *testing.T) {
	t.Parallel()
	a := mkEnv([]string{"a:x"}, "x>y")
	b := mkEnv([]string{"b:y"})
	env, err := Merge(a, nil, b)
	require.NoError(t, err)
	require.Equal(t, []VM{a.VMs[0], b.VMs[0]}, env.VMs)
	require.Equal(t, a.Rules, env.Rules)

	_, err = Merge(a, b, mkEnv([]string{"c:", "a:"}))
	require.ErrorIs(t, err, ErrInvalidEnv)
	require.ErrorContains(t, err, `duplicate vm_id "a" in envs[0] (vms[0]) and envs[2] (vms[1])`)

	env, err = Merge()
	require.NoError(t, err)
	require.Empty(t, env.VMs)
}

func TestWriteJSONRoundTrip(t *testing.T) {
	t.Parallel()
	env := Generate(GenConfig{VMs: 300, Tags: 40, Rules: 60, Seed: 3})
	env.VMs = append(env.VMs,
		VM{ID: "odd \"quoted\" <id>\n", Name: "ünïcode", Tags: nil},
		VM{ID: "tagless", Tags: []string{}},
	)
	var buf bytes.Buffer
	require.NoError(t, env.WriteJSON(&buf))
	require.Contains(t, buf.String(), `"tags":[]`, "nil tags are written as []")
	back, err := Parse(&buf)
	require.NoError(t, err)
	env.VMs[len(env.VMs)-2].Tags = []string{}
	require.Equal(t, env, back)
}
