package execscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/scanfleet/scanfleet"
)

// ManifestFile is the name of an executor's manifest inside its directory:
// <executors dir>/<name>/manifest.json.
const ManifestFile = "manifest.json"

// Limits a manifest may not exceed.
const (
	// MaxLineLimit is the largest max_line_bytes a manifest may set.
	MaxLineLimit = 1 << 30
	// maxManifestBytes bounds the manifest file itself.
	maxManifestBytes = 1 << 20
)

// Manifest describes one executor: the program to run, its arguments and
// environment, and what it needs from the worker. Its JSON form is
// Faraday's executor manifest extended with requirements, timeout and the
// output options; LoadDir reads it, and a worker may announce it as is.
type Manifest struct {
	// Name is the executor's name and its task type's name, a slug equal
	// to the name of the manifest's directory.
	Name        string `json:"name"`
	Title       string `json:"title,omitempty"`
	Description string `json:"description,omitempty"`
	// Category is one or more free-form labels (Faraday writes a string,
	// sometimes a list).
	Category []string `json:"category,omitempty"`
	// Website is Faraday's link to the tool; informational.
	Website string `json:"website,omitempty"`
	// Cmd is the program's argv. Written as a string it is split on white
	// space, never run through a shell. A first element with a slash, or
	// naming a file in the manifest's directory, is that file; any other
	// is looked up in PATH. The program runs in the manifest's directory.
	Cmd []string `json:"cmd"`
	// Arguments are the task's arguments, passed as EXECUTOR_CONFIG_<NAME>.
	Arguments map[string]Argument `json:"arguments,omitempty"`
	// EnvironmentVariables are names whose values come from the worker's
	// configuration (API keys, paths); each must be configured.
	EnvironmentVariables []string `json:"environment_variables,omitempty"`
	// CheckCmds run before the program on every task; any that fails fails
	// the task with its output. Each is an argv resolved like Cmd.
	CheckCmds [][]string `json:"check_cmds,omitempty"`
	// Requirements decide the pool that runs the executor's tasks.
	Requirements []scanfleet.Requirement `json:"requirements,omitempty"`
	// Timeout is the task type's default timeout; zero means one hour.
	Timeout scanfleet.Duration `json:"timeout,omitempty"`
	// SkipInvalidLines logs and counts an output line that is not a valid
	// record or document instead of failing the task.
	SkipInvalidLines bool `json:"skip_invalid_lines,omitempty"`
	// MaxLineBytes overrides the worker's line limit for this executor;
	// zero keeps the worker's (64 MiB unless configured).
	MaxLineBytes int `json:"max_line_bytes,omitempty"`

	// Dir is the manifest's directory, absolute.
	Dir string `json:"-"`
	// Path is the manifest file, as given to Load.
	Path string `json:"-"`
}

// Argument declares one argument of an executor. Faraday's shorthand
// `"TARGET": true` (a mandatory string) is accepted too.
type Argument struct {
	Mandatory bool                `json:"mandatory"`
	Type      scanfleet.ParamType `json:"type"`
	// Default applies when a scan does not set the argument.
	Default     any    `json:"default,omitempty"`
	Description string `json:"description,omitempty"`
	// Min and Max bound an integer argument.
	Min *int64 `json:"min,omitempty"`
	Max *int64 `json:"max,omitempty"`
}

// ManifestError lists what is wrong with one manifest file.
type ManifestError struct {
	Path     string
	Problems []string // each names its field: `arguments.PORTS.type: "ports" is not …`
}

func (e *ManifestError) Error() string {
	return e.Path + ": " + strings.Join(e.Problems, "; ")
}

// LoadDir loads every executor in dir: each subdirectory holding a
// manifest.json. A bad manifest is reported in the errors and does not
// prevent loading the others; a subdirectory without a manifest is an
// error too, since it is most likely a misnamed file. Hidden entries and
// plain files (a README) are skipped. The manifests come sorted by name.
func LoadDir(dir string) ([]*Manifest, []error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, []error{fmt.Errorf("read executors directory: %w", err)}
	}
	var (
		out  []*Manifest
		errs []error
	)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if !e.IsDir() {
			// A symlink to a directory counts as one.
			if st, err := os.Stat(p); err != nil || !st.IsDir() {
				continue
			}
		}
		m, err := Load(filepath.Join(p, ManifestFile))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, errs
}

// Load reads and validates one manifest file. The error is a
// *ManifestError naming the file and every bad field, or an error from
// reading the file.
func Load(path string) (*Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &ManifestError{Path: path, Problems: []string{"no " + ManifestFile + " in the executor's directory"}}
		}
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	defer f.Close()
	data, err := readLimited(f, maxManifestBytes)
	if err != nil {
		return nil, &ManifestError{Path: path, Problems: []string{err.Error()}}
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	m, problems := parseManifest(data, dir)
	if len(problems) > 0 {
		return nil, &ManifestError{Path: path, Problems: problems}
	}
	m.Path = path
	return m, nil
}

func readLimited(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read: %v", err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}

// manifestFields are the fields a manifest may hold. The Faraday-only
// fields are accepted so that a Faraday manifest loads, and ignored.
var manifestFields = map[string]bool{
	"name": true, "title": true, "description": true, "category": true, "website": true,
	"cmd": true, "arguments": true, "environment_variables": true, "check_cmds": true,
	"requirements": true, "timeout": true, "skip_invalid_lines": true, "max_line_bytes": true,
	// Faraday's, ignored.
	"image": true, "manifest_version": true, "repo_executor": true, "tool": true,
}

// reservedEnv are variables the executor sets itself; a manifest cannot
// declare them.
var reservedEnv = map[string]bool{"PATH": true, "HOME": true, "LANG": true, "TMPDIR": true}

var reservedPrefixes = []string{"EXECUTOR_CONFIG_", "AGENT_CONFIG_", "SCANFLEET_"}

// parseManifest decodes and validates a manifest; dir is where its
// program lives. Problems name the field.
func parseManifest(data []byte, dir string) (*Manifest, []string) {
	var (
		raw      map[string]json.RawMessage
		problems []string
	)
	fail := func(field, format string, args ...any) {
		problems = append(problems, field+": "+fmt.Sprintf(format, args...))
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, []string{"not a JSON object: " + err.Error()}
	} else if raw == nil {
		return nil, []string{"not a JSON object"}
	}
	var unknown []string
	for k := range raw {
		if !manifestFields[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		fail(k, "unknown field")
	}
	m := &Manifest{Dir: dir}
	str := func(field string, dst *string) {
		if v, ok := raw[field]; ok && !isNull(v) {
			if err := json.Unmarshal(v, dst); err != nil {
				fail(field, "%s is not a string", short(v))
			}
		}
	}
	str("name", &m.Name)
	str("title", &m.Title)
	str("description", &m.Description)
	str("website", &m.Website)

	dirName := filepath.Base(dir)
	switch {
	case m.Name == "":
		fail("name", "is missing (it must be the directory's name, %q)", dirName)
	case scanfleet.ValidateSlug("name", m.Name) != nil:
		fail("name", "%q must be lower-case letters, digits, '-' and '_', starting with a letter or digit, at most 63 characters", m.Name)
	case m.Name != dirName:
		fail("name", "%q does not match its directory %q", m.Name, dirName)
	}

	if v, ok := raw["category"]; ok && !isNull(v) {
		list, err := stringOrList(v)
		if err != nil {
			fail("category", "%s is not a string or a list of strings", short(v))
		}
		m.Category = list
	}

	if v, ok := raw["cmd"]; !ok || isNull(v) {
		fail("cmd", "is missing")
	} else if argv, err := parseArgv(v); err != nil {
		fail("cmd", "%v", err)
	} else if err := checkProgram(dir, argv[0]); err != nil {
		fail("cmd", "%v", err)
	} else {
		m.Cmd = argv
	}

	if v, ok := raw["check_cmds"]; ok && !isNull(v) {
		var items []json.RawMessage
		if err := json.Unmarshal(v, &items); err != nil {
			fail("check_cmds", "%s is not a list", short(v))
		}
		for i, item := range items {
			field := fmt.Sprintf("check_cmds[%d]", i)
			argv, err := parseArgv(item)
			if err != nil {
				fail(field, "%v", err)
			} else if err := checkProgram(dir, argv[0]); err != nil {
				fail(field, "%v", err)
			} else {
				m.CheckCmds = append(m.CheckCmds, argv)
			}
		}
	}

	if v, ok := raw["arguments"]; ok && !isNull(v) {
		var args map[string]json.RawMessage
		if err := json.Unmarshal(v, &args); err != nil {
			fail("arguments", "%s is not an object", short(v))
		}
		m.Arguments = make(map[string]Argument, len(args))
		upper := map[string]string{}
		for _, name := range sortedKeys(args) {
			field := "arguments." + name
			if !isEnvName(name) {
				fail(field, "the name must be letters, digits and '_', not starting with a digit, since it becomes EXECUTOR_CONFIG_%s", strings.ToUpper(name))
				continue
			}
			if other, ok := upper[strings.ToUpper(name)]; ok {
				fail(field, "collides with %q: both are EXECUTOR_CONFIG_%s", other, strings.ToUpper(name))
				continue
			}
			upper[strings.ToUpper(name)] = name
			a, err := parseArgument(args[name])
			if err != nil {
				fail(field, "%v", err)
				continue
			}
			if isTargetArg(name) && a.Type != scanfleet.ParamList && a.Type != scanfleet.ParamString {
				fail(field+".type", "%q: a %s argument is filled with the task's targets, so it must be a list or a string", a.Type, name)
				continue
			}
			m.Arguments[name] = a
		}
	}

	if v, ok := raw["environment_variables"]; ok && !isNull(v) {
		if err := json.Unmarshal(v, &m.EnvironmentVariables); err != nil {
			fail("environment_variables", "%s is not a list of strings", short(v))
		}
		seen := map[string]bool{}
		for i, name := range m.EnvironmentVariables {
			field := fmt.Sprintf("environment_variables[%d]", i)
			switch {
			case !isEnvName(name):
				fail(field, "%q is not a variable name (letters, digits and '_', not starting with a digit)", name)
			case reservedEnv[name] || hasReservedPrefix(name):
				fail(field, "%q is set by the worker itself", name)
			case seen[name]:
				fail(field, "%q is declared twice", name)
			}
			seen[name] = true
		}
	}

	if v, ok := raw["requirements"]; ok && !isNull(v) {
		if err := json.Unmarshal(v, &m.Requirements); err != nil {
			fail("requirements", "%s is not a list of strings", short(v))
		}
		for i, r := range m.Requirements {
			if err := (&scanfleet.TaskType{Name: "x", Requirements: []scanfleet.Requirement{r}}).Validate(); err != nil {
				fail(fmt.Sprintf("requirements[%d]", i), "%q is not one of raw_sockets, task_data, recon_data, queue_access", r)
			}
		}
	}

	if v, ok := raw["timeout"]; ok && !isNull(v) {
		if err := json.Unmarshal(v, &m.Timeout); err != nil {
			fail("timeout", "%s is not a duration such as \"10m\"", short(v))
		} else if m.Timeout < 0 {
			fail("timeout", "%s is negative", short(v))
		}
	}
	if v, ok := raw["skip_invalid_lines"]; ok && !isNull(v) {
		if err := json.Unmarshal(v, &m.SkipInvalidLines); err != nil {
			fail("skip_invalid_lines", "%s is not a boolean", short(v))
		}
	}
	if v, ok := raw["max_line_bytes"]; ok && !isNull(v) {
		var n int64
		if err := json.Unmarshal(v, &n); err != nil || n < 0 || n > MaxLineLimit {
			fail("max_line_bytes", "%s is not a byte count between 0 and %d", short(v), MaxLineLimit)
		} else {
			m.MaxLineBytes = int(n)
		}
	}

	if len(problems) == 0 {
		// The task type checks what only it knows: defaults against
		// their types, integer bounds.
		if err := m.TaskType().Validate(); err != nil {
			fail("arguments", "%s", strings.TrimPrefix(errText(err), "task type "+m.Name+": "))
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return m, nil
}

// parseArgument reads one argument declaration: `true`/`false` (Faraday's
// shorthand for a string argument) or an object.
func parseArgument(data json.RawMessage) (Argument, error) {
	var mandatory bool
	if err := json.Unmarshal(data, &mandatory); err == nil {
		return Argument{Mandatory: mandatory, Type: scanfleet.ParamString}, nil
	}
	var a struct {
		Argument
		Base string `json:"base"` // Faraday's, ignored
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		msg := err.Error()
		if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
			return Argument{}, fmt.Errorf("unknown field %s", f)
		}
		return Argument{}, fmt.Errorf("%s is not an argument declaration (true, or an object with mandatory, type, default, description, min, max)", short(data))
	}
	if a.Type == "" {
		a.Type = scanfleet.ParamString
	}
	if err := (&scanfleet.TaskType{Name: "x", Params: []scanfleet.Param{{Name: "x", Type: a.Type}}}).Validate(); err != nil {
		return Argument{}, fmt.Errorf("type: %q is not one of string, integer, boolean, list, ip, cidr, port-list, duration", a.Type)
	}
	return a.Argument, nil
}

// parseArgv reads a command: a string split on white space, or a list of
// strings.
func parseArgv(data json.RawMessage) ([]string, error) {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		argv := strings.Fields(s)
		if len(argv) == 0 {
			return nil, fmt.Errorf("is empty")
		}
		return argv, nil
	}
	var argv []string
	if err := json.Unmarshal(data, &argv); err != nil {
		return nil, fmt.Errorf("%s is not a command (a string, or a list of strings)", short(data))
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil, fmt.Errorf("is empty")
	}
	for i, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, fmt.Errorf("element %d holds a NUL byte", i)
		}
	}
	return argv, nil
}

// checkProgram verifies a program that lives in the executor's directory:
// it exists and is executable. A bare name not found there is looked up
// in PATH when the task runs (the preflight checks are the place to
// verify a tool is installed).
func checkProgram(dir, name string) error {
	p, local := programPath(dir, name)
	if !local {
		return nil
	}
	st, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("%q does not exist in %s", name, dir)
	}
	if st.IsDir() {
		return fmt.Errorf("%q is a directory", name)
	}
	if st.Mode()&0o111 == 0 {
		return fmt.Errorf("%q is not executable (chmod +x, or run it through its interpreter: [\"python3\", %q])", name, name)
	}
	return nil
}

// programPath resolves argv[0]: a path with a slash is relative to dir; a
// bare name is the file in dir if there is one, else a name for PATH.
func programPath(dir, name string) (string, bool) {
	if strings.Contains(name, "/") {
		if filepath.IsAbs(name) {
			return name, true
		}
		return filepath.Join(dir, name), true
	}
	p := filepath.Join(dir, name)
	if st, err := os.Stat(p); err == nil && !st.IsDir() {
		return p, true
	}
	return name, false
}

// TaskType returns the task type of the executor: named after it, with a
// parameter per argument, its requirements and timeout. A TARGET or
// TARGETS argument is not mandatory there, whatever the manifest says,
// since the executor fills it with the task's targets when a scan does not
// set it.
func (m *Manifest) TaskType() *scanfleet.TaskType {
	tt := &scanfleet.TaskType{
		Name:         m.Name,
		Description:  m.Description,
		Requirements: slices.Clone(m.Requirements),
		Timeout:      time.Duration(m.Timeout),
		Params:       make([]scanfleet.Param, 0, len(m.Arguments)),
	}
	if tt.Description == "" {
		tt.Description = m.Title
	}
	if tt.Requirements == nil {
		tt.Requirements = []scanfleet.Requirement{}
	}
	for _, name := range sortedKeys(m.Arguments) {
		a := m.Arguments[name]
		p := scanfleet.Param{
			Name: name, Type: a.Type, Mandatory: a.Mandatory, Default: a.Default,
			Description: a.Description, Min: a.Min, Max: a.Max,
		}
		if isTargetArg(name) {
			p.Mandatory = false
			p.Description = strings.TrimSpace(p.Description + " Defaults to the task's targets; entries outside the workspace's scope are removed.")
		}
		tt.Params = append(tt.Params, p)
	}
	return tt
}

// isTargetArg reports whether an argument is filled with the targets.
func isTargetArg(name string) bool {
	return strings.EqualFold(name, "TARGET") || strings.EqualFold(name, "TARGETS")
}

func isEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func hasReservedPrefix(name string) bool {
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func stringOrList(data json.RawMessage) ([]string, error) {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		if s == "" {
			return nil, nil
		}
		return []string{s}, nil
	}
	var list []string
	err := json.Unmarshal(data, &list)
	return list, err
}

func isNull(data json.RawMessage) bool { return string(bytes.TrimSpace(data)) == "null" }

// short shows a JSON value in a message, cut after 60 bytes.
func short(data []byte) string {
	s := string(bytes.TrimSpace(data))
	if len(s) > 64 {
		n := 60
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		return s[:n] + "…"
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// errText is the message of an application error, or the text of any
// other: the root package's validation mixes both.
func errText(err error) string {
	if scanfleet.ErrorCode(err) == scanfleet.EINTERNAL {
		return err.Error()
	}
	return scanfleet.ErrorMessage(err)
}
